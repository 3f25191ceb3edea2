"""Sources against real components: a Kafka-protocol broker (the `broker` fixture) and real files in tmp_path.

Kafka tests run once per broker backend. Consumer groups use fast settings: a Tansu join takes half the session
timeout, noida rejects sessions under 6 s (and joins fast), so each backend gets its own.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

from streamsent.errors import ConfigError
from streamsent.runtime.config import FileSourceConfig, KafkaSourceConfig
from streamsent.runtime.records import DeadLetter, Doc, Record, decode_record
from streamsent.runtime.sources import (
    ArrowSource,
    CommitError,
    JsonlSource,
    KafkaSource,
    OffsetOrderError,
    ParquetSource,
    Source,
    build_source,
)
from streamsent.runtime.sources.kafka import find_undecodable

from .helpers import BrokerUnderTest

# Tansu: a join takes session_timeout_ms / 2; noida: sessions >= 6000 ms, joins in ~0.3 s
_GROUP = {"tansu": {"session_timeout_ms": 2000, "heartbeat_interval_ms": 400},
          "default": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}}


def _kafka_cfg(broker: BrokerUnderTest, group_id: str, client: str = "kafka-python", **kw: Any) -> KafkaSourceConfig:
    group = _GROUP.get(broker.backend, _GROUP["default"])
    return KafkaSourceConfig(bootstrap=(broker.bootstrap,), group_id=group_id, max_poll_interval_ms=10_000,
                             client=client, **{**group, **kw})


def _produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes, bytes | None]]) -> None:
    """(partition, value, key) in order; not idempotent (a restarted Tansu never answers idempotent producers)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    try:
        for partition, value, key in messages:
            producer.send(topic, value=value, key=key, partition=partition).get(timeout=10)
    finally:
        producer.close(timeout=5)


def _bad_batch(values: list[bytes], codec: int) -> bytes:
    """A valid v2 record batch whose attributes claim compression `codec` (its records are not compressed)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    buf = bytearray(builder.build())
    at = DefaultRecordBatch.ATTRIBUTES_OFFSET
    struct.pack_into(">h", buf, at, (struct.unpack_from(">h", buf, at)[0] & ~0x07) | codec)
    struct.pack_into(">I", buf, DefaultRecordBatch.CRC_OFFSET, calc_crc32c(memoryview(buf)[at:]))
    return bytes(buf)


def _produce_raw(bootstrap: str, topic: str, partition: int, records: bytes) -> int:
    """A ProduceRequest (v3) carrying the given record-batch bytes, as a producer using that codec would send it;
    returns the broker's error code (0: stored)."""
    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    body = (struct.pack(">hhi", 0, 3, 1) + string("streamsent-test") + struct.pack(">hhi", -1, 1, 10_000)
            + struct.pack(">i", 1) + string(topic) + struct.pack(">iii", 1, partition, len(records)) + records)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", sock.recv(4))[0]
        answer = b""
        while len(answer) < size:
            answer += sock.recv(size - len(answer))
    # correlation id, [topic [partition error_code base_offset ...]]: one topic, one partition
    name_len = struct.unpack_from(">h", answer, 8)[0]
    return struct.unpack_from(">h", answer, 10 + name_len + 8)[0]


def _poll_until(source: Source, done: Callable[[list[Record]], bool], timeout_s: float = 30.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while not done(got):
        assert time.monotonic() < deadline, f"timed out with {len(got)} records: {got[-3:]}"
        got.extend(source.poll(0.2))
    return got


def _coords(records: list[Record]) -> list[tuple[int | None, int | None]]:
    return sorted((r.partition, r.offset) for r in records)


# ---------------------------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------------------------
def test_kafka_poll_coordinates_pattern_and_lag(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                                fast_group: dict[str, Any], kafka_client: str) -> None:
    topic = fresh_topic(3)
    scored = broker.create_topic(f"{topic}-scored", 1)  # the pattern must not read this (prefix match)
    _produce(broker.bootstrap, topic, [(p, f"v{p}-{i}".encode(), f"k{p}".encode()) for p in range(3) for i in range(4)])
    _produce(broker.bootstrap, scored, [(0, b"not mine", None)])
    cfg = _kafka_cfg(broker, fast_group["group_id"], kafka_client, topics=(), pattern=re.escape(topic),
                     max_poll_records=3)
    source = build_source(cfg)
    try:
        t0 = time.time()
        first = _poll_until(source, lambda got: bool(got))
        assert len(first) <= 3
        consumed = {p: sum(r.partition == p for r in first) for p in range(3)}
        lag = source.lag()
        assert lag, "no partition has a known high watermark after a fetch"
        assert lag == {(topic, p): 4 - consumed[p] for p in range(3) if (topic, p) in lag}
        rest = _poll_until(source, lambda got: len(got) + len(first) >= 12)
        time.sleep(0.3)
        rest += source.poll(0.5)
        records = first + rest
        assert _coords(records) == [(p, i) for p in range(3) for i in range(4)]
        for r in records:
            assert r.topic == topic and r.value == f"v{r.partition}-{r.offset}".encode()
            assert r.key == f"k{r.partition}".encode() and t0 - 1 <= r.received <= time.time()
            assert r.error is None and r.file is None
        for p in range(3):  # offset order within a partition
            offsets = [r.offset for r in records if r.partition == p]
            assert offsets == sorted(offsets)
        assert source.assignment() == [(topic, 0), (topic, 1), (topic, 2)]
        assert source.lag() == {(topic, p): 0 for p in range(3)}
        assert not source.exhausted and isinstance(source, Source)
    finally:
        source.close()


def test_kafka_commit_resume_and_order_checks(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                              fast_group: dict[str, Any], kafka_client: str) -> None:
    topic = fresh_topic(2)
    _produce(broker.bootstrap, topic, [(p, f"{p}-{i}".encode(), None) for p in range(2) for i in range(5)])
    cfg = _kafka_cfg(broker, fast_group["group_id"], kafka_client, topics=(topic,))
    first = build_source(cfg)
    try:
        assert len(_poll_until(first, lambda got: len(got) >= 10)) == 10
        first.commit({(topic, 0): 2})
        first.commit({(topic, 0): 3, (topic, 1): 5})
        with pytest.raises(OffsetOrderError, match=r"backwards .*\[0\]: 3 -> 2"):
            first.commit({(topic, 0): 2, (topic, 1): 5})
        with pytest.raises(OffsetOrderError, match="ints >= 0"):
            first.commit({(topic, 1): -1})
        with pytest.raises(CommitError, match="not assigned") as info:
            first.commit({(topic, 7): 1})
        assert not info.value.retriable
    finally:
        first.close()
    second = build_source(cfg)  # same group: resumes after the committed offsets
    try:
        resumed = _poll_until(second, lambda got: len(got) >= 2)
        time.sleep(0.3)
        resumed += second.poll(0.5)
        assert _coords(resumed) == [(0, 3), (0, 4)]
    finally:
        second.close()


# How a commit refused after a rebalance reads, in every wording the two clients (and the sources) give it: the
# generation moved on (ILLEGAL_GENERATION), the member was dropped (UNKNOWN_MEMBER_ID), a rebalance is under way
# (REBALANCE_IN_PROGRESS; kafka-python also "undergoing a rebalance"), kafka-python's CommitFailedError when the
# member has no generation any more ("not part of an active group", "already rebalanced"), librdkafka's local
# _ASSIGNMENT_LOST and _STATE (the group is not in a state to commit), and the sources' own check that a partition
# is still assigned ("not assigned to this consumer").
_REFUSED_AFTER_REBALANCE = re.compile(
    r"illegal.?generation|generation id is not valid|unknown.?member|rebalance.?in.?progress|undergoing a rebalance"
    r"|not part of an active group|already rebalanced|assignment.?lost|erroneous state"
    r"|not assigned to this consumer", re.I)


def _refused_after_rebalance(exc: CommitError) -> bool:
    """A commit the group refused because it rebalanced: a later commit of the same offsets cannot succeed, so
    the source says not retriable. One exception: kafka-python raises RebalanceInProgressError itself (no request
    sent) while it is between JoinGroup and SyncGroup, and the kafka-python source marks that one retriable."""
    import kafka.errors

    if not _REFUSED_AFTER_REBALANCE.search(str(exc)):
        return False
    return not exc.retriable or isinstance(exc.__cause__, kafka.errors.RebalanceInProgressError)


def test_kafka_on_revoke_runs_before_partitions_move(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                                     fast_group: dict[str, Any], kafka_client: str) -> None:
    """`on_revoke` runs, and finishes (a slow flush and a blocking commit), before another member gets the
    partitions; a commit that lands there is where the new owner starts, one the broker refuses is read again.

    Nothing here depends on how many rebalance rounds the group goes through (a busy machine can see an extra
    one: a heartbeat that misses a join leaves a member out of a generation): every commit is checked for what
    must hold of it, and the waits are for the group to settle and for the records owed, not for a set time.
    """
    topic = fresh_topic(2)
    parts_all = [(topic, 0), (topic, 1)]
    _produce(broker.bootstrap, topic, [(p, f"{p}-{i}".encode(), None) for p in range(2) for i in range(3)])
    cfg = _kafka_cfg(broker, fast_group["group_id"], kafka_client, topics=(topic,))
    events: list[tuple[str, list[tuple[str, int]]]] = []
    lock = threading.Lock()

    def record(name: str) -> Callable[[list[tuple[str, int]]], None]:
        def handler(parts: list[tuple[str, int]]) -> None:
            with lock:
                events.append((name, parts))
        return handler

    a = build_source(cfg)
    done: dict[tuple[str, int], int] = {}
    commits: list[tuple[dict[tuple[str, int], int], CommitError | None]] = []  # (offsets, refusal or None)

    def a_revoke(parts: list[tuple[str, int]]) -> None:
        record("a-revoke-start")(parts)
        time.sleep(0.3)  # a slow flush: the other member must still wait for it
        offsets = {tp: done[tp] for tp in parts if tp in done}
        try:  # a blocking commit from inside the rebalance, as the pipeline does
            a.commit(offsets)
            commits.append((offsets, None))
        except CommitError as exc:
            commits.append((offsets, exc))
        record("a-revoke-end")(parts)

    # per member: where the group's commits stood when it was last assigned partitions, i.e. where its positions
    # start from (a commit of a partition that moved lands before the new owner's assignment, or not at all)
    floors: dict[str, dict[tuple[str, int], int]] = {}

    def assigned(member: str) -> Callable[[list[tuple[str, int]]], None]:
        def handler(parts: list[tuple[str, int]]) -> None:
            floors[member] = landed_now()
            record(f"{member}-assign")(parts)
        return handler

    a.set_rebalance_handlers(a_revoke, assigned("a"))
    b: Source | None = None
    b_records: list[Record] = []
    b_floors: list[dict[tuple[str, int], int]] = []  # per record of b: floors["b"] when it was read
    b_held: list[tuple[str, int]] = []  # b's assignment, as b's own thread last saw it
    stop = threading.Event()
    b_errors: list[BaseException] = []

    def run_b() -> None:
        nonlocal b, b_held
        try:
            b = build_source(cfg)
            b.set_rebalance_handlers(record("b-revoke"), assigned("b"))
            while not stop.is_set():
                got = b.poll(0.1)
                with lock:
                    b_floors.extend(floors["b"] for _ in got)
                    b_records.extend(got)
                b_held = b.assignment()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            b_errors.append(exc)

    def landed_now() -> dict[tuple[str, int], int]:
        """Where the group's committed offsets stand: the last of a's commits that the broker took, per partition
        (0: none took; the group starts from the earliest offset)."""
        out = dict.fromkeys(parts_all, 0)
        for offsets, refused in list(commits):
            if refused is None:
                out.update(offsets)
        return out

    def poll_a() -> None:
        got = a.poll(0.1)
        a_floors.extend(floors["a"] for _ in got)
        a_again.extend(got)

    thread = threading.Thread(target=run_b)
    try:
        for r in _poll_until(a, lambda got: len(got) >= 6):
            done[(r.topic, r.partition)] = max(done.get((r.topic, r.partition), 0), r.offset + 1)
        assert a.assignment() == parts_all
        thread.start()
        deadline = time.monotonic() + 30
        a_again: list[Record] = []  # read again by a after the rebalance: only past what its commits landed
        a_floors: list[dict[tuple[str, int], int]] = []
        while not any(name == "b-assign" and parts for name, parts in events):
            assert time.monotonic() < deadline and not b_errors, (events, b_errors)
            poll_a()  # everything was read; a only takes part in the rebalance
        names = [name for name, _ in events]
        first_b = names.index("b-assign")
        assert names.index("a-revoke-start") < names.index("a-revoke-end") < first_b
        assert next(parts for name, parts in events if name == "a-revoke-start") == parts_all

        def settled() -> bool:
            """One partition each, and b has read everything of its partition that a's commits did not cover."""
            held_a, held_b = a.assignment(), list(b_held)
            if len(held_a) != 1 or len(held_b) != 1 or held_a == held_b:
                return False
            moved = held_b[0]
            owed = {(moved[1], i) for i in range(landed_now()[moved], 3)}
            return owed <= set(_coords(b_records))

        deadline = time.monotonic() + 30
        while not settled():  # a finishes its side of the rebalance in its own poll; b catches up
            assert time.monotonic() < deadline and not b_errors, (a.assignment(), b_held, events, commits,
                                                                   _coords(b_records), b_errors)
            poll_a()
        assert sorted(a.assignment() + b_held) == parts_all
        assert commits, events
        for offsets, refused in commits:  # each commit landed, or was refused as the rebalance's doing
            assert offsets == {tp: 3 for tp in parts_all if tp in offsets}, commits
            assert refused is None or _refused_after_rebalance(refused), (refused, getattr(refused, "retriable", None))
        if broker.backend == "noida":  # noida bumps the generation when a member joins: the commit is refused
            assert commits[0][1] is not None, commits
        elif broker.backend == "tansu":  # Tansu takes a commit of the current generation during the rebalance
            assert commits[0][1] is None, commits
        # nothing a commit covered is read again, by either member (Tansu: nothing at all is); what none covered b
        # reads (waited for above)
        with lock:
            read_again = list(zip(b_records + a_again, b_floors + a_floors, strict=True))
        for r, floor in read_again:
            assert r.offset >= floor[(r.topic, r.partition)], (r, commits)
        assert {(r.topic, r.partition) for r in b_records} <= {p for name, parts in events if name == "b-assign"
                                                              for p in parts}
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(30)
        a.close()
        if b is not None:
            b.close()
    assert not b_errors


def test_kafka_handler_error_is_raised_from_poll(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                                 fast_group: dict[str, Any], kafka_client: str) -> None:
    class StateLost(Exception):
        pass

    def on_assign(parts: list[tuple[str, int]]) -> None:
        raise StateLost(f"cannot restore state for {parts}")

    topic = fresh_topic(1)
    source = build_source(_kafka_cfg(broker, fast_group["group_id"], kafka_client, topics=(topic,)))
    source.set_rebalance_handlers(lambda parts: None, on_assign)
    try:
        with pytest.raises(StateLost, match=re.escape(f"[('{topic}', 0)]")):  # the handler's own exception
            _poll_until(source, lambda got: False, timeout_s=20)
    finally:
        source.close()


class _ProbeOnlyKafkaSource(KafkaSource):
    """Blames partitions with the public-API probe only, as when kafka-python's fetcher internals have moved."""

    def _blamed_by_fetcher(self) -> None:
        return None


@pytest.mark.parametrize(("codec", "source_type"), [(4, KafkaSource), (7, KafkaSource), (4, _ProbeOnlyKafkaSource)],
                         ids=["zstd-without-library", "unknown-codec", "zstd-blamed-by-probe"])
def test_kafka_unreadable_batch_becomes_error_records(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                                      fast_group: dict[str, Any], codec: int,
                                                      source_type: type[KafkaSource]) -> None:
    import kafka.codec

    if codec == 4 and kafka.codec.has_zstd():
        pytest.skip("zstandard is installed here: codec 4 is readable")
    if codec == 7 and broker.backend == "tansu":
        pytest.skip("Tansu acknowledges a batch with an unknown codec id but never serves it (its offsets are "
                    "skipped, no error)")
    topic = fresh_topic(2)
    _produce(broker.bootstrap, topic, [(0, f"good{i}".encode(), None) for i in range(3)] + [(1, b"other", None)])
    refused = _produce_raw(broker.bootstrap, topic, 0, _bad_batch([b"x", b"y", b"z"], codec))
    if refused:
        pytest.skip(f"{broker.backend} validates record batches and refused this one (error {refused})")
    _produce(broker.bootstrap, topic, [(0, f"good{i}".encode(), None) for i in range(6, 8)])
    cfg = _kafka_cfg(broker, fast_group["group_id"], topics=(topic,))

    probe = cfg.client_kwargs()  # the public-API fallback that blames a partition
    assert find_undecodable(probe, [((topic, 1), 0), ((topic, 0), 3)]) == (topic, 0)
    assert find_undecodable(probe, [((topic, 0), 0), ((topic, 0), 6)]) is None

    source = source_type(cfg)
    try:
        records = _poll_until(source, lambda got: any(r.partition == 0 and r.offset == 7 for r in got)
                              and any(r.partition == 1 for r in got))
        assert _coords(records) == [(0, i) for i in range(8)] + [(1, 0)]
        bad = sorted(r.offset for r in records if r.error is not None)
        assert bad == [3, 4, 5]
        for r in records:
            if r.error is not None:
                assert r.value is None and r.topic == topic and r.partition == 0
                assert "kafka-python cannot read the message" in r.error and "codec" in r.error.lower()
                letter = decode_record(r)
                assert isinstance(letter, DeadLetter) and letter.reason == "undecodable"
            else:
                assert r.value in (b"other", f"good{r.offset}".encode())
        source.commit({(topic, 0): 8, (topic, 1): 1})  # the pipeline commits past the dead letters
        assert source.poll(0.3) == []
    finally:
        source.close()


@pytest.mark.parametrize("codec", [4, 7], ids=["zstd-but-not-zstd", "unknown-codec"])
def test_confluent_unreadable_batch_becomes_error_records(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                                          fast_group: dict[str, Any], codec: int) -> None:
    if codec == 7 and broker.backend == "tansu":
        pytest.skip("Tansu acknowledges a batch with an unknown codec id but never serves it (its offsets are "
                    "skipped, no error)")
    topic = fresh_topic(2)
    _produce(broker.bootstrap, topic, [(0, f"good{i}".encode(), None) for i in range(3)] + [(1, b"other", None)])
    refused = _produce_raw(broker.bootstrap, topic, 0, _bad_batch([b"x", b"y", b"z"], codec))
    if refused:
        pytest.skip(f"{broker.backend} validates record batches and refused this one (error {refused})")
    _produce(broker.bootstrap, topic, [(0, f"good{i}".encode(), None) for i in range(6, 8)])
    source = build_source(_kafka_cfg(broker, fast_group["group_id"], "confluent", topics=(topic,)))
    try:
        records = _poll_until(source, lambda got: any(r.partition == 0 and r.offset == 7 for r in got)
                              and any(r.partition == 1 for r in got))
        good = sorted((r.partition, r.offset) for r in records if r.error is None)
        assert good == [(0, 0), (0, 1), (0, 2), (0, 6), (0, 7), (1, 0)]
        bad = [r for r in records if r.error is not None]
        assert sorted(r.offset for r in bad) == [3, 4, 5]  # one dead letter per offset of the bad batch
        for r in bad:
            assert r.value is None and r.topic == topic and r.partition == 0
            assert "librdkafka cannot read the message" in r.error
            letter = decode_record(r)
            assert isinstance(letter, DeadLetter) and letter.reason == "undecodable"
        source.commit({(topic, 0): 8, (topic, 1): 1})  # the pipeline commits past the dead letters
        assert source.poll(0.3) == []
    finally:
        source.close()


def test_kafka_survives_broker_restart(broker: BrokerUnderTest, fresh_topic: Callable[..., str],
                                       fast_group: dict[str, Any], kafka_client: str) -> None:
    if broker.embedded is None or not broker.embedded.persistent:
        pytest.skip(f"{broker.backend}: needs an embedded broker that keeps its data across a restart (noida)")
    topic = fresh_topic(1)
    _produce(broker.bootstrap, topic, [(0, f"before{i}".encode(), None) for i in range(3)])
    source = build_source(_kafka_cfg(broker, fast_group["group_id"], kafka_client, topics=(topic,)))
    events: list[str] = []
    source.set_rebalance_handlers(lambda parts: events.append("revoke"), lambda parts: events.append("assign"),
                                  on_lost=lambda parts: events.append("lost"))
    try:
        assert len(_poll_until(source, lambda got: len(got) >= 3)) == 3
        source.commit({(topic, 0): 3})
        broker.embedded.restart()
        assert source.poll(0.5) == []  # the broker just came back: no error escapes, nothing new yet
        _produce(broker.bootstrap, topic, [(0, f"after{i}".encode(), None) for i in range(3)])
        after = _poll_until(source, lambda got: len(got) >= 3)
        assert [(r.offset, r.value) for r in after] == [(3 + i, f"after{i}".encode()) for i in range(3)]
        try:
            source.commit({(topic, 0): 6})
        except CommitError as exc:
            # noida forgets the group's generation on restart: the commit is refused, kafka-python rejoins on the
            # next poll (on_lost, then on_assign) and reads again from the last commit (at-least-once)
            assert not exc.retriable and re.search("illegal.?generation", str(exc), re.I)
            again = _poll_until(source, lambda got: len(got) >= 3)
            assert [r.offset for r in again] == [3, 4, 5] and events[-2:] == ["lost", "assign"]
            source.commit({(topic, 0): 6})
    finally:
        source.close()
    check = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=fast_group["group_id"])
    try:
        assert check.committed(TopicPartition(topic, 0)) == 6
    finally:
        check.close()


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def _rows(n: int, prefix: str) -> list[dict[str, Any]]:
    """Even rows carry text, odd rows token ids (the other column null)."""
    return [{"doc_id": f"{prefix}{i}", "text": None if i % 2 else f"review {prefix}{i}",
             "tokens": [[i, i + 1], [7]] if i % 2 else None, "key": f"conv{i % 2}", "stars": i} for i in range(n)]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("tokens", pa.list_(pa.list_(pa.int32()))),
                        ("key", pa.string()), ("stars", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _drain(source: Source, batch_rows: int) -> list[Record]:
    out: list[Record] = []
    for _ in range(1000):
        chunk = source.poll(0.1)
        assert len(chunk) <= batch_rows
        out.extend(chunk)
        if source.exhausted:
            assert source.poll(0.1) == []
            return out
    raise AssertionError("the source never became exhausted")


def test_parquet_directory_and_glob_by_record_batches(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    files = {"a.parquet": _rows(7, "a"), "b.parquet": [], "c.parquet": _rows(4, "c")}
    for name, rows in files.items():
        pq.write_table(_table(rows), data / name, row_group_size=3)
    (data / "zz.parquet").write_bytes(b"not parquet at all")  # a bad file: one error record, the rest still read

    source = build_source(FileSourceConfig(type="parquet", path=str(data), batch_rows=3))
    assert isinstance(source, ParquetSource)
    records = _drain(source, 3)
    good = [r for r in records if r.error is None]
    assert [(Path(r.file or "").name, r.row) for r in good] == \
        [("a.parquet", i) for i in range(7)] + [("c.parquet", i) for i in range(4)]
    assert [r.parsed for r in good] == files["a.parquet"] + files["c.parquet"]
    assert all(r.value is None and r.topic is None for r in good)
    [bad] = [r for r in records if r.error is not None]
    assert Path(bad.file or "").name == "zz.parquet" and bad.row == 0 and "Parquet" in bad.error
    doc, doc1 = decode_record(good[0]), decode_record(good[1])
    assert isinstance(doc, Doc) and (doc.doc_id, doc.text, doc.key, doc.extra) == ("a0", "review a0", "conv0",
                                                                                    {"stars": 0})
    assert isinstance(doc1, Doc) and (doc1.tokens, doc1.key) == ([[1, 2], [7]], "conv1")
    assert source.assignment() == [] and source.lag() == {}
    source.close()

    globbed = build_source(FileSourceConfig(type="parquet", path=str(data / "[ab].parquet"), batch_rows=5))
    assert [(Path(r.file or "").name, r.row) for r in _drain(globbed, 5)] == [("a.parquet", i) for i in range(7)]
    with pytest.raises(ConfigError, match="matches no file"):
        ParquetSource(FileSourceConfig(type="parquet", path=str(data / "*.nothing")))


def test_arrow_ipc_file_and_stream(tmp_path: Path) -> None:
    table = _table(_rows(10, "r"))
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=4)  # writer batches of 4, read back in chunks of 3
    with pa.OSFile(str(tmp_path / "b.arrows"), "wb") as sink, pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 5), max_chunksize=4)
    (tmp_path / "c.arrow").write_bytes(b"neither format")

    source = build_source(FileSourceConfig(type="arrow", path=str(tmp_path), batch_rows=3))
    assert isinstance(source, ArrowSource)
    records = _drain(source, 3)
    good = [r for r in records if r.error is None]
    assert [(Path(r.file or "").name, r.row) for r in good] == \
        [("a.arrow", i) for i in range(10)] + [("b.arrows", i) for i in range(5)]
    assert [r.parsed for r in good] == table.to_pylist() + table.slice(0, 5).to_pylist()
    [bad] = [r for r in records if r.error is not None]
    assert Path(bad.file or "").name == "c.arrow" and "Arrow IPC" in bad.error
    stream_only = ArrowSource(FileSourceConfig(type="arrow", path=str(tmp_path / "b.arrows"), batch_rows=100))
    assert [r.row for r in _drain(stream_only, 100)] == list(range(5))


def test_jsonl_keeps_bad_lines_bytes_and_line_numbers(tmp_path: Path) -> None:
    lines = [b'\xef\xbb\xbf{"doc_id": "1", "text": "fine"}\n',  # a byte-order mark is dropped
             b'{"doc_id": "2", "text": "crlf"}\r\n',
             b"{not json\n",
             b"\n",  # blank: skipped, still counted
             b'{"doc_id": "5", "text": "caf\xe9"}\n',  # Latin-1, not UTF-8
             b'{"doc_id": "6", "text": "no final newline"}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(lines))
    source = build_source(FileSourceConfig(type="jsonl", path=str(path), batch_rows=2))
    assert isinstance(source, JsonlSource)
    records = _drain(source, 2)
    assert [(r.row, r.value) for r in records] == [
        (1, b'{"doc_id": "1", "text": "fine"}'), (2, b'{"doc_id": "2", "text": "crlf"}'), (3, b"{not json"),
        (5, b'{"doc_id": "5", "text": "caf\xe9"}'), (6, b'{"doc_id": "6", "text": "no final newline"}')]
    assert all(r.file == str(path) for r in records)
    decoded = [decode_record(r) for r in records]
    assert [d.doc_id if isinstance(d, Doc) else d.reason for d in decoded] == \
        ["1", "2", "invalid_json", "invalid_utf8", "6"]
    letter = decoded[3]
    assert isinstance(letter, DeadLetter)
    assert letter.envelope(1000)["payload_encoding"] == "base64"  # the original bytes travel to the DLQ
    source.commit({("file", 0): 3})
    with pytest.raises(OffsetOrderError):
        source.commit({("file", 0): 2})
    source.close()


def test_jsonl_from_stdin_waits_without_blocking(tmp_path: Path) -> None:
    child = textwrap.dedent("""
        import json, sys, time
        from streamsent.runtime.config import FileSourceConfig
        from streamsent.runtime.sources import build_source
        source = build_source(FileSourceConfig(type="jsonl", path="-", batch_rows=10))
        polls = []
        while not source.exhausted:
            t0 = time.monotonic()
            got = source.poll(0.05)
            polls.append({"n": len(got), "s": time.monotonic() - t0,
                          "records": [[r.file, r.row, r.value.decode()] for r in got]})
        sys.stdout.write(json.dumps(polls))
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdin is not None
    proc.stdin.write(b'{"doc_id": "a"}\n{"doc_id": "b"}\n{"doc_id"')
    proc.stdin.flush()
    time.sleep(1.5)  # the child polls meanwhile: empty polls, each returning after ~its timeout
    proc.stdin.write(b': "c"}\n')
    proc.stdin.close()
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    polls = json.loads(out)
    records = [r for p in polls for r in p["records"]]
    assert records == [["<stdin>", 1, '{"doc_id": "a"}'], ["<stdin>", 2, '{"doc_id": "b"}'],
                       ["<stdin>", 3, '{"doc_id": "c"}']]
    empty = [p for p in polls if p["n"] == 0]
    assert empty and max(p["s"] for p in empty) < 1.0
