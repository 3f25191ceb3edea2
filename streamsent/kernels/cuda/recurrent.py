"""RNN(tanh), GRU and LSTM over ragged sequences, one direction per launch, gate order and formulas of torch.nn.

Layout: the sequences are sorted longest first (`order`) and cut into tiles of blockDim.y sequences; one block
runs its tile through every time step inside the kernel (one launch for the whole recurrence, not one per step:
torch's per-step kernels are what this fuses). Thread (x, y) owns hidden units x, x + blockDim.x, ... of
sequence y, computes their gates from the whole previous state (shared memory, double-buffered: one barrier a
step) and W_hh^T (read through L1/L2, coalesced along the units), and keeps its own cell values. Because a tile
holds sequences of similar length, few threads idle; a sequence that ends writes its final state and waits.
As on the CPU, W_ih x_t + b_ih is not computed here: it is a row of `proj`, found through `rows`.
Dynamic shared memory: 3 · blockDim.y · H float32 (two state buffers and the LSTM cell).
"""

from .activations import sigmoid, tanh
from .compiler import cuda, f32, kernel

RNN, GRU, LSTM = 0, 1, 2
KINDS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def shared_bytes(rows: int, H: int) -> int:
    """Dynamic shared memory a launch with blockDim.y = rows needs."""
    return 3 * rows * H * 4


@kernel
def recurrent(kind, proj, rows, starts, lengths, order, reverse, W_hhT, b_hh, h0, c0, out, store, out_col, h_n,
              c_n):
    """Run one direction of a cell over N ragged sequences.

    kind            RNN | GRU | LSTM
    proj [R, G]     input projections W_ih x + b_ih; token position p uses row rows[p]
    starts, lengths int64[N]: sequence n is token positions starts[n] .. starts[n] + lengths[n] - 1
    order           int64[N]: sequence indices, longest first; block b runs order[b·by : (b+1)·by]
    reverse         1: run each sequence from its last token to its first
    W_hhT [H, G], b_hh [G]
    h0, c0 [N, H]   initial states (c only for LSTM); a length-0 sequence keeps them
    out [T, Dout]   if store: h_t is written to out[p, out_col:out_col + H]
    h_n, c_n [N, H] final states (written)
    """
    H = W_hhT.shape[0]
    N = order.shape[0]
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    bx = cuda.blockDim.x
    by = cuda.blockDim.y
    first = cuda.blockIdx.x * by
    slot = first + ty
    sh = cuda.shared.array(0, f32)
    cur = ty * H  # offset of this sequence's state in buffer 0; buffer 1 is + by·H; the cell + 2·by·H
    nxt = cur + by * H
    cell = cur + 2 * by * H
    n = order[slot] if slot < N else 0
    L = lengths[n] if slot < N else 0
    for j in range(tx, H, bx):
        if slot < N:
            sh[cur + j] = h0[n, j]
            sh[cell + j] = c0[n, j] if kind == LSTM else f32(0.0)
            if L == 0:
                h_n[n, j] = h0[n, j]
                c_n[n, j] = sh[cell + j]
    steps = lengths[order[first]] if first < N else 0  # the tile's longest sequence
    cuda.syncthreads()
    for t in range(steps):
        if t < L:
            p = starts[n] + (L - 1 - t if reverse else t)
            x = rows[p]
            for j in range(tx, H, bx):
                if kind == RNN:
                    a = proj[x, j] + b_hh[j]
                    for k in range(H):
                        a += sh[cur + k] * W_hhT[k, j]
                    h = tanh(a)
                elif kind == GRU:
                    ar = proj[x, j] + b_hh[j]
                    az = proj[x, H + j] + b_hh[H + j]
                    an = b_hh[2 * H + j]
                    for k in range(H):
                        hk = sh[cur + k]
                        ar += hk * W_hhT[k, j]
                        az += hk * W_hhT[k, H + j]
                        an += hk * W_hhT[k, 2 * H + j]
                    r = sigmoid(ar)
                    z = sigmoid(az)
                    g = tanh(proj[x, 2 * H + j] + r * an)
                    h = g + z * (sh[cur + j] - g)  # (1 - z) * n + z * h
                else:
                    ai = proj[x, j] + b_hh[j]
                    af = proj[x, H + j] + b_hh[H + j]
                    ag = proj[x, 2 * H + j] + b_hh[2 * H + j]
                    ao = proj[x, 3 * H + j] + b_hh[3 * H + j]
                    for k in range(H):
                        hk = sh[cur + k]
                        ai += hk * W_hhT[k, j]
                        af += hk * W_hhT[k, H + j]
                        ag += hk * W_hhT[k, 2 * H + j]
                        ao += hk * W_hhT[k, 3 * H + j]
                    c = sigmoid(af) * sh[cell + j] + sigmoid(ai) * tanh(ag)
                    sh[cell + j] = c
                    h = sigmoid(ao) * tanh(c)
                sh[nxt + j] = h
                if store != 0:
                    out[p, out_col + j] = h
                if t == L - 1:
                    h_n[n, j] = h
                    c_n[n, j] = sh[cell + j]
        cuda.syncthreads()  # every read of `cur` is done before the next step overwrites it
        cur, nxt = nxt, cur
