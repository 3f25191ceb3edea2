"""Dense layers: out = x[rows] @ W^T + b, one thread per output element, and the classifier head."""

import math

from .compiler import cuda, f32, kernel


@kernel
def linear(x, rows, WT, b, out):
    """x [R, K] (row i of the product is x[rows[i]]), WT [K, M], b [M] -> out [N, M].

    Thread (i, j) of a flat 1-d grid; consecutive threads take consecutive j, so reads of WT[k, j] and writes
    of out[i, j] are coalesced and x[rows[i], k] is one broadcast per warp. The row gather is here so that the
    vocabulary table (rows = token ids) and per-position inputs (rows = 0..N-1) share one kernel.
    """
    N, M = out.shape
    K = WT.shape[0]
    idx = cuda.grid(1)
    if idx >= N * M:
        return
    i = idx // M
    j = idx - i * M
    r = rows[i]
    acc = b[j]
    for k in range(K):
        acc += x[r, k] * WT[k, j]
    out[i, j] = acc


@kernel
def softmax_linear(x, WT, b, out):
    """out = softmax(x @ WT + b) per row, one thread per row: x [N, K], WT [K, C], b [C] -> out [N, C]."""
    n = cuda.grid(1)
    N, K = x.shape
    C = WT.shape[1]
    if n >= N:
        return
    for c in range(C):
        acc = b[c]
        for k in range(K):
            acc += x[n, k] * WT[k, c]
        out[n, c] = acc
    mx = out[n, 0]
    for c in range(1, C):
        mx = max(mx, out[n, c])
    total = f32(0.0)
    for c in range(C):
        e = math.exp(out[n, c] - mx)
        out[n, c] = e
        total += e
    for c in range(C):
        out[n, c] = out[n, c] / total
