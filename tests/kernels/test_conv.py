"""The CNN kernel against torch.nn.Conv1d + ReLU + max over time, with the same weights."""

import numpy as np
import torch

from streamsent.kernels.cpu.conv import cnn_max_over_time

from ..helpers import TOL


def test_matches_conv1d_including_sequences_shorter_than_the_filter():
    torch.manual_seed(0)
    E, maps, widths = 6, 5, [2, 3, 5]
    convs = [torch.nn.Conv1d(E, maps, w) for w in widths]
    lengths = [1, 2, 4, 5, 0, 9, 400, 3]
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(sum(lengths), E)).astype(np.float32)
    # per-token products, laid out as the CPU backend does: column base_k + o·maps + m is W_k[m, :, o] · x
    cols = [c.weight.detach().numpy()[:, :, o].T for c in convs for o in range(c.kernel_size[0])]
    proj = (xs @ np.concatenate(cols, axis=1)).astype(np.float32)
    bias = np.concatenate([c.bias.detach().numpy() for c in convs])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = np.full((len(lengths), maps * len(widths)), np.nan, np.float32)
    cnn_max_over_time(proj, np.arange(len(xs), dtype=np.int32), starts, np.asarray(lengths, np.int64),
                      np.asarray(widths, np.int64), bias, maps, out)
    with torch.inference_mode():
        for n, L in enumerate(lengths):
            if L == 0:
                assert np.array_equal(out[n], np.zeros_like(out[n]))
                continue
            x = torch.from_numpy(xs[starts[n] : starts[n] + L]).T[None]  # (1, E, L)
            want = []
            for c, w in zip(convs, widths, strict=True):
                xp = torch.nn.functional.pad(x, (0, max(0, w - L)))  # right-pad with zeros to the width
                want.append(torch.relu(c(xp)).amax(dim=2)[0])
            assert np.abs(out[n] - torch.cat(want).numpy()).max() < TOL
