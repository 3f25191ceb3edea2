"""Dense layers: out = x @ W^T + b over row blocks, one single-threaded BLAS call per block."""

import numpy as np
from numba import njit, prange

from . import FASTMATH

ROW_BLOCK = 128  # rows per task: enough for BLAS efficiency, small enough to balance two threads


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def linear(x, WT, b, out):
    """x [N, K] @ WT [K, M] + b [M] -> out [N, M]. WT is W transposed, stored contiguous."""
    N = x.shape[0]
    M = WT.shape[1]
    n_blocks = (N + ROW_BLOCK - 1) // ROW_BLOCK
    for k in prange(n_blocks):
        lo = k * ROW_BLOCK
        hi = min(N, lo + ROW_BLOCK)
        o = out[lo:hi]
        np.dot(x[lo:hi], WT, o)
        for i in range(hi - lo):
            for j in range(M):
                o[i, j] += b[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def softmax_linear(x, WT, b, out):
    """out = softmax(x @ WT + b) per row: the classifier head in one call (it was eight NumPy calls, ~5% of a
    batch-1 forward pass). x [N, K], WT [K, C], b [C] -> out [N, C]; C is a handful of labels."""
    N, K = x.shape
    C = WT.shape[1]
    for n in range(N):
        o = out[n]
        for c in range(C):
            o[c] = b[c]
        for k in range(K):
            xk = x[n, k]
            for c in range(C):
                o[c] += xk * WT[k, c]
        mx = o[0]
        for c in range(1, C):
            mx = max(mx, o[c])
        total = np.float32(0.0)
        for c in range(C):
            o[c] = np.exp(o[c] - mx)
            total += o[c]
        for c in range(C):
            o[c] /= total
