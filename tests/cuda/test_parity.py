"""The CUDA backend == the CPU backend (max abs difference <= TOL = 1e-5) for every word encoder × composition ×
direction, with every pooling and document encoder among the cases, attention weights and carried state included;
and the recurrence kernel itself against the CPU kernel from non-zero initial states, both directions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamsent import DocBatch
from streamsent.models.init import random_weights

from ..helpers import TOL, make_config
from .helpers import backends, encoder, small_docs

RECURRENT = ["rnn", "lstm", "gru"]
POOLINGS = ["last", "mean", "max", "attention"]
COMPOSITIONS = ["flat", "paragraph", "average", "hierarchical"]


def _cases() -> list[tuple[str, dict, dict]]:
    """Each word encoder type × direction × composition once; poolings and document encoders rotate through them."""
    words = [("mean", encoder("mean")), ("cnn", encoder("cnn"))]
    words += [(f"{t}-{'bi' if bi else 'uni'}", encoder(t, bi)) for t, bi in itertools.product(RECURRENT, [False, True])]
    docs = [encoder(t, bi, p, hidden=3) for p, t, bi in itertools.product(POOLINGS, RECURRENT, [False, True])]
    cases, k = [], 0
    for name, word in words:
        for comp in COMPOSITIONS:
            if comp == "paragraph" and word["type"] in ("mean", "cnn"):
                continue
            w = dict(word)
            if "pooling" in w:
                w = encoder(w["type"], w["bidirectional"], POOLINGS[k % 4])
            c = {"type": comp}
            if comp == "hierarchical":
                c["encoder"] = docs[k % len(docs)]
            cases.append((f"{name}-{w.get('pooling', '')}/{comp}", w, c))
            k += 1
    cases.append(("HAN", encoder("gru", True, "attention"),
                  {"type": "hierarchical", "encoder": encoder("gru", True, "attention", hidden=4)}))
    return cases


CASES = _cases()


def test_the_cases_cover_every_encoder_composition_and_direction():
    seen = {(w["type"], w.get("bidirectional"), c["type"]) for _, w, c in CASES}
    assert len(seen) == 2 * 3 + 3 * 2 * 4
    for typ in RECURRENT:
        assert {w["pooling"] for _, w, _ in CASES if w["type"] == typ} == set(POOLINGS)
    assert {c["encoder"]["pooling"] for _, _, c in CASES if "encoder" in c} == set(POOLINGS)


def _assert_close(a, b, what):
    assert (a is None) == (b is None), what
    if a is not None:
        assert a.shape == b.shape, what
        assert np.abs(a - b).max() <= TOL, f"{what}: max abs difference {np.abs(a - b).max():.2e}"


@pytest.mark.parametrize(("name", "word", "comp"), CASES, ids=[c[0] for c in CASES])
def test_cuda_equals_cpu(name, word, comp, geometry):
    cfg = make_config(word, comp, vocab=40, dim=6)
    weights = random_weights(cfg, seed=len(name))
    gpu, cpu = backends(cfg, weights, geometry)
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(len(name)), 6, cfg.vocab_size))
    got, got_state = gpu.forward(batch)
    want, want_state = cpu.forward(batch)
    assert got.probs.shape == (batch.n_docs, 3)
    assert np.ptp(want.probs[:, 0]) > 1e-3  # documents get different scores: the comparison means something
    for what in ("probs", "word_attention", "sentence_attention"):
        _assert_close(getattr(got, what), getattr(want, what), what)
    assert (got_state is None) == (want_state is None) == (not cfg.can_carry)
    if want_state is not None:
        for f in ("h", "c", "m", "s", "acc"):
            _assert_close(getattr(got_state, f), getattr(want_state, f), f"state.{f}")


STATE_CASES = [(encoder(t, bi, p), {"type": "paragraph"})
               for t, bi, p in [("lstm", False, "attention"), ("gru", True, "last"), ("rnn", True, "max"),
                                ("lstm", True, "mean")]]
STATE_CASES += [(encoder("gru", True, "attention"), {"type": "hierarchical", "encoder": encoder(t, False, p, 3)})
                for t, p in [("lstm", "last"), ("gru", "attention")]]


@pytest.mark.parametrize(("word", "comp"), STATE_CASES,
                         ids=[f"{w['type']}-{w['bidirectional']}-{w['pooling']}-{c['type']}" for w, c in STATE_CASES])
def test_carried_state_equals_cpu_message_by_message(word, comp, geometry):
    """A conversation scored a message at a time, the state carried: each step's scores and state == the CPU's,
    and the last scores == the whole conversation scored at once."""
    cfg = make_config(word, comp, vocab=40, dim=6)
    gpu, cpu = backends(cfg, random_weights(cfg, seed=11), geometry)
    rng = np.random.default_rng(11)
    n_msg = 3
    docs = [[rng.integers(0, cfg.vocab_size, rng.integers(0, 6)).tolist() for _ in range(n_msg)] for _ in range(4)]
    docs[0][1] = []  # an empty message in the middle changes nothing
    g_state = c_state = None
    for k in range(n_msg):
        part = DocBatch.from_lists([[d[k]] for d in docs])
        got, g_state = gpu.forward(part, g_state)
        want, c_state = cpu.forward(part, c_state)
        _assert_close(got.probs, want.probs, f"message {k} probs")
        _assert_close(got.word_attention, want.word_attention, f"message {k} word attention")
        for f in ("h", "c", "m", "s", "acc"):
            _assert_close(getattr(g_state, f), getattr(c_state, f), f"message {k} state.{f}")
    whole, _ = cpu.forward(DocBatch.from_lists(docs))
    _assert_close(got.probs, whole.probs, "last message vs whole conversation")


@pytest.mark.parametrize("word", [encoder("lstm", True, "mean"), encoder("cnn")], ids=["lstm", "cnn"])
def test_without_the_vocabulary_table(word, geometry):
    """Projections per batch (table_budget_mb=0) == the device-resident vocabulary table == the CPU."""
    cfg = make_config(word, vocab=40, dim=6)
    w = random_weights(cfg, seed=5)
    gpu, cpu = backends(cfg, w, geometry, table_budget_mb=0)
    with_table, _ = backends(cfg, w, geometry)
    assert gpu.word.conv_table is None and all(d.table is None for d in gpu.word.dirs)
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(5), 5, cfg.vocab_size))
    a, b, c = gpu.forward(batch)[0].probs, with_table.forward(batch)[0].probs, cpu.forward(batch)[0].probs
    _assert_close(a, c, "per-batch projection vs cpu")
    _assert_close(b, c, "vocabulary table vs cpu")


def test_buffers_grow_for_a_larger_batch_and_are_reused_for_a_smaller_one(geometry):
    """The pinned staging and the device workspace are reused between batches: they grow for a larger batch, and a
    smaller one after it runs in views of the same buffers, with the same results as the CPU each time."""
    cfg = make_config(encoder("gru", False, "attention"), {"type": "paragraph"}, vocab=40, dim=6)
    gpu, cpu = backends(cfg, random_weights(cfg, seed=2), geometry, table_budget_mb=0)
    rng = np.random.default_rng(2)
    buffers = []
    for n in (1, 9, 2):
        batch = DocBatch.from_lists(small_docs(rng, n, cfg.vocab_size))
        got, want = gpu.forward(batch)[0], cpu.forward(batch)[0]
        _assert_close(got.probs, want.probs, f"{n} docs")
        _assert_close(got.word_attention, want.word_attention, f"{n} docs: word attention")
        buffers.append({k: id(v) for k, v in gpu._ws.items()} | {"staging": id(gpu._i64.dev)})
    assert buffers[1] != buffers[0] and buffers[2] == buffers[1]


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_kernel_equals_the_cpu_kernel(kind, geometry):
    """One direction of each cell, forward and reversed, from random initial states and from zeros (h0 None),
    outputs at an offset column, sequences of lengths 0..9, tiles of 1 × 2 and 2 × 3 sequences (several blocks,
    several hidden units and sequences per thread)."""
    from numba import cuda

    from streamsent.kernels.cpu.recurrent import KINDS
    from streamsent.kernels.cpu.recurrent import recurrent as cpu_recurrent
    from streamsent.kernels.cuda.recurrent import recurrent

    rng = np.random.default_rng(3)
    H, G = 5, {"rnn": 1, "gru": 3, "lstm": 4}[kind] * 5
    lengths = np.array([3, 0, 9, 1, 4, 4, 7], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    T, N = int(lengths.sum()), len(lengths)
    proj = rng.standard_normal((12, G)).astype(np.float32)
    rows = rng.integers(0, 12, T).astype(np.int32)
    W_hhT = (0.5 * rng.standard_normal((H, G))).astype(np.float32)
    b_hh = rng.standard_normal(G).astype(np.float32)
    h0, c0 = rng.standard_normal((N, H)).astype(np.float32), rng.standard_normal((N, H)).astype(np.float32)
    order = np.argsort(-lengths, kind="stable")
    blocks = [(2, 1, 2), (2, 2, 3)] if "rnn_block" in geometry else [(32, 4, 1), (32, 2, 4)]
    d = {k: cuda.to_device(v) for k, v in dict(proj=proj, rows=rows, starts=starts, lengths=lengths, order=order,
                                                W=W_hhT, b=b_hh, h0=h0, c0=c0).items()}
    for reverse, initial, block in [(0, True, blocks[0]), (1, True, blocks[1]), (1, False, blocks[0])]:
        h_init = h0 if initial else np.zeros_like(h0)
        c_init = c0 if initial else np.zeros_like(c0)
        want_out = np.zeros((T, 2 * H), np.float32)
        want_h, want_c = np.empty((N, H), np.float32), np.empty((N, H), np.float32)
        cpu_recurrent(KINDS[kind], proj, rows, starts, lengths, bool(reverse), W_hhT, b_hh, h_init, c_init, want_out,
                      H, want_h, want_c, 2)
        out = cuda.to_device(np.zeros((T, 2 * H), np.float32))
        h_n, c_n = cuda.device_array((N, H), np.float32), cuda.device_array((N, H), np.float32)
        recurrent(KINDS[kind], d["proj"], d["rows"], d["starts"], d["lengths"], d["order"], reverse, d["W"], d["b"],
                  d["h0"] if initial else None, d["c0"] if initial else None, out, True, H, h_n, c_n, block=block)
        what = f"reverse={reverse}, initial={initial}, block={block}"
        _assert_close(out.copy_to_host(), want_out, f"outputs, {what}")
        _assert_close(h_n.copy_to_host(), want_h, f"h_n, {what}")
        if kind == "lstm":
            _assert_close(c_n.copy_to_host(), want_c, f"c_n, {what}")
        assert np.abs(h_n.copy_to_host()[1] - h_init[1]).max() == 0  # the empty sequence keeps its initial state


DEFAULT_CASES = [
    (encoder("gru", True, "attention", hidden=50) | {"attention_dim": 40},
     {"type": "hierarchical", "encoder": encoder("gru", True, "attention", hidden=20) | {"attention_dim": 40}}),
    (encoder("lstm", False, "last", hidden=40), {"type": "flat"}),
    ({"type": "cnn", "widths": [3, 4, 5], "maps": 40}, {"type": "flat"}),
]


@pytest.mark.parametrize(("word", "comp"), DEFAULT_CASES, ids=["HAN-50", "LSTM-40", "CNN-40"])
def test_default_geometry_equals_cpu(word, comp):
    """The production launch geometry (128-thread blocks: 64 lanes over 50 hidden units, a warp of lanes over 40
    attention columns) on wider models than the other tests, == the CPU backend."""
    cfg = make_config(word, comp, vocab=30, dim=16)
    w = random_weights(cfg, seed=1, scale=0.3)
    gpu, cpu = backends(cfg, w, {})
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(0), 3, cfg.vocab_size))
    got, want = gpu.forward(batch)[0], cpu.forward(batch)[0]
    for what in ("probs", "word_attention", "sentence_attention"):
        _assert_close(getattr(got, what), getattr(want, what), what)


def test_the_stage_timer_sees_every_stage_and_changes_nothing(geometry):
    """bench/gpu.py --breakdown's hook: each stage reported, in order, with the same scores as without it."""
    cfg = make_config(encoder("gru", True, "attention"), {"type": "hierarchical",
                                                          "encoder": encoder("gru", True, "attention", hidden=4)},
                      vocab=40, dim=6)
    gpu, _ = backends(cfg, random_weights(cfg, seed=8), geometry, table_budget_mb=0)
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(8), 3, cfg.vocab_size))
    plain = gpu.forward(batch)[0].probs
    seen: list[tuple[str, float]] = []
    gpu.timer = lambda stage, seconds: seen.append((stage, seconds))
    timed = gpu.forward(batch)[0].probs
    assert np.array_equal(plain, timed)
    stages = [s for s, _ in seen]
    assert stages == ["upload", "word.projection", "word.recurrent", "word.projection", "word.recurrent",
                      "word.attention_scores", "word.pooling", "doc.projection", "doc.recurrent", "doc.projection",
                      "doc.recurrent", "doc.attention_scores", "doc.pooling", "classifier", "download"]
    assert all(sec >= 0 for _, sec in seen)


@pytest.mark.parametrize(("word", "comp"), [
    (encoder("gru", True, "attention"), {"type": "hierarchical", "encoder": encoder("lstm", True, "attention", 3)}),
    (encoder("lstm", True, "last"), {"type": "paragraph"}),
], ids=["HAN", "paragraph-bi"])
def test_backward_direction_on_its_own_stream_or_not(word, comp, geometry):
    """The backward recurrence on the side stream (fork and join events) == on the main stream == the CPU. The
    simulator runs streams synchronously, so on it this checks the code path; on a GPU, the event ordering."""
    cfg = make_config(word, comp, vocab=40, dim=6)
    w = random_weights(cfg, seed=12)
    two, cpu = backends(cfg, w, geometry, table_budget_mb=0)
    one, _ = backends(cfg, w, geometry, table_budget_mb=0, concurrent_directions=False)
    assert two.concurrent and not one.concurrent
    batch = DocBatch.from_lists(small_docs(np.random.default_rng(12), 6, cfg.vocab_size))
    want = cpu.forward(batch)[0]
    for _ in range(2):  # the second time over the reused workspace
        for be in (two, one):
            got = be.forward(batch)[0]
            for what in ("probs", "word_attention", "sentence_attention"):
                _assert_close(getattr(got, what), getattr(want, what), what)


def test_threads_sharing_a_backend_get_their_own_results(geometry):
    """Calls from several threads queue on the backend (its staging, workspace and streams are shared), each
    getting the CPU's result for its own batch."""
    import threading

    cfg = make_config(encoder("gru", True, "attention"), {"type": "flat"}, vocab=40, dim=6)
    gpu, cpu = backends(cfg, random_weights(cfg, seed=14), geometry)
    rng = np.random.default_rng(14)
    batches = [DocBatch.from_lists(small_docs(rng, n, cfg.vocab_size)) for n in (2, 7, 4)]
    got: dict[int, np.ndarray] = {}

    def score(i: int) -> None:
        got[i] = gpu.forward(batches[i])[0].probs

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, b in enumerate(batches):
        _assert_close(got[i], cpu.forward(b)[0].probs, f"batch {i}")
