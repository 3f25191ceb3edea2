"""Fixtures shared by the whole suite (helpers live in tests/helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamsent import DocBatch

from .helpers import ragged_docs


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def ragged_batch(rng: np.random.Generator) -> DocBatch:
    return DocBatch.from_lists(ragged_docs(rng, 24, 60))
