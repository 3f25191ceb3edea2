"""A Kafka topic (or topic pattern) read by a kafka-python 3 consumer group, offsets committed by the pipeline.

Three things kafka-python 3.0.12 does that shape this module (each seen against Tansu and noida-db):

1. **Rebalance listeners run on kafka-python's IO thread**, and a blocking consumer call made there (`commit()`)
   raises `RuntimeError: Cannot block on net.run() from the IO thread itself`. The pipeline must flush and commit
   in `on_revoke`, so the listener is async: it runs the pipeline's handler on a short-lived worker thread and
   awaits it while the IO loop keeps heartbeating. The thread that called `poll()` stays blocked in it until the
   handler returns, so from the pipeline's side the handler runs synchronously inside `poll()`, before the
   partitions are given up (eager protocol: before this member's JoinGroup is sent) -- on another thread.
   An exception in a handler is re-raised, unchanged, from `poll()`.

2. **An undecodable message stalls a partition forever.** A record batch whose compression codec kafka-python
   cannot read (an unknown codec id, or zstd/snappy/lz4 without the library), or that fails its CRC check, makes
   `poll()` raise (`UnsupportedCodecError`, `CorruptRecordError`, or the codec library's own error). The position
   does not move, so the next fetch fails the same way -- and worse, the *next* `poll()` after such an error spins
   forever inside `Fetcher.fetched_records` (the failed partition's exhausted record iterator is never drained),
   holding the GIL. So on such an error this source finds the failing partition and its position (the offset of
   the first unreadable record), seeks one past it -- which also discards the stuck iterator -- and returns
   `Record(error=...)` at those coordinates (no bytes: kafka-python never hands them over). Polling on repeats
   that for every offset of the bad batch, one offset per `poll()`, so each unreadable message is dead-lettered
   with its exact offset and the pipeline commits past it. The partition is found from the fetcher's
   in-flight partition records (kafka-python internals: exact and free); where that is not available, a
   throw-away group-less "probe" consumer re-reads each assigned partition from its position and reports the one
   that fails (public API only). If neither finds it, the error is logged and polling goes on; three such errors
   in a row raise `SourceError` instead of spinning.

3. **A broker restart is survived by kafka-python itself**: it reconnects with backoff and rejoins the group.
   `poll()` then returns [] meanwhile; a retriable Kafka error that does escape kafka-python (connection,
   timeout, coordinator moving, rebalance in progress) is logged (once, then every 30 s while it lasts) and
   `poll()` returns []. Only fatal errors (authorization, configuration, a closed consumer) raise `SourceError`.
   A commit while the broker is away raises `CommitError(retriable=True)`; a later commit covers the same offsets.

Lag is `consumer.highwater(tp) - position`: the high watermark comes with every fetch response, while
`end_offsets()` (ListOffsets) answers wrong values on Tansu.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors

from ..config import KafkaSourceConfig
from ..records import Record
from .base import CommitError, Partition, RebalanceHandler, SourceError, check_forward

__all__ = ["KafkaSource", "find_undecodable"]

log = logging.getLogger(__name__)

try:  # raised by the fetcher for pre-KIP-74 brokers only; it lives in the fetcher module
    from kafka.consumer.fetcher import RecordTooLargeError as _FetchTooLarge
except ImportError:  # pragma: no cover - other kafka-python versions
    _FetchTooLarge = kafka_errors.UnsupportedCodecError

# Errors that mean "this message cannot be read", not "the cluster is unwell"
_UNREADABLE = (kafka_errors.UnsupportedCodecError, kafka_errors.CorruptRecordError, _FetchTooLarge)
# Not marked retriable by kafka-python, but the group recovers from them by rejoining
_REJOIN = (kafka_errors.RebalanceInProgressError, kafka_errors.UnknownMemberIdError,
           kafka_errors.IllegalGenerationError)
_REPORT_EVERY_S = 30.0  # while a transient error lasts, log it at most this often
_MAX_UNLOCATED = 3  # unreadable-message errors in a row whose partition could not be found, before giving up
_COMMIT_TIMEOUT_S = 30.0


def _tp_key(tp: TopicPartition) -> Partition:
    return (tp.topic, tp.partition)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, kafka_errors.KafkaError) else f"{type(exc).__name__}: {exc}"


def _unreadable(exc: BaseException) -> bool:
    """An error from reading a fetched record batch (codec, CRC, garbage), as opposed to a cluster error."""
    if isinstance(exc, _UNREADABLE):
        return True
    if isinstance(exc, kafka_errors.KafkaError):
        return "Failed to make progress reading messages" in str(exc)
    return isinstance(exc, Exception)  # zlib.error, lz4/zstd errors, struct.error, ... from decompressing


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, kafka_errors.KafkaError) and (getattr(exc, "retriable", False) or isinstance(exc, _REJOIN))


def find_undecodable(client_kwargs: Mapping[str, Any], positions: Iterable[tuple[Partition, int]],
                     timeout_s: float = 3.0) -> Partition | None:
    """The first partition whose records kafka-python cannot read from the given position, or None.

    Uses a throw-away consumer outside any group (so it does not disturb the group's assignment) that fetches
    each partition from its position until it gets a record (readable), sees the partition's end, or fails.
    """
    positions = list(positions)
    if not positions:
        return None
    probe = KafkaConsumer(**client_kwargs, group_id=None, enable_auto_commit=False, max_poll_records=1,
                          fetch_max_wait_ms=100, bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        for (topic, partition), offset in positions:
            tp = TopicPartition(topic, partition)
            probe.assign([tp])
            probe.seek(tp, offset)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    if probe.poll(timeout_ms=200):
                        break  # readable from there
                except Exception:  # noqa: BLE001 - any failure to read is what we are looking for
                    return (topic, partition)
                highwater = probe.highwater(tp)
                if highwater is not None and highwater <= offset:
                    break  # nothing to read there
    finally:
        probe.close(autocommit=False)
    return None


class _Listener(AsyncConsumerRebalanceListener):
    """Forwards kafka-python's rebalance callbacks to the source (async: see the module docstring, point 1)."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source._call_handler("revoke", revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source._call_handler("assign", assigned)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        await self._source._call_handler("lost", lost)


class KafkaSource:
    """Records from a consumer group: value and key bytes, topic, partition, offset and the time received.

    Call every method from one thread (kafka-python's consumer is not thread-safe), except `commit`, which the
    rebalance handlers may also call while that thread is inside `poll()`. `close()` leaves the group at once,
    so the other members take the partitions over without waiting for the session to time out.
    """

    def __init__(self, cfg: KafkaSourceConfig, bootstrap: str | None = None) -> None:
        self._cfg = cfg
        self._bootstrap = bootstrap
        kwargs = cfg.consumer_kwargs(bootstrap)
        try:
            self._consumer = KafkaConsumer(**kwargs)
        except kafka_errors.KafkaTimeoutError as exc:
            raise SourceError(f"cannot reach the Kafka broker at {kwargs['bootstrap_servers']} ({exc}); check "
                              "source.bootstrap and that the broker is up") from None
        except kafka_errors.KafkaError as exc:
            raise SourceError(f"cannot start a Kafka consumer for {kwargs['bootstrap_servers']}: {exc}") from exc
        net = getattr(self._consumer, "_net", None)
        self._sleep: Callable[[float], Awaitable[None]] | None = getattr(net, "sleep", None)
        if self._sleep is None:  # pragma: no cover - guards a kafka-python upgrade
            self._consumer.close(autocommit=False)
            raise SourceError("this kafka-python has no IO-loop sleep (KafkaConsumer._net.sleep); the rebalance "
                              "handlers need kafka-python 3.0.x (pip install 'kafka-python==3.0.12')")
        self._handlers: dict[str, RebalanceHandler | None] = {"revoke": None, "assign": None, "lost": None}
        self._handler_error: BaseException | None = None
        self._committed: dict[Partition, int] = {}
        self._closed = False
        self._unlocated = 0  # unreadable-message errors in a row that could not be pinned to a partition
        self._trouble_since: float | None = None  # first of a run of transient errors
        self._trouble_logged = 0.0
        listener = _Listener(self)
        if cfg.topics:
            self._consumer.subscribe(topics=list(cfg.topics), listener=listener)
        else:
            # kafka-python matches a pattern with re.match (a prefix): anchor it, as the config check and Kafka's
            # Java client do, or "reviews" would also consume "reviews-scored"
            self._consumer.subscribe(pattern=rf"(?:{cfg.pattern})\Z", listener=listener)

    # -- the Source protocol ----------------------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        return False  # a topic has no end

    def set_rebalance_handlers(self, on_revoke: RebalanceHandler, on_assign: RebalanceHandler,
                               on_lost: RebalanceHandler | None = None) -> None:
        """Called inside `poll()` with sorted (topic, partition) lists: `on_revoke` before partitions are given up
        (flush and commit there), `on_assign` after new ones arrive, `on_lost` when the group evicted this member
        (its commits would fail; drop in-flight work). Without `on_lost`, `on_revoke` is called for lost partitions,
        as kafka-python does, and a commit from it raises `CommitError(retriable=False)`."""
        self._handlers = {"revoke": on_revoke, "assign": on_assign, "lost": on_lost}

    def poll(self, timeout_s: float) -> list[Record]:
        """The records that arrived within `timeout_s` (up to `max_poll_records`), in offset order per partition."""
        if self._closed:
            raise SourceError("poll() on a closed Kafka source")
        try:
            batches = self._consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)))
        except Exception as exc:  # noqa: BLE001 - sorted into handler errors, unreadable messages, transient, fatal
            self._raise_handler_error()
            return self._on_poll_error(exc, timeout_s)
        self._raise_handler_error()
        if self._trouble_since is not None:
            log.info("kafka source recovered after %.1f s", time.monotonic() - self._trouble_since)
            self._trouble_since = None
        self._unlocated = 0
        now = time.time()
        out: list[Record] = []
        for tp, messages in batches.items():
            topic, partition = tp.topic, tp.partition
            out.extend(Record(value=m.value, key=m.key, topic=topic, partition=partition, offset=m.offset,
                              received=now, timestamp=m.timestamp / 1000 if m.timestamp and m.timestamp > 0 else None)
                       for m in messages)
        return out

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = _COMMIT_TIMEOUT_S) -> None:
        """Commit, synchronously, the next offset to read per (topic, partition).

        Raises `OffsetOrderError` if an offset is below one committed before by this source, and `CommitError` if
        a partition is not assigned to this consumer (committing it could rewind its new owner) or the broker
        refuses or does not answer within `timeout_s`.
        """
        if not offsets:
            return
        check_forward(self._committed, offsets)
        assigned = {_tp_key(tp) for tp in self._consumer.assignment()}
        foreign = sorted(set(offsets) - assigned)
        if foreign:
            raise CommitError(f"cannot commit {', '.join(f'{t}[{p}]' for t, p in foreign)}: not assigned to this "
                              "consumer (given up in a rebalance?)", retriable=False)
        request = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        try:
            self._consumer.commit(request, timeout_ms=int(timeout_s * 1000))
        except kafka_errors.KafkaError as exc:
            retriable = _transient(exc) and not isinstance(exc, kafka_errors.CommitFailedError)
            raise CommitError(f"commit of {len(request)} partition offset(s) failed: {exc}",
                              retriable=retriable) from exc
        self._committed.update(offsets)

    def assignment(self) -> list[Partition]:
        return sorted(_tp_key(tp) for tp in self._consumer.assignment())

    def lag(self) -> dict[Partition, int]:
        """Messages not yet read, per assigned partition whose high watermark is known (after its first fetch)."""
        out: dict[Partition, int] = {}
        for tp in self._consumer.assignment():
            try:
                highwater = self._consumer.highwater(tp)
                position = self._consumer.position(tp, timeout_ms=0) if highwater is not None else None
            except kafka_errors.KafkaError:  # unassigned meanwhile, or the position is being reset
                continue
            if highwater is not None and position is not None:
                out[_tp_key(tp)] = max(0, highwater - position)
        return out

    def close(self) -> None:
        """Leave the group without committing and without calling `on_revoke` (the pipeline has committed what it
        flushed before closing)."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close(autocommit=False, timeout_ms=10_000)

    # -- rebalance handlers -----------------------------------------------------------------------------------
    async def _call_handler(self, kind: str, tps: set[TopicPartition]) -> None:
        """Run the pipeline's handler on a worker thread and await it, keeping kafka-python's IO loop free."""
        parts = sorted(_tp_key(tp) for tp in tps)
        if self._closed:  # close() gives everything up without calling the pipeline back
            return
        log.info("kafka source: partitions %s %s", {"revoke": "revoked", "assign": "assigned", "lost": "lost"}[kind],
                 parts)
        handler = self._handlers[kind] or (self._handlers["revoke"] if kind == "lost" else None)
        if handler is None or (not parts and kind != "assign"):
            return
        failure: list[BaseException] = []

        def run() -> None:
            try:
                handler(parts)
            except BaseException as exc:  # noqa: BLE001 - handed back to poll()'s caller
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"streamsent-kafka-on-{kind}", daemon=True)
        worker.start()
        delay = 0.001
        while worker.is_alive():
            assert self._sleep is not None
            await self._sleep(delay)
            delay = min(0.02, delay * 2)
        if failure:
            self._handler_error = failure[0]
            raise failure[0]  # kafka-python finishes its cleanup, then raises a KafkaError from poll()

    def _raise_handler_error(self) -> None:
        if self._handler_error is not None:
            exc, self._handler_error = self._handler_error, None
            raise exc

    # -- poll errors ------------------------------------------------------------------------------------------
    def _on_poll_error(self, exc: BaseException, timeout_s: float) -> list[Record]:
        if _transient(exc):
            now = time.monotonic()
            if self._trouble_since is None:
                self._trouble_since = self._trouble_logged = now
                log.warning("kafka source: %s; retrying", _describe(exc))
            elif now - self._trouble_logged >= _REPORT_EVERY_S:
                self._trouble_logged = now
                log.warning("kafka source: still failing after %.0f s: %s", now - self._trouble_since,
                            _describe(exc))
            time.sleep(min(max(timeout_s, 0.0), 0.1))  # kafka-python may fail fast; do not spin
            return []
        if _unreadable(exc):
            record = self._skip_unreadable(exc)
            if record is not None:
                self._unlocated = 0
                return [record]
            self._unlocated += 1
            if self._unlocated >= _MAX_UNLOCATED:
                raise SourceError(f"kafka-python failed {self._unlocated} times in a row reading fetched records and "
                                  f"no assigned partition could be blamed: {_describe(exc)}") from exc
            log.error("kafka source: reading fetched records failed (%s) and no partition could be blamed; polling "
                      "on", _describe(exc))
            return []
        if isinstance(exc, kafka_errors.KafkaError):
            raise SourceError(f"kafka consumer failed: {exc}") from exc
        raise exc  # pragma: no cover - _unreadable takes every other Exception

    def _skip_unreadable(self, exc: BaseException) -> Record | None:
        """Blame a partition for an unreadable message, seek one past it, and return the error record for it."""
        try:
            found = self._blamed_by_fetcher() or self._blamed_by_probe()
        except kafka_errors.KafkaError as blame_error:  # e.g. the broker went away meanwhile: try again next poll
            log.warning("kafka source: could not find the unreadable message: %s", blame_error)
            return None
        if found is None:
            return None
        (topic, partition), offset = found
        self._consumer.seek(TopicPartition(topic, partition), offset + 1)
        detail = _describe(exc)
        log.error("kafka source: %s[%d] offset %d cannot be read (%s); skipping it as a dead letter", topic,
                  partition, offset, detail)
        return Record(value=None, topic=topic, partition=partition, offset=offset,
                      error=f"kafka-python cannot read the message: {detail}")

    def _blamed_by_fetcher(self) -> tuple[Partition, int] | None:
        """The partition whose fetched records raised, from kafka-python's fetcher (internals; None if they moved)."""
        fetcher = getattr(self._consumer, "_fetcher", None)
        parts = getattr(fetcher, "_next_partition_records", None)
        tp = getattr(parts, "topic_partition", None)
        if not parts or not isinstance(tp, TopicPartition) or tp not in self._consumer.assignment():
            return None
        position = self._consumer.position(tp, timeout_ms=1000)
        if position is None or position != getattr(parts, "next_fetch_offset", None):
            return None
        return _tp_key(tp), position

    def _blamed_by_probe(self) -> tuple[Partition, int] | None:
        positions: list[tuple[Partition, int]] = []
        for tp in sorted(self._consumer.assignment()):
            position = self._consumer.position(tp, timeout_ms=1000)
            highwater = self._consumer.highwater(tp)
            if position is not None and (highwater is None or highwater > position):
                positions.append((_tp_key(tp), position))
        blamed = find_undecodable(self._cfg.client_kwargs(self._bootstrap), positions)
        return None if blamed is None else (blamed, dict(positions)[blamed])
