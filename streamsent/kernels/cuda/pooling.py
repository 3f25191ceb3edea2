"""Pooling of ragged segments in accumulator form, the attention scores and weights (Yang et al. 2016).

The same accumulators as kernels/cpu/pooling.py, per segment n: m[n], s[n], acc[n, D]:
  mean       acc = Σ o,  s = count
  max        acc = running max, s = count
  attention  m = running max score, s = Σ exp(score − m), acc = Σ exp(score − m) o   (online softmax)
`pool_segments` pools, finalises and writes the attention weights in one launch (a block holds every value
they need), as the CPU's pool_accumulate and attention_pool do; `attention_scores_linear` is the projection
and scores part of the CPU's attention_pool (here its own launch, a block row per position).
"""

import math

from .activations import tanh
from .compiler import cuda, f32, kernel

MEAN, MAX, ATTENTION = 0, 1, 2
MODES = {"mean": MEAN, "max": MAX, "attention": ATTENTION}


@kernel
def pool_segments(mode, table, rows, starts, lengths, scores, m, s, acc, out, weights, slots, want_weights):
    """Fold segment n (positions starts[n] .. + lengths[n]) of table[rows[p]] into the accumulators, write its
    pooled vector out[n] (the zero vector while s[n] == 0), and with want_weights its attention weights
    weights[slots[p]] = exp(score_p − m[n]) / s[n].

    One block per segment, its threads over the D columns. Every thread reads m[n], s[n] before a barrier and
    derives the new values itself (the segment's max and sum are cheap next to the D-wide sums); thread 0
    writes them, so no thread reads a half-updated accumulator.
    """
    n = cuda.blockIdx.x
    D = table.shape[1]
    tx = cuda.threadIdx.x
    bx = cuda.blockDim.x
    L = lengths[n] if n < starts.shape[0] else 0
    m_old = m[n] if n < starts.shape[0] else f32(0.0)
    s_old = s[n] if n < starts.shape[0] else f32(0.0)
    cuda.syncthreads()
    if n >= starts.shape[0]:
        return
    if L == 0:  # nothing to fold in: the pooled vector of what was carried (zeros if nothing was)
        for j in range(tx, D, bx):
            out[n, j] = f32(0.0) if s_old == 0 else (acc[n, j] if mode == MAX else acc[n, j] / s_old)
        return
    p0 = starts[n]
    if mode == MEAN:
        s_new = s_old + f32(L)
        for j in range(tx, D, bx):
            a = acc[n, j]
            for p in range(p0, p0 + L):
                a += table[rows[p], j]
            acc[n, j] = a
            out[n, j] = a / s_new
        if tx == 0:
            s[n] = s_new
    elif mode == MAX:
        for j in range(tx, D, bx):
            a = acc[n, j] if s_old > 0 else f32(-math.inf)
            for p in range(p0, p0 + L):
                a = max(a, table[rows[p], j])
            acc[n, j] = a
            out[n, j] = a
        if tx == 0:
            s[n] = s_old + f32(L)
    else:
        mx = m_old if s_old > 0 else f32(-math.inf)
        for p in range(p0, p0 + L):
            mx = max(mx, scores[p])
        scale = math.exp(m_old - mx) if s_old > 0 else f32(0.0)
        total = s_old * scale
        for p in range(p0, p0 + L):
            total += math.exp(scores[p] - mx)
        for j in range(tx, D, bx):
            a = acc[n, j] * scale
            for p in range(p0, p0 + L):
                a += math.exp(scores[p] - mx) * table[rows[p], j]
            acc[n, j] = a
            out[n, j] = a / total
        if want_weights != 0:
            for p in range(p0 + tx, p0 + L, bx):
                weights[slots[p]] = math.exp(scores[p] - mx) / total
        if tx == 0:
            m[n] = mx
            s[n] = total


@kernel
def attention_scores_linear(o, WT, b, context, scores):
    """scores[p] = tanh(o_p @ WT + b) · context, without the [T, A] projection in memory.

    o [T, D], WT [D, A], b [A], context [A] -> scores [T]. Block (lanes, rows): row y takes position
    blockIdx.x · rows + y, its lanes split the A projection columns (reads of WT coalesced along them, o_p one
    broadcast); each lane's tanh(u)·context partial sum goes to shared memory and lane 0 adds them up in a fixed
    order (deterministic). Dynamic shared memory: lanes · rows float32.
    """
    T, D = o.shape
    A = WT.shape[1]
    lanes = cuda.blockDim.x
    tx = cuda.threadIdx.x
    slot = cuda.threadIdx.y * lanes
    p = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    part = cuda.shared.array(0, f32)
    total = f32(0.0)
    if p < T:
        for j in range(tx, A, lanes):
            u = b[j]
            for k in range(D):
                u += o[p, k] * WT[k, j]
            total += tanh(u) * context[j]
    part[slot + tx] = total
    cuda.syncthreads()
    if tx == 0 and p < T:
        for i in range(1, lanes):
            total += part[slot + i]
        scores[p] = total
