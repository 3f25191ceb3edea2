"""Seeded random weights for any config: for tests, benchmarks and as a training starting point."""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .io import expected_shapes

__all__ = ["random_weights"]


def random_weights(cfg: ModelConfig, seed: int = 0, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Uniform(-scale, scale) for every tensor (embeddings ×2), float32, in `torch.nn`'s shapes."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in expected_shapes(cfg).items():
        s = 2 * scale if name == "embedding.weight" else scale
        out[name] = rng.uniform(-s, s, size=shape).astype(np.float32)
    return out
