"""The recurrent kernel against torch.nn.RNN/GRU/LSTM with the same weights, over ragged sequences."""

import numpy as np
import pytest
import torch

from streamsent.kernels.cpu.recurrent import KINDS, recurrent

from ..helpers import TOL

MODULES = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def _run_kernel(kind, mod, xs, lengths, reverse, h0, c0, n_chunks):
    sfx = "_reverse" if reverse else ""
    W_ih = getattr(mod, f"weight_ih_l0{sfx}").detach().numpy()
    b_ih = getattr(mod, f"bias_ih_l0{sfx}").detach().numpy()
    W_hh = getattr(mod, f"weight_hh_l0{sfx}").detach().numpy()
    b_hh = getattr(mod, f"bias_hh_l0{sfx}").detach().numpy()
    T, H = len(xs), W_hh.shape[1]
    proj = (xs @ W_ih.T + b_ih).astype(np.float32)  # one row per position
    rows = np.arange(T, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = np.full((T, H), np.nan, np.float32)
    h_n, c_n = np.empty((len(lengths), H), np.float32), np.empty((len(lengths), H), np.float32)
    recurrent(KINDS[kind], proj, rows, starts, np.asarray(lengths, np.int64), reverse, np.ascontiguousarray(W_hh.T),
              b_hh, h0, c0, out, 0, h_n, c_n, n_chunks)
    return out, h_n, c_n, starts


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("n_chunks", [1, 3])
def test_matches_torch_bidirectional_with_initial_state(kind, n_chunks):
    torch.manual_seed(0)
    E, H = 6, 5
    mod = MODULES[kind](E, H, batch_first=True, bidirectional=True)
    lengths = [4, 1, 0, 17, 9, 300, 2]
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(sum(lengths), E)).astype(np.float32)
    h0 = rng.normal(size=(len(lengths), H)).astype(np.float32) * 0.5
    c0 = rng.normal(size=(len(lengths), H)).astype(np.float32) * 0.5
    fwd = _run_kernel(kind, mod, xs, lengths, False, h0, c0, n_chunks)
    bwd = _run_kernel(kind, mod, xs, lengths, True, h0, c0, n_chunks)
    starts = fwd[3]
    with torch.inference_mode():
        for n, L in enumerate(lengths):
            if L == 0:  # an empty sequence keeps its initial state and writes nothing
                assert np.array_equal(fwd[1][n], h0[n]) and np.array_equal(bwd[1][n], h0[n])
                if kind == "lstm":
                    assert np.array_equal(fwd[2][n], c0[n])
                continue
            x = torch.from_numpy(xs[starts[n] : starts[n] + L])[None]
            h = torch.from_numpy(np.stack([h0[n], h0[n]]))[:, None]
            state = (h, torch.from_numpy(np.stack([c0[n], c0[n]]))[:, None]) if kind == "lstm" else h
            y, hn = mod(x, state)
            if kind == "lstm":
                hn, cn = hn
                assert np.abs(fwd[2][n] - cn[0, 0].numpy()).max() < TOL
                assert np.abs(bwd[2][n] - cn[1, 0].numpy()).max() < TOL
            y = y[0].numpy()
            assert np.abs(fwd[0][starts[n] : starts[n] + L] - y[:, :H]).max() < TOL
            assert np.abs(bwd[0][starts[n] : starts[n] + L] - y[:, H:]).max() < TOL
            assert np.abs(fwd[1][n] - hn[0, 0].numpy()).max() < TOL
            assert np.abs(bwd[1][n] - hn[1, 0].numpy()).max() < TOL
