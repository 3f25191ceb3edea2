"""RNN(tanh), GRU and LSTM over ragged sequences, one direction per launch, gate order and formulas of torch.nn.

Layout: the sequences are sorted longest first (`order`) and cut into tiles of blockDim.y × R sequences; one block
runs its tile through every time step inside the kernel (one launch for the whole recurrence, not one per step:
this is what beats per-step GEMM launches). Thread (x, y) owns hidden units x, x + blockDim.x, ... of the R
sequences y·R .. y·R + R − 1 of the tile: per step it reads each W_hh^T element once (coalesced along the units,
through L1/L2) and uses it for all R sequences, so the weight traffic is 1/R of one sequence per thread, with the
R × gates partial sums in registers. The states are in shared memory, double-buffered (one barrier a step); the
LSTM cell too. A tile holds sequences of similar length, so few threads idle; a sequence that ends writes its
final state and its threads wait. As on the CPU, W_ih x_t + b_ih is not computed here: it is a row of `proj`
(found through `rows`), the vocabulary table or the batch's projected inputs.

The kernel is compiled per cell kind and R (both compile-time constants: the gate and tile loops unroll and the
partial sums stay in registers). Dynamic shared memory: 3 · blockDim.y · R · H float32.
"""

from __future__ import annotations

import numba

from .activations import sigmoid, tanh
from .compiler import cuda, f32, kernel

RNN, GRU, LSTM = 0, 1, 2
KINDS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
GATES = (1, 3, 4)  # per kind


def shared_bytes(rows: int, H: int, R: int = 1) -> int:
    """Dynamic shared memory of a launch with blockDim.y = rows and R sequences per thread."""
    return 3 * rows * R * H * 4


def _make(kind: int, R: int):
    NG = GATES[kind]
    NR = NG * R  # a local array's size must be a compile-time constant: computed here, not in the kernel

    @kernel
    def run(proj, rows, starts, lengths, order, reverse, W_hhT, b_hh, h0, c0, zero_init, out, store, out_col, h_n,
            c_n):
        H = W_hhT.shape[0]
        N = order.shape[0]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        bx = cuda.blockDim.x
        tile = cuda.blockDim.y * R
        first = cuda.blockIdx.x * tile
        sh = cuda.shared.array(0, f32)
        cell = 2 * tile * H  # the LSTM cells follow the two state buffers
        seq = cuda.local.array(R, numba.int64)
        seq_len = cuda.local.array(R, numba.int64)
        for r in range(R):
            slot = first + ty * R + r
            n = order[slot] if slot < N else 0
            seq[r] = n
            seq_len[r] = lengths[n] if slot < N else -1  # -1: no sequence in this slot
            row = (ty * R + r) * H
            for j in range(tx, H, bx):
                h = f32(0.0) if zero_init != 0 or slot >= N else h0[n, j]
                c = f32(0.0) if zero_init != 0 or slot >= N or NG != 4 else c0[n, j]
                sh[row + j] = h
                sh[cell + row + j] = c
                if seq_len[r] == 0:  # an empty sequence keeps its initial state
                    h_n[n, j] = h
                    c_n[n, j] = c
        steps = lengths[order[first]] if first < N else 0  # the tile's longest sequence
        cur = 0
        nxt = tile * H
        acc = cuda.local.array(NR, f32)
        cuda.syncthreads()
        for t in range(steps):
            for j in range(tx, H, bx):
                for q in range(NR):
                    acc[q] = f32(0.0)
                for k in range(H):  # gh = W_hh h for the R sequences (finished ones too: no divergence)
                    for g in range(NG):
                        w = W_hhT[k, g * H + j]
                        for r in range(R):
                            acc[g * R + r] += sh[cur + (ty * R + r) * H + k] * w
                for r in range(R):
                    L = seq_len[r]
                    if t < L:
                        n = seq[r]
                        row = (ty * R + r) * H
                        p = starts[n] + (L - 1 - t if reverse else t)
                        x = rows[p]
                        if NG == 1:
                            h = tanh(proj[x, j] + acc[r] + b_hh[j])
                        elif NG == 3:
                            rg = sigmoid(proj[x, j] + acc[r] + b_hh[j])
                            z = sigmoid(proj[x, H + j] + acc[R + r] + b_hh[H + j])
                            g = tanh(proj[x, 2 * H + j] + rg * (acc[2 * R + r] + b_hh[2 * H + j]))
                            h = g + z * (sh[cur + row + j] - g)  # (1 - z) * n + z * h
                        else:
                            i = sigmoid(proj[x, j] + acc[r] + b_hh[j])
                            f = sigmoid(proj[x, H + j] + acc[R + r] + b_hh[H + j])
                            g = tanh(proj[x, 2 * H + j] + acc[2 * R + r] + b_hh[2 * H + j])
                            o = sigmoid(proj[x, 3 * H + j] + acc[3 * R + r] + b_hh[3 * H + j])
                            c = f * sh[cell + row + j] + i * g
                            sh[cell + row + j] = c
                            h = o * tanh(c)
                        sh[nxt + row + j] = h
                        if store != 0:
                            out[p, out_col + j] = h
                        if t == L - 1:
                            h_n[n, j] = h
                            c_n[n, j] = sh[cell + row + j]
            cuda.syncthreads()  # every read of `cur` is done before the next step overwrites it
            cur, nxt = nxt, cur

    return run


_compiled: dict[tuple[int, int], object] = {}


def recurrent(kind, proj, rows, starts, lengths, order, reverse, W_hhT, b_hh, h0, c0, out, store, out_col, h_n,
              c_n, block=(32, 4, 1), stream=0):
    """Run one direction of a cell over N ragged sequences (launches the kernel for `kind` and R).

    kind            RNN | GRU | LSTM
    proj [R_, G]    input projections W_ih x + b_ih; token position p uses row rows[p]
    starts, lengths int64[N]: sequence n is token positions starts[n] .. starts[n] + lengths[n] - 1
    order           int64[N]: sequence indices, longest first (the tiles)
    reverse         1: run each sequence from its last token to its first
    W_hhT [H, G], b_hh [G]
    h0, c0 [N, H]   initial states (c only for LSTM); None: zeros. A length-0 sequence keeps them
    out [T, Dout]   if store: h_t is written to out[p, out_col:out_col + H]
    h_n, c_n [N, H] final states (written)
    block           (threads over hidden units, thread rows, R sequences per thread): a tile is rows × R sequences
    """
    N = order.shape[0]
    if N == 0:
        return
    bx, by, R = block
    key = (kind, R)
    if key not in _compiled:
        _compiled[key] = _make(kind, R)
    H = W_hhT.shape[0]
    zero = h0 is None
    tiles = -(-N // (by * R))
    _compiled[key][tiles, (bx, by), stream, shared_bytes(by, H, R)](
        proj, rows, starts, lengths, order, int(reverse), W_hhT, b_hh, h_n if zero else h0, c_n if zero else c0,
        int(zero), out, int(store), out_col, h_n, c_n)
