"""Pooling of ragged segments in accumulator form, so a segment can be pooled a part at a time.

Accumulators per segment n (see CarryState): m[n], s[n], acc[n, D].
  mean       acc = Σ o,  s = count
  max        acc = running max, s = count
  attention  m = running max score, s = Σ exp(score − m), acc = Σ exp(score − m) o   (online softmax)
Each kernel also writes the pooled vectors of what it has seen so far (acc / s; acc for max; 0 for a segment
that has seen nothing), so a forward pass is one call per pooling.
"""

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .activations import tanh
from .linear import ROW_BLOCK

MEAN, MAX, ATTENTION = 0, 1, 2
MODES = {"mean": MEAN, "max": MAX, "attention": ATTENTION}


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _finalize(mode, s, a, out):
    if s == 0:
        out[:] = 0.0
    elif mode == MAX:
        out[:] = a
    else:
        inv = 1.0 / s
        for j in range(a.shape[0]):
            out[j] = a[j] * inv


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def pool_accumulate(mode, table, rows, starts, lengths, m, s, acc, out):
    """Fold segment n (positions starts[n] .. + lengths[n]) of table[rows[p]] into the accumulators (mean or
    max), then out[n] = its pooled vector. Rows are found through `rows`, so the mean encoder pools embeddings
    straight from the table."""
    N = starts.shape[0]
    D = table.shape[1]
    for n in prange(N):
        L = lengths[n]
        a = acc[n]
        p0 = starts[n]
        if L > 0:
            if mode == MEAN:
                for p in range(p0, p0 + L):
                    r = table[rows[p]]
                    for j in range(D):
                        a[j] += r[j]
            else:
                if s[n] == 0:
                    a[:] = -np.inf
                for p in range(p0, p0 + L):
                    r = table[rows[p]]
                    for j in range(D):
                        a[j] = max(a[j], r[j])
            s[n] += L
        _finalize(mode, s[n], a, out[n])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _groups(starts, lengths):
    """Bounds [0, .., N] of runs of consecutive segments that lie in order and span at most ROW_BLOCK rows
    together (a longer segment is a run of its own)."""
    N = starts.shape[0]
    bounds = np.empty(N + 1, np.int64)
    k = 0
    bounds[0] = 0
    lo = hi = 0  # the open run's row span; empty until its first non-empty segment
    for n in range(N):
        L = lengths[n]
        if L == 0:
            continue
        if hi > lo and (starts[n] < hi or starts[n] + L - lo > ROW_BLOCK):
            k += 1
            bounds[k] = n
            lo = starts[n]
        elif hi == lo:
            lo = starts[n]
        hi = starts[n] + L
    k += 1
    bounds[k] = N
    return bounds[: k + 1]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def attention_pool(o, starts, lengths, WT, b, context, scores, m, s, acc, out, weights, slots):
    """Attention pooling (Yang et al. 2016) of N segments of o [T, D] (positions starts[n] .. + lengths[n]).

    scores[p] = tanh(o_p @ WT + b) · context; the segment's rows are folded into (m, s, acc) by online
    softmax; out[n] = acc[n] / s[n]; and, when `weights` has rows, weights[slots[p]] = exp(scores[p] − m[n]) /
    s[n]. One pass per run of segments spanning ≤ ROW_BLOCK rows: one BLAS call for the run's projection
    (W o for the whole span), then each segment's softmax and weighted sum while its rows are in cache. (It
    was four kernels, each its own pass over [T, D] and its own parallel launch: ~20 % of a batch-1 HAN.)
    WT [D, A], b [A], context [A]; scores float32[T] is scratch (written for the runs' spans).
    """
    A = WT.shape[1]
    D = o.shape[1]
    bounds = _groups(starts, lengths)
    with_weights = weights.shape[0] > 0
    for k in prange(bounds.shape[0] - 1):
        n0, n1 = bounds[k], bounds[k + 1]
        lo, hi = 0, 0
        for n in range(n0, n1):
            if lengths[n] > 0:
                if hi == lo:
                    lo = starts[n]
                hi = starts[n] + lengths[n]
        u = np.empty((min(hi - lo, ROW_BLOCK), A), np.float32)
        for r0 in range(lo, hi, ROW_BLOCK):
            r1 = min(hi, r0 + ROW_BLOCK)
            ub = u[: r1 - r0]
            np.dot(o[r0:r1], WT, ub)
            for i in range(r1 - r0):
                sc = np.float32(0.0)
                for j in range(A):
                    sc += tanh(ub[i, j] + b[j]) * context[j]
                scores[r0 + i] = sc
        for n in range(n0, n1):
            L = lengths[n]
            p0 = starts[n]
            a = acc[n]
            if L > 0:
                mx = m[n] if s[n] > 0 else -np.inf
                for p in range(p0, p0 + L):
                    mx = max(mx, scores[p])
                if s[n] > 0:  # rescale what was carried to the new maximum
                    scale = np.exp(m[n] - mx)
                    s[n] *= scale
                    for j in range(D):
                        a[j] *= scale
                total = s[n] if s[n] > 0 else np.float32(0.0)
                for p in range(p0, p0 + L):
                    e = np.exp(scores[p] - mx)
                    total += e
                    r = o[p]
                    for j in range(D):
                        a[j] += e * r[j]
                m[n] = mx
                s[n] = total
                if with_weights:
                    inv = 1.0 / total
                    for p in range(p0, p0 + L):
                        weights[slots[p]] = np.exp(scores[p] - mx) * inv
            _finalize(ATTENTION, s[n], a, out[n])
