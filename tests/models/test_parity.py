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
from streamsent.models.model import unscored_documents
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

    fast, _ = Model(cfg, weights, device="cpu").backend.forward(batch)  # Model.predict_batch: NaN for empty docs
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


def test_empty_documents_score_softmax_of_the_head_bias_in_the_backends():
    cfg = make_config(encoder_config("gru", True, "attention"),
                      {"type": "hierarchical", "encoder": encoder_config("lstm", False, "max", hidden=3)})
    w = random_weights(cfg, seed=3)
    b = w["head.bias"].astype(np.float64)
    expect = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
    for backend in (Model(cfg, w).backend, ReferenceBackend(cfg, w)):
        probs, _ = backend.forward(DocBatch.from_lists([[], [[], []], [[1, 2]]]))
        assert np.abs(probs.probs[0] - expect).max() <= TOL
        assert np.abs(probs.probs[1] - expect).max() <= TOL
        assert np.abs(probs.probs[2] - expect).max() > 1e-4


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_model_leaves_documents_with_no_token_unscored(device):
    """Model.predict_batch: a document with no token and none carried gets NaN probs (`predict`: null label, score
    and probs); a document continued from a carried state with an empty message is scored from that state."""
    cfg = make_config(encoder_config("gru", False, "attention"),
                      {"type": "hierarchical", "encoder": encoder_config("lstm", False, "max", hidden=3)})
    model = Model(cfg, random_weights(cfg, seed=3), device=device)
    batch = DocBatch.from_lists([[], [[], []], [[1, 2]]])
    scores, state = model.predict_batch(batch)
    assert np.isnan(scores.probs[:2]).all() and np.isfinite(scores.probs[2]).all()
    assert unscored_documents(batch).tolist() == [True, True, False]
    table = model.predict([[], [[], []], [[1, 2]]])
    assert table.column("label").to_pylist()[:2] == [None, None] and table.column("label").to_pylist()[2] in cfg.labels
    assert table.column("score").null_count == table.column("probs").null_count == 2
    if state is not None:  # the reference backend carries no state
        again, _ = model.predict_batch(DocBatch.from_lists([[], [[]], []]), state)  # an empty message each
        assert np.isnan(again.probs[:2]).all()  # still nothing seen
        assert np.abs(again.probs[2] - scores.probs[2]).max() <= TOL  # nothing new: the carried score


def test_table_and_per_batch_projections_agree():
    """The vocabulary-wide projection table and the per-batch distinct-token path give the same scores."""
    for word in (encoder_config("lstm", True, "mean"), encoder_config("cnn")):
        cfg = make_config(word)
        w = random_weights(cfg, seed=5)
        batch = DocBatch.from_lists(ragged_docs(np.random.default_rng(5), 12, cfg.vocab_size))
        with_table = Model(cfg, w, table_budget_mb=1024).backend.forward(batch)[0].probs
        without = Model(cfg, w, table_budget_mb=0).backend.forward(batch)[0].probs
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
    a, _ = fast.backend.forward(batch)
    b, _ = ref.forward(batch)
    assert a.probs.shape == (len(docs), 3)
    unscored = np.isnan(fast.predict_batch(batch)[0].probs).any(axis=1)  # NaN exactly where there is no token
    assert unscored.tolist() == [not any(doc) for doc in docs]
    if docs:
        assert np.abs(a.probs - b.probs).max() <= TOL
        assert np.allclose(a.probs.sum(axis=1), 1.0, atol=1e-5)
