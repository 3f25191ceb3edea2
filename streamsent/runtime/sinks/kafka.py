"""Kafka sinks: scored rows (JSON, key = doc_id) and dead letters (envelope JSON, key = the original key).

The producer is confluent-kafka's (`confluent.py`, the default) or kafka-python's (`_Delivery` below), as
`client` says; both keep the contract described here for kafka-python.

Durability: `write` hands each message to kafka-python's `KafkaProducer` and keeps its send future; `flush()` calls
`producer.flush()` and then checks every future since the last flush, so it returns only when the broker
acknowledged all of them (as `acks` asks: with `acks = 0` nothing is acknowledged and "sent" is all it means) and
raises `SinkError` if any send failed or the wait timed out. Then the rows since the last good flush are forgotten
and the producer is replaced (see base and `_Delivery`): writing them again is the caller's job.

The message key is the doc_id: replays after a crash produce the same key again, so downstream can de-duplicate
at-least-once output (a compacted topic does it by itself).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from ..config import KafkaDeadLetterConfig, KafkaSinkConfig
from ..records import DeadLetter
from .base import Guard, RowsRejected, SinkError, require_scored_columns
from .rows import encode_each

__all__ = ["KafkaDeadLetterSink", "KafkaSink"]

log = logging.getLogger(__name__)

_RECORD_OVERHEAD = 4096  # headroom for the key, headers and record framing under max_request_size


class _Delivery:
    """A producer plus the futures of the sends not yet confirmed by a flush.

    After a failure the producer is replaced: kafka-python's idempotent producer can stay stuck after a broker
    restart (its sends are never answered), and a new one starts clean. The old one is closed as soon as its
    unfinished batches have expired (`close` cannot abandon them earlier).
    """

    def __init__(self, kwargs: dict[str, Any], name: str, flush_timeout_s: float | None) -> None:
        self.guard = Guard(name)
        self.kwargs = kwargs
        self.flush_timeout_s = flush_timeout_s
        self.max_request_size = int(kwargs.get("max_request_size", 1_048_576))
        self._pending: list[Any] = []
        self._abandoned: list[KafkaProducer] = []
        self._producer: KafkaProducer | None = self._connect()  # now: a wrong address fails at start, not later

    def _connect(self) -> KafkaProducer:
        try:
            return KafkaProducer(**self.kwargs)
        except KafkaError as exc:
            raise SinkError(f"{self.guard.name}: cannot connect to Kafka at {self.kwargs.get('bootstrap_servers')}: "
                            f"{exc!r}") from exc

    def _reset(self) -> None:
        """Forget the unconfirmed sends; the next send gets a new producer."""
        self._pending.clear()
        if self._producer is not None:
            self._abandoned.append(self._producer)
            self._producer = None
        self._close_abandoned()

    def _close_abandoned(self) -> None:
        still = []
        for producer in self._abandoned:
            try:
                producer.close(timeout=0)
            except KafkaError:  # batches still in flight; they expire within delivery_timeout_ms
                still.append(producer)
        self._abandoned = still

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one message; raises `SinkError` on an outage and when the message can never be sent."""
        rejected = self.send_many(topic, [key], [value])
        if rejected:
            raise self.guard.error("send failed", SinkError(rejected[0]))

    def send_many(self, topic: str, keys: list[bytes | None], values: list[bytes | None]) -> dict[int, str]:
        """Queue each (key, value) (None values are skipped); returns the messages that can never be sent
        (index -> why: over `max_request_size`), having queued the others."""
        self.guard.check()
        if self._producer is None:
            self._producer = self._connect()
        rejected: dict[int, str] = {}
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            if value is None:
                continue
            try:
                self._pending.append(self._producer.send(topic, key=key, value=value))
            except MessageSizeTooLargeError as exc:  # checked before anything is queued: the message's fault
                rejected[i] = f"refused by the producer: {exc}"
            except KafkaError as exc:  # no metadata within max_block_ms, ...: an outage
                self._reset()
                raise self.guard.error("send failed", exc) from exc
        return rejected

    def flush(self) -> None:
        self.guard.check()
        if self._abandoned:
            self._close_abandoned()
        if self._producer is None:
            return
        sent = len(self._pending)
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:  # the wait timed out: we cannot say the rows are safe
            self._reset()
            raise self.guard.error(f"{sent} sends not acknowledged within {self.flush_timeout_s} s", exc) from exc
        failed: list[BaseException] = []
        for future in self._pending:
            if not future.is_done:  # flush() returned, so this is a batch split or a race; wait for the verdict
                try:
                    future.get(timeout=self.flush_timeout_s)
                except Exception:  # the future keeps the exception; collected below
                    pass
            if not future.is_done or future.failed():
                failed.append(future.exception or TimeoutError("send not completed"))
        if failed:
            log.error("%s: %d of %d sends failed; first: %r", self.guard.name, len(failed), sent, failed[0])
            self._reset()
            raise self.guard.error(f"{len(failed)} of {sent} sends failed", failed[0]) from failed[0]
        self._pending.clear()

    def close(self) -> None:
        self.guard.close_with(self.flush, self._release)

    def _release(self) -> None:
        if self._producer is not None:  # flushed: nothing left to wait for
            try:
                self._producer.close(timeout=10)
            except KafkaError as exc:
                log.warning("%s: closing the producer: %r", self.guard.name, exc)
        self._close_abandoned()
        if self._abandoned:
            log.warning("%s: %d producers still had sends in flight at close", self.guard.name, len(self._abandoned))


def _delivery(cfg: KafkaSinkConfig | KafkaDeadLetterConfig, bootstrap: str | None,
              overrides: Mapping[str, Any] | None, name: str, flush_timeout_s: float | None, transactions=None):
    """The producer for `cfg.client`; `overrides` are that client's own settings (kafka-python kwargs or
    librdkafka's dotted names); `transactions`: exactly-once, write through its transactional producer."""
    if cfg.client == "confluent" or transactions is not None:
        from .confluent import ConfluentDelivery

        return ConfluentDelivery({**cfg.confluent_producer_conf(bootstrap), **(overrides or {})}, name,
                                 flush_timeout_s, transactions)
    return _Delivery({**cfg.producer_kwargs(bootstrap), **(overrides or {})}, name, flush_timeout_s)


class KafkaSink:
    """Scored rows to a Kafka topic as JSON objects (see `rows`), message key = doc_id (UTF-8).

    `bootstrap` replaces the config's servers (the embedded broker's address for bootstrap = "embedded").
    `producer_overrides` adds or replaces producer settings the config has no key for (timeouts, idempotence), in
    the configured client's own names; `flush_timeout_s` bounds one flush (None: until the delivery timeout).
    """

    def __init__(self, cfg: KafkaSinkConfig, *, bootstrap: str | None = None, labels: tuple[str, ...] = (),
                 producer_overrides: Mapping[str, Any] | None = None, flush_timeout_s: float | None = None,
                 transactions=None) -> None:
        self.topic = cfg.topic
        self.labels = labels
        self._delivery = _delivery(cfg, bootstrap, producer_overrides, f"kafka sink (topic {cfg.topic!r})",
                                   flush_timeout_s, transactions)

    def write(self, rows: pa.Table) -> None:
        self._delivery.guard.check()
        require_scored_columns(rows, self._delivery.guard.name)
        keys = [str(doc_id).encode("utf-8", "backslashreplace") for doc_id in rows.column("doc_id").to_pylist()]
        values, bad = encode_each(rows, self.labels)
        bad |= self._delivery.send_many(self.topic, keys, values)
        if bad:
            raise RowsRejected(self._delivery.guard.name, bad)

    def flush(self) -> None:
        self._delivery.flush()

    def close(self) -> None:
        self._delivery.close()


class KafkaDeadLetterSink:
    """Dead letters to a Kafka topic: value = the envelope JSON, key = the original message's key (if any).

    An envelope whose UTF-8 payload is mostly escapes (control characters become 6-byte \\u sequences) could
    outgrow the producer's `max_request_size`; it is then re-encoded with a base64 payload, which is at most 4/3
    of the (already truncated) bytes and fits the room the config reserves.
    """

    def __init__(self, cfg: KafkaDeadLetterConfig, *, bootstrap: str | None = None,
                 producer_overrides: Mapping[str, Any] | None = None, flush_timeout_s: float | None = None,
                 transactions=None) -> None:
        self.topic = cfg.topic
        self.max_payload_bytes = cfg.max_payload_bytes
        self._delivery = _delivery(cfg, bootstrap, producer_overrides,
                                   f"kafka dead-letter sink (topic {cfg.topic!r})", flush_timeout_s, transactions)

    def _value(self, letter: DeadLetter) -> bytes:
        envelope = letter.envelope(self.max_payload_bytes)
        value = letter.to_json(self.max_payload_bytes, envelope)
        if len(value) > self._delivery.max_request_size - _RECORD_OVERHEAD and envelope["payload_encoding"] == "utf-8":
            envelope["payload"] = base64.b64encode(envelope["payload"].encode("utf-8")).decode("ascii")
            envelope["payload_encoding"] = "base64"
            value = letter.to_json(self.max_payload_bytes, envelope)
        return value

    def write(self, letters: list[DeadLetter]) -> None:
        self._delivery.guard.check()
        for letter in letters:
            self._delivery.send(self.topic, letter.record.key, self._value(letter))

    def flush(self) -> None:
        self._delivery.flush()

    def close(self) -> None:
        self._delivery.close()
