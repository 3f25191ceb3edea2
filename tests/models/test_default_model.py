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


def test_conversations_model_carries_state_and_knows_reviews():
    """The built-in `conversations` model (configs/conversations.toml): a hierarchical GRU, unidirectional at
    both levels so that state carries across messages, trained on IMDB like the default."""
    from streamsent.runtime.config import StateConfig
    from streamsent.runtime.state.scorer import KeyedScorer

    conv = streamsent.load_model("conversations")
    cfg = conv.config
    assert cfg.composition == "hierarchical" and not cfg.word_encoder.bidirectional
    assert sum(f.stat().st_size for f in (BUILTIN_DIR / "conversations").iterdir()) <= 8 * 2**20
    KeyedScorer.from_config(conv, StateConfig(enabled=True))  # refuses a model that cannot carry state
    rows = [json.loads(line) for line in (BUILTIN_DIR.parents[1] / "data" / "samples" / "imdb-sample.jsonl")
            .read_text().splitlines()]
    labels = conv.predict([r["text"] for r in rows]).column("label").to_pylist()
    accuracy = np.mean([got == r["label"] for got, r in zip(labels, rows, strict=True)])
    assert accuracy >= 0.8, accuracy  # 89.5 % on the 24,678-review test split
