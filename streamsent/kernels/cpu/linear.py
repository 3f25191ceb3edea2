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
