"""Kim (2014) CNN: several filter widths, ReLU, max over time, straight from per-token projections.

As on the CPU (kernels/cpu/conv.py): a width-w convolution at t is Σ_o W_o x_{t+o} + b and W_o x is read from
`proj` (columns base_k + o·maps + m); a sequence shorter than w is one window with the missing terms 0; an
empty sequence pools to zeros (ReLU outputs are >= 0, so 0 is the max's identity).
"""

from .compiler import cuda, f32, kernel


@kernel
def cnn_max_over_time(proj, rows, starts, lengths, widths, bias, maps, out):
    """proj [R, maps·Σwidths], bias [maps·len(widths)] -> out [N, maps·len(widths)].

    One thread per (sequence n, feature c = k·maps + m); neighbouring threads read neighbouring columns of the
    same projection row. No scratch memory: the thread keeps its running max in a register.
    """
    N, F = out.shape
    idx = cuda.grid(1)
    if idx >= N * F:
        return
    n = idx // F
    c = idx - n * F
    k = c // maps
    m = c - k * maps
    base = 0
    for kk in range(k):
        base += widths[kk] * maps
    w = widths[k]
    L = lengths[n]
    p0 = starts[n]
    best = f32(0.0)
    if L > 0:
        n_pos = max(L - w + 1, 1)
        for t in range(n_pos):
            v = bias[c]
            for o in range(w):
                if t + o < L:
                    v += proj[rows[p0 + t + o], base + o * maps + m]
            best = max(best, v)
    out[n, c] = best
