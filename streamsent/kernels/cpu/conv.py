"""Kim (2014) CNN: several filter widths, ReLU, max over time, straight from per-token projections.

A width-w convolution at position t is Σ_o W_o x_{t+o} + b. Each W_o x is a per-token product, so the kernel
reads it from `proj` (columns [base_k + o·maps, base_k + (o+1)·maps) for width k, offset o) and only adds.
A sequence shorter than w is right-padded with zero vectors to w: exactly one window, missing terms are 0.
An empty sequence pools to the zero vector (ReLU outputs are >= 0, so 0 is also the max's identity here).
"""

import numpy as np
from numba import njit, prange

from . import FASTMATH


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def cnn_max_over_time(proj, rows, starts, lengths, widths, bias, maps, out):
    """proj [R, maps·Σwidths], bias [maps·len(widths)] -> out [N, maps·len(widths)]."""
    N = starts.shape[0]
    for n in prange(N):
        L = lengths[n]
        p0 = starts[n]
        best = np.zeros(maps * widths.shape[0], np.float32)
        tmp = np.empty(maps, np.float32)
        if L > 0:
            base = 0
            for k in range(widths.shape[0]):
                w = widths[k]
                b = bias[k * maps : (k + 1) * maps]
                bk = best[k * maps : (k + 1) * maps]
                for t in range(max(L - w + 1, 1)):
                    tmp[:] = b
                    for o in range(min(w, L - t)):
                        r = proj[rows[p0 + t + o]]
                        col = base + o * maps
                        for j in range(maps):
                            tmp[j] += r[col + j]
                    for j in range(maps):
                        bk[j] = max(bk[j], tmp[j])
                base += w * maps
        out[n] = best
