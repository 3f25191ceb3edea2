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
    except MemoryError:  # the machine's, not the input's: stop (nothing after this batch is written)
        raise
    except Exception as exc:  # noqa: BLE001 - find the documents it belongs to
        log.warning("batch of %d failed to score (%r); scoring one at a time", len(good), exc)
        good, scored = _one_at_a_time(model, good, letters, exc)
    if scored is not None and scored.column("label").null_count:  # no word to score (Model.predict's rule)
        unscored = scored.column("label").is_null().to_numpy(zero_copy_only=False)
        letters.extend(DeadLetter(d.record, "empty_text", "the document has no token to score (empty, only "
                                  "whitespace or punctuation, or empty sentences)")
                       for d, u in zip(good, unscored, strict=True) if u)
        good = [d for d, u in zip(good, unscored, strict=True) if not u]
        scored = scored.filter(pa.array(~unscored))
    rows = _rows(model, good, scored)
    if attention and good and scored is not None:
        for name in ("word_attention", "sentence_attention"):
            if name in scored.column_names:
                rows = rows.append_column(name, scored.column(name))
    return rows, letters


def _one_at_a_time(model: Model, docs: list[Doc], letters: list[DeadLetter],
                   batch_error: BaseException) -> tuple[list[Doc], pa.Table | None]:
    """Score each document alone; those that still fail become `scoring_failed` letters. When every document of
    a batch of several fails, the fault is not theirs (a broken model, memory): that is raised, not blamed on
    the input, so the pipeline stops instead of dead-lettering the whole stream."""
    kept, tables, failed = [], [], []
    for d in docs:
        try:
            tables.append(_predict(model, [d]))
            kept.append(d)
        except MemoryError:
            raise
        except Exception as one:  # noqa: BLE001 - this document's own failure
            failed.append(DeadLetter(d.record, "scoring_failed", f"{type(one).__name__}: {one}"))
    if len(docs) > 1 and not kept:
        raise StreamsentError(f"every document of a batch of {len(docs)} failed to score, also one at a time: "
                              f"{batch_error!r}") from batch_error
    letters.extend(failed)
    return kept, (pa.concat_tables(tables) if tables else None)


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
