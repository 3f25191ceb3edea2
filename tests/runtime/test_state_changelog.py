"""The state changelog against real brokers (Tansu, noida-db): a partition's state written by one worker is restored
by another, which continues the conversations exactly; tombstones; an empty partition; the value codec."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from streamsent import DocBatch, Model
from streamsent.errors import StateError
from streamsent.models.init import random_weights
from streamsent.runtime.state import KeyedScorer
from streamsent.runtime.state.changelog import Changelog, changelog_topic, decode_value, encode_value

from ..helpers import TOL, make_config
from .test_state_scorer import _word, conversations, doc


def _model(window: bool = False) -> Model:
    """Unidirectional LSTM document encoder (carried state), or with `window` a bidirectional GRU (window mode)."""
    enc = _word("gru", True, "attention") if window else _word("lstm", False, "attention")
    cfg = make_config(_word("gru", True, "attention"), {"type": "hierarchical", "encoder": enc})
    return Model(cfg, random_weights(cfg, seed=2))


def test_value_codec_round_trip() -> None:
    row = np.arange(7, dtype=np.float32) / 3
    messages, last_seen, offset, back = decode_value(encode_value(12, 1.5e9, 345, row))
    assert (messages, last_seen, offset) == (12, 1.5e9, 345) and np.array_equal(back, row)
    with pytest.raises(StateError, match="not a version-1"):
        decode_value(encode_value(1, 0.0, 0, row)[:-1])
    assert changelog_topic("g", "chats") == "g-chats-state-changelog"
    assert len(changelog_topic("g" * 300, "chats")) == 249


def test_partition_state_moves_to_another_worker(broker, fresh_topic) -> None:
    """Worker A scores the first half of conversations on two partitions and writes the changelog; worker B is
    assigned partition 0, worker C partition 1: each restores its partition and finishes its conversations with
    exactly the scores of the whole conversations. A key evicted on A (tombstone) comes back nowhere."""
    model = _model()
    source = fresh_topic(2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    convs = conversations(np.random.default_rng(1), 6, 6, model.config.vocab_size)
    part = {k: i % 2 for i, k in enumerate(convs)}  # k0, k2, k4 on partition 0
    offsets = {0: 0, 1: 0}

    def batch(m: int, keys: list[str]) -> list:
        out = []
        for k in keys:
            out.append(doc(f"{k}-{m}", k, convs[k][m], offsets[part[k]], part[k], source))
            offsets[part[k]] += 1
        return out

    log_a = Changelog(broker.bootstrap, group)
    log_a.ensure_topics({source: 2})
    log_a.ensure_topics({source: 2})  # idempotent
    a = KeyedScorer(model, ttl_s=0)
    for m in range(3):
        log_a.send(a.score(batch(m, list(convs))).changes)
    a.store.remove(["k5"], record=True)  # k5 leaves A's store (as by eviction): a tombstone
    log_a.send(a.score([]).changes)
    log_a.flush()
    log_a.close()

    finals = {}
    for p in (0, 1):
        worker = KeyedScorer(model, ttl_s=0)
        log_b = Changelog(broker.bootstrap, group)
        log_b.ensure_topics({source: 2})
        keys = [k for k in convs if part[k] == p]
        assert log_b.restore(worker.store, source, [p]) == (3 if p == 0 else 2)
        assert sorted(worker.store._index) == sorted(k for k in keys if k != "k5")
        for m in range(3, 6):
            out = worker.score(batch(m, keys)).rows.to_pylist()
            log_b.send(worker.score([]).changes)
        log_b.close()
        finals.update({r["key"]: r for r in out})
    for k in convs:
        n_msgs = 3 if k == "k5" else 6  # k5 started afresh on its new worker
        whole, _ = model.predict_batch(DocBatch.from_lists([[s for msg in convs[k][6 - n_msgs :] for s in msg]]))
        assert finals[k]["messages_seen"] == n_msgs
        assert np.abs(np.array(finals[k]["probs"]) - whole.probs[0]).max() <= TOL, k


@pytest.mark.parametrize("window", [0, 64], ids=["carried", "window"])
def test_changelog_ahead_of_committed_offsets_is_not_applied_twice(broker, fresh_topic, window: int) -> None:
    """The changelog is flushed before the commit; if the commit then fails, the new owner restores state that
    already holds the re-delivered messages, recognises them and applies only the rest."""
    model = _model(window=window > 0)
    source = fresh_topic(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    msgs = conversations(np.random.default_rng(3), 1, 5, model.config.vocab_size)["k0"]
    log_a = Changelog(broker.bootstrap, group)
    log_a.ensure_topics({source: 1})
    a = KeyedScorer(model, ttl_s=0, window=window)
    for i in range(4):
        log_a.send(a.score([doc(f"m{i}", "k0", msgs[i], i, 0, source)]).changes)
    log_a.flush()  # ... and the commit of offsets 2 and 3 never happens
    log_a.close()
    b = KeyedScorer(model, ttl_s=0, window=window)
    log_b = Changelog(broker.bootstrap, group)
    log_b.ensure_topics({source: 1})
    assert log_b.restore(b.store, source, [0]) == 1
    out = b.score([doc(f"m{i}", "k0", msgs[i], i, 0, source) for i in (2, 3, 4)]).rows.to_pylist()
    log_b.close()
    assert [r["redelivered"] for r in out] == [True, True, False]
    assert out[-1]["messages_seen"] == 5
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for m in msgs for s in m]]))
    assert np.abs(np.array(out[-1]["probs"]) - whole.probs[0]).max() <= TOL


def test_restore_of_an_empty_partition_and_an_unknown_topic(broker, fresh_topic) -> None:
    source = fresh_topic(1)
    log = Changelog(broker.bootstrap, f"g-{uuid.uuid4().hex[:8]}", restore_timeout_s=20)
    scorer = KeyedScorer(_model())
    with pytest.raises(StateError, match="ensure_topics"):
        log.restore(scorer.store, source, [0])
    log.ensure_topics({source: 1})
    assert log.restore(scorer.store, source, [0]) == 0
    log.close()


class _Future:
    def __init__(self, ok: bool) -> None:
        self.ok, self.is_done = ok, True
        self.exception = None if ok else RuntimeError("broker away")

    def succeeded(self) -> bool:
        return self.ok


class _Producer:
    """Acknowledges nothing while `fail` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.fail = True

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int) -> _Future:
        self.sent.append((key, value))
        return _Future(not self.fail)

    def flush(self, timeout: float) -> None:
        pass


def test_failed_changelog_writes_block_the_commit_and_are_sent_again() -> None:
    model = _model()
    producer = _Producer()
    log = Changelog("unused:9092", "g", producer=producer)
    log._partitions["chats"] = 1  # as ensure_topics would have
    scorer = KeyedScorer(model, ttl_s=0)
    log.send(scorer.score([doc("1", "a", [[1]], 0, 0, "chats"), doc("2", "b", [[2]], 1, 0, "chats")]).changes)
    log.send(scorer.score([doc("3", "a", [[3]], 2, 0, "chats")]).changes)
    with pytest.raises(StateError, match="3 of 3 state changelog writes failed"):
        log.flush()
    producer.fail = False
    log.flush()  # sends the failed changes again, and they are acknowledged now
    resent = producer.sent[3:]  # b's only value, and a's latest (its older value is not sent again)
    assert [k for k, _ in resent] == [b"b", b"a"]
    assert decode_value(resent[1][1])[0] == 2  # a after two messages
    log.send(scorer.score([doc("4", "b", [[4]], 3, 0, "chats")]).changes)
    log.flush()
    assert [k for k, _ in producer.sent[5:]] == [b"b"]
