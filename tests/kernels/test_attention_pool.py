"""attention_pool (projection, scores, online softmax, weighted sum and weights in one pass) == NumPy.

Segments are ragged, in and out of order, empty, longer than a row block, and carried over (a segment pooled
in two calls == in one). Tolerance 1e-5 (float32 kernel vs float64 reference).
"""

import numpy as np
import pytest

from streamsent.kernels.cpu.linear import ROW_BLOCK
from streamsent.kernels.cpu.pooling import attention_pool

D, A = 12, 7


def _weights(seed: int):
    rng = np.random.default_rng(seed)
    WT = rng.normal(size=(D, A)).astype(np.float32) * 0.5
    return WT, rng.normal(size=A).astype(np.float32), rng.normal(size=A).astype(np.float32)


def _reference(o, starts, lengths, WT, b, ctx):
    scores = np.tanh(o.astype(np.float64) @ WT + b) @ ctx
    pooled = np.zeros((len(starts), D))
    weights = np.zeros(len(o))
    for n, (p0, L) in enumerate(zip(starts, lengths, strict=True)):
        if L:
            e = np.exp(scores[p0 : p0 + L] - scores[p0 : p0 + L].max())
            weights[p0 : p0 + L] = e / e.sum()
            pooled[n] = weights[p0 : p0 + L] @ o[p0 : p0 + L]
    return pooled, weights


def _run(o, starts, lengths, WT, b, ctx, state=None):
    N = len(starts)
    m, s, acc = state if state is not None else (np.zeros(N, np.float32), np.zeros(N, np.float32),
                                                 np.zeros((N, D), np.float32))
    out = np.full((N, D), np.nan, np.float32)
    weights = np.zeros(len(o), np.float32)
    attention_pool(o, starts, lengths, WT, b, ctx, np.empty(len(o), np.float32), m, s, acc, out, weights,
                   np.arange(len(o), dtype=np.int32))
    return out, weights, (m, s, acc)


@pytest.mark.parametrize("lengths", [[], [0], [1], [24] * 8, [ROW_BLOCK - 1, 2, 0, ROW_BLOCK + 3],
                                     [3 * ROW_BLOCK + 5], [5, 0, 0, 7, 40, 1, 90, 33]])
def test_matches_numpy(lengths):
    rng = np.random.default_rng(len(lengths))
    lengths = np.asarray(lengths, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
    o = rng.normal(size=(int(lengths.sum()), D)).astype(np.float32)
    WT, b, ctx = _weights(1)
    out, weights, _ = _run(o, starts, lengths, WT, b, ctx)
    ref, ref_w = _reference(o, starts, lengths, WT, b, ctx)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(weights, ref_w, atol=1e-5)


def test_segments_out_of_order_and_with_gaps():
    """Segments need not tile o in order (the run grouping must not assume it)."""
    rng = np.random.default_rng(7)
    o = rng.normal(size=(300, D)).astype(np.float32)
    starts = np.array([200, 0, 50, 40, 150], np.int64)
    lengths = np.array([60, 30, 80, 5, 0], np.int64)
    WT, b, ctx = _weights(2)
    out, weights, _ = _run(o, starts, lengths, WT, b, ctx)
    ref, ref_w = _reference(o, starts, lengths, WT, b, ctx)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    covered = np.concatenate([np.arange(p, p + L) for p, L in zip(starts, lengths, strict=True)])
    np.testing.assert_allclose(weights[covered], ref_w[covered], atol=1e-5)


def test_carried_accumulators_equal_one_pass():
    """A segment pooled as two parts (the state carried between calls) == pooled at once."""
    rng = np.random.default_rng(3)
    lengths = np.array([30, 200, 1], np.int64)
    o = rng.normal(size=(int(lengths.sum()), D)).astype(np.float32)
    o[:5] += 4.0  # the first part holds the larger scores, so the second part rescales what was carried
    WT, b, ctx = _weights(3)
    whole, _, _ = _run(o, np.array([0], np.int64), np.array([len(o)], np.int64), WT, b, ctx)
    cut = 30
    _, _, state = _run(o[:cut], np.array([0], np.int64), np.array([cut], np.int64), WT, b, ctx)
    parts, _, _ = _run(o[cut:], np.array([0], np.int64), np.array([len(o) - cut], np.int64), WT, b, ctx, state)
    np.testing.assert_allclose(parts, whole, atol=1e-5)
