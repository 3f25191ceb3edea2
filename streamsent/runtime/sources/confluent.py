"""A Kafka topic (or topic pattern) read by a confluent-kafka (librdkafka) consumer group, offsets committed by the
pipeline. The same `Source` contract as `KafkaSource` (kafka-python); the default client, because it is fast.

Why it exists: for short documents the pipeline is bound by per-message work that holds the GIL, and
kafka-python's fetch parsing and `send` are most of it (~40 µs a message of pure Python on this project's 2-core
machine; librdkafka does the same in ~1.5 µs, in C, on its own threads). See docs/bench-pipeline.md.

How librdkafka's model maps onto the contract:

1. **Rebalance callbacks run inside `consume()`, on the polling thread**, so the pipeline's `on_revoke` handler
   (drain, flush, commit) runs synchronously before the partitions are given up, and a blocking commit from it is
   allowed. librdkafka swallows nothing from a callback here: an exception in a handler is kept and re-raised,
   unchanged, from `poll()` once `consume()` returns.
2. **Topic patterns** are matched here with Python's `re.fullmatch` against the cluster's topic list (refreshed
   every `_PATTERN_REFRESH_S`), not by librdkafka's own regex dialect, so `pattern` means the same for both
   clients (anchored, as Kafka's Java client does).
3. **A message librdkafka cannot read** (a corrupt batch, an unknown or broken codec) arrives as a `Message`
   whose `error()` names it, with the coordinates of the failing offset; it becomes `Record(error=...)` there, so
   the pipeline dead-letters it and commits past it. librdkafka moves past the failing batch by itself.
4. **Broker restarts** are librdkafka's job (reconnect with back-off, rejoin); transient errors are logged (once,
   then every 30 s while they last) and `poll()` returns []. Fatal errors raise `SourceError`.

Lag is the cached high watermark (from fetch responses) minus the position, as for kafka-python.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from ..config import KafkaSourceConfig
from ..records import Record
from .base import CommitError, Partition, RebalanceHandler, SourceError, check_forward

__all__ = ["ConfluentSource", "librdkafka_logger"]

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 30.0
_PATTERN_REFRESH_S = 5.0
# Message-level errors: this message cannot be read, the partition goes on after it
_UNREADABLE = {KafkaError._BAD_MSG, KafkaError._BAD_COMPRESSION, KafkaError._NOT_IMPLEMENTED,
               KafkaError.UNSUPPORTED_COMPRESSION_TYPE}
# A commit refused because the partitions are no longer ours: a later commit never succeeds
_NOT_OURS = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
             KafkaError._ASSIGNMENT_LOST, KafkaError._STATE, KafkaError.FENCED_INSTANCE_ID}


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's log lines go to (instead of raw lines on stderr)."""
    return logging.getLogger("streamsent.librdkafka")


def _key(tp: TopicPartition) -> Partition:
    return (tp.topic, tp.partition)


class ConfluentSource:
    """Records from a consumer group: value and key bytes, topic, partition, offset and the time received.

    Call every method from the polling thread (the rebalance handlers run there too, inside `poll()`).
    `close()` leaves the group at once, without calling the handlers.
    """

    def __init__(self, cfg: KafkaSourceConfig, bootstrap: str | None = None) -> None:
        self._cfg = cfg
        conf = {**cfg.confluent_consumer_conf(bootstrap), "logger": librdkafka_logger(),
                "error_cb": self._on_client_error}
        try:
            self._consumer = Consumer(conf)
        except KafkaException as exc:
            raise SourceError(f"cannot start a Kafka consumer for {conf['bootstrap.servers']}: {exc}") from exc
        self._handlers: dict[str, RebalanceHandler | None] = {"revoke": None, "assign": None, "lost": None}
        self._handler_error: BaseException | None = None
        self._committed: dict[Partition, int] = {}
        # kept from the rebalance callbacks: librdkafka's `Consumer.assignment()` blocks while another thread is
        # inside consume(), and commit() / assignment() are also called from rebalance handlers and other threads
        self._assigned: set[Partition] = set()
        # the same for the group metadata the exactly-once writer thread needs: refreshed on the polling thread
        self._group_meta: object | None = None
        self._closed = False
        self._trouble_since: float | None = None
        self._trouble_logged = 0.0
        self._fatal: KafkaError | None = None
        self._skip_next: dict[Partition, int] = {}  # per partition: the offset after the last unreadable one skipped
        self._pattern = None if cfg.topics else re.compile(cfg.pattern or "")
        self._subscribed: tuple[str, ...] = ()
        self._pattern_checked = 0.0
        if cfg.topics:
            self._subscribe(cfg.topics)
        else:
            self._refresh_pattern(timeout_s=10.0)

    # -- the Source protocol ----------------------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        return False  # a topic has no end

    def set_rebalance_handlers(self, on_revoke: RebalanceHandler, on_assign: RebalanceHandler,
                               on_lost: RebalanceHandler | None = None) -> None:
        """As `KafkaSource.set_rebalance_handlers`: sorted (topic, partition) lists, called inside `poll()`."""
        self._handlers = {"revoke": on_revoke, "assign": on_assign, "lost": on_lost}

    def poll(self, timeout_s: float) -> list[Record]:
        """The records that arrived within `timeout_s` (up to `max_poll_records`), in offset order per partition."""
        if self._closed:
            raise SourceError("poll() on a closed Kafka source")
        if self._pattern is not None and time.monotonic() - self._pattern_checked >= _PATTERN_REFRESH_S:
            self._refresh_pattern(timeout_s=1.0)
        try:
            messages = self._consumer.consume(self._cfg.max_poll_records, max(0.0, timeout_s))
            self._group_meta = self._consumer.consumer_group_metadata()
        except KafkaException as exc:
            self._raise_handler_error()
            return self._on_error(exc.args[0] if exc.args else KafkaError(KafkaError._FAIL), timeout_s)
        self._raise_handler_error()
        if self._fatal is not None:
            raise SourceError(f"kafka consumer failed: {self._fatal.str()}")
        now = time.time()
        out: list[Record] = []
        append = out.append
        skipped: set[Partition] = set()
        for m in messages:
            err = m.error()
            if err is None:
                ts_type, ts = m.timestamp()
                append(Record(m.value(), m.key(), m.topic(), m.partition(), m.offset(), received=now,
                              timestamp=ts / 1000 if ts_type != TIMESTAMP_NOT_AVAILABLE and ts > 0 else None))
            elif err.code() in _UNREADABLE and m.partition() is not None and (m.offset() or -1) >= 0:
                tp = (m.topic(), m.partition())
                if tp not in skipped:  # the rest of this poll's entries for it predate the seek below
                    skipped.add(tp)
                    append(self._skip_unreadable(tp, m.offset(), err, now))
            elif m.partition() is None or (m.topic(), m.partition()) not in skipped:
                self._on_error(err, 0.0)
        if out and self._trouble_since is not None:
            log.info("kafka source recovered after %.1f s", time.monotonic() - self._trouble_since)
            self._trouble_since = None
        return out

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit, synchronously, the next offset to read per (topic, partition).

        Raises `OffsetOrderError` for an offset below one committed before, and `CommitError` for a partition not
        assigned here, or when the broker refuses or fails the commit (`retriable` tells which).
        """
        if not offsets:
            return
        check_forward(self._committed, offsets)
        foreign = sorted(set(offsets) - self._assigned)
        if foreign:
            raise CommitError(f"cannot commit {', '.join(f'{t}[{p}]' for t, p in foreign)}: not assigned to this "
                              "consumer (given up in a rebalance?)", retriable=False)
        request = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            result = self._consumer.commit(offsets=request, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            raise CommitError(f"commit of {len(request)} partition offset(s) failed: {exc}",
                              retriable=self._retriable(err)) from exc
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            err = failed[0].error
            raise CommitError(f"commit of {len(failed)} partition offset(s) failed: {err.str()} ({err.name()})",
                              retriable=self._retriable(err))
        self._committed.update(offsets)

    def assignment(self) -> list[Partition]:
        return sorted(self._assigned)

    def group_metadata(self) -> object:
        """The consumer's group metadata (group, generation, member) for `send_offsets_to_transaction`: a commit
        made with it is refused once the group has moved on, which is what fences a replaced worker.

        Called from the writer thread, so it returns the copy the polling thread took after its last `consume()`
        (and in each assignment): confluent-kafka >= 2.13 lets one thread at a time into a Consumer, and one
        blocked in consume() starved the writer's call until the poll loop stopped."""
        if self._group_meta is None:  # before the first poll: no thread is inside the consumer yet
            self._group_meta = self._consumer.consumer_group_metadata()
        return self._group_meta

    def lag(self) -> dict[Partition, int]:
        """Messages not yet read, per assigned partition whose high watermark is known (after its first fetch)."""
        tps = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not tps:
            return {}
        out: dict[Partition, int] = {}
        try:
            positions = self._consumer.position(tps)
        except KafkaException:
            return out
        for tp in positions:
            if tp.offset == OFFSET_INVALID or tp.offset < 0:
                continue
            try:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                out[_key(tp)] = max(0, high - tp.offset)
        return out

    def close(self) -> None:
        """Leave the group without committing and without calling the handlers (the pipeline has committed what
        it flushed before closing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka source: closing the consumer: %s", exc)

    # -- subscriptions and rebalances ---------------------------------------------------------------------------
    def _subscribe(self, topics: tuple[str, ...]) -> None:
        self._subscribed = topics
        if not topics:
            self._consumer.unsubscribe()
            return
        self._consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    def _refresh_pattern(self, timeout_s: float) -> None:
        """Subscribe to the topics matching `pattern` now (Python regex, full match); re-subscribe on a change."""
        self._pattern_checked = time.monotonic()
        assert self._pattern is not None
        try:
            names = self._consumer.list_topics(timeout=timeout_s).topics
        except KafkaException as exc:
            log.warning("kafka source: listing topics for pattern %r failed: %s", self._cfg.pattern, exc)
            return
        matched = tuple(sorted(n for n in names if self._pattern.fullmatch(n) and not n.startswith("__")))
        if matched != self._subscribed:
            log.info("kafka source: pattern %r matches %s", self._cfg.pattern, list(matched))
            self._subscribe(matched)

    def _on_assign(self, _consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._assigned |= {_key(tp) for tp in tps}
        self._group_meta = self._consumer.consumer_group_metadata()  # the new generation, before the handler runs
        self._skip_next.clear()  # positions restart from the committed offsets
        self._call("assign", tps)

    def _on_revoke(self, _consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._call("revoke", tps)
        self._assigned -= {_key(tp) for tp in tps}

    def _on_lost(self, _consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._call("lost", tps)
        self._assigned -= {_key(tp) for tp in tps}

    def _call(self, kind: str, tps: list[TopicPartition]) -> None:
        """Run the pipeline's handler (inside `consume()`); keep its exception for `poll()` to raise."""
        if self._closed or self._handler_error is not None:
            return
        parts = sorted(_key(tp) for tp in tps)
        log.info("kafka source: partitions %s %s", {"revoke": "revoked", "assign": "assigned", "lost": "lost"}[kind],
                 parts)
        handler = self._handlers[kind] or (self._handlers["revoke"] if kind == "lost" else None)
        if handler is None or (not parts and kind != "assign"):
            return
        try:
            handler(parts)
        except BaseException as exc:  # noqa: BLE001 - re-raised from poll(), after librdkafka's own bookkeeping
            self._handler_error = exc

    def _raise_handler_error(self) -> None:
        if self._handler_error is not None:
            exc, self._handler_error = self._handler_error, None
            raise exc

    # -- errors -------------------------------------------------------------------------------------------------
    def _skip_unreadable(self, tp: Partition, reported: int, err: KafkaError, now: float) -> Record:
        """Dead-letter one unreadable offset and seek past it.

        librdkafka does not move past a batch it cannot decompress: it fetches it again and again, and reports
        the failure at the batch's first offset. So skip one offset per poll, like the kafka-python source: the
        reported offset, or the one after the last skipped when the same batch fails again from inside.
        """
        offset = max(reported, self._skip_next.get(tp, -1))
        self._skip_next[tp] = offset + 1
        log.error("kafka source: %s[%d] offset %d cannot be read (%s); skipping it as a dead letter", tp[0], tp[1],
                  offset, err.str())
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset + 1))
        except KafkaException as exc:  # e.g. revoked meanwhile: it will be fetched (and fail) again
            log.warning("kafka source: seeking past %s[%d] offset %d failed: %s", tp[0], tp[1], offset, exc)
        return Record(None, None, tp[0], tp[1], offset, received=now,
                      error=f"librdkafka cannot read the message: {err.str()} ({err.name()})")

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's global errors (connection lost, all brokers down, ...): served inside consume()."""
        if err.fatal():
            self._fatal = err
        else:
            self._on_error(err, 0.0)

    def _on_error(self, err: KafkaError, timeout_s: float) -> list[Record]:
        if not isinstance(err, KafkaError):  # pragma: no cover - confluent-kafka always wraps a KafkaError
            raise SourceError(f"kafka consumer failed: {err}")
        if err.fatal() or err.code() in (KafkaError._INVALID_ARG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                         KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION,
                                         KafkaError.SASL_AUTHENTICATION_FAILED):
            raise SourceError(f"kafka consumer failed: {err.str()} ({err.name()})")
        now = time.monotonic()
        if self._trouble_since is None:
            self._trouble_since = self._trouble_logged = now
            log.warning("kafka source: %s (%s); retrying", err.str(), err.name())
        elif now - self._trouble_logged >= _REPORT_EVERY_S:
            self._trouble_logged = now
            log.warning("kafka source: still failing after %.0f s: %s", now - self._trouble_since, err.str())
        if timeout_s > 0:
            time.sleep(min(timeout_s, 0.1))  # do not spin on an error that comes back at once
        return []

    @staticmethod
    def _retriable(err: KafkaError | None) -> bool:
        if err is None:
            return True
        if err.code() in _NOT_OURS:
            return False
        return bool(err.retriable()) or err.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                                                       KafkaError._WAIT_COORD, KafkaError.NOT_COORDINATOR,
                                                       KafkaError.COORDINATOR_NOT_AVAILABLE,
                                                       KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                       KafkaError.REQUEST_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN)
