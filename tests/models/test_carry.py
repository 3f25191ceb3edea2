"""Paragraph mode (and unidirectional hierarchical models) scored a sentence at a time, carrying the state,
equal the whole document scored at once."""

import numpy as np
import pytest

from streamsent import CarryState, DocBatch, Model, StateError
from streamsent.models.init import random_weights

from ..helpers import TOL, make_config


def _word(typ, bi, pooling):
    w = {"type": typ, "hidden": 6, "bidirectional": bi, "pooling": pooling}
    if pooling == "attention":
        w["attention_dim"] = 5
    return w


CASES = [(_word(t, bi, p), {"type": "paragraph"}) for t in ("rnn", "lstm", "gru") for bi in (False, True)
         for p in ("last", "mean", "max", "attention")]
CASES += [(_word("gru", True, "attention"), {"type": "hierarchical", "encoder": _word(t, False, p)})
          for t in ("rnn", "lstm", "gru") for p in ("last", "mean", "max", "attention")]


@pytest.mark.parametrize(("word", "comp"), CASES,
                         ids=[f"{w['type']}-{w['bidirectional']}-{w['pooling']}-{c['type']}-"
                              f"{c.get('encoder', {}).get('type', '')}{c.get('encoder', {}).get('pooling', '')}"
                              for w, c in CASES])
def test_sentence_by_sentence_equals_whole(word, comp):
    cfg = make_config(word, comp)
    model = Model(cfg, random_weights(cfg, seed=11))
    rng = np.random.default_rng(11)
    n_sent = 7
    docs = [[rng.integers(0, cfg.vocab_size, rng.integers(0, 9)).tolist() for _ in range(n_sent)]
            for _ in range(6)]
    docs[0][3] = []  # an empty message in the middle changes nothing
    full = DocBatch.from_lists(docs)
    whole, _ = model.predict_batch(full)
    state = None
    for k in range(n_sent):
        part, state = model.predict_batch(DocBatch.from_lists([[d[k]] for d in docs]), state)
        assert isinstance(state, CarryState) and state.n_docs == len(docs)
    assert np.abs(part.probs - whole.probs).max() <= TOL
    if whole.word_attention is not None and comp["type"] == "paragraph":
        # the last message's word weights are normalised over the whole conversation, as in the one-shot run
        so = full.sent_offsets
        last = np.concatenate([whole.word_attention[so[i * n_sent + 6] : so[i * n_sent + 7]] for i in range(len(docs))])
        assert np.abs(part.word_attention - last).max() <= TOL


def test_models_that_cannot_carry_say_so():
    cfg = make_config(_word("gru", False, "last"), {"type": "flat"})
    model = Model(cfg, random_weights(cfg))
    batch = DocBatch.from_lists([[[1, 2]]])
    _, state = model.predict_batch(batch)
    assert state is None
    fake = CarryState(*(np.zeros(s, np.float32) for s in ((1, 6), (1, 6), (1,), (1,), (1, 6))))
    with pytest.raises(StateError, match="cannot carry state"):
        model.predict_batch(batch, fake)


def test_state_of_the_wrong_shape_is_refused():
    cfg = make_config(_word("lstm", False, "mean"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg))
    _, state = model.predict_batch(DocBatch.from_lists([[[1, 2]], [[3]]]))
    with pytest.raises(StateError, match=r"'h' has shape \(2, 6\), expected \(3, 6\)"):
        model.predict_batch(DocBatch.from_lists([[[1]], [[2]], [[3]]]), state)
    picked = state.take(np.array([1]))
    scores, _ = model.predict_batch(DocBatch.from_lists([[[4]]]), picked)
    direct, _ = model.predict_batch(DocBatch.from_lists([[[3], [4]]]))
    assert np.abs(scores.probs - direct.probs).max() <= TOL
