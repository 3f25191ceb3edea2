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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import json_kernel

__all__ = ["encode_each", "encode_json", "encode_rows", "round_float", "row_objects", "text_lines"]

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


def round_float(value: float | None, digits: int = 6) -> float | None:
    """The rounding of score, probabilities and latency: k = value × 10**digits rounded half to even, then
    k / 10**digits. For float32 probabilities this is exactly `round(value, digits)`; it is spelled out because the
    JSON kernel (`json_kernel`) rounds the same way and both paths must write the same bytes. A value too large to
    scale (which has no fractional digits anyway) is returned as it is."""
    if value is None or not math.isfinite(value):
        return None
    scaled = value * 10.0**digits
    return round(scaled) / 10**digits if math.isfinite(scaled) else value


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
            probs_out: Any = {name: round_float(v) for name, v in zip(labels, p, strict=True)}
        else:
            probs_out = _round(p)
        obj: dict[str, Any] = {"doc_id": doc_id[i], "key": key[i], "label": label[i], "score": round_float(score[i]),
                               "probs": probs_out, "model": model[i]}
        for name, values in coords:
            if values[i] is not None:
                obj[name] = values[i]
        obj["latency_ms"] = round_float(latency[i], 3)
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


def encode_rows(rows: pa.Table, labels: Sequence[str] = ()) -> list[bytes]:
    """`encode_json(obj).encode()` for every `obj` of `row_objects(rows, labels)`, byte for byte, but written by
    one Numba pass over the columns (`json_kernel`).

    The Kafka sink writes one message per scored document, and for short documents building a dict per row and
    running the generic encoder was a large share of the per-document Python work (docs/bench-pipeline.md).
    Rows with extra input fields (and the rare float the kernel leaves to `repr`) take the generic path, as do
    tables with other columns and models without label names.
    """
    labels = tuple(labels)
    if any(name not in _RESERVED and name != "extra" for name in rows.column_names) or not labels:
        return _generic(rows, labels)
    n = rows.num_rows
    if n == 0:
        return []
    names = rows.column_names
    probs = _column(rows, "probs")
    if probs is None or probs.null_count or not pa.types.is_list(probs.type) or \
            pc.any(pc.not_equal(pc.list_value_length(probs), len(labels))).as_py():
        return _generic(rows, labels)  # null probabilities, or the wrong number (the generic path says which)
    program = _Program(n)
    program.string('{"doc_id":', _column(rows, "doc_id"))
    program.string(',"key":', _column(rows, "key"))
    program.string(',"label":', _column(rows, "label"))
    program.number(',"score":', _column(rows, "score"), 6)
    values = probs.flatten().cast(pa.float64()).to_numpy(zero_copy_only=False).reshape(n, len(labels))
    for i, name in enumerate(labels):
        program.number((',"probs":{' if i == 0 else ",") + _STRING(name) + ":", values[:, i], 6)
    program.string('},"model":', _column(rows, "model"))
    for name in _COORDINATES:  # left out where null
        if name in names:
            col = _column(rows, name)
            add = program.integer if pa.types.is_integer(col.type) else program.string
            add(f',"{name}":', col, omit_null=True)
    program.number(',"latency_ms":', _column(rows, "latency_ms"), 3)
    out, fallback = program.run()
    if "extra" in names:
        extra = _column(rows, "extra")
        fallback |= pc.not_equal(extra, "{}").fill_null(False).to_numpy(zero_copy_only=False)  # has extras
    for i in np.flatnonzero(fallback).tolist():
        out[i] = _generic(rows.slice(i, 1), labels)[0]
    return out


def encode_each(rows: pa.Table, labels: Sequence[str] = ()) -> tuple[list[bytes | None], dict[int, str]]:
    """`encode_rows`, but a row that cannot be encoded is None in the list and named in the dict (index -> why)
    instead of failing the batch: one odd row must not stop the others (the pipeline dead-letters it).

    The batch is tried whole first (the fast path); only a batch that fails is encoded row by row to find the
    culprits, each with the generic encoder."""
    try:
        return list(encode_rows(rows, labels)), {}
    except Exception:  # noqa: BLE001 - some row is at fault: find which
        pass
    out: list[bytes | None] = []
    bad: dict[int, str] = {}
    for i in range(rows.num_rows):
        try:
            out.append(_generic(rows.slice(i, 1), tuple(labels))[0])
        except Exception as exc:  # noqa: BLE001 - reported per row
            out.append(None)
            bad[i] = f"cannot encode the row as JSON: {type(exc).__name__}: {exc}"
    return out, bad


def _generic(rows: pa.Table, labels: tuple[str, ...]) -> list[bytes]:
    return [encode_json(o).encode("utf-8") for o in row_objects(rows, labels)]


_STRING = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # what _ENCODER uses for str


def _column(rows: pa.Table, name: str) -> pa.Array | None:
    return rows.column(name).combine_chunks() if name in rows.column_names else None


class _Program:
    """The fields of one JSON object, in order, as `json_kernel.write_rows` takes them: a literal prefix and a
    value column each."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lit: list[bytes] = []
        self.kind: list[int] = []
        self.col: list[int] = []
        self.digits: list[int] = []
        self.omit: list[int] = []
        self.strings: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # offsets, data, valid
        self.ints: list[tuple[np.ndarray, np.ndarray]] = []
        self.floats: list[tuple[np.ndarray, np.ndarray]] = []

    def _field(self, literal: str, kind: int, col: int, digits: int = 0, omit_null: bool = False) -> None:
        self.lit.append(literal.encode("utf-8"))
        self.kind.append(kind)
        self.col.append(col)
        self.digits.append(digits)
        self.omit.append(int(omit_null))

    def string(self, literal: str, arr: pa.Array | None, *, omit_null: bool = False) -> None:
        n = self.n
        if arr is None or arr.null_count == n:
            entry = (np.zeros(n + 1, np.int64), np.zeros(0, np.uint8), np.zeros(n, np.bool_))
        else:
            if not pa.types.is_string(arr.type):
                arr = arr.cast(pa.string())
            _, offsets, data = arr.buffers()
            entry = (np.frombuffer(offsets, np.int32, n + 1, arr.offset * 4).astype(np.int64),
                     np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8),
                     arr.is_valid().to_numpy(zero_copy_only=False))
        self._field(literal, json_kernel.STR, len(self.strings), omit_null=omit_null)
        self.strings.append(entry)

    def integer(self, literal: str, arr: pa.Array, *, omit_null: bool = False) -> None:
        self._field(literal, json_kernel.INT, len(self.ints), omit_null=omit_null)
        self.ints.append((arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False),
                          arr.is_valid().to_numpy(zero_copy_only=False)))

    def number(self, literal: str, values: pa.Array | np.ndarray | None, digits: int) -> None:
        n = self.n
        if values is None:
            entry = (np.zeros(n), np.zeros(n, np.bool_))
        elif isinstance(values, np.ndarray):
            entry = (np.ascontiguousarray(values, np.float64), np.ones(n, np.bool_))
        else:
            entry = (values.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False),
                     values.is_valid().to_numpy(zero_copy_only=False))
        self._field(literal, json_kernel.FLOAT, len(self.floats), digits)
        self.floats.append(entry)

    def run(self) -> tuple[list[bytes], np.ndarray]:
        n = self.n
        self._field("}", json_kernel.LITERAL, 0)
        lit_off = np.zeros(len(self.lit) + 1, np.int64)
        lit_off[1:] = np.cumsum([len(b) for b in self.lit])
        strings = self.strings or [(np.zeros(n + 1, np.int64), np.zeros(0, np.uint8), np.zeros(n, np.bool_))]
        base = np.cumsum([0] + [len(d) for _, d, _ in strings[:-1]])
        s_off = np.stack([o + b for (o, _, _), b in zip(strings, base, strict=True)])
        s_data = np.concatenate([d for _, d, _ in strings])
        s_valid = np.stack([v for _, _, v in strings])
        ints = self.ints or [(np.zeros(n, np.int64), np.zeros(n, np.bool_))]
        floats = self.floats or [(np.zeros(n), np.zeros(n, np.bool_))]
        text_bytes = int(sum(o[-1] - o[0] for o, _, _ in strings))
        out = np.empty(n * (int(lit_off[-1]) + 32 * len(self.kind)) + 6 * text_bytes, np.uint8)
        row_end = np.empty(n, np.int64)
        fallback = np.zeros(n, np.bool_)
        escapes, hexdigits = json_kernel.escapes()
        json_kernel.write_rows(n, np.frombuffer(b"".join(self.lit), np.uint8), lit_off, np.array(self.kind, np.int64),
                               np.array(self.col, np.int64), np.array(self.digits, np.int64),
                               np.array(self.omit, np.int64), s_off, s_data, s_valid,
                               np.stack([v for v, _ in ints]), np.stack([m for _, m in ints]),
                               np.stack([v for v, _ in floats]), np.stack([m for _, m in floats]),
                               out, row_end, fallback, escapes, hexdigits)
        buf = out[: row_end[-1]].tobytes()
        ends = row_end.tolist()
        return [buf[s:e] for s, e in zip([0, *ends[:-1]], ends, strict=True)], fallback


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
