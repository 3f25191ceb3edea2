"""Vectorisable tanh and sigmoid, in float32.

`np.tanh`/`np.exp` compile to scalar libm calls here (llvmlite ships no SVML), which would dominate a
recurrent step. This rational approximation (Eigen's 13/6 minimax form, clamped at ±7.905 where float32
tanh is ±1) is within 3e-7 of tanh, branch-free, and vectorises. The constants are float32 so the arithmetic
stays float32 (twice the SIMD width of float64). tests/kernels/test_activations.py checks the error.
"""

import numpy as np
from numba import njit

from . import FASTMATH

_f = np.float32
_CLAMP = _f(7.90531110763549805)
_A13, _A11, _A9 = _f(-2.76076847742355e-16), _f(2.00018790482477e-13), _f(-8.60467152213735e-11)
_A7, _A5, _A3 = _f(5.12229709037114e-08), _f(1.48572235717979e-05), _f(6.37261928875436e-04)
_A1 = _f(4.89352455891786e-03)
_B6, _B4, _B2 = _f(1.19825839466702e-06), _f(1.18534705686654e-04), _f(2.26843463243900e-03)
_B0 = _f(4.89352518554385e-03)
_HALF = _f(0.5)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def tanh(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def sigmoid(x):
    return _HALF + _HALF * tanh(_HALF * x)
