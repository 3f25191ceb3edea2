"""Pooling of ragged segments in accumulator form, so a segment can be pooled a part at a time.

Accumulators per segment n (see CarryState): m[n], s[n], acc[n, D].
  mean       acc = Σ o,  s = count
  max        acc = running max, s = count
  attention  m = running max score, s = Σ exp(score − m), acc = Σ exp(score − m) o   (online softmax)
Rows of a segment are found through `rows`, so the mean encoder pools embeddings straight from the table.
"""

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .activations import tanh
from .linear import ROW_BLOCK

MEAN, MAX, ATTENTION = 0, 1, 2
MODES = {"mean": MEAN, "max": MAX, "attention": ATTENTION}


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def pool_accumulate(mode, table, rows, starts, lengths, scores, m, s, acc):
    """Fold segment n (positions starts[n] .. + lengths[n]) of table[rows[p]] into the accumulators."""
    N = starts.shape[0]
    D = table.shape[1]
    for n in prange(N):
        L = lengths[n]
        if L == 0:
            continue
        a = acc[n]
        p0 = starts[n]
        if mode == MEAN:
            for p in range(p0, p0 + L):
                r = table[rows[p]]
                for j in range(D):
                    a[j] += r[j]
        elif mode == MAX:
            if s[n] == 0:
                a[:] = -np.inf
            for p in range(p0, p0 + L):
                r = table[rows[p]]
                for j in range(D):
                    a[j] = max(a[j], r[j])
        else:
            mx = m[n] if s[n] > 0 else -np.inf
            for p in range(p0, p0 + L):
                mx = max(mx, scores[p])
            if s[n] > 0:  # rescale what was carried to the new maximum
                scale = np.exp(m[n] - mx)
                s[n] *= scale
                for j in range(D):
                    a[j] *= scale
            else:
                s[n] = 0.0
            total = s[n]
            for p in range(p0, p0 + L):
                e = np.exp(scores[p] - mx)
                total += e
                r = table[rows[p]]
                for j in range(D):
                    a[j] += e * r[j]
            m[n] = mx
            s[n] = total
            continue
        s[n] += L


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def pool_finalize(mode, s, acc, out):
    """The pooled vectors; an empty segment (s == 0) gives the zero vector."""
    for n in prange(acc.shape[0]):
        if s[n] == 0:
            out[n] = 0.0
        elif mode == MAX:
            out[n] = acc[n]
        else:
            inv = 1.0 / s[n]
            for j in range(acc.shape[1]):
                out[n, j] = acc[n, j] * inv


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def attention_scores(u_pre, context, scores):
    """scores[p] = tanh(u_pre[p]) · context, where u_pre = W o_p + b (Yang et al. 2016)."""
    A = context.shape[0]
    for p in prange(u_pre.shape[0]):
        acc = np.float32(0.0)
        for j in range(A):
            acc += tanh(u_pre[p, j]) * context[j]
        scores[p] = acc


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def attention_weights(scores, starts, lengths, m, s, weights, slots):
    """weights[slots[p]] = exp(score_p − m[n]) / s[n] for the positions of each segment."""
    for n in prange(starts.shape[0]):
        for p in range(starts[n], starts[n] + lengths[n]):
            weights[slots[p]] = np.exp(scores[p] - m[n]) / s[n]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def attention_scores_linear(o, WT, b, context, scores):
    """scores[p] = tanh(o_p @ WT + b) · context, without the [T, A] projection in memory.

    `linear` + `attention_scores` in one pass: per block of ROW_BLOCK rows one BLAS call into a block buffer,
    then the block's scores while it is in cache. The two-step form wrote and re-read T × A floats (20 MB for
    a 64k-token HAN slice, past L2). o [T, D] C-contiguous, WT [D, A], b [A], context [A] -> scores [T].
    """
    N = o.shape[0]
    A = WT.shape[1]
    n_blocks = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for k in prange(n_blocks):
        lo = k * ROW_BLOCK
        hi = min(N, lo + ROW_BLOCK)
        u = np.empty((hi - lo, A), np.float32)
        np.dot(o[lo:hi], WT, u)
        for i in range(hi - lo):
            acc = np.float32(0.0)
            for j in range(A):
                acc += tanh(u[i, j] + b[j]) * context[j]
            scores[lo + i] = acc
