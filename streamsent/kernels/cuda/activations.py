"""tanh and sigmoid as device functions.

The CPU kernels use a rational tanh because llvmlite has no vectorised libm; the GPU has fast hardware tanh and
exp, so these are the plain formulas (torch.nn's, within float32 rounding of the CPU's approximation).
"""

import math

from .compiler import device, f32


@device
def tanh(x):
    return math.tanh(x)


@device
def sigmoid(x):
    return f32(1.0) / (f32(1.0) + math.exp(-x))  # float32 literals: no float64 arithmetic on the GPU
