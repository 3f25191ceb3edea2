"""What every backend returns and carries, so that choosing a backend is one config value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..batch import DocBatch
from ..models.config import ModelConfig

__all__ = ["Backend", "CarryState", "Scores"]


@dataclass(frozen=True)
class Scores:
    probs: np.ndarray  # float32[D, C], in the model's label order
    word_attention: np.ndarray | None = None  # float32[T]: per token, normalised over its pooling sequence
    sentence_attention: np.ndarray | None = None  # float32[S]: per sentence, normalised over its document


@dataclass(frozen=True)
class CarryState:
    """Per-document state after a batch, to continue the same documents in a later batch (row d = document d).

    For `paragraph` models it is the word encoder's forward state, for `hierarchical` ones the document
    encoder's, plus the pooling accumulator of that level (docs/model-format.md):
    mean: acc = Σ o, s = count; max: acc = running max, s = count; attention: m = running max score,
    s = Σ exp(score − m), acc = Σ exp(score − m)·o; last: acc = the pooled vector so far, s = count.
    """

    h: np.ndarray  # float32[D, H]
    c: np.ndarray  # float32[D, H] (LSTM cell; zeros otherwise)
    m: np.ndarray  # float32[D]
    s: np.ndarray  # float32[D]
    acc: np.ndarray  # float32[D, P]

    @property
    def n_docs(self) -> int:
        return len(self.h)

    def take(self, rows: np.ndarray) -> CarryState:
        """The states of some documents, e.g. to re-batch the keys of a stream."""
        return CarryState(*(np.ascontiguousarray(a[rows]) for a in (self.h, self.c, self.m, self.s, self.acc)))


class Backend(Protocol):
    config: ModelConfig

    def forward(self, batch: DocBatch, state: CarryState | None = None) -> tuple[Scores, CarryState | None]:
        """Score a batch; with a carried state (models where `config.can_carry`) continue those documents."""
        ...
