"""Scored rows as JSON objects (Kafka values, JSON lines) and as one readable terminal line.

The object's shape is a public contract for downstream consumers::

    {"doc_id", "key", "label", "score", "probs": {label: p}, "model",
     <the non-null coordinates: "topic", "partition", "offset" or "file", "row">, "latency_ms",
     <other table columns, e.g. "sentence_attention">, <the input's extra fields>}

Extra fields come last and never overwrite a standard key: a colliding one is kept as `input_<name>` (as
`streamsent score` does for columns), so a gold `label` in the input survives as `input_label`. Floats are rounded
(probabilities to 6 decimals, latency to 3) because float32 noise such as 0.8999999761581421 helps nobody, and
non-finite floats become null so that every line is strict JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

__all__ = ["encode_json", "encode_rows", "row_objects", "text_lines"]

_COORDINATES = ("topic", "partition", "offset", "file", "row")
_FIXED = ("doc_id", "key", "label", "score", "probs", "model")
# Always reserved, present or not, so that an extra field lands under the same name in every message.
_RESERVED = frozenset(_FIXED + _COORDINATES + ("latency_ms",))
_TEXT_CHARS = 70


def _round(value: Any, digits: int = 6) -> Any:
    """Round floats (also inside lists) for output; NaN/inf -> None."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def _parse_extra(text: str | None) -> dict[str, Any]:
    if text is None or text == "{}":
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"extra": value}


def _free_name(name: str, taken: dict[str, Any]) -> str:
    while name in taken or name in _RESERVED:
        name = f"input_{name}"
    return name


def _round_float(value: float | None, digits: int = 6) -> float | None:
    """The hot path's rounding (score, probabilities, latency): no type dispatch."""
    return None if value is None or not math.isfinite(value) else round(value, digits)


def row_objects(rows: pa.Table, labels: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per row. `labels` names the entries of `probs` (left as a list when empty)."""
    n = rows.num_rows
    missing = [None] * n

    def col(name: str) -> list[Any]:
        return rows.column(name).to_pylist() if name in rows.column_names else missing

    doc_id, key, label, score, probs, model, latency, extra = (
        col(c) for c in ("doc_id", "key", "label", "score", "probs", "model", "latency_ms", "extra"))
    coords = [(name, values) for name in _COORDINATES if (values := col(name)) is not missing]
    other = [(name, col(name)) for name in rows.column_names if name not in _RESERVED and name != "extra"]
    labels = tuple(labels)
    for i in range(n):
        p = probs[i]
        if p is not None and labels:
            if len(p) != len(labels):
                raise ValueError(f"row {i} has {len(p)} probabilities but the model has {len(labels)} labels "
                                 f"{list(labels)}")
            probs_out: Any = {name: _round_float(v) for name, v in zip(labels, p, strict=True)}
        else:
            probs_out = _round(p)
        obj: dict[str, Any] = {"doc_id": doc_id[i], "key": key[i], "label": label[i], "score": _round_float(score[i]),
                               "probs": probs_out, "model": model[i]}
        for name, values in coords:
            if values[i] is not None:
                obj[name] = values[i]
        obj["latency_ms"] = _round_float(latency[i], 3)
        for name, values in other:
            obj[name] = _round(values[i])
        if extra[i] is not None and extra[i] != "{}":
            for name, value in _parse_extra(extra[i]).items():
                obj[name if name not in obj and name not in _RESERVED else _free_name(name, obj)] = value
        yield obj


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def encode_json(obj: dict[str, Any]) -> str:
    """Compact, strict JSON; non-ASCII text stays UTF-8 (readable and smaller than \\u escapes)."""
    return _ENCODER.encode(obj)


_STRING = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # what _ENCODER uses for str


def _num(value: float | None, digits: int) -> str:
    return "null" if value is None or not math.isfinite(value) else repr(round(value, digits))


def encode_rows(rows: pa.Table, labels: Sequence[str] = ()) -> list[bytes]:
    """`encode_json(obj).encode()` for every `obj` of `row_objects(rows, labels)`, byte for byte, but built column
    by column.

    The Kafka sink writes one message per scored document, and for short documents building a dict per row and
    running the generic encoder was a large share of the per-document Python work (docs/bench-pipeline.md).
    Rows with extra input fields, and tables with other columns, take the generic path.
    """
    labels = tuple(labels)
    if any(name not in _RESERVED and name != "extra" for name in rows.column_names) or not labels:
        return [encode_json(o).encode("utf-8") for o in row_objects(rows, labels)]
    n = rows.num_rows
    string, num = _STRING, _num

    def col(name: str) -> list[Any] | None:
        return rows.column(name).to_pylist() if name in rows.column_names else None

    def strings(name: str) -> list[str]:
        values = col(name)
        return ["null"] * n if values is None else ["null" if v is None else string(v) for v in values]

    heads = [f"{_STRING(name)}:" for name in labels]
    probs = []
    for i, p in enumerate(col("probs") or [None] * n):
        if p is None:
            probs.append("null")
        elif len(p) != len(labels):
            raise ValueError(f"row {i} has {len(p)} probabilities but the model has {len(labels)} labels "
                             f"{list(labels)}")
        else:
            probs.append("{" + ",".join([h + num(v, 6) for h, v in zip(heads, p, strict=True)]) + "}")
    score = [num(v, 6) for v in col("score") or [None] * n]
    latency = [num(v, 3) for v in col("latency_ms") or [None] * n]
    tails = [""] * n  # the non-null coordinates, then latency
    for name in _COORDINATES:
        values = col(name)
        if values is not None:
            head = f',"{name}":'
            tails = [t if v is None else t + head + (string(v) if isinstance(v, str) else str(v))
                     for t, v in zip(tails, values, strict=True)]
    out = [f'{{"doc_id":{d},"key":{k},"label":{lab},"score":{sc},"probs":{p},"model":{m}{t},"latency_ms":{lat}}}'
           .encode()
           for d, k, lab, sc, p, m, t, lat in zip(strings("doc_id"), strings("key"), strings("label"), score, probs,
                                                 strings("model"), tails, latency, strict=True)]
    extra = col("extra")
    if extra is not None:
        for i, e in enumerate(extra):
            if e is not None and e != "{}":
                out[i] = encode_json(next(row_objects(rows.slice(i, 1), labels))).encode("utf-8")
    return out


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _TEXT_CHARS else flat[:_TEXT_CHARS - 1] + "…"


def text_lines(rows: pa.Table, labels: Sequence[str] = ()) -> list[str]:
    """One line per document for people: label, score, doc_id and the start of the text when a column (or an
    extra field) named `text` carries it."""
    width = max((len(label) for label in labels), default=8)
    cols = {name: rows.column(name).to_pylist() for name in ("doc_id", "label", "score", "text", "extra")
            if name in rows.column_names}
    lines = []
    for i in range(rows.num_rows):
        label = cols["label"][i] if "label" in cols else None
        score = cols["score"][i] if "score" in cols else None
        text = cols["text"][i] if "text" in cols else None
        if text is None and "extra" in cols and cols["extra"][i]:
            text = _parse_extra(cols["extra"][i]).get("text")
        parts = [f"{label or '?':<{width}}", f"{score:.3f}" if score is not None else "  -  ", str(cols["doc_id"][i])]
        if isinstance(text, str) and text.strip():
            parts.append(_snippet(text))
        lines.append("  ".join(parts))
    return lines
