"""Shared test helpers. TOL is the one tolerance every parity test states: float32 kernels vs float64/torch."""

from __future__ import annotations

import numpy as np

from streamsent import ModelConfig

TOL = 1e-5  # max abs difference of probabilities (and of hidden states / attention weights)


def encoder_config(typ: str, bi: bool = False, pooling: str = "last", hidden: int = 5, maps: int = 4) -> dict:
    """A small word/document encoder config of any type (`maps`: the CNN's feature maps per width)."""
    if typ == "mean":
        return {"type": "mean"}
    if typ == "cnn":
        return {"type": "cnn", "widths": [2, 3, 5], "maps": maps}
    enc = {"type": typ, "hidden": hidden, "bidirectional": bi, "pooling": pooling}
    if pooling == "attention":
        enc["attention_dim"] = 4
    return enc


def make_config(word: dict, composition: dict | None = None, vocab: int = 60, dim: int = 7,
                labels: tuple[str, ...] = ("negative", "positive", "neutral")) -> ModelConfig:
    return ModelConfig.from_dict({
        "format": "streamsent-model/1", "name": "test", "version": "0",
        "labels": list(labels), "embedding": {"vocab_size": vocab, "dim": dim, "padding_idx": 0},
        "word_encoder": word, "composition": composition or {"type": "flat"},
    })


def ragged_docs(rng: np.random.Generator, n_docs: int, vocab: int, max_sents: int = 5,
                max_len: int = 9) -> list[list[list[int]]]:
    """Documents with every awkward shape: empty documents, empty sentences, length-1 sentences."""
    docs = [[rng.integers(0, vocab, rng.integers(0, max_len + 1)).tolist()
             for _ in range(rng.integers(0, max_sents + 1))] for _ in range(n_docs)]
    docs += [[], [[]], [[], [3], []], [[5]], [rng.integers(0, vocab, 80).tolist()]]
    return docs
