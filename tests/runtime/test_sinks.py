"""Sinks against real components: files in tmp_path, a real Kafka-protocol broker, real stdout/stderr."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition

from streamsent.runtime.broker import EmbeddedBroker
from streamsent.runtime.config import (
    JsonlDeadLetterConfig,
    JsonlSinkConfig,
    KafkaDeadLetterConfig,
    KafkaSinkConfig,
    ParquetSinkConfig,
    StdoutSinkConfig,
)
from streamsent.runtime.records import SCORED_COLUMNS, SCORED_SCHEMA, DeadLetter, Record
from streamsent.runtime.sinks import (
    JsonlDeadLetterSink,
    JsonlSink,
    KafkaDeadLetterSink,
    KafkaSink,
    MemoryDeadLetterSink,
    MemorySink,
    ParquetSink,
    SinkError,
    StdoutSink,
    build_dead_letter_sink,
    build_sink,
    encode_json,
    row_objects,
)

from .helpers import BrokerUnderTest, require_backend

LABELS = ("negative", "positive")


def scored(n: int, start: int = 0, *, kafka: bool = True, extra: dict[str, Any] | None = None,
           attention: bool = False) -> pa.Table:
    """`n` scored rows as the pipeline hands them to sinks (doc ids d<start>..)."""
    ids = range(start, start + n)
    scores = [0.5 + (i % 5) / 10 for i in ids]  # 0.5 .. 0.9, not exact in float32
    cols: dict[str, list[Any]] = {
        "doc_id": [f"d{i}" for i in ids], "key": [f"k{i % 3}" if i % 2 else None for i in ids],
        "label": ["positive"] * n, "score": scores, "probs": [[1 - s, s] for s in scores],
        "model": ["default@1.0.0"] * n,
        "topic": ["reviews" if kafka else None] * n, "partition": [i % 3 if kafka else None for i in ids],
        "offset": [i if kafka else None for i in ids], "file": [None if kafka else "in.parquet"] * n,
        "row": [None if kafka else i for i in ids], "latency_ms": [12.345678] * n,
        "extra": [json.dumps(extra if extra is not None else {"lang": "en"})] * n,
    }
    table = pa.table(cols, schema=SCORED_SCHEMA)
    if attention:
        table = table.append_column("sentence_attention", pa.array([[0.25, 0.75]] * n, pa.list_(pa.float32())))
    return table


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("scores-*.parquet"))


def consume(bootstrap: str, topic: str, partitions: int, n: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                got.extend(records)
        for records in consumer.poll(timeout_ms=300).values():  # nothing beyond n
            got.extend(records)
    finally:
        consumer.close()
    return got


def letter(value: bytes | None, key: bytes | None = b"conv-1", **record: Any) -> DeadLetter:
    return DeadLetter(Record(value, key=key, **record), "invalid_json", "Expecting value at line 1 column 1")


# ---------------------------------------------------------------------------------------------------------------
# The JSON object
# ---------------------------------------------------------------------------------------------------------------
def test_json_object_shape_order_and_rounding() -> None:
    obj = next(row_objects(scored(1, start=4, attention=True), LABELS))
    assert list(obj) == ["doc_id", "key", "label", "score", "probs", "model", "topic", "partition", "offset",
                         "latency_ms", "sentence_attention", "lang"]
    assert obj["doc_id"] == "d4" and obj["key"] is None and obj["model"] == "default@1.0.0"
    assert obj["score"] == 0.9 and obj["probs"] == {"negative": 0.1, "positive": 0.9}  # float32 noise rounded
    assert (obj["topic"], obj["partition"], obj["offset"]) == ("reviews", 1, 4)
    assert obj["latency_ms"] == 12.346 and obj["sentence_attention"] == [0.25, 0.75] and obj["lang"] == "en"


def test_encode_rows_is_byte_for_byte_the_generic_encoding() -> None:
    from streamsent.runtime.sinks.rows import encode_rows

    tricky = pa.table({  # quotes, backslashes, non-ASCII, control characters, nulls, NaN, tiny and huge numbers
        "doc_id": ['a"b', "c\\d", "é€😀", "tab\there", "x", "y"], "key": [None, "k", "\u2028", None, "", "k2"],
        "label": ["negative", "positive", None, "positive", "negative", "positive"],
        "score": pa.array([0.1, float("nan"), 1e-7, 0.999_999_9, 0.5, 2.0], pa.float32()),
        "probs": pa.array([[0.9, 0.1], [float("inf"), 0.0], None, [1e-9, 1.0], [-0.0, 1.0], [0.5, 0.5]],
                          pa.list_(pa.float32())),
        "model": ["m@1"] * 6, "topic": ["t", None, "t", None, "t", "t"],
        "partition": pa.array([0, None, 1, None, 2, 0], pa.int32()),
        "offset": pa.array([5, None, 2**40, None, 0, 1], pa.int64()),
        "file": [None, "f.parquet", None, "g", None, None],
        "row": pa.array([None, 3, None, 0, None, None], pa.int64()),
        "latency_ms": [12.3456789, None, 1e12, float("-inf"), 0.0, 1e-5],
        "extra": [None, "{}", '{"label": "gold", "n": 1}', None, None, '{"x": [1, 2]}']}, schema=SCORED_SCHEMA)
    for table in (tricky, scored(50), scored(7, kafka=False), tricky.drop_columns(["extra", "file", "row"])):
        assert encode_rows(table, LABELS) == [encode_json(o).encode() for o in row_objects(table, LABELS)]
    with_other = scored(3, attention=True)  # other columns: the generic path
    assert encode_rows(with_other, LABELS) == [encode_json(o).encode() for o in row_objects(with_other, LABELS)]
    with pytest.raises(ValueError, match="3 labels"):
        encode_rows(scored(2), ("a", "b", "c"))


_floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(0, 1, width=32), st.floats(2**-24, 2**-10, width=32), st.floats(-1e6, 1e6))
_texts = st.one_of(st.none(), st.text(max_size=12), st.text(st.characters(max_codepoint=0x3F), max_size=6))


@settings(max_examples=150, deadline=None)
@example([(None, None, None, [0.0, 0.0], None, 1.797693134862316e305)], True)  # overflows when scaled
@example([("a", "k", 5e-05, [1.2e-05, 0.99995], 3, -0.0004)], False)  # scientific notation, negative
@given(st.lists(st.tuples(_texts, _texts, _floats, st.lists(st.floats(0, 1, width=32), min_size=2, max_size=2),
                          st.one_of(st.none(), st.integers(-2**40, 2**40)), _floats), min_size=1, max_size=8),
       st.booleans())
def test_encode_rows_kernel_matches_the_generic_encoder(rows: list[tuple], kafka: bool) -> None:
    """Any strings (quotes, control characters, astral planes), any floats (tiny ones print as 5e-05, huge ones
    go to the fallback), nulls anywhere: the kernel's bytes are the generic encoder's bytes."""
    from streamsent.runtime.sinks.rows import encode_rows

    n = len(rows)
    doc_id, key, score, probs, offset, latency = (list(c) for c in zip(*rows, strict=True))
    table = pa.table({
        "doc_id": doc_id, "key": key, "label": ["positive"] * n, "score": pa.array(score, pa.float32()),
        "probs": pa.array(probs, pa.list_(pa.float32())), "model": ["m@1"] * n,
        "topic": [("t" if kafka else None)] * n, "partition": pa.array([0 if kafka else None] * n, pa.int32()),
        "offset": pa.array(offset if kafka else [None] * n, pa.int64()), "file": [None if kafka else "f"] * n,
        "row": pa.array([None] * n if kafka else offset, pa.int64()), "latency_ms": pa.array(latency, pa.float64()),
        "extra": [None] * n}, schema=SCORED_SCHEMA)
    assert encode_rows(table, LABELS) == [encode_json(o).encode() for o in row_objects(table, LABELS)]


@given(st.floats(-1e6, 1e6, width=32))
def test_round_float_is_pythons_round_for_float32_values(value: float) -> None:
    """The kernel's rounding (k = rint(v × 10**6)) is exact for float32 inputs: the product needs 38 bits."""
    from streamsent.runtime.sinks.rows import round_float

    assert repr(round_float(value, 6)) == repr(round(value, 6) + 0.0)  # + 0.0: -0.0 prints as 0.0 in both


def test_json_object_file_coordinates_and_extra_collisions() -> None:
    extra = {"label": "gold-pos", "stars": 4, "input_label": "x", "topic": "cinema", "doc_id": "other"}
    obj = next(row_objects(scored(1, start=7, kafka=False, extra=extra), LABELS))
    assert (obj["file"], obj["row"]) == ("in.parquet", 7) and "offset" not in obj
    # standard keys win; a colliding extra goes under input_<name> (again if that is taken too)
    assert obj["label"] == "positive" and obj["doc_id"] == "d7"
    assert obj["input_label"] == "gold-pos" and obj["input_input_label"] == "x"
    assert obj["input_topic"] == "cinema" and obj["input_doc_id"] == "other" and obj["stars"] == 4
    assert "topic" not in obj  # a null coordinate is left out, and its name stays reserved


def test_json_is_strict_and_utf8() -> None:
    table = scored(1, extra={"title": "Amélie"}).set_column(11, "latency_ms", pa.array([float("nan")]))
    line = encode_json(next(row_objects(table, LABELS)))
    assert '"latency_ms":null' in line and '"title":"Amélie"' in line  # NaN is not JSON; no \\u escapes


def test_json_object_without_labels_and_with_wrong_labels() -> None:
    obj = next(row_objects(scored(1), ()))
    assert obj["probs"] == [0.5, 0.5]
    with pytest.raises(ValueError, match="2 probabilities but the model has 3 labels"):
        next(row_objects(scored(1), ("a", "b", "c")))


# ---------------------------------------------------------------------------------------------------------------
# JSON lines and stdout
# ---------------------------------------------------------------------------------------------------------------
def test_jsonl_sink_appends_and_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []  # inodes of the files fsync'd (the real fsync still runs)
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd))[1])
    path = tmp_path / "out" / "scores.jsonl"
    sink = build_sink(JsonlSinkConfig(path=str(path)), bootstrap=None, labels=LABELS)
    assert isinstance(sink, JsonlSink)
    sink.write(scored(3))
    sink.flush()
    assert path.stat().st_ino in synced and path.parent.stat().st_ino in synced  # the file and its new name
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["doc_id"] for x in lines] == ["d0", "d1", "d2"]
    assert json.loads(lines[1]) == list(row_objects(scored(3), LABELS))[1]
    sink.write(scored(2, start=3))
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(SinkError, match="closed"):
        sink.write(scored(1))
    # a torn last line (crash) stays on a line of its own when the file is opened again
    with open(path, "ab") as f:
        f.write(b'{"doc_id":"d5","la')
    again = JsonlSink(path, LABELS)
    again.write(scored(1, start=6))
    again.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 7 and lines[5] == '{"doc_id":"d5","la' and json.loads(lines[6])["doc_id"] == "d6"


def test_jsonl_dash_and_stdout_formats(capsys: pytest.CaptureFixture[str]) -> None:
    JsonlSink("-", LABELS).write(scored(2))
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(x) for x in out] == list(row_objects(scored(2), LABELS))

    sink = build_sink(StdoutSinkConfig(format="jsonl"), bootstrap=None, labels=LABELS)
    sink.write(scored(1))
    sink.flush()
    assert json.loads(capsys.readouterr().out)["probs"] == {"negative": 0.5, "positive": 0.5}

    text = "A  long\nreview " + "x" * 100
    rows = pa.concat_tables([scored(1, extra={"text": text}), scored(1, start=1)])
    sink = build_sink(StdoutSinkConfig(format="text"), bootstrap=None, labels=LABELS)
    sink.write(rows)
    sink.close()
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("positive  0.500  d0  A long review xxx") and first.endswith("…")
    assert len(first.split("  d0  ", 1)[1]) == 70  # the text, cut to 70 characters
    assert second == "positive  0.600  d1"  # no text anywhere: just the fields
    with pytest.raises(ValueError, match="format"):
        StdoutSink("csv")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------------------------
def test_parquet_rolls_by_rows_and_on_close(tmp_path: Path) -> None:
    sink = build_sink(ParquetSinkConfig(path=tmp_path / "out", rows_per_file=10, compression="gzip"),
                      bootstrap=None, labels=LABELS)
    assert isinstance(sink, ParquetSink)
    sink.write(scored(12, attention=True))
    sink.write(scored(13, start=12, attention=True))
    assert [pq.read_metadata(p).num_rows for p in parquet_files(sink.directory)] == [10, 10]
    sink.flush()
    sink.close()
    files = parquet_files(sink.directory)
    assert [pq.read_metadata(p).num_rows for p in files] == [10, 10, 5] and files == sink.published
    assert hidden(sink.directory) == []  # no journal or temporary file left
    table = pa.concat_tables(pq.read_table(p) for p in files)
    assert table.column("doc_id").to_pylist() == [f"d{i}" for i in range(25)]
    assert table.column_names == [*SCORED_COLUMNS, "sentence_attention"]
    assert table.schema.field("extra").type == pa.string() and json.loads(table["extra"][0].as_py()) == {"lang": "en"}
    assert pq.read_metadata(files[0]).row_group(0).column(0).compression == "GZIP"
    with pytest.raises(SinkError, match="closed"):
        sink.write(scored(1))


def test_parquet_flush_is_durable_and_roll_on_flush_publishes(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, rows_per_file=1000, roll_seconds=0)
    sink.write(scored(5))
    sink.flush()
    # durable but not yet published: the fsync'd journal holds every flushed row
    assert parquet_files(tmp_path) == []
    (journal,) = [tmp_path / n for n in hidden(tmp_path)]
    assert pa.ipc.open_stream(journal.read_bytes()).read_all().num_rows == 5
    sink.close()
    assert [pq.read_metadata(p).num_rows for p in parquet_files(tmp_path)] == [5] and hidden(tmp_path) == []

    eager = ParquetSink(tmp_path / "eager", roll_on_flush=True)
    eager.flush()  # nothing written: no empty file
    for i in range(2):
        eager.write(scored(3, start=3 * i))
        eager.flush()
        assert len(parquet_files(eager.directory)) == i + 1 and hidden(eager.directory) == []
    eager.close()
    assert [pq.read_table(p)["doc_id"].to_pylist() for p in eager.published] == [["d0", "d1", "d2"],
                                                                                 ["d3", "d4", "d5"]]


def test_parquet_rolls_by_age_and_on_schema_change(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, roll_seconds=0.2)
    sink.write(scored(2))
    time.sleep(0.25)
    sink.flush()  # old enough: the flush rolls it
    assert len(sink.published) == 1
    sink.write(scored(2, start=2))
    sink.write(scored(2, start=4, attention=True))  # a new column cannot join the open file
    sink.close()
    names = [pq.read_schema(p).names for p in sink.published]
    assert len(names) == 3 and "sentence_attention" not in names[1] and "sentence_attention" in names[2]
    assert sorted(p.name for p in sink.published) == [p.name for p in sink.published]  # names sort by time, seq


def test_parquet_recovers_a_crashed_writers_journal(tmp_path: Path) -> None:
    out = tmp_path / "out"
    live = ParquetSink(out)
    live.write(scored(4, start=100))
    live.flush()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.runtime.test_sinks import scored
        from streamsent.runtime.sinks import ParquetSink
        sink = ParquetSink({str(out)!r})
        sink.write(scored(6))
        sink.flush()
        sink.write(scored(3, start=6))  # never flushed
        os._exit(0)  # a crash: no close, no roll
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert parquet_files(out) == [] and len([n for n in hidden(out) if n.endswith(".arrows")]) == 2

    again = ParquetSink(out)  # recovers the dead writer's journal, leaves the live one (locked) alone
    assert len(again.recovered) == 1
    ids = pq.read_table(again.recovered[0])["doc_id"].to_pylist()
    assert ids[:6] == [f"d{i}" for i in range(6)] and set(ids) <= {f"d{i}" for i in range(9)}
    assert len([n for n in hidden(out) if n.endswith(".arrows")]) == 1
    again.close()
    live.close()
    assert hidden(out) == [] and len(parquet_files(out)) == 2
    assert pq.read_table(live.published[0])["doc_id"].to_pylist() == ["d100", "d101", "d102", "d103"]


# ---------------------------------------------------------------------------------------------------------------
# Dead letters (files)
# ---------------------------------------------------------------------------------------------------------------
def test_jsonl_dead_letters_utf8_binary_truncated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dlq.jsonl"
    sink = build_dead_letter_sink(JsonlDeadLetterConfig(path=str(path), max_payload_bytes=16), bootstrap=None)
    assert isinstance(sink, JsonlDeadLetterSink)
    sink.write([letter('{"doc_id": "é"'.encode(), topic="reviews", partition=2, offset=41),
                letter(b"\xff\xfe\x00binary", key=None, file="in.jsonl", row=3),
                letter(b"x" * 40)])
    sink.flush()
    utf8, binary, long = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert utf8["payload"] == '{"doc_id": "é"' and utf8["payload_encoding"] == "utf-8"
    assert (utf8["topic"], utf8["partition"], utf8["offset"], utf8["key"]) == ("reviews", 2, 41, "conv-1")
    assert utf8["reason"] == "invalid_json" and utf8["detail"] and isinstance(utf8["dead_lettered_at"], float)
    assert binary["payload_encoding"] == "base64" and base64.b64decode(binary["payload"]) == b"\xff\xfe\x00binary"
    assert (binary["file"], binary["row"], binary["key"]) == ("in.jsonl", 3, None)
    assert long["payload"] == "x" * 16 and long["payload_truncated"] is True and utf8["payload_truncated"] is False
    sink.close()

    stderr_sink = JsonlDeadLetterSink("-")
    stderr_sink.write([letter(None, parsed={"doc_id": 3, "text": ""})])  # a file row: the payload is its JSON
    stderr_sink.close()
    env = json.loads(capsys.readouterr().err)
    assert json.loads(env["payload"]) == {"doc_id": 3, "text": ""}


def test_memory_sinks_keep_rows_and_fail_on_demand() -> None:
    sink = MemorySink()
    sink.write(scored(2))
    sink.flush()
    sink.write(scored(3, start=2))
    assert sink.rows == 5 and sink.flushed_rows == 2 and sink.table().num_rows == 5
    sink.fail_flush = OSError("disk gone")
    with pytest.raises(SinkError, match="disk gone.*written again"):
        sink.flush()
    assert sink.rows == 2 and [t.num_rows for t in sink.lost] == [3]  # forgotten, as a real sink does
    sink.fail_flush = None
    sink.write(scored(3, start=2))  # the pipeline writes the batch again
    sink.close()
    assert sink.flushed_rows == 5 and sink.closed
    letters = MemoryDeadLetterSink()
    letters.write([letter(b"{")])
    letters.close()
    assert letters.flushed == 1 and letters.closed


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_jsonl_flush_raises_on_a_full_disk() -> None:
    sink = JsonlSink("/dev/full", LABELS)
    sink.write(scored(2))
    with pytest.raises(SinkError, match="No space left"):
        sink.flush()
    sink.write(scored(2))  # usable again: a new file object; still no room
    with pytest.raises(SinkError, match="No space left"):
        sink.flush()
    sink.close()  # nothing written since the failure: nothing to lose


def test_parquet_failed_roll_loses_nothing(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, rows_per_file=5)
    sink.write(scored(3))
    sink.flush()
    (journal,) = hidden(tmp_path)
    blocker = tmp_path / f"{journal.removesuffix('.arrows')}.parquet.tmp"  # the roll's temporary name, taken
    blocker.mkdir()
    with pytest.raises(SinkError, match="write failed"):
        sink.write(scored(2, start=3))  # the 5th row rolls the file, and publishing it fails
    blocker.rmdir()
    sink.write(scored(2, start=3))  # written again, as the pipeline does after a failure
    sink.close()  # publishes the new file, and the failed one from its journal
    assert hidden(tmp_path) == [] and len(sink.recovered) == 1
    ids = [i for p in parquet_files(tmp_path) for i in pq.read_table(p)["doc_id"].to_pylist()]
    assert sorted(set(ids)) == [f"d{i}" for i in range(5)]  # every row, d3/d4 possibly twice (at-least-once)


# ---------------------------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------------------------
def test_kafka_sink_round_trip(broker: BrokerUnderTest, fresh_topic, kafka_client: str) -> None:
    topic = fresh_topic(partitions=3)
    cfg = KafkaSinkConfig(bootstrap=("embedded",), topic=topic, compression="gzip", linger_ms=2, client=kafka_client)
    sink = build_sink(cfg, bootstrap=broker.bootstrap, labels=LABELS)
    assert isinstance(sink, KafkaSink)
    sink.write(scored(20))
    sink.write(scored(15, start=20, extra={"text": "ünïcode", "label": "gold"}))
    sink.flush()
    sink.close()
    got = consume(broker.bootstrap, topic, 3, 35)
    assert len(got) == 35
    values = [json.loads(m.value.decode("utf-8")) for m in got]
    assert sorted(m.key.decode() for m in got) == sorted(f"d{i}" for i in range(35))
    assert all(m.key.decode() == v["doc_id"] for m, v in zip(got, values, strict=True))
    by_id = {v["doc_id"]: v for v in values}
    assert by_id["d34"]["text"] == "ünïcode" and by_id["d34"]["input_label"] == "gold"
    assert by_id["d3"] == next(row_objects(scored(1, start=3), LABELS))
    # both clients put a key on the partition Java's (murmur2) partitioner picks
    from kafka.partitioner.default import murmur2

    assert all(m.partition == (murmur2(m.key) & 0x7FFFFFFF) % 3 for m in got)


def test_kafka_dead_letter_round_trip(broker: BrokerUnderTest, fresh_topic, kafka_client: str) -> None:
    topic = fresh_topic()
    cfg = KafkaDeadLetterConfig(bootstrap=(broker.bootstrap,), topic=topic, max_payload_bytes=8, client=kafka_client)
    sink = build_dead_letter_sink(cfg, bootstrap=None)
    assert isinstance(sink, KafkaDeadLetterSink)
    sink.write([letter(b"not json at all", topic="reviews", partition=0, offset=7),
                letter(b"\x80\x81", key=None)])
    sink.close()
    got = sorted(consume(broker.bootstrap, topic, 1, 2), key=lambda m: m.offset)
    assert [m.key for m in got] == [b"conv-1", None]
    text, binary = [json.loads(m.value) for m in got]
    assert text["payload"] == "not json" and text["payload_truncated"] is True and text["offset"] == 7
    assert base64.b64decode(binary["payload"]) == b"\x80\x81" and binary["payload_encoding"] == "base64"


def test_kafka_dead_letter_escape_heavy_payload_falls_back_to_base64(broker: BrokerUnderTest, fresh_topic,
                                                                     kafka_client: str) -> None:
    topic = fresh_topic()
    # 600 kB of NUL bytes is valid UTF-8 but 6x larger as JSON escapes: over the 1.2 MB max_request_size
    cfg = KafkaDeadLetterConfig(bootstrap=(broker.bootstrap,), topic=topic, max_payload_bytes=600_000,
                                client=kafka_client)
    sink = KafkaDeadLetterSink(cfg)
    sink.write([letter(b"\x00" * 600_000)])
    sink.close()
    (msg,) = consume(broker.bootstrap, topic, 1, 1)
    env = json.loads(msg.value)
    assert env["payload_encoding"] == "base64" and base64.b64decode(env["payload"]) == b"\x00" * 600_000


FAST_FAILURE = {"kafka-python": {"delivery_timeout_ms": 2000, "request_timeout_ms": 1000, "max_block_ms": 2000,
                                  "reconnect_backoff_max_ms": 200, "bootstrap_timeout_ms": 1000},
                "confluent": {"message.timeout.ms": 2000, "socket.timeout.ms": 1000, "reconnect.backoff.max.ms": 200}}


def test_kafka_flush_raises_when_the_broker_is_gone(kafka_client: str) -> None:
    require_backend("tansu")
    with EmbeddedBroker("tansu", stop_timeout_s=0.5) as own:  # gone at once, not after a graceful drain
        own.create_topics("scores")
        sink = KafkaSink(KafkaSinkConfig(bootstrap=(own.bootstrap,), topic="scores", linger_ms=0, client=kafka_client),
                         labels=LABELS, producer_overrides=FAST_FAILURE[kafka_client], flush_timeout_s=15)
        sink.write(scored(5))
        sink.flush()  # acknowledged while the broker is up
        own.stop()
        sink.write(scored(5, start=5))
        began = time.monotonic()
        with pytest.raises(SinkError, match="5 (of 5 )?sends failed"):
            sink.flush()
        assert time.monotonic() - began < 14
        if kafka_client == "kafka-python":
            with pytest.raises(SinkError, match="cannot connect"):  # a new producer needs a broker
                sink.write(scored(5, start=5))
        else:  # librdkafka queues and reconnects by itself: the next flush fails the same way
            sink.write(scored(5, start=5))
            with pytest.raises(SinkError, match="5 sends failed"):
                sink.flush()
        sink.close()  # nothing pending: the failed rows were handed back to the caller
        with pytest.raises(SinkError, match="closed"):
            sink.write(scored(1))


def test_kafka_sink_rides_out_a_broker_restart(kafka_client: str) -> None:
    require_backend("tansu")
    with EmbeddedBroker("tansu", stop_timeout_s=0.5) as own:
        own.create_topics("scores")
        # kafka-python's default idempotent producer is never answered after a Tansu restart: the sink must cope
        sink = KafkaSink(KafkaSinkConfig(bootstrap=(own.bootstrap,), topic="scores", linger_ms=0, client=kafka_client),
                         labels=LABELS, producer_overrides=FAST_FAILURE[kafka_client], flush_timeout_s=15)
        sink.write(scored(3))
        sink.flush()
        own.restart()  # memory only: it comes back empty, on the same port
        own.create_topics("scores")  # one partition (an auto-created topic may get more)
        failures = 0
        for _ in range(5):  # what the pipeline does: write the batch again until a flush succeeds
            try:
                sink.write(scored(4, start=3))
                sink.flush()
                break
            except SinkError:
                failures += 1
        else:
            pytest.fail("the sink did not recover after the broker restart")
        sink.close()
        got = consume(own.bootstrap, "scores", 1, 4)
        assert {m.key for m in got} == {b"d3", b"d4", b"d5", b"d6"} and failures <= 2
