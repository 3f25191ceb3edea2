"""What every backend returns and carries, so that choosing a backend is one config value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..batch import DocBatch
from ..errors import StateError
from ..models.config import ModelConfig

__all__ = ["Backend", "CarryState", "Scores", "check_carry_state", "check_sentence_level", "sentence_level_inputs"]


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


# -- checks every backend makes before it computes (they depend on the model, not on the device) -----------------
def check_carry_state(config: ModelConfig, state: CarryState, n_docs: int) -> None:
    """A carried state must suit the model (it can carry) and the batch (one row per document, the right widths)."""
    if not config.can_carry:
        raise StateError(
            f"model '{config.name}' ({config.composition} composition) cannot carry state between batches; carrying "
            "needs paragraph composition or a unidirectional hierarchical document encoder"
        )
    enc = config.doc_encoder if config.composition == "hierarchical" else config.word_encoder
    assert enc is not None
    H, P = enc.hidden, enc.out_dim(0)
    want = {"h": (n_docs, H), "c": (n_docs, H), "m": (n_docs,), "s": (n_docs,), "acc": (n_docs, P)}
    for name, shape in want.items():
        got = getattr(state, name).shape
        if got != shape:
            raise StateError(f"carried state '{name}' has shape {got}, expected {shape} for this batch/model")


def check_sentence_level(config: ModelConfig) -> None:
    """`sentence_vectors` / `score_sentences` exist only for models with a sentence level."""
    if config.composition not in ("hierarchical", "average"):
        raise StateError(f"model '{config.name}' ({config.composition} composition) has no sentence "
                         "vectors: only hierarchical and average models score documents from them")


def sentence_level_inputs(config: ModelConfig, vectors: np.ndarray,
                          doc_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`score_sentences`' arguments checked and shaped: (float32[S, P] vectors, int64 document offsets)."""
    check_sentence_level(config)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, config.word_dim)  # [S, P]
    do = np.asarray(doc_offsets, np.int64)
    if len(do) == 0 or do[0] != 0 or do[-1] != len(vectors) or (np.diff(do) < 0).any():
        raise ValueError(f"doc_offsets must rise from 0 to {len(vectors)} (the number of sentence vectors)")
    return vectors, do
