"""KeyedScorer: a conversation sent message by message ends with exactly the score of the whole conversation scored
at once (<= 1e-5), for paragraph models and unidirectional hierarchical (+ attention) models; several messages
of a key in one batch are applied in order; re-delivered messages are not applied twice."""

from __future__ import annotations

import numpy as np
import pytest

from streamsent import DocBatch, Model
from streamsent.errors import ConfigError
from streamsent.models.init import random_weights
from streamsent.runtime.records import SCORED_COLUMNS, Doc, Record
from streamsent.runtime.state import KEYED_SCHEMA, KeyedScorer

from ..helpers import TOL, make_config


def _word(typ: str, bi: bool, pooling: str) -> dict:
    w = {"type": typ, "hidden": 6, "bidirectional": bi, "pooling": pooling}
    if pooling == "attention":
        w["attention_dim"] = 5
    return w


CASES = [(_word(t, bi, p), {"type": "paragraph"}) for t in ("rnn", "lstm", "gru") for bi in (False, True)
         for p in ("last", "attention")]
CASES += [(_word(t, False, "mean"), {"type": "paragraph"}) for t in ("rnn", "lstm", "gru")]
CASES += [(_word("gru", True, "attention"), {"type": "hierarchical", "encoder": _word(t, False, p)})
          for t in ("rnn", "lstm", "gru") for p in ("last", "max", "attention")]
IDS = [f"{c['type']}-{w['type']}{'-bi' if w['bidirectional'] else ''}-{w['pooling']}"
       + (f"-doc-{c['encoder']['type']}-{c['encoder']['pooling']}" if "encoder" in c else "") for w, c in CASES]


def doc(doc_id: str, key: str | None, tokens: list[list[int]], offset: int | None = None, partition: int = 0,
        topic: str = "chats") -> Doc:
    rec = Record(value=None, topic=topic if offset is not None else None,
                 partition=partition if offset is not None else None, offset=offset)
    return Doc(doc_id, key, None, tokens, {}, rec)


def conversations(rng: np.random.Generator, n_keys: int, n_msgs: int, vocab: int) -> dict[str, list]:
    """Messages of 1-3 sentences of 0-8 tokens (an empty message and an empty sentence included)."""
    convs = {f"k{i}": [[rng.integers(1, vocab, rng.integers(0, 9)).tolist() for _ in range(rng.integers(1, 4))]
                       for _ in range(n_msgs)] for i in range(n_keys)}
    convs["k0"][2] = [[]]
    return convs


@pytest.mark.parametrize(("word", "comp"), CASES, ids=IDS)
def test_message_by_message_equals_whole_conversation(word: dict, comp: dict) -> None:
    cfg = make_config(word, comp)
    model = Model(cfg, random_weights(cfg, seed=3))
    rng = np.random.default_rng(5)
    n_msgs = 6
    convs = conversations(rng, 5, n_msgs, cfg.vocab_size)
    scorer = KeyedScorer(model, max_keys=100, ttl_s=0)
    offset = 0
    last = {}
    for m in range(n_msgs):  # one batch per round, keys interleaved
        batch = []
        for k, msgs in convs.items():
            batch.append(doc(f"{k}-{m}", k, msgs[m], offset))
            offset += 1
        out = scorer.score(batch)
        assert not out.letters
        assert out.rows.schema == KEYED_SCHEMA
        assert out.rows.column("messages_seen").to_pylist() == [m + 1] * len(convs)
        for k, p in zip(out.rows.column("key").to_pylist(), out.rows.column("probs").to_pylist(), strict=True):
            last[k] = np.array(p)
    keys = list(convs)
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for msg in convs[k] for s in msg] for k in keys]))
    got = np.stack([last[k] for k in keys])
    assert np.abs(got - whole.probs).max() <= TOL


def test_several_messages_of_a_key_in_one_batch_apply_in_order() -> None:
    cfg = make_config(_word("lstm", False, "attention"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg, seed=1))
    convs = conversations(np.random.default_rng(2), 3, 5, cfg.vocab_size)
    batch = [doc(f"{k}-{m}", k, convs[k][m], offset=10 * i + m) for m in range(5) for i, k in enumerate(convs)]
    batch.insert(3, doc("alone", None, [[4, 5, 6]]))  # no key: its own one-message conversation
    out = KeyedScorer(model, max_keys=10, ttl_s=0).score(batch)
    rows = out.rows.to_pylist()
    assert [r["doc_id"] for r in rows] == [d.doc_id for d in batch]
    alone, _ = model.predict_batch(DocBatch.from_lists([[[4, 5, 6]]]))
    assert np.abs(np.array(rows[3]["probs"]) - alone.probs[0]).max() <= TOL
    for k in convs:
        mine = [r for r in rows if r["key"] == k]
        assert [r["messages_seen"] for r in mine] == [1, 2, 3, 4, 5]
        for m, r in enumerate(mine):  # after message m: the conversation's first m + 1 messages scored at once
            so_far, _ = model.predict_batch(DocBatch.from_lists([[s for msg in convs[k][: m + 1] for s in msg]]))
            assert np.abs(np.array(r["probs"]) - so_far.probs[0]).max() <= TOL
        deltas = np.array([r["probs_delta"] for r in mine])  # the deltas add up to the running score
        prior, _ = model.backend.forward(DocBatch.from_lists([[]]))  # the empty conversation
        assert np.abs(prior.probs[0] + deltas.sum(axis=0) - np.array(mine[-1]["probs"])).max() <= TOL


def test_output_keeps_the_scored_columns() -> None:
    cfg = make_config(_word("gru", False, "last"), {"type": "paragraph"})
    out = KeyedScorer(Model(cfg, random_weights(cfg))).score([doc("a", "k", [[1, 2]], offset=0)])
    assert out.rows.column_names[: len(SCORED_COLUMNS)] == list(SCORED_COLUMNS)
    row = out.rows.to_pylist()[0]
    assert row["label"] in cfg.labels and row["topic"] == "chats" and row["offset"] == 0


def test_redelivered_message_is_not_applied_twice() -> None:
    cfg = make_config(_word("gru", False, "attention"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg, seed=4))
    msgs = [[[1, 2, 3]], [[4, 5]], [[6, 7, 8, 9]]]
    scorer = KeyedScorer(model, ttl_s=0)
    first = [scorer.score([doc(f"m{i}", "k", m, offset=100 + i)]).rows.to_pylist()[0] for i, m in enumerate(msgs)]
    # at-least-once: the last two are delivered again (e.g. offsets committed before a crash were older)
    again = scorer.score([doc("m1", "k", msgs[1], offset=101), doc("m2", "k", msgs[2], offset=102)]).rows.to_pylist()
    assert [r["redelivered"] for r in again] == [True, True]
    assert [r["messages_seen"] for r in again] == [3, 3]
    assert again[1]["probs"] == first[2]["probs"]  # the key's latest result, re-emitted exactly
    assert again[1]["probs_delta"] == [0.0] * len(cfg.labels)
    # the same offset in another partition is a different message; a later offset is applied
    nxt = scorer.score([doc("m3", "k", [[2]], offset=103)]).rows.to_pylist()[0]
    assert not nxt["redelivered"] and nxt["messages_seen"] == 4
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for m in msgs for s in m] + [[2]]]))
    assert np.abs(np.array(nxt["probs"]) - whole.probs[0]).max() <= TOL
    other = scorer.score([doc("x", "k", [[3]], offset=50, partition=1)]).rows.to_pylist()[0]
    assert not other["redelivered"] and other["messages_seen"] == 5


def test_bad_message_is_dead_lettered_and_changes_nothing() -> None:
    cfg = make_config(_word("rnn", False, "last"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg))
    scorer = KeyedScorer(model)
    out = scorer.score([doc("a", "k", [[1, 2]], 0), doc("b", "k", [[cfg.vocab_size + 5]], 1), doc("c", "k", [[3]], 2)])
    assert [d.reason for d in out.letters] == ["token_out_of_range"]
    rows = out.rows.to_pylist()
    assert [r["doc_id"] for r in rows] == ["a", "c"] and rows[-1]["messages_seen"] == 2
    whole, _ = model.predict_batch(DocBatch.from_lists([[[1, 2], [3]]]))
    assert np.abs(np.array(rows[-1]["probs"]) - whole.probs[0]).max() <= TOL


@pytest.mark.parametrize(("word", "comp", "why"), [
    (_word("gru", False, "last"), {"type": "flat"}, "'flat' composition keeps no state"),
    (_word("gru", False, "last"), {"type": "average"}, "'average' composition"),
    (_word("gru", False, "last"), {"type": "hierarchical", "encoder": _word("gru", True, "last")}, "bidirectional"),
])
def test_models_that_cannot_continue_are_refused_naming_state(word: dict, comp: dict, why: str) -> None:
    cfg = make_config(word, comp)
    with pytest.raises(ConfigError, match=rf"\[state\].*{why}"):
        KeyedScorer(Model(cfg, random_weights(cfg)))


def test_text_messages_use_the_tokenizer() -> None:
    from streamsent.text import Tokenizer

    texts = ["The first half is slow.", "But the ending is wonderful, I loved it!", "Go and see it."]
    cfg = make_config(_word("gru", True, "attention"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg, seed=8), tokenizer=Tokenizer.build(texts, max_vocab=cfg.vocab_size))
    scorer = KeyedScorer(model)
    for i, t in enumerate(texts):
        out = scorer.score([Doc(f"d{i}", "c1", t, None, {}, Record(None, topic="t", partition=0, offset=i))])
    whole = model.predict([" ".join(texts)]).column("probs").to_pylist()[0]
    assert np.abs(np.array(out.rows.column("probs").to_pylist()[0]) - np.array(whole)).max() <= TOL


# -- window mode: a bidirectional document encoder re-scored over the last `window` sentence vectors --------------
def _bi_hier_model() -> Model:
    cfg = make_config(_word("gru", True, "attention"),
                      {"type": "hierarchical", "encoder": _word("gru", True, "attention")})
    return Model(cfg, random_weights(cfg, seed=6))


@pytest.mark.parametrize("which", ["default-han", "random-bi-hier"])
def test_window_mode_message_by_message_equals_whole_conversation(which: str) -> None:
    """While a conversation fits in the window, its running score is the whole conversation's, after every message,
    several messages of a key in one batch included; a keyless message is its own conversation."""
    import streamsent

    model = streamsent.load_model() if which == "default-han" else _bi_hier_model()
    assert not model.config.can_carry
    scorer = KeyedScorer(model, max_keys=10, ttl_s=0, window=64)
    assert scorer.layout.window == 64 and scorer.layout.pooled == model.config.word_dim
    convs = conversations(np.random.default_rng(7), 3, 6, model.config.vocab_size)
    rows = []
    for lo in (0, 2, 5):  # batches of 2, 3 and 1 messages per key
        hi = {0: 2, 2: 5, 5: 6}[lo]
        batch = [doc(f"{k}-{m}", k, convs[k][m], offset=10 * i + m) for m in range(lo, hi) for i, k in enumerate(convs)]
        batch.append(doc(f"alone-{lo}", None, convs["k1"][lo]))
        out = scorer.score(batch)
        assert not out.letters
        rows += out.rows.to_pylist()
    prior, _ = model.backend.forward(DocBatch.from_lists([[]]))  # the empty conversation
    for k, msgs in convs.items():
        mine = [r for r in rows if r["key"] == k]
        assert [r["messages_seen"] for r in mine] == [1, 2, 3, 4, 5, 6]
        so_far = DocBatch.from_lists([[s for msg in msgs[: m + 1] for s in msg] for m in range(6)])
        whole, _ = model.predict_batch(so_far)
        assert np.abs(np.array([r["probs"] for r in mine]) - whole.probs).max() <= TOL
        deltas = np.array([r["probs_delta"] for r in mine])
        assert np.abs(prior.probs[0] + deltas.sum(axis=0) - whole.probs[-1]).max() <= TOL
    alone = [r for r in rows if r["key"] is None]
    one, _ = model.predict_batch(DocBatch.from_lists([convs["k1"][m] for m in (0, 2, 5)]))
    assert np.abs(np.array([r["probs"] for r in alone]) - one.probs).max() <= TOL


def test_window_mode_beyond_the_window_scores_the_last_sentences() -> None:
    """More sentences than the window: the running score is the last W non-empty sentences' as one document;
    a re-delivered message is re-emitted, not appended again."""
    model = _bi_hier_model()
    W = 4
    scorer = KeyedScorer(model, ttl_s=0, window=W)
    msgs = conversations(np.random.default_rng(9), 1, 8, model.config.vocab_size)["k0"]
    msgs[3] = [[1, 2], [], [3, 4, 5], [6], [7, 8]]  # more sentences than the window in one message
    for m, msg in enumerate(msgs):
        row = scorer.score([doc(f"m{m}", "k", msg, offset=m)]).rows.to_pylist()[0]
        sents = [s for x in msgs[: m + 1] for s in x if s][-W:]
        last, _ = model.predict_batch(DocBatch.from_lists([sents]))
        assert np.abs(np.array(row["probs"]) - last.probs[0]).max() <= TOL, m
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for x in msgs for s in x]]))
    assert np.abs(np.array(row["probs"]) - whole.probs[0]).max() > 100 * TOL  # the window did drop sentences
    again = scorer.score([doc("m7", "k", msgs[7], offset=7)]).rows.to_pylist()[0]
    assert again["redelivered"] and again["probs"] == row["probs"] and again["messages_seen"] == 8
    state, _ = scorer.store.gather(np.array([scorer.store.slot_of("k")]))
    assert state.count.tolist() == [W] and state.vectors.shape == (1, W, model.config.word_dim)


def test_window_mode_is_what_the_state_config_asks_for() -> None:
    from streamsent.runtime.config import StateConfig

    model = _bi_hier_model()
    assert StateConfig().window == 64
    assert KeyedScorer.from_config(model, StateConfig(enabled=True)).layout.window == 64
    with pytest.raises(ConfigError, match=r"\[state\].*bidirectional.*window = 0"):
        KeyedScorer.from_config(model, StateConfig(enabled=True, window=0))
    carried = make_config(_word("gru", True, "attention"),
                          {"type": "hierarchical", "encoder": _word("gru", False, "last")})
    assert KeyedScorer(Model(carried, random_weights(carried)), window=64).layout.window == 0  # carries: no window
