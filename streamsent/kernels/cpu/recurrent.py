"""RNN(tanh), GRU and LSTM over ragged sequences, one direction per call, gate order and formulas of torch.nn.

Layout: each thread owns a chunk of sequences for all time steps and, per step, multiplies the chunk's active
states by W_hh^T (h [C, H] @ W_hh^T [H, G]) in single-threaded BLAS calls of GEMM_ROWS rows (one call when
H ≤ SMALL_H). Sequences are taken longest first, so the active ones are always a prefix of the chunk. The
input projection W_ih x_t + b_ih is not computed here: it is a row of `proj` (precomputed per vocabulary
entry, or per distinct token of the batch), found through `rows`. A sequence's row for step t+1 is
prefetched (memory.py) as its step-t cell runs, so the fetches spread over the step and land during the next
GEMM. Issued all at once at the start of a step (as before), 64 rows × 10 cache lines filled the core's
miss buffers and stalled it: a 64-sequence chunk ran 5-8 % slower, a batch-1 HAN word step 10 %.
"""

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .activations import sigmoid, tanh
from .memory import prefetch_row

RNN, GRU, LSTM = 0, 1, 2
GEMM_ROWS = 8  # rows per BLAS call: OpenBLAS's small-matrix kernels reach ~peak up to here, its packed path not
# ... for H > SMALL_H. With fewer hidden units (HAN's 50) the packed path wins instead: one call over all the
# chunk's active rows ran [64, 50] @ [50, 150] at ~2× the GFLOP/s of eight 8-row calls.
SMALL_H = 64
KINDS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _rnn_cell(x, gh, b, h, H):
    for j in range(H):
        h[j] = tanh(x[j] + gh[j] + b[j])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _gru_cell(x, gh, b, h, H):
    for j in range(H):
        r = sigmoid(x[j] + gh[j] + b[j])
        z = sigmoid(x[H + j] + gh[H + j] + b[H + j])
        n = tanh(x[2 * H + j] + r * (gh[2 * H + j] + b[2 * H + j]))
        h[j] = n + z * (h[j] - n)  # (1 - z) * n + z * h


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _lstm_cell(x, gh, b, h, c, H):
    for j in range(H):
        i = sigmoid(x[j] + gh[j] + b[j])
        f = sigmoid(x[H + j] + gh[H + j] + b[H + j])
        g = tanh(x[2 * H + j] + gh[2 * H + j] + b[2 * H + j])
        o = sigmoid(x[3 * H + j] + gh[3 * H + j] + b[3 * H + j])
        c[j] = f * c[j] + i * g
        h[j] = o * tanh(c[j])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _cell(kind, x, gh, b, h, c, H):
    if kind == GRU:
        _gru_cell(x, gh, b, h, H)
    elif kind == LSTM:
        _lstm_cell(x, gh, b, h, c, H)
    else:
        _rnn_cell(x, gh, b, h, H)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def recurrent(kind, proj, rows, starts, lengths, reverse, W_hhT, b_hh, h0, c0, out, out_col, h_n, c_n, n_chunks):
    """Run one direction of a cell over N ragged sequences.

    kind            RNN | GRU | LSTM
    proj [R, G]     input projections W_ih x + b_ih; token position p uses row rows[p]
    starts, lengths int64[N]: sequence n is token positions starts[n] .. starts[n] + lengths[n] - 1
    reverse         run each sequence from its last token to its first
    W_hhT [H, G], b_hh [G]
    h0, c0 [N, H]   initial states (c only for LSTM); a length-0 sequence keeps them
    out [T, Dout]   if it has rows, h_t is written to out[p, out_col:out_col + H]
    h_n, c_n [N, H] final states (written)
    n_chunks        tasks; chunk k takes the k-th, (k + n_chunks)-th, ... longest sequences, so chunks carry
                    similar work
    """
    H = W_hhT.shape[0]
    G = W_hhT.shape[1]
    store = out.shape[0] > 0
    block = GEMM_ROWS if H > SMALL_H else max(lengths.shape[0], 1)  # rows per BLAS call (see SMALL_H)
    order = np.argsort(-lengths, kind="mergesort")
    for k in prange(n_chunks):
        idx = order[k::n_chunks]
        C = idx.shape[0]
        h = np.empty((C, H), np.float32)
        c = np.zeros((C, H), np.float32)
        gh = np.empty((C, G), np.float32)
        for i in range(C):
            h[i] = h0[idx[i]]
            if kind == LSTM:
                c[i] = c0[idx[i]]
        steps = lengths[idx[0]] if C > 0 else 0
        active = C
        for t in range(steps):
            while lengths[idx[active - 1]] <= t:
                active -= 1
            for r in range(0, active, block):
                r1 = min(active, r + block)
                np.dot(h[r:r1], W_hhT, gh[r:r1])  # (rows, H) @ (H, G)
            for i in range(active):
                n = idx[i]
                p = starts[n] + (lengths[n] - 1 - t if reverse else t)
                if t + 1 < lengths[n]:  # its next row, fetched during the next GEMM (see the module docstring)
                    prefetch_row(proj, rows[starts[n] + (lengths[n] - 2 - t if reverse else t + 1)])
                _cell(kind, proj[rows[p]], gh[i], b_hh, h[i], c[i], H)
                if store:
                    out[p, out_col : out_col + H] = h[i]  # a slice copy: ~5 % of a HAN word step faster than by element
        for i in range(C):
            h_n[idx[i]] = h[i]
            c_n[idx[i]] = c[i]
