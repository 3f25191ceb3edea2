"""Compile every CPU kernel once, so that the first real batch of a fresh process only loads from the cache."""

from __future__ import annotations

from .batch import DocBatch
from .models.config import ModelConfig
from .models.init import random_weights
from .models.model import Model

_ENCODERS = [
    {"type": "mean"},
    {"type": "cnn", "widths": [2, 3], "maps": 4},
    *({"type": t, "hidden": 4, "bidirectional": True, "pooling": p,
       **({"attention_dim": 3} if p == "attention" else {})}
      for t in ("rnn", "lstm", "gru") for p in ("last", "mean", "max", "attention")),
]


def warmup() -> int:
    """Score a tiny batch with a tiny model of every encoder × composition; returns how many models ran."""
    batch = DocBatch.from_lists([[[1, 2, 3], [], [4]], [], [[5, 6]]])
    n = 0
    for enc in _ENCODERS:
        comps = [{"type": "flat"}, {"type": "average"},
                 {"type": "hierarchical", "encoder": {"type": "gru", "hidden": 3, "pooling": "attention",
                                                      "attention_dim": 2}}]
        if enc["type"] not in ("mean", "cnn"):
            comps.append({"type": "paragraph"})
        for comp in comps:
            cfg = ModelConfig.from_dict({"format": "streamsent-model/1", "labels": ["a", "b"],
                                         "embedding": {"vocab_size": 8, "dim": 3}, "word_encoder": enc,
                                         "composition": comp})
            for budget in (256, 0):  # with and without the projection tables
                Model(cfg, random_weights(cfg), table_budget_mb=budget).predict_batch(batch)
            n += 1
    return n
