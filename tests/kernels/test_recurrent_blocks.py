"""The recurrent kernel's two GEMM layouts (8-row BLAS calls for H > SMALL_H, one call over the active rows
otherwise) against torch.nn, with more sequences per chunk than one 8-row block."""

import numpy as np
import pytest
import torch

from streamsent.kernels.cpu.recurrent import SMALL_H

from ..helpers import TOL
from .test_recurrent import MODULES, _run_kernel


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("H", [SMALL_H - 14, SMALL_H + 6])
def test_both_gemm_layouts_match_torch(kind, H):
    torch.manual_seed(1)
    E = 7
    mod = MODULES[kind](E, H, batch_first=True)
    rng = np.random.default_rng(1)
    lengths = [int(x) for x in rng.integers(0, 30, 21)] + [1, 0, 45]
    xs = rng.normal(size=(sum(lengths), E)).astype(np.float32)
    h0 = np.zeros((len(lengths), H), np.float32)
    out, h_n, _, starts = _run_kernel(kind, mod, xs, lengths, False, h0, h0, 2)
    with torch.inference_mode():
        for n, L in enumerate(lengths):
            if L == 0:
                continue
            y, _ = mod(torch.from_numpy(xs[starts[n] : starts[n] + L])[None])
            assert np.abs(out[starts[n] : starts[n] + L] - y[0].numpy()).max() < TOL
            assert np.abs(h_n[n] - y[0, -1].numpy()).max() < TOL
