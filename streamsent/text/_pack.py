"""Flat id streams with sentence-boundary markers → `DocBatch`, limits applied, with NumPy only.

Every tokenizer implementation ends the same way: for each document a flat list of ids where a boundary is
`SEP` (-1). Packing them here, vectorised over the whole batch, keeps the per-token Python work at one dict
lookup and lets the implementations be compared on equal terms.
"""

from __future__ import annotations

import numpy as np

from ..batch import DocBatch

__all__ = ["SEP", "pack"]

SEP = -1  # a sentence boundary in a flat id stream; never a vocabulary id


def pack(
    flat: np.ndarray, doc_lens: np.ndarray, max_sentences: int, max_tokens_per_sentence: int
) -> tuple[DocBatch, np.ndarray, np.ndarray]:
    """Split `flat` (int64[N], documents back to back, `doc_lens` int64[D] items each) into sentences.

    Empty sentences (boundary runs, leading or trailing boundaries) are dropped. A document keeps its first
    `max_sentences` sentences, a sentence its first `max_tokens_per_sentence` tokens.
    Returns the batch, `truncated` bool[D] (something was cut) and `kept` bool[N] (which items of `flat` became
    `batch.token_ids`, to carry token strings along).
    """
    n_docs = len(doc_lens)
    n_items = len(flat)
    item_doc = np.repeat(np.arange(n_docs, dtype=np.int64), doc_lens)  # (N,)
    is_word = flat >= 0  # (N,)

    # A word starts a sentence when it is its document's first item or follows a boundary.
    follows_break = np.ones(n_items, dtype=bool)
    follows_break[1:] = ~is_word[:-1]
    doc_item_start = np.cumsum(doc_lens) - doc_lens  # (D,)
    follows_break[doc_item_start[doc_lens > 0]] = True
    starts = is_word & follows_break

    word_idx = np.flatnonzero(is_word)  # (W,)
    word_doc = item_doc[word_idx]
    word_start = starts[word_idx]
    n_words = len(word_idx)
    sent_first = np.flatnonzero(word_start)  # (S,) first word of each sentence
    n_sents = len(sent_first)
    word_sent = np.cumsum(word_start) - 1  # (W,) sentence of each word

    sent_doc = word_doc[sent_first]  # (S,)
    doc_n_sents = np.bincount(sent_doc, minlength=n_docs)  # (D,)
    doc_first_sent = np.cumsum(doc_n_sents) - doc_n_sents
    sent_rank = np.arange(n_sents) - doc_first_sent[sent_doc]  # (S,) index of the sentence in its document
    word_pos = np.arange(n_words) - sent_first[word_sent]  # (W,) index of the word in its sentence

    keep = (sent_rank[word_sent] < max_sentences) & (word_pos < max_tokens_per_sentence)
    truncated = np.bincount(word_doc[~keep], minlength=n_docs) > 0

    sent_len = np.diff(np.append(sent_first, n_words))
    sent_len = np.minimum(sent_len[sent_rank < max_sentences], max_tokens_per_sentence)
    batch = DocBatch(
        token_ids=np.ascontiguousarray(flat[word_idx[keep]], dtype=np.int32),
        sent_offsets=_offsets(sent_len),
        doc_offsets=_offsets(np.minimum(doc_n_sents, max_sentences)),
    )
    kept = np.zeros(n_items, dtype=bool)
    kept[word_idx[keep]] = True
    return batch, truncated, kept


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out
