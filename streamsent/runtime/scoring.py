"""Micro-batch -> scored rows (the SCORED_SCHEMA table), dead-lettering what the model cannot take."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pyarrow as pa

from ..errors import StreamsentError
from ..models.model import Model
from .records import SCORED_SCHEMA, DeadLetter, Doc

__all__ = ["score_docs", "scored_columns"]

log = logging.getLogger(__name__)


def _table(docs: list[Doc]) -> pa.Table:
    ids = pa.array([d.doc_id for d in docs], pa.string())
    if docs and docs[0].tokens is not None:
        return pa.table({"doc_id": ids, "tokens": pa.array([d.tokens for d in docs], pa.list_(pa.list_(pa.int32())))})
    return pa.table({"doc_id": ids, "text": pa.array([d.text for d in docs], pa.string())})


def _predict(model: Model, docs: list[Doc]) -> pa.Table:
    """Text and token documents are scored in separate groups (one Arrow column each), then put back in order."""
    is_tok = np.array([d.tokens is not None for d in docs])
    if is_tok.all() or not is_tok.any():
        return model.predict(_table(docs), batch_size=max(len(docs), 1))
    parts, order = [], []
    for mask in (~is_tok, is_tok):
        idx = np.flatnonzero(mask)
        parts.append(model.predict(_table([docs[i] for i in idx]), batch_size=len(idx)))
        order.append(idx)
    merged = pa.concat_tables(parts, promote_options="default")
    return merged.take(np.argsort(np.concatenate(order), kind="stable"))


def score_docs(model: Model, docs: list[Doc], *, attention: bool = False) -> tuple[pa.Table, list[DeadLetter]]:
    """Score a batch; documents the model refuses (token ids outside its vocabulary, ...) become dead letters,
    scored one at a time only when the whole batch fails, so one bad document never sinks the others.

    With `attention`, the rows also carry the model's `word_attention` / `sentence_attention` columns (models
    with attention pooling compute them anyway), after the SCORED_COLUMNS."""
    letters: list[DeadLetter] = []
    vocab = model.config.vocab_size
    good = []
    for d in docs:
        if d.tokens is not None and any(t >= vocab for s in d.tokens for t in s):
            letters.append(DeadLetter(d.record, "token_out_of_range",
                                      f"token ids must be < {vocab} (the model's vocabulary size)"))
        else:
            good.append(d)
    try:
        scored = _predict(model, good) if good else None
    except (StreamsentError, ValueError) as exc:
        log.warning("batch of %d failed to score (%s); scoring one at a time", len(good), exc)
        kept, tables = [], []
        for d in good:
            try:
                tables.append(_predict(model, [d]))
                kept.append(d)
            except (StreamsentError, ValueError) as one:
                letters.append(DeadLetter(d.record, "scoring_failed", str(one)))
        good, scored = kept, (pa.concat_tables(tables) if tables else None)
    rows = _rows(model, good, scored)
    if attention and good and scored is not None:
        for name in ("word_attention", "sentence_attention"):
            if name in scored.column_names:
                rows = rows.append_column(name, scored.column(name))
    return rows, letters


def scored_columns(model: Model, docs: list[Doc], label: pa.Array, score: pa.Array,
                   probs: pa.Array) -> dict[str, pa.Array]:
    """The SCORED_COLUMNS of a batch, in order: the model's label/score/probs beside what each document brought
    (its id, key, coordinates, extra fields) and its latency so far. The stateless and the keyed scorer share it."""
    now = time.time()
    recs = [d.record for d in docs]
    return {
        "doc_id": pa.array([d.doc_id for d in docs], pa.string()),
        "key": pa.array([d.key for d in docs], pa.string()),
        "label": label,
        "score": score,
        "probs": probs,
        "model": pa.array([f"{model.config.name}@{model.config.version}"] * len(docs), pa.string()),
        "topic": pa.array([r.topic for r in recs], pa.string()),
        "partition": pa.array([r.partition for r in recs], pa.int32()),
        "offset": pa.array([r.offset for r in recs], pa.int64()),
        "file": pa.array([r.file for r in recs], pa.string()),
        "row": pa.array([r.row for r in recs], pa.int64()),
        "latency_ms": pa.array([(now - r.received) * 1000 for r in recs], pa.float64()),
        "extra": pa.array([json.dumps(d.extra, ensure_ascii=False, default=str) if d.extra else None for d in docs],
                          pa.string()),
    }


def _rows(model: Model, docs: list[Doc], scored: pa.Table | None) -> pa.Table:
    if not docs or scored is None:
        return SCORED_SCHEMA.empty_table()
    cols = scored_columns(model, docs, scored.column("label").combine_chunks().cast(pa.string()),
                          scored.column("score").combine_chunks().cast(pa.float32()),
                          scored.column("probs").combine_chunks().cast(pa.list_(pa.float32())))
    return pa.table(cols, schema=SCORED_SCHEMA)
