"""Every word encoder × pooling × composition: Numba CPU == NumPy reference == torch.nn, same weights.

Tolerance: max abs difference of probabilities (and attention weights) <= TOL = 1e-5, on random weights and
ragged batches with empty documents, empty sentences, length-1 and long sentences.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsent import DocBatch, Model
from streamsent.backends.reference import ReferenceBackend
from streamsent.models.init import random_weights
from streamsent.train.modules import SentimentModel

from ..helpers import TOL, encoder_config, make_config, ragged_docs

RECURRENT = ["rnn", "lstm", "gru"]
POOLINGS = ["last", "mean", "max", "attention"]


def _cases() -> list[tuple[str, dict, dict]]:
    words = [("mean", encoder_config("mean")), ("cnn", encoder_config("cnn"))]
    words += [(f"{t}-{'bi' if bi else 'uni'}-{p}", encoder_config(t, bi, p))
              for t, bi, p in itertools.product(RECURRENT, [False, True], POOLINGS)]
    doc_encoders = [encoder_config(t, bi, p, hidden=3)
                    for t, bi, p in itertools.product(RECURRENT, [False, True], POOLINGS)]
    cases = []
    for i, (name, word) in enumerate(words):
        for comp in ("flat", "paragraph", "average", "hierarchical"):
            if comp == "paragraph" and word["type"] in ("mean", "cnn"):
                continue
            c = {"type": comp}
            if comp == "hierarchical":  # rotate through every document encoder across the word encoders
                c["encoder"] = doc_encoders[i % len(doc_encoders)]
            cases.append((f"{name}/{comp}", word, c))
    han = encoder_config("gru", True, "attention")
    cases.append(("HAN", han, {"type": "hierarchical", "encoder": encoder_config("gru", True, "attention", hidden=4)}))
    return cases


CASES = _cases()


def test_the_cases_cover_every_combination():
    seen = {(w["type"], w.get("bidirectional", False), w.get("pooling"), c["type"]) for _, w, c in CASES}
    assert len(seen) == 2 * 3 + 3 * 2 * 4 * 4  # mean, cnn × 3 compositions; recurrent × 4 compositions
    docs = {(c["encoder"]["type"], c["encoder"]["bidirectional"], c["encoder"]["pooling"])
            for _, _, c in CASES if c["type"] == "hierarchical"}
    assert len(docs) == 3 * 2 * 4


@pytest.mark.parametrize(("name", "word", "comp"), CASES, ids=[c[0] for c in CASES])
def test_numba_equals_reference_equals_torch(name, word, comp):
    cfg = make_config(word, comp)
    weights = random_weights(cfg, seed=len(name))
    rng = np.random.default_rng(len(name))
    docs = ragged_docs(rng, 16, cfg.vocab_size)
    batch = DocBatch.from_lists(docs)

    fast, _ = Model(cfg, weights, device="cpu").predict_batch(batch)
    ref, _ = ReferenceBackend(cfg, weights).forward(batch)
    tm = SentimentModel(cfg.to_dict())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    with torch.inference_mode():
        torch_probs = tm.predict_proba(docs).numpy()

    assert fast.probs.shape == ref.probs.shape == torch_probs.shape == (len(docs), len(cfg.labels))
    assert np.abs(fast.probs - ref.probs).max() <= TOL
    assert np.abs(fast.probs - torch_probs).max() <= TOL
    assert np.abs(ref.probs - torch_probs).max() <= TOL
    # the probabilities are not trivially equal: different documents get different scores
    assert np.ptp(fast.probs[:, 0]) > 1e-3
    for att in ("word_attention", "sentence_attention"):
        a, b = getattr(fast, att), getattr(ref, att)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.abs(a - b).max() <= TOL


def test_empty_documents_score_softmax_of_the_head_bias():
    cfg = make_config(encoder_config("gru", True, "attention"),
                      {"type": "hierarchical", "encoder": encoder_config("lstm", False, "max", hidden=3)})
    w = random_weights(cfg, seed=3)
    probs, _ = Model(cfg, w).predict_batch(DocBatch.from_lists([[], [[], []], [[1, 2]]]))
    b = w["head.bias"].astype(np.float64)
    expect = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
    assert np.abs(probs.probs[0] - expect).max() <= TOL
    assert np.abs(probs.probs[1] - expect).max() <= TOL
    assert np.abs(probs.probs[2] - expect).max() > 1e-4


def test_table_and_per_batch_projections_agree():
    """The vocabulary-wide projection table and the per-batch distinct-token path give the same scores."""
    for word in (encoder_config("lstm", True, "mean"), encoder_config("cnn")):
        cfg = make_config(word)
        w = random_weights(cfg, seed=5)
        batch = DocBatch.from_lists(ragged_docs(np.random.default_rng(5), 12, cfg.vocab_size))
        with_table = Model(cfg, w, table_budget_mb=1024).predict_batch(batch)[0].probs
        without = Model(cfg, w, table_budget_mb=0).predict_batch(batch)[0].probs
        assert Model(cfg, w, table_budget_mb=0).backend.word.conv_table is None
        assert np.abs(with_table - without).max() <= TOL


_PROPERTY_CFGS = [
    make_config(encoder_config("gru", True, "attention"), {"type": "hierarchical",
                                                      "encoder": encoder_config("gru", True, "attention", hidden=4)}),
    make_config(encoder_config("lstm", True, "last"), {"type": "paragraph"}),
    make_config(encoder_config("cnn"), {"type": "average"}),
    make_config(encoder_config("rnn", False, "max"), {"type": "flat"}),
]
_PROPERTY_MODELS = [(Model(c, random_weights(c, 9)), ReferenceBackend(c, random_weights(c, 9)))
                    for c in _PROPERTY_CFGS]

sentences = st.lists(st.integers(0, 59), min_size=0, max_size=12)
documents = st.lists(st.lists(sentences, min_size=0, max_size=5), min_size=0, max_size=8)


@settings(max_examples=60, deadline=None)
@given(docs=documents, which=st.integers(0, len(_PROPERTY_MODELS) - 1))
def test_property_any_ragged_shape(docs, which):
    fast, ref = _PROPERTY_MODELS[which]
    batch = DocBatch.from_lists(docs)
    a, _ = fast.predict_batch(batch)
    b, _ = ref.forward(batch)
    assert a.probs.shape == (len(docs), 3)
    if docs:
        assert np.abs(a.probs - b.probs).max() <= TOL
        assert np.allclose(a.probs.sum(axis=1), 1.0, atol=1e-5)
