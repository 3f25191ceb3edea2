"""Text → token ids: the `Tokenizer` (normalisation, sentence split, limits) and its `Vocab`."""

from __future__ import annotations

from .tokenizer import EncodedDocs, Tokenizer
from .vocab import PAD_ID, UNK_ID, Vocab

__all__ = ["PAD_ID", "UNK_ID", "EncodedDocs", "Tokenizer", "Vocab"]
