"""MicroBatcher: a poll's items added at once (`extend`) close the same batches as one item at a time (`add`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamsent.runtime.batcher import MicroBatcher
from streamsent.runtime.records import DeadLetter, Doc, Record

_items = st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(1, 30), st.booleans()), max_size=60)


def _make(spec: list[tuple[bool, int, int, bool]]) -> list[Doc | DeadLetter]:
    out: list[Doc | DeadLetter] = []
    for i, (bad, partition, words, kafka) in enumerate(spec):
        rec = Record(b"x", None, "t" if kafka else None, partition if kafka else None, i if kafka else None,
                     file=None if kafka else "f", row=None if kafka else i)
        out.append(DeadLetter(rec, "invalid_json", "x") if bad else
                   Doc(str(i), None, " ".join(["w"] * words), None, {}, rec))
    return out


def _shape(batches) -> list[tuple]:
    return [([d.doc_id for d in b.docs], [id(x) for x in b.letters], b.tokens, b.offsets) for b in batches]


@given(_items, st.integers(1, 7), st.integers(5, 80), st.integers(1, 4))
def test_extend_closes_the_batches_add_would(spec, max_docs: int, max_tokens: int, polls: int) -> None:
    items = _make(spec)
    one, many = MicroBatcher(max_docs, max_tokens, 50), MicroBatcher(max_docs, max_tokens, 50)
    by_add = [b for b in (one.add(x) for x in items) if b is not None] + [b for b in [one.close()] if b]
    step = max(1, len(items) // polls)
    by_extend = [b for i in range(0, len(items), step) for b in many.extend(items[i: i + step])]
    by_extend += [b for b in [many.close()] if b]
    assert _shape(by_extend) == _shape(by_add)
    assert [b.seq for b in by_extend] == list(range(len(by_extend)))
