"""The built-in default model: ships with the package, loads offline, scores obvious reviews sensibly."""

import json

import numpy as np
import pytest

import streamsent
from streamsent.models.model import BUILTIN_DIR


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()


def test_default_is_the_shipped_han_within_the_size_budget(model):
    size = sum(f.stat().st_size for f in (BUILTIN_DIR / "default").iterdir())
    assert size <= 16 * 2**20
    cfg = model.config
    assert cfg.composition == "hierarchical" and cfg.word_encoder.pooling == "attention"
    meta = json.loads((BUILTIN_DIR / "default" / "config.json").read_text())["metadata"]
    assert meta["test"]["accuracy"] >= 0.90 and meta["test"]["n_docs"] > 24_000
    assert meta["training"]["code_commit"] and meta["training"]["validation_docs"] > 0


def test_obvious_reviews_get_the_obvious_label(model):
    t = model.predict(["a wonderful, moving film", "dull and far too long",
                       "One of the best films I have seen this year. Brilliant acting!",
                       "Terrible script, awful acting. I want my money back."])
    assert t.column("label").to_pylist() == ["positive", "negative", "positive", "negative"]
    assert all(s > 0.5 for s in t.column("score").to_pylist())


def test_sentence_attention_points_at_the_opinion(model):
    t = model.predict(["The film is two hours long. It was shot in Canada. The acting is absolutely dreadful."])
    att = t.column("sentence_attention").to_pylist()[0]
    assert len(att) == 3 and abs(sum(att) - 1) < 1e-5
    assert int(np.argmax(att)) == 2
