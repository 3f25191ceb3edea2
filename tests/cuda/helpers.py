"""Shared pieces of the CUDA tests: small ragged batches (the simulator is slow) and the two backends."""

from __future__ import annotations

import numpy as np

from streamsent.backends.cpu import CpuBackend
from streamsent.models.config import ModelConfig

from ..helpers import encoder_config


def small_docs(rng: np.random.Generator, n_docs: int, vocab: int) -> list[list[list[int]]]:
    """Like tests.helpers.ragged_docs (empty documents, empty and length-1 sentences, one long sentence), smaller."""
    docs = [[rng.integers(0, vocab, rng.integers(0, 7)).tolist() for _ in range(rng.integers(0, 4))]
            for _ in range(n_docs)]
    docs += [[], [[]], [[], [3], []], [[5]], [rng.integers(0, vocab, 19).tolist()]]
    return docs


def encoder(typ: str, bi: bool = False, pooling: str = "last", hidden: int = 5) -> dict:
    """tests.helpers.encoder_config with 3 CNN feature maps (the simulator is slow)."""
    return encoder_config(typ, bi, pooling, hidden, maps=3)


def backends(cfg: ModelConfig, weights: dict, geometry: dict, **options):
    """(CudaBackend, CpuBackend) on the same weights. The CUDA backend is imported here, not at collection."""
    from streamsent.backends.cuda import CudaBackend

    cpu_options = {k: v for k, v in options.items() if k == "table_budget_mb"}
    return CudaBackend(cfg, weights, **geometry, **options), CpuBackend(cfg, weights, **cpu_options)
