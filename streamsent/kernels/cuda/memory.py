"""Moving rows between device arrays: the gathers and scatters the backend needs between kernels.

The CPU mirror prefetches rows the hardware cannot predict; on the GPU the equivalent concern is that these
small copies run as kernels on the backend's stream instead of round trips through the host.
"""

from .compiler import cuda, f32, kernel


@kernel
def scatter_cols(src, idx, col0, out):
    """out[n, col0 + j] = src[idx[n], j] for every n with idx[n] >= 0 (others keep their value)."""
    N = idx.shape[0]
    H = src.shape[1]
    k = cuda.grid(1)
    if k >= N * H:
        return
    n = k // H
    j = k - n * H
    if idx[n] >= 0:
        out[n, col0 + j] = src[idx[n], j]


@kernel
def add_lengths(s, lengths):
    """s[n] += lengths[n] (the count of a `last`-pooled accumulator)."""
    n = cuda.grid(1)
    if n < s.shape[0]:
        s[n] += f32(lengths[n])


@kernel
def fill(a, value):
    """a[k] = value for a 1-d (or raveled) array: device allocations start uninitialised."""
    k = cuda.grid(1)
    if k < a.shape[0]:
        a[k] = value
