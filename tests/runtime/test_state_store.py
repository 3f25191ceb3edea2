"""StateStore bounds (LRU eviction, TTL, memory with 1M distinct keys) and the checkpoint round trip."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from streamsent import DocBatch, Model
from streamsent.errors import StateError
from streamsent.models.init import random_weights
from streamsent.runtime.state import KeyedScorer, StateLayout, StateStore, load_checkpoint, save_checkpoint
from streamsent.runtime.state import checkpoint as checkpoint_mod

from ..helpers import TOL, make_config
from .test_state_scorer import _word, conversations, doc

LAYOUT = StateLayout(hidden=16, pooled=16, labels=2, lstm=False)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _touch(store: StateStore, keys: list[str]) -> np.ndarray:
    """What the scorer does per wave: look the keys up, then store a state for one message each."""
    slots, _ = store.lookup(keys)
    state, probs = store.gather(slots)
    n = len(keys)
    store.scatter(slots, state, probs, np.full(n, -1, np.int32), np.full(n, -1, np.int32), np.full(n, -1, np.int64))
    return slots


def test_least_recently_used_key_is_evicted_and_reported() -> None:
    store = StateStore(LAYOUT, max_keys=3, ttl_s=0)
    for k in ("a", "b", "c"):
        _touch(store, [k])
    _touch(store, ["a"])  # b is now the least recently used
    _touch(store, ["d"])
    assert sorted(store._index) == ["a", "c", "d"]
    assert [r.key for r in store.take_removals()] == ["b"]
    _touch(store, ["e", "f"])  # two more: c and a go, the oldest first
    assert sorted(store._index) == ["d", "e", "f"]
    assert sorted(r.key for r in store.take_removals()) == ["a", "c"]
    with pytest.raises(StateError, match=r"max_keys = 3"):
        store.lookup(["p", "q", "r", "s"])


def test_evicted_key_starts_afresh() -> None:
    cfg = make_config(_word("gru", False, "last"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg))
    scorer = KeyedScorer(model, max_keys=2, ttl_s=0)
    for i, k in enumerate(["a", "b", "c", "a"]):  # a is evicted by c, then comes back
        out = scorer.score([doc(f"{k}{i}", k, [[1 + i, 2]], offset=i)]).rows.to_pylist()[0]
    assert out["messages_seen"] == 1
    alone, _ = model.predict_batch(DocBatch.from_lists([[[4, 2]]]))
    assert np.abs(np.array(out["probs"]) - alone.probs[0]).max() <= TOL


def test_idle_key_expires_after_ttl() -> None:
    clock = Clock()
    cfg = make_config(_word("lstm", False, "mean"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg))
    layout = StateLayout.for_model(cfg)
    store = StateStore(layout, max_keys=10, ttl_s=60, clock=clock)
    scorer = KeyedScorer(model, store)
    assert scorer.score([doc("1", "k", [[1, 2]], 0)]).rows.column("messages_seen").to_pylist() == [1]
    clock.t += 59
    assert scorer.score([doc("2", "k", [[3]], 1)]).rows.column("messages_seen").to_pylist() == [2]
    scorer.score([doc("3", "other", [[3]], 2)])
    clock.t += 61  # k idle for 61 s: it starts afresh
    out = scorer.score([doc("4", "k", [[5, 6]], 3)])
    assert out.rows.column("messages_seen").to_pylist() == [1]
    alone, _ = model.predict_batch(DocBatch.from_lists([[[5, 6]]]))
    assert np.abs(np.array(out.rows.column("probs").to_pylist()[0]) - alone.probs[0]).max() <= TOL
    # the sweep freed "other" without its being seen again (memory of idle keys is reclaimed)
    assert "other" not in store and len(store) == 1
    # for a changelog: both expired keys' tombstones, then k's new state
    removed, entries = out.changes.parts
    assert sorted(r.key for r in removed) == ["k", "other"] and entries.keys == ["k"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to measure the resident size")
def test_one_million_distinct_keys_stay_bounded() -> None:
    t0 = time.perf_counter()
    keys = [f"conversation-{i:07d}" for i in range(1_000_000)]
    chunk = 20_000
    # 1. all 1M held: the arrays are preallocated once; what grows per key is the dict and the key string
    store = StateStore(LAYOUT, max_keys=1_000_000, ttl_s=0)
    before = _rss()
    for lo in range(0, len(keys), chunk):
        _touch(store, keys[lo : lo + chunk])
    per_key = (_rss() - before) / len(keys)
    assert len(store) == 1_000_000
    assert store.slab.shape == (1_000_000, LAYOUT.width)
    # row (36 float32 = 144 B) + per-slot arrays (45 B) + dict entry and slot->key reference (~60 B); the key
    # strings themselves were allocated before `before`
    assert per_key < LAYOUT.width * 4 + 200, per_key
    del store
    # 2. max_keys = 100k while 1M distinct keys stream through: size and memory stop growing once full
    store = StateStore(LAYOUT, max_keys=100_000, ttl_s=0)
    for lo in range(0, 200_000, chunk):
        _touch(store, keys[lo : lo + chunk])
    full = _rss()
    for lo in range(200_000, len(keys), chunk):
        _touch(store, keys[lo : lo + chunk])
        store.take_removals()  # a changelog drains these every batch
    assert 100_000 - 100_000 // 256 <= len(store) <= 100_000  # eviction frees 1/256 extra at a time
    assert keys[-1] in store and keys[0] not in store
    assert _rss() - full < 16 * 2**20, (_rss() - full) / 2**20
    assert time.perf_counter() - t0 < 20


# -- checkpoint -----------------------------------------------------------------------------------------------
def _model(comp_type: str = "paragraph") -> Model:
    """paragraph, hier (unidirectional LSTM document encoder) or window (bidirectional GRU: window mode)."""
    doc_enc = {"hier": _word("lstm", False, "attention"), "window": _word("gru", True, "attention")}.get(comp_type)
    enc = {"type": "hierarchical", "encoder": doc_enc} if doc_enc else None
    cfg = make_config(_word("gru", True, "attention"), enc or {"type": "paragraph"})
    return Model(cfg, random_weights(cfg, seed=9))


@pytest.mark.parametrize("comp", ["paragraph", "hier", "window"])
def test_checkpoint_round_trip_then_continue(tmp_path, comp: str) -> None:
    model = _model(comp)
    convs = conversations(np.random.default_rng(4), 6, 4, model.config.vocab_size)
    window = 64 if comp == "window" else 0
    scorer = KeyedScorer(model, ttl_s=0, window=window)
    offset = 0
    for m in range(2):
        scorer.score([doc(f"{k}{m}", k, c[m], offset := offset + 1) for k, c in convs.items()])
    save_checkpoint(tmp_path, scorer.store, {("chats", 0): offset + 1}, model="test@0")
    ckpt = load_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.offsets == {("chats", 0): offset + 1} and ckpt.model == "test@0"
    assert len(ckpt.entries) == len(convs) and ckpt.layout == scorer.layout
    fresh = KeyedScorer(model, ttl_s=0, window=window)
    assert ckpt.restore(fresh.store) == len(convs)
    a, b = scorer.store.export(), fresh.store.export()
    order = np.argsort(a.keys), np.argsort(b.keys)
    assert np.array_equal(a.rows[order[0]], b.rows[order[1]])
    assert np.array_equal(a.offsets[order[0]], b.offsets[order[1]])
    assert [a.topics[i] for i in order[0]] == [b.topics[i] for i in order[1]]
    for m in range(2, 4):
        out = fresh.score([doc(f"{k}{m}", k, c[m], offset := offset + 1) for k, c in convs.items()])
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for msg in c for s in msg] for c in convs.values()]))
    assert np.abs(np.array(out.rows.column("probs").to_pylist()) - whole.probs).max() <= TOL
    assert out.rows.column("messages_seen").to_pylist() == [4] * len(convs)


def test_restart_from_checkpoint_counts_no_message_twice(tmp_path) -> None:
    """The store ran ahead of the offsets it was saved with (batches scored after the commit point): after a
    'crash', the source resumes at the checkpoint's offsets, the messages the state holds are recognised as
    re-deliveries, the others applied: the final scores equal the uninterrupted run's."""
    model = _model()
    convs = conversations(np.random.default_rng(6), 4, 6, model.config.vocab_size)
    stream = [doc(f"{k}-{m}", k, convs[k][m], offset=i) for i, (m, k) in
              enumerate((m, k) for m in range(6) for k in convs)]
    ref = KeyedScorer(model, ttl_s=0)
    for lo in range(0, len(stream), 4):
        final_ref = ref.score(stream[lo : lo + 4]).rows
    run = KeyedScorer(model, ttl_s=0)
    for lo in range(0, 8, 4):
        run.score(stream[lo : lo + 4])
    save_checkpoint(tmp_path, run.store, {("chats", 0): 8})  # committed up to offset 8 ...
    run.score(stream[8:14])  # ... then six more applied, and the worker dies before the next checkpoint
    save_checkpoint(tmp_path, run.store, {("chats", 0): 8})  # (a checkpoint written just before a failed commit)
    ckpt = load_checkpoint(tmp_path)
    again = KeyedScorer(model, ttl_s=0)
    ckpt.restore(again.store)
    resume = ckpt.offsets[("chats", 0)]
    redelivered = []
    for lo in range(resume, len(stream), 4):
        out = again.score(stream[lo : lo + 4]).rows
        redelivered += out.column("redelivered").to_pylist()
    assert sum(redelivered) == 6
    assert out.column("messages_seen").to_pylist() == [6] * 4
    assert np.abs(np.array(out.column("probs").to_pylist()) - np.array(final_ref.column("probs").to_pylist())).max() \
        <= TOL


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch) -> None:
    model = _model()
    scorer = KeyedScorer(model)
    scorer.score([doc("1", "k", [[1, 2]], 0)])
    save_checkpoint(tmp_path, scorer.store, {("chats", 0): 1})
    scorer.score([doc("2", "k", [[3]], 1)])

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, scorer.store, {("chats", 0): 2})
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.offsets == {("chats", 0): 1} and ckpt.entries.messages.tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["state.arrow"]  # no temporary file left behind


def test_checkpoint_of_another_model_is_refused(tmp_path) -> None:
    scorer = KeyedScorer(_model())
    scorer.score([doc("1", "k", [[1, 2]], 0)])
    save_checkpoint(tmp_path, scorer.store, {})
    other = KeyedScorer(_model("hier"))
    with pytest.raises(StateError, match="does not fit"):
        load_checkpoint(tmp_path).restore(other.store)
    assert load_checkpoint(tmp_path / "nothing-here") is None
