"""The CPU backend scores big batches in slices of whole documents (SLICE_TOKENS): same results as one pass,
attention weights and carried state included."""

import numpy as np
import pytest

from streamsent import DocBatch, Model
from streamsent.backends import cpu
from streamsent.models.init import random_weights

from ..helpers import make_config, ragged_docs

ATT = {"pooling": "attention", "attention_dim": 5}
CASES = {
    "han": ({"type": "gru", "hidden": 6, "bidirectional": True, **ATT},
            {"type": "hierarchical", "encoder": {"type": "lstm", "hidden": 5, **ATT}}),
    "paragraph-lstm": ({"type": "lstm", "hidden": 6, **ATT}, {"type": "paragraph"}),
    "cnn": ({"type": "cnn", "widths": [2, 3], "maps": 4}, None),
}


def test_slices_cover_every_document_once():
    doc_tokens = np.array([0, 3, 3, 10, 11, 30, 31])
    b = cpu._slices(doc_tokens, 8)
    assert b[0] == 0 and b[-1] == 6 and np.all(np.diff(b) > 0)
    assert all(doc_tokens[d1] - doc_tokens[d0] <= 8 or d1 == d0 + 1 for d0, d1 in zip(b[:-1], b[1:], strict=True))
    assert list(cpu._slices(np.array([0]), 8)) == [0, 0]


@pytest.mark.parametrize("name", CASES)
def test_sliced_equals_one_pass(name, monkeypatch):
    word, comp = CASES[name]
    cfg = make_config(word, comp)
    model = Model(cfg, random_weights(cfg, seed=5))
    docs = ragged_docs(np.random.default_rng(5), 30, cfg.vocab_size)
    batch = DocBatch.from_lists(docs)
    whole, whole_state = model.predict_batch(batch)
    monkeypatch.setattr(cpu, "SLICE_TOKENS", 13)
    sliced, sliced_state = model.predict_batch(batch, whole_state)  # with a carried state, sliced by document
    again, again_state = model.predict_batch(batch, whole_state)
    monkeypatch.setattr(cpu, "SLICE_TOKENS", 1 << 16)
    ref, ref_state = model.predict_batch(batch, whole_state)
    for a, b in ((sliced, ref), (again, ref)):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
        for att in ("word_attention", "sentence_attention"):
            if getattr(b, att) is None:
                assert getattr(a, att) is None
            else:
                np.testing.assert_allclose(getattr(a, att), getattr(b, att), atol=1e-6)
    if ref_state is None:
        assert sliced_state is None
    else:
        for f in ("h", "c", "m", "s", "acc"):
            np.testing.assert_allclose(getattr(sliced_state, f), getattr(ref_state, f), atol=1e-5)
    assert whole.probs.shape == sliced.probs.shape


def test_forward_passes_on_two_threads_at_once_match_and_hold_blas_at_one_thread(monkeypatch):
    """The pipeline's scorers run forward passes side by side: results are those of one pass at a time; BLAS is
    held at one thread inside every pass, whichever thread used the model first (threadpoolctl lets only one
    thread change OpenBLAS's limit), and the process-wide count is restored after the last pass."""
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads() -> list[tuple[str, int]]:
        return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    inside: list[int] = []
    linear = cpu._linear

    def spy(*args):
        inside.extend(n for _, n in blas_threads())
        return linear(*args)

    monkeypatch.setattr(cpu, "_linear", spy)
    word, comp = CASES["han"]
    cfg = make_config(word, comp)
    model = Model(cfg, random_weights(cfg, seed=7))
    rng = np.random.default_rng(7)
    batches = [DocBatch.from_lists(ragged_docs(rng, 40, cfg.vocab_size)) for _ in range(6)]
    expected = [model.predict_batch(b)[0].probs for b in batches]  # on this (the main) thread first
    before = blas_threads()
    got: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(2)

    def run(k: int) -> None:
        start.wait()
        got[k] = [model.predict_batch(b)[0].probs for b in batches for _ in range(3)][::3]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        for g, e in zip(got[k], expected, strict=True):
            np.testing.assert_array_equal(g, e)
    assert inside and set(inside) == {1}
    assert blas_threads() == before


def test_small_batches_run_on_one_numba_thread_and_leave_the_callers_count(monkeypatch):
    """A batch under SERIAL_TOKENS runs on one Numba thread, a bigger one on the caller's count; either way the
    caller's count (read and set through numba's C entry points, cpu._threads) is what it was afterwards."""
    import numba

    seen: list[int] = []
    linear = cpu._linear

    def spy(*args):
        seen.append(numba.get_num_threads())
        return linear(*args)

    monkeypatch.setattr(cpu, "_linear", spy)
    word, comp = CASES["han"]
    cfg = make_config(word, comp)
    model = Model(cfg, random_weights(cfg, seed=9))
    small = DocBatch.from_lists([[[1, 2, 3], [4, 5]]])
    big = DocBatch.from_lists([[[1 + (i % 7)] * 40] * 4 for i in range(4)])
    assert small.n_tokens < cpu.SERIAL_TOKENS <= big.n_tokens
    threads = numba.get_num_threads()
    model.predict_batch(small)
    assert seen and set(seen) == {1}
    seen.clear()
    model.predict_batch(big)
    assert seen and set(seen) == {threads}
    assert numba.get_num_threads() == threads
