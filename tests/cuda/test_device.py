"""Choosing the CUDA backend: device = 'cuda' / 'auto' under the simulator, and the error without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from streamsent import DeviceError, DocBatch, Model
from streamsent.models.init import random_weights

from ..helpers import TOL, make_config
from .conftest import ON_DEVICE
from .helpers import encoder, small_docs


def test_device_cuda_and_auto_pick_the_cuda_backend(geometry):
    from streamsent.backends.cuda import CudaBackend

    cfg = make_config(encoder("gru", True, "attention"), {"type": "flat"}, vocab=40, dim=6)
    w = random_weights(cfg, seed=4)
    docs = small_docs(np.random.default_rng(4), 4, cfg.vocab_size)
    gpu = Model(cfg, w, device="cuda", **geometry)
    auto = Model(cfg, w, device="auto", **geometry)
    assert isinstance(gpu.backend, CudaBackend) and gpu.device == "cuda"
    assert isinstance(auto.backend, CudaBackend) and auto.device == "cuda"
    got = gpu.predict(docs).column("probs").to_pylist()
    want = Model(cfg, w, device="cpu").predict(docs).column("probs").to_pylist()
    assert [p is None for p in got] == [p is None for p in want]  # documents with no token: not scored on either
    assert np.abs(np.array([p for p in got if p is not None]) - np.array([p for p in want if p is not None])).max() \
        <= TOL


def test_without_the_simulator_variable_cuda_is_refused_and_auto_is_the_cpu(monkeypatch):
    """Once the variable is gone, this process's simulator no longer counts as a GPU (the other tests rely on it)."""
    if ON_DEVICE:
        pytest.skip("a real GPU is present")
    cfg = make_config(encoder("mean"))
    w = random_weights(cfg)
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM")
    with pytest.raises(DeviceError, match="NUMBA_ENABLE_CUDASIM=1 is no longer set.*use device = 'cpu'"):
        Model(cfg, w, device="cuda")
    assert Model(cfg, w, device="auto").device == "cpu"


_NO_GPU = textwrap.dedent("""
    import json, sys
    if sys.argv[1] == "no-numba-cuda":
        sys.modules["numba_cuda"] = None  # as if the package were not installed
    from streamsent import DeviceError, Model
    from streamsent.models.init import random_weights
    from tests.helpers import make_config
    cfg = make_config({"type": "mean"})
    w = random_weights(cfg)
    try:
        Model(cfg, w, device="cuda")
        error = None
    except DeviceError as exc:
        error = str(exc)
    auto = Model(cfg, w, device="auto")
    auto.predict_batch(__import__("streamsent").DocBatch.from_lists([[[1, 2]]]))
    print(json.dumps({"error": error, "auto": auto.device, "imported": "numba.cuda" in sys.modules}))
""")


@pytest.mark.parametrize("case", ["no-driver", "no-numba-cuda"])
def test_no_gpu_error_says_what_was_looked_for_and_how_to_use_the_cpu(case):
    """A fresh process without the simulator, as on a machine without a GPU: 'cuda' is a clear DeviceError, 'auto'
    scores on the CPU, and neither imports numba.cuda."""
    if ON_DEVICE:
        pytest.skip("a real GPU is present")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-c", _NO_GPU, case], capture_output=True, text=True, env=env,
                         cwd=__import__("pathlib").Path(__file__).parents[2], timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["auto"] == "cpu" and out["imported"] is False
    assert "device = 'cuda' needs an NVIDIA GPU" in out["error"] and "use device = 'cpu'" in out["error"]
    if case == "no-driver":
        assert "CUDA driver library (libcuda.so.1) could not be loaded and there is no /dev/nvidiactl" in out["error"]
    else:
        assert "numba-cuda is not installed (pip install 'streamsent[cuda]')" in out["error"]


@pytest.mark.parametrize("attention", [False, True], ids=["bi-last", "uni-attention"])
def test_sentence_vectors_then_score_sentences_equal_the_cpu(attention, geometry):
    """The two halves of a hierarchical forward pass (window mode) == the CPU backend's, and == forward."""
    from .helpers import backends

    doc = encoder("gru", not attention, "attention" if attention else "last", hidden=3)
    cfg = make_config(encoder("gru", True, "attention"), {"type": "hierarchical", "encoder": doc}, vocab=40, dim=6)
    gpu, cpu = backends(cfg, random_weights(cfg, seed=7), geometry)
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(7), 5, cfg.vocab_size))
    vecs, want_vecs = gpu.sentence_vectors(batch), cpu.sentence_vectors(batch)
    assert vecs.dtype == np.float32 and vecs.shape == want_vecs.shape
    assert np.abs(vecs - want_vecs).max() <= TOL
    nonempty = np.diff(batch.sent_offsets) > 0
    do = np.concatenate([[0], np.cumsum(nonempty)])[batch.doc_offsets]
    got, want = gpu.score_sentences(vecs, do), cpu.score_sentences(want_vecs, do)
    assert np.abs(got.probs - want.probs).max() <= TOL
    assert np.abs(got.probs - gpu.forward(batch)[0].probs).max() <= TOL
    assert (got.sentence_attention is None) == (want.sentence_attention is None) == (not attention)
    if attention:
        assert np.abs(got.sentence_attention - want.sentence_attention).max() <= TOL
    with pytest.raises(ValueError, match="doc_offsets"):
        gpu.score_sentences(vecs, np.array([0, 1]))
    flat = make_config(encoder("gru", True, "attention"), {"type": "flat"}, vocab=40, dim=6)
    from streamsent.backends.cuda import CudaBackend
    from streamsent.errors import StateError

    with pytest.raises(StateError, match="no sentence vectors"):
        CudaBackend(flat, random_weights(flat), **geometry).sentence_vectors(batch)


def test_default_recurrence_geometry_fits_shared_memory():
    """Default tiles: lanes a warp multiple covering H (at most 128), the largest tile that leaves 256 blocks, its
    states within 48 kB of shared memory; a state too large for one sequence is a clear error."""
    from streamsent.backends.cuda import RNN_MIN_BLOCKS, SHARED_LIMIT, CudaBackend
    from streamsent.kernels.cuda.recurrent import shared_bytes

    cfg = make_config(encoder("mean"), vocab=10, dim=3)
    be = CudaBackend(cfg, random_weights(cfg))
    assert be._rnn_block(50, 10) == (64, 1, 1)  # few sequences: a block each
    assert be._rnn_block(50, 2048) == (64, 2, 4)  # HAN's sentences at batch 256: tiles of 8, 256 blocks
    assert be._rnn_block(128, 4096) == (128, 2, 4)
    assert be._rnn_block(128, 300) == (128, 1, 1)
    assert be._rnn_block(20, 100_000) == (32, 4, 4)
    for H in (5, 50, 128, 700, 1024, 1100):
        for n in (1, 300, 5000, 100_000):
            bx, by, R = be._rnn_block(H, n)
            assert bx * by <= 256 and bx >= min(H, 128) and shared_bytes(by, H, R) <= SHARED_LIMIT
            assert -(-n // (by * R)) >= min(n, RNN_MIN_BLOCKS)
    assert be._rnn_block(1100, 100_000) == (128, 1, 2)  # 4 a thread would need 52.8 kB
    with pytest.raises(ValueError, match="hidden size 5000 is too large"):
        be._rnn_block(5000, 10)


def test_streamsent_score_with_device_cuda_equals_the_cpu(tmp_path):
    """The command line end to end: `streamsent score --device cuda` (on the simulator unless on a GPU, in a fresh
    process) writes the same probabilities as `--device cpu`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = make_config(encoder("gru", True, "attention"), {"type": "hierarchical",
                                                          "encoder": encoder("gru", False, "last", 3)},
                      vocab=40, dim=6)
    model_dir = Model(cfg, random_weights(cfg, seed=13)).save(tmp_path / "model")
    docs = small_docs(np.random.default_rng(13), 6, cfg.vocab_size)
    pq.write_table(pa.table({"doc_id": list(range(len(docs))),
                             "tokens": pa.array(docs, pa.list_(pa.list_(pa.int32())))}), tmp_path / "in.parquet")
    probs = {}
    for device in ("cuda", "cpu"):
        env = dict(__import__("os").environ, **({} if ON_DEVICE else {"NUMBA_ENABLE_CUDASIM": "1"}))
        out = tmp_path / f"{device}.parquet"
        run = subprocess.run([sys.executable, "-m", "streamsent.cli", "score", str(tmp_path / "in.parquet"), "-o",
                              str(out), "--model", str(model_dir), "--device", device, "--no-progress"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        table = pq.read_table(out)
        assert table.column("doc_id").to_pylist() == list(range(len(docs)))
        probs[device] = table.column("probs").to_pylist()
    empty = [not any(doc) for doc in docs]  # no token at all: no score on either device (null probs)
    assert [p is None for p in probs["cuda"]] == empty == [p is None for p in probs["cpu"]]
    got = {d: np.array([p for p in probs[d] if p is not None]) for d in probs}
    assert got["cpu"].shape == (len(docs) - sum(empty), len(cfg.labels))
    assert np.abs(got["cuda"] - got["cpu"]).max() <= TOL
