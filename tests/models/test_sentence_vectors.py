"""A sentence-level forward pass in two halves: `sentence_vectors` then `score_sentences` == `forward` (<= TOL), on
both backends, for hierarchical models (bi- and unidirectional document encoders; attention, last, max pooling) and
average ones, on ragged batches with empty sentences and empty documents."""

from __future__ import annotations

import numpy as np
import pytest

from streamsent import DocBatch
from streamsent.backends.cpu import CpuBackend
from streamsent.backends.reference import ReferenceBackend
from streamsent.errors import StateError
from streamsent.models.init import random_weights

from ..helpers import TOL, make_config, ragged_docs


def _enc(typ: str, bi: bool, pooling: str, hidden: int = 5) -> dict:
    enc = {"type": typ, "hidden": hidden, "bidirectional": bi, "pooling": pooling}
    if pooling == "attention":
        enc["attention_dim"] = 4
    return enc


CASES = [(_enc("gru", True, "attention"), {"type": "hierarchical", "encoder": _enc(t, bi, p, hidden=3)})
         for t, bi, p in [("gru", True, "attention"), ("gru", False, "attention"), ("lstm", True, "last"),
                          ("rnn", False, "last"), ("gru", True, "max"), ("lstm", False, "max")]]
CASES += [(_enc("lstm", False, "max"), {"type": "hierarchical", "encoder": _enc("gru", True, "last", hidden=3)}),
          ({"type": "cnn", "widths": [2, 3], "maps": 4},
           {"type": "hierarchical", "encoder": _enc("gru", True, "attention")}),
          (_enc("gru", True, "attention"), {"type": "average"})]
IDS = [f"{w['type']}-{w.get('pooling', '')}/{c['type']}"
       + (f"-{c['encoder']['type']}-{'bi' if c['encoder']['bidirectional'] else 'uni'}-{c['encoder']['pooling']}"
          if "encoder" in c else "") for w, c in CASES]


@pytest.mark.parametrize("backend", [CpuBackend, ReferenceBackend])
@pytest.mark.parametrize(("word", "comp"), CASES, ids=IDS)
def test_sentence_vectors_then_documents_equals_forward(word: dict, comp: dict, backend: type) -> None:
    cfg = make_config(word, comp)
    be = backend(cfg, random_weights(cfg, seed=7))
    batch = DocBatch.from_lists(ragged_docs(np.random.default_rng(7), 12, cfg.vocab_size))
    whole, _ = be.forward(batch)
    vecs = be.sentence_vectors(batch)
    nonempty = np.diff(batch.sent_offsets) > 0
    assert vecs.shape == (int(nonempty.sum()), cfg.word_dim)
    ne_cum = np.concatenate([[0], np.cumsum(nonempty)])
    parts = be.score_sentences(vecs, ne_cum[batch.doc_offsets])
    assert parts.probs.shape == whole.probs.shape and parts.word_attention is None
    assert np.abs(parts.probs - whole.probs).max() <= TOL
    if whole.sentence_attention is None:
        assert parts.sentence_attention is None
    else:  # forward gives empty sentences weight 0; score_sentences has a weight per vector
        assert np.abs(parts.sentence_attention - whole.sentence_attention[nonempty]).max() <= TOL


def test_backends_agree_on_sentence_vectors_and_refuse_flat_models() -> None:
    word, comp = CASES[0]
    cfg = make_config(word, comp)
    w = random_weights(cfg, seed=1)
    batch = DocBatch.from_lists([[[1, 2, 3], [], [4]], [], [[5, 6]]])
    fast, ref = CpuBackend(cfg, w).sentence_vectors(batch), ReferenceBackend(cfg, w).sentence_vectors(batch)
    assert fast.dtype == np.float32 and fast.shape == (3, cfg.word_dim)
    assert np.abs(fast - ref).max() <= TOL
    with pytest.raises(ValueError, match="doc_offsets"):
        CpuBackend(cfg, w).score_sentences(fast, np.array([0, 2]))
    flat = make_config(word, {"type": "flat"})
    for be in (CpuBackend, ReferenceBackend):
        with pytest.raises(StateError, match="no sentence vectors"):
            be(flat, random_weights(flat)).sentence_vectors(batch)
