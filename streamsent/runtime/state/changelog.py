"""A compacted Kafka changelog topic per source topic, so a partition's state follows the partition on a rebalance.

The way Kafka Streams and Quix Streams do it: every change to a key's state is written to
`<group>-<topic>-state-changelog`, in the partition of the source partition the key's messages come from
(the topic has as many partitions as the source topic), with the conversation key as the message key and
`cleanup.policy=compact`, so the latest value per key survives; an evicted or expired key gets a tombstone.

The pipeline's duties (docs in the report / integration plan):
- after scoring a batch, `send(result.changes)`; `flush()` before committing that batch's offsets, so the
  changelog is never behind the committed offsets (it may be ahead: the store's re-delivery rule absorbs that);
- on assignment of a partition, `restore(store, topic, [partition])` before its first message is scored: the
  changelog partition is read from the beginning to its high-water mark, keeping the last value per key;
- on revocation, after the final flush and commit, `store.drop_partition(topic, partition)`.

End offsets: Tansu answers ListOffsets wrongly (`end_offsets()` said 1 for partitions holding 4, 2 and 4
records; see runtime/broker.py), so the restore never asks for it: it reads until the consumer's position reaches
`consumer.highwater(tp)`, which every fetch response carries (also for an empty partition). Neither embedded broker
compacts, so a restore there reads every change ever written: its time grows with the topic's length.

All kafka-python calls of the state layer live in this module.

Value layout (little-endian): version u8 = 1, messages i64, last_seen f64, offset i64, width u32, then `width`
float32 (the store's slab row). A tombstone has no value.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient

from ...errors import StateError
from .store import Entries, Removal, StateChanges, StateStore

__all__ = ["Changelog", "changelog_topic", "decode_value", "encode_value"]

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<BqdqI")
_VERSION = 1
_TOPIC_ALREADY_EXISTS = 36
_MAX_TOPIC = 249


def changelog_topic(group: str, topic: str) -> str:
    """`<group>-<topic>-state-changelog` (cut to Kafka's 249 characters from the left, keeping the suffix)."""
    name = f"{group}-{topic}-state-changelog"
    return name[-_MAX_TOPIC:]


def encode_value(messages: int, last_seen: float, offset: int, row: np.ndarray) -> bytes:
    row = np.ascontiguousarray(row, dtype="<f4")
    return _HEAD.pack(_VERSION, int(messages), float(last_seen), int(offset), row.shape[0]) + row.tobytes()


def decode_value(value: bytes) -> tuple[int, float, int, np.ndarray]:
    version, messages, last_seen, offset, width = _HEAD.unpack_from(value)
    if version != _VERSION or len(value) != _HEAD.size + 4 * width:
        raise StateError(f"changelog value of {len(value)} bytes is not a version-{_VERSION} state entry")
    return messages, last_seen, offset, np.frombuffer(value, "<f4", width, _HEAD.size).astype(np.float32)


class Changelog:
    """Writes state changes to, and restores partitions from, the changelog topics of one consumer group."""

    def __init__(self, bootstrap: str | list[str], group: str, client_kwargs: Mapping[str, Any] | None = None,
                 restore_timeout_s: float = 60.0, producer: Any = None) -> None:
        """`producer`: a KafkaProducer-like object to use instead of creating one (tests)."""
        self.bootstrap = bootstrap
        self.group = group
        self.client_kwargs = dict(client_kwargs or {})
        self.restore_timeout_s = restore_timeout_s
        self._producer: Any = producer
        self._lock = threading.Lock()  # send() and flush() may run on different threads
        self._pending: list[tuple[Any, str, int, str, bytes | None]] = []  # (future, topic, partition, key, value)
        self._retry: list[tuple[Any, str, int, str, bytes | None]] = []  # failed, to send again
        self._partitions: dict[str, int] = {}  # source topic -> partitions (changelog topics known to exist)

    # -- topics ------------------------------------------------------------------------------------------------
    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        """Create the changelog topic of each source topic (with the source's partition count), compacted.
        Existing ones are kept as they are."""
        todo = {t: n for t, n in partitions.items() if t not in self._partitions}
        if not todo:
            return
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group}-state",
                                 **self.client_kwargs)
        try:
            spec = {changelog_topic(self.group, t): {"num_partitions": n, "replication_factor": 1,
                                                     "configs": {"cleanup.policy": "compact"}}
                    for t, n in todo.items()}
            resp = admin.create_topics(spec, timeout_ms=10_000, raise_errors=False)
            for result in resp.get("topics", []):
                code = result.get("error_code", 0)
                if code and code != _TOPIC_ALREADY_EXISTS:
                    raise StateError(f"creating the state changelog topic {result.get('name')!r} failed with error "
                                     f"code {code} ({result.get('error_message')})")
            admin.wait_for_topics(list(spec), timeout_ms=10_000)
        except kafka_errors.KafkaError as exc:
            raise StateError(f"creating the state changelog topics {sorted(todo)} failed: {exc!r}") from None
        finally:
            admin.close()
        self._partitions.update(todo)

    def ensure_source_topics(self, topics: Iterable[str], timeout_s: float = 10.0) -> None:
        """`ensure_topics` for source topics whose partition count is not known here: asked of the cluster (a
        worker learns its topics from its assignment, which for a pattern subscription can be any topic)."""
        todo = sorted(set(topics) - set(self._partitions))
        if not todo:
            return
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 client_id=f"{self.group}-state", **self.client_kwargs)
        try:
            counts: dict[str, int] = {}
            deadline = time.monotonic() + timeout_s
            for t in todo:
                while not (parts := consumer.partitions_for_topic(t)):
                    if time.monotonic() > deadline:
                        raise StateError(f"the partitions of source topic {t!r} are unknown after {timeout_s:.0f} s "
                                         "of asking the cluster; cannot create its state changelog")
                    time.sleep(0.1)
                counts[t] = len(parts)
        finally:
            consumer.close(autocommit=False)
        self.ensure_topics(counts)

    def topic(self, source_topic: str) -> str:
        return changelog_topic(self.group, source_topic)

    # -- writing -----------------------------------------------------------------------------------------------
    def send(self, changes: StateChanges) -> int:
        """Queue the changes of a scored batch, in order (asynchronous; `flush` waits for them). Keys whose last
        message has no Kafka coordinate, or comes from a topic without a changelog, are not written."""
        sent = 0
        for part in changes.parts:
            if isinstance(part, Entries):
                for i, key in enumerate(part.keys):
                    topic, p = part.topics[i], int(part.partitions[i])
                    if topic in self._partitions and p >= 0:
                        value = encode_value(part.messages[i], part.last_seen[i], part.offsets[i], part.rows[i])
                        self._send(topic, p, key, value)
                        sent += 1
            else:
                for r in part:
                    if isinstance(r, Removal) and r.topic in self._partitions and r.partition >= 0:
                        self._send(r.topic, r.partition, r.key, None)
                        sent += 1
        return sent

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every change queued so far is acknowledged. If any failed, raise StateError: the offsets of
        their batches must not be committed. The failed changes are sent again by the next flush (unless a later
        change of the same key was queued meanwhile), so a later successful flush covers them."""
        with self._lock:
            newer = {item[1:4] for item in self._pending}
            for _, topic, partition, key, value in self._retry:
                if (topic, partition, key) not in newer:
                    self._send_locked(topic, partition, key, value)
            self._retry = []
            pending, self._pending = self._pending, []
        if not pending:
            return
        why: Any = None
        try:
            self._producer.flush(timeout=timeout_s)
        except kafka_errors.KafkaError as exc:
            why = exc
        failed = [i for i, item in enumerate(pending) if not item[0].succeeded()]
        if not failed:
            return
        latest = {item[1:4]: i for i, item in enumerate(pending)}
        with self._lock:
            self._retry = [pending[i] for i in failed if latest[pending[i][1:4]] == i]
        first = pending[failed[0]][0]
        why = why or (first.exception if first.is_done else "not acknowledged in time")
        raise StateError(f"{len(failed)} of {len(pending)} state changelog writes failed ({why!r}); the offsets of "
                         "their batches must not be committed (the next flush sends them again)")

    def _send(self, topic: str, partition: int, key: str, value: bytes | None) -> None:
        with self._lock:
            self._send_locked(topic, partition, key, value)

    def _send_locked(self, topic: str, partition: int, key: str, value: bytes | None) -> None:
        if self._producer is None:
            # idempotence off: after a Tansu restart an idempotent producer never gets an answer (broker.py).
            # One request in flight: a retried request must not land after a later one, or a restore (the last
            # value per key in log order) would bring back an older state than the one acknowledged
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                           enable_idempotence=False, max_in_flight_requests_per_connection=1,
                                           client_id=f"{self.group}-state", **self.client_kwargs)
        future = self._producer.send(self.topic(topic), key=key.encode("utf-8"), value=value, partition=partition)
        self._pending.append((future, topic, partition, key, value))

    # -- restoring ---------------------------------------------------------------------------------------------
    def restore(self, store: StateStore, topic: str, partitions: Iterable[int]) -> int:
        """Replace what the store holds for these source partitions by the changelog's latest values (read to the
        high-water mark). Returns the number of keys loaded (expired ones are skipped)."""
        partitions = sorted(set(partitions))
        if not partitions:
            return 0
        if topic not in self._partitions:
            raise StateError(f"no state changelog topic for source topic {topic!r} yet; call ensure_topics first")
        ctopic = self.topic(topic)
        latest: dict[tuple[int, str], bytes | None] = {}
        t0 = time.monotonic()
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 client_id=f"{self.group}-state-restore", **self.client_kwargs)
        try:
            tps = [TopicPartition(ctopic, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            left = set(tps)
            while left:
                if time.monotonic() - t0 > self.restore_timeout_s:
                    raise StateError(f"restoring state from {ctopic} partitions {partitions} took longer than "
                                     f"{self.restore_timeout_s:.0f} s")
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for r in records:
                        if r.key is not None:  # (not written by this module)
                            latest[(tp.partition, r.key.decode("utf-8"))] = r.value
                for tp in list(left):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and consumer.position(tp, timeout_ms=1000) >= highwater:
                        left.discard(tp)
        finally:
            consumer.close(autocommit=False)
        for p in partitions:
            store.drop_partition(topic, p)
        live = [(p, k, v) for (p, k), v in latest.items() if v is not None]
        n = len(live)
        rows = np.empty((n, store.layout.width), np.float32)
        messages, offsets = np.empty(n, np.int64), np.empty(n, np.int64)
        last_seen = np.empty(n, np.float64)
        for i, (_, _, v) in enumerate(live):
            messages[i], last_seen[i], offsets[i], row = decode_value(v)
            if row.shape[0] != store.layout.width:
                raise StateError(f"{ctopic}: a state entry has width {row.shape[0]}, but this model's state needs "
                                 f"{store.layout.width}; was the changelog written by another model?")
            rows[i] = row
        entries = Entries([k for _, k, _ in live], rows, messages, last_seen, [topic] * n,
                          np.array([p for p, _, _ in live], np.int32), offsets)
        loaded = store.load(entries)
        log.info("restored %d keys of %s partitions %s from %s in %.2f s (%d changes read)", loaded, topic,
                 partitions, ctopic, time.monotonic() - t0, len(latest))
        return loaded

    def close(self, timeout_s: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)
            self._producer = None
