import numpy as np
from numba import njit

from streamsent.kernels.cpu.activations import sigmoid, tanh


@njit
def _apply(x, t, s):
    for i in range(x.size):
        t[i] = tanh(x[i])
        s[i] = sigmoid(x[i])


def test_rational_tanh_and_sigmoid_are_float32_accurate():
    x = np.concatenate([np.linspace(-30, 30, 1_000_001), [0.0, 1e-6, -1e-6, 7.9, -7.9, 88.0, -88.0]])
    x = x.astype(np.float32)
    t, s = np.empty_like(x), np.empty_like(x)
    _apply(x, t, s)
    x64 = x.astype(np.float64)
    assert np.abs(t - np.tanh(x64)).max() < 4e-7
    assert np.abs(s - 1 / (1 + np.exp(-x64))).max() < 3e-7
    assert t.dtype == np.float32 and np.all(np.abs(t) <= 1.0)
    assert tanh(np.float32(0.0)) == 0.0 and tanh(np.float32(-0.5)) == -tanh(np.float32(0.5))
