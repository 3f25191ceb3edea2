"""decode_record: its fast path (msgspec, plain messages) must agree with the full path on every input."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsent.runtime.records import (
    MAX_DEPTH,
    REASONS,
    SCORED_SCHEMA,
    DeadLetter,
    Doc,
    DocFields,
    Record,
    _decode_full,
    decode_record,
)

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
    st.sampled_from(["", " ", "\t\n", "\u3000", "ok", "\ud800x"]),
    st.lists(st.lists(st.integers(-3, 2**31 + 2), max_size=3), max_size=3),
    st.lists(st.one_of(st.integers(0, 9), st.text(max_size=2), st.booleans()), max_size=3),
)
_keys = st.sampled_from(["doc_id", "text", "tokens", "key", "lang", "id", "body"])


def _raw(obj: dict[str, Any], duplicate: bool) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, allow_nan=True)
    if duplicate and obj:  # the same key twice: the last one wins in both paths
        body = body[:-1] + ", " + json.dumps(obj)[1:]
    return body.encode("utf-8", "surrogatepass")


_messages = st.one_of(
    st.builds(_raw, st.dictionaries(_keys, _values, max_size=4), st.booleans()),
    st.builds(lambda i, t: _raw({"doc_id": i, "text": t}, False), st.one_of(st.text(max_size=4), st.integers()),
              st.text(max_size=20)),
    st.binary(max_size=40),
    st.sampled_from([b"", b"[]", b"null", b'{"doc_id": "a", "text": NaN}', b'\xef\xbb\xbf{"doc_id":"a","text":"b"}',
                     b'{"doc_id":"a","text":"b"}\x00', b'{"doc_id":"a","text":"\xff"}', b' {"doc_id":"a","text":"b"}\n',
                     b'{"doc_id":"a","tokens":[[1],[true]]}', b'{"doc_id":"a","tokens":[[2147483648]]}']),
)


def _outcome(result: Doc | DeadLetter) -> tuple:
    if isinstance(result, DeadLetter):
        return ("dead", result.reason, result.detail)
    return ("doc", result.doc_id, result.key, result.text, result.tokens, result.extra)


@settings(max_examples=400, deadline=None)
@given(_messages, st.one_of(st.none(), st.binary(max_size=4)), st.sampled_from([1_048_576, 30]),
       st.sampled_from([DocFields(), DocFields("id", "body", "tokens")]))
def test_fast_path_agrees_with_the_full_path(value: bytes, key: bytes | None, max_bytes: int,
                                              fields: DocFields) -> None:
    record = Record(value, key, "topic", 0, 7)
    assert _outcome(decode_record(record, fields, max_bytes)) == _outcome(_decode_full(record, fields, max_bytes))


def test_fast_path_takes_plain_messages_and_leaves_the_rest() -> None:
    """The plain message is decoded; one with an extra field keeps it (full path); a bad one says why."""
    plain = decode_record(Record(b'{"doc_id": 7, "text": "fine film"}', b"k", "t", 0, 1))
    assert isinstance(plain, Doc) and (plain.doc_id, plain.key, plain.text, plain.extra) == ("7", "k", "fine film", {})
    extra = decode_record(Record(b'{"doc_id": "a", "text": "x", "lang": "en"}', None, "t", 0, 2))
    assert isinstance(extra, Doc) and extra.extra == {"lang": "en"} and extra.key is None
    empty = decode_record(Record(b'{"doc_id": "a", "text": "  "}', None, "t", 0, 3))
    assert isinstance(empty, DeadLetter) and empty.reason == "empty_text"


DEEP = b"[" * 100_000 + b"]" * 100_000  # ~200 KB: json.loads overflows its recursion limit on it


def _nest(levels: int) -> bytes:
    return b'{"doc_id":"d","text":"ok","x":' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(("raw", "reason"), [
    (DEEP, "too_deep"),
    (b'{"doc_id":"d","text":"ok","x":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", "too_deep"),
    (_nest(MAX_DEPTH), "too_deep"),  # the field's value starts at level 2: MAX_DEPTH + 1 levels in all
    (b'{"doc_id":"d","text":"x\\ud800y"}', "invalid_unicode"),
    (b'{"doc_id":"d\\udfff","text":"xy"}', "invalid_unicode"),
    (b'{"doc_id":"d","text":"ok","f\\udc00":1}', "invalid_unicode"),
    (b'{"doc_id":"d","text":"ok","f":{"g":["\\ud800"]}}', "invalid_unicode"),
    (b'{"doc_id":"d","text":"ok","n":' + b"9" * 5000 + b"}", "invalid_json"),  # past CPython's 4,300 digits
    (b"", "invalid_json"),
    (b" \n", "invalid_json"),
    (b'"just a string"', "not_an_object"),
    (b"null", "not_an_object"),
    (b'{"doc_id":{"a":1},"text":"x"}', "wrong_type"),
])
def test_odd_messages_are_dead_lettered_with_their_reason(raw: bytes, reason: str) -> None:
    out = decode_record(Record(raw, None, "t", 0, 1))
    assert isinstance(out, DeadLetter), out
    assert out.reason == reason, out.detail
    assert out.detail and reason in REASONS
    line = out.to_json(1_000_000)  # and the dead letter itself is always writable, as strict JSON
    assert json.loads(line, parse_constant=_refuse)["reason"] == reason


def _refuse(name: str) -> None:
    raise AssertionError(f"non-JSON constant {name} in the output")


@pytest.mark.parametrize(("raw", "extra"), [
    (b'{"doc_id":"nan","text":"ok","x":NaN}', {"x": None}),
    (b'{"doc_id":"i","text":"ok","x":[Infinity,{"y":-Infinity}],"z":1e999,"w":-1e999}',
     {"x": [None, {"y": None}], "z": None, "w": None}),
    (_nest(MAX_DEPTH - 1), {"x": json.loads(b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1))}),
    (b'\xef\xbb\xbf{"doc_id":"bom","text":"ok","y":1}', {"y": 1}),  # a byte order mark is ignored
    (b'{"doc_id":"e","text":"ok \\ud83d\\ude00","y":"\\u00e9"}', {"y": "é"}),  # a surrogate *pair* is a character
])
def test_odd_but_legal_messages_are_kept(raw: bytes, extra: dict) -> None:
    out = decode_record(Record(raw, None, "t", 0, 1))
    assert isinstance(out, Doc), out
    assert out.extra == extra


_escaped = st.builds(lambda obj: json.dumps(obj, ensure_ascii=True, allow_nan=True).encode(),  # \\u escapes
                     st.dictionaries(_keys, _values, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_messages, _escaped))
def test_every_document_decoded_is_writable_by_every_json_sink(value: bytes) -> None:
    """Whatever a message holds, a Doc it decodes to makes a row the JSON sinks encode as strict UTF-8 JSON (the
    class behind NaN in a pass-through field wedging the JSON-lines sink)."""
    from streamsent.runtime.sinks.rows import encode_each

    out = decode_record(Record(value, None, "t", 0, 1))
    if isinstance(out, DeadLetter):
        json.loads(out.to_json(100), parse_constant=_refuse)
        return
    extra = json.dumps(out.extra, ensure_ascii=False, allow_nan=False) if out.extra else None
    rows = pa.table({"doc_id": [out.doc_id], "key": [out.key], "label": ["positive"], "score": [0.5],
                     "probs": [[0.5, 0.5]], "model": ["m@1"], "topic": ["t"], "partition": [0], "offset": [1],
                     "file": [None], "row": [None], "latency_ms": [1.0], "extra": [extra]},
                    schema=SCORED_SCHEMA)
    lines, bad = encode_each(rows, ("negative", "positive"))
    assert bad == {}
    obj = json.loads(lines[0], parse_constant=_refuse)
    assert obj["doc_id"] == out.doc_id
