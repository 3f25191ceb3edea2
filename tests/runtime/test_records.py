"""decode_record: its fast path (msgspec, plain messages) must agree with the full path on every input."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamsent.runtime.records import DeadLetter, Doc, DocFields, Record, _decode_full, decode_record

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
