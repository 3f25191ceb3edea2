"""DocBatch: the one internal batch type, ragged CSR arrays with no padding.

A batch of D documents holds S sentences and T tokens:

    token_ids     int32[T]     token ids of all sentences, back to back
    sent_offsets  int64[S+1]   sentence s is token_ids[sent_offsets[s]:sent_offsets[s+1]]
    doc_offsets   int64[D+1]   document d is sentences doc_offsets[d]:doc_offsets[d+1]

Empty sentences and empty documents are legal. Every kernel treats them the same way: they change no state,
so a document with no tokens is scored from the zero vector (its probabilities are softmax(head.bias)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import BatchError

__all__ = ["DocBatch"]


@dataclass(frozen=True)
class DocBatch:
    token_ids: np.ndarray  # int32[T]
    sent_offsets: np.ndarray  # int64[S+1], sent_offsets[0] == 0
    doc_offsets: np.ndarray  # int64[D+1], doc_offsets[0] == 0

    def __post_init__(self) -> None:
        for name, arr, dtype in (
            ("token_ids", self.token_ids, np.int32),
            ("sent_offsets", self.sent_offsets, np.int64),
            ("doc_offsets", self.doc_offsets, np.int64),
        ):
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
                raise BatchError(f"DocBatch.{name} must be a 1-d {np.dtype(dtype).name} array, got {_describe(arr)}")
            if not arr.flags.c_contiguous:
                raise BatchError(f"DocBatch.{name} must be contiguous")
        _check_offsets("sent_offsets", self.sent_offsets, len(self.token_ids))
        _check_offsets("doc_offsets", self.doc_offsets, len(self.sent_offsets) - 1)

    # -- sizes -------------------------------------------------------------------------------------------------
    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def n_sentences(self) -> int:
        return len(self.sent_offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def doc_token_offsets(self) -> np.ndarray:
        """int64[D+1]: document d is token_ids[out[d]:out[d+1]] (its sentences are contiguous)."""
        return self.sent_offsets[self.doc_offsets]

    def sentence_lengths(self) -> np.ndarray:
        return np.diff(self.sent_offsets)

    def nonempty_sentences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(index, starts, lengths, doc_ranges) of the sentences with tokens, the segments a sentence encoder runs
        over: sentence index[k] is tokens starts[k] .. + lengths[k]; document d holds doc_ranges[d] ..
        doc_ranges[d+1] of them (empty sentences change no state, so backends skip them)."""
        so = self.sent_offsets
        lengths = self.sentence_lengths()
        nonempty = lengths > 0
        index = np.flatnonzero(nonempty)
        cum = np.zeros(len(so), np.int64)
        np.cumsum(nonempty, out=cum[1:])
        return index, so[index], lengths[index], cum[self.doc_offsets]

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_lists(cls, docs: Sequence[Sequence[Sequence[int]]]) -> DocBatch:
        """Documents as lists of sentences as lists of token ids."""
        sent_lens: list[int] = []
        doc_lens: list[int] = []
        flat: list[int] = []
        for d, doc in enumerate(docs):
            if isinstance(doc, str | bytes):
                raise BatchError(f"document {d} is a string; DocBatch.from_lists takes sentences of token ids")
            doc_lens.append(len(doc))
            for sent in doc:
                sent_lens.append(len(sent))
                flat.extend(sent)
        try:
            token_ids = np.asarray(flat, dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise BatchError(f"token ids must be integers: {exc}") from None
        if token_ids.size and (token_ids.min() < 0 or token_ids.max() > np.iinfo(np.int32).max):
            raise BatchError("token ids must lie in [0, 2**31)")
        return cls(
            token_ids=token_ids.astype(np.int32),
            sent_offsets=_offsets(sent_lens),
            doc_offsets=_offsets(doc_lens),
        )

    @classmethod
    def from_arrow(cls, column: pa.Array | pa.ChunkedArray) -> DocBatch:
        """From an Arrow ``list<list<int32>>`` column, sharing its values buffer (no copy of the tokens).

        Only the offsets (small) are widened to int64. A null document is an empty document; a null sentence or
        a null token id is an error, since nothing sensible can be scored from it.
        """
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        t = column.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not (
            pa.types.is_list(t.value_type) or pa.types.is_large_list(t.value_type)
        ):
            raise BatchError(f"tokens column must be list<list<int32>> (sentences of token ids), got {t}")
        inner_t = t.value_type.value_type
        if not pa.types.is_integer(inner_t):
            raise BatchError(f"tokens column must hold integer token ids, got {t}")
        outer_off = column.offsets.to_numpy().astype(np.int64)  # sliced to this array: D+1 entries
        if column.null_count:
            # Nulls may carry arbitrary (equal or not) offsets; make them empty.
            lens = np.diff(outer_off)
            lens[column.is_null().to_numpy(zero_copy_only=False)] = 0
            keep = np.repeat(~column.is_null().to_numpy(zero_copy_only=False), np.diff(outer_off))
            sents = column.values.slice(outer_off[0], outer_off[-1] - outer_off[0]).filter(pa.array(keep))
            return cls.from_arrow(pa.ListArray.from_arrays(pa.array(_offsets(lens), pa.int32()), sents))
        inner = column.values  # the whole child: outer offsets index into it
        if inner.null_count:
            bad = inner.slice(outer_off[0], outer_off[-1] - outer_off[0]).null_count
            if bad:
                raise BatchError(f"tokens column has {bad} null sentence(s); use an empty list for an empty sentence")
        sent_off = inner.offsets.to_numpy()[outer_off[0] : outer_off[-1] + 1].astype(np.int64)
        values = inner.values
        if values.null_count:
            raise BatchError("tokens column has null token ids")
        tokens = values.to_numpy(zero_copy_only=True)[sent_off[0] : sent_off[-1]]
        if tokens.dtype != np.int32:
            if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(np.int32).max):
                raise BatchError("token ids must lie in [0, 2**31)")
            tokens = tokens.astype(np.int32)
        return cls(
            token_ids=np.ascontiguousarray(tokens),
            sent_offsets=sent_off - sent_off[0],
            doc_offsets=outer_off - outer_off[0],
        )

    def to_lists(self) -> list[list[list[int]]]:
        so, do, ids = self.sent_offsets, self.doc_offsets, self.token_ids
        return [
            [ids[so[s] : so[s + 1]].tolist() for s in range(do[d], do[d + 1])] for d in range(self.n_docs)
        ]

    def check_vocab(self, vocab_size: int) -> None:
        """Raise if a token id falls outside ``[0, vocab_size)``: kernels index without bounds checks."""
        if self.token_ids.size:
            lo, hi = int(self.token_ids.min()), int(self.token_ids.max())
            if lo < 0 or hi >= vocab_size:
                bad = lo if lo < 0 else hi
                raise BatchError(f"token id {bad} is outside the model's vocabulary [0, {vocab_size})")


def _offsets(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=out[1:])
    return out


def _check_offsets(name: str, off: np.ndarray, end: int) -> None:
    if len(off) == 0 or off[0] != 0 or off[-1] != end:
        raise BatchError(f"DocBatch.{name} must start at 0 and end at {end}, got {off[:1]}..{off[-1:]}")
    if len(off) > 1 and np.any(off[1:] < off[:-1]):
        raise BatchError(f"DocBatch.{name} must be non-decreasing")


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.ndim}-d {x.dtype} array"
    return type(x).__name__
