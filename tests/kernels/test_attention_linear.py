"""attention_scores_linear (projection and scores in one pass) == linear + attention_scores == NumPy."""

import numpy as np
import pytest

from streamsent.kernels.cpu.linear import ROW_BLOCK, linear
from streamsent.kernels.cpu.pooling import attention_scores, attention_scores_linear


@pytest.mark.parametrize("T", [0, 1, ROW_BLOCK - 1, ROW_BLOCK, 3 * ROW_BLOCK + 5])
def test_fused_equals_two_steps_and_numpy(T):
    rng = np.random.default_rng(T)
    D, A = 12, 7
    o = rng.normal(size=(T, D)).astype(np.float32)
    WT = rng.normal(size=(D, A)).astype(np.float32) * 0.5
    b = rng.normal(size=A).astype(np.float32)
    ctx = rng.normal(size=A).astype(np.float32)
    fused = np.full(T, np.nan, np.float32)
    attention_scores_linear(o, WT, b, ctx, fused)
    u = np.empty((T, A), np.float32)
    linear(o, WT, b, u)
    two = np.empty(T, np.float32)
    attention_scores(u, ctx, two)
    ref = np.tanh(o.astype(np.float64) @ WT + b) @ ctx
    np.testing.assert_allclose(fused, two, atol=1e-6)
    np.testing.assert_allclose(fused, ref, atol=1e-5)
