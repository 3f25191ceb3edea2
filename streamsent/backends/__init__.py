"""Backends compute `Scores` for a `DocBatch`: `cpu` (Numba), `reference` (plain NumPy), later `cuda`."""

from .base import Backend, CarryState, Scores

__all__ = ["Backend", "CarryState", "Scores"]
