"""Training smoke test: a few hundred synthetic reviews, the loss goes down, the exported directory scores
identically under Numba and torch, and its metadata records how it was made."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import streamsent
from streamsent import ConfigError
from streamsent.evaluate import evaluate
from streamsent.train.config import load_train_config
from streamsent.train.modules import load_model_dir
from streamsent.train.trainer import train

POS = ["great", "wonderful", "moving", "superb", "loved", "brilliant"]
NEG = ["dull", "awful", "boring", "terrible", "hated", "mess"]
FILLER = ["the", "film", "plot", "actor", "was", "and", "a", "scene", "story", "it"]


def _reviews(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        pos = bool(i % 2)
        sents = []
        for _ in range(rng.integers(1, 5)):
            words = list(rng.choice(FILLER, rng.integers(3, 9)))
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(POS if pos else NEG)))
            sents.append(" ".join(words).capitalize() + ".")
        texts.append(" <br /><br />".join(sents))
        labels.append("positive" if pos else "negative")
    return pa.table({"doc_id": [f"d{i}" for i in range(n)], "text": texts, "label": labels})


CONFIG = """
[data]
train = "{train}"
validation_fraction = 0.2
[tokenizer]
max_vocab = 500
min_freq = 1
[embedding]
dim = 16
init = "random"
[model]
name = "smoke-han"
word_encoder = {{ type = "gru", hidden = 8, bidirectional = true, pooling = "attention", attention_dim = 6 }}
[model.composition]
type = "hierarchical"
encoder = {{ type = "gru", hidden = 6, pooling = "attention", attention_dim = 4 }}
[training]
epochs = 3
batch_size = 16
lr = 0.01
patience = 3
[output]
dir = "{out}"
"""


def test_smoke_training_learns_and_exports_a_model_numba_scores_like_torch(tmp_path):
    pq.write_table(_reviews(320, 0), tmp_path / "train.parquet")
    pq.write_table(_reviews(200, 1), tmp_path / "test.parquet")
    cfg_path = tmp_path / "smoke.toml"
    cfg_path.write_text(CONFIG.format(train=tmp_path / "train.parquet", out=tmp_path / "model"))
    result = train(load_train_config(cfg_path), progress=False)
    assert result.losses[-1] < result.losses[0] * 0.8, result.losses
    assert result.validation_accuracy > 0.8

    model = streamsent.load_model(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "config.json").read_text())["metadata"]["training"]
    assert meta["validation_docs"] == 64 and meta["docs"] == 256 and meta["best_epoch"] >= 1
    report = evaluate(model, pq.read_table(tmp_path / "test.parquet"))
    assert report.accuracy > 0.8 and report.torch_agreement == 1.0
    assert report.confusion.sum() == 200

    # the directory loads into the torch modules too, and gives the same probabilities as Numba
    net = load_model_dir(tmp_path / "model")
    texts = pq.read_table(tmp_path / "test.parquet").column("text").to_pylist()[:50]
    docs = model.tokenizer.encode_batch(texts).batch.to_lists()
    with torch.inference_mode():
        want = net.predict_proba(docs).numpy()
    got = np.stack(model.predict(texts).column("probs").to_numpy(zero_copy_only=False))
    assert np.abs(got - want).max() <= 1e-5


def test_train_config_errors_name_file_and_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[training]\nepochs = "many"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: training.epochs = 'many' must be of type int"):
        load_train_config(p)
    p.write_text('[trainig]\nepochs = 1\n')
    with pytest.raises(ConfigError, match=r"unknown section \[trainig\]"):
        load_train_config(p)
    p.write_text('[model]\nword_encoder = { type = "lstm" }\n')
    with pytest.raises(streamsent.ModelFormatError, match=r"word_encoder.hidden = None"):
        load_train_config(p)
