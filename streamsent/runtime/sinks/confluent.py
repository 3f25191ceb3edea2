"""Delivery through confluent-kafka (librdkafka): the fast client behind the Kafka sinks (`client = "confluent"`).

Same contract as kafka-python's `_Delivery` in `kafka.py`: `send` queues, `flush` returns only when the broker
acknowledged every message since the last flush (as `acks` asks) and raises `SinkError` otherwise, after which the
caller writes the batch again (at-least-once: a message whose acknowledgement was lost may arrive twice).

Delivery reports are asked for failures only (`delivery.report.only.error`), so a successful message costs no
Python callback. Keys are partitioned with `murmur2_random`, the Java client's (and kafka-python's) partitioner,
so a doc_id lands on the same partition whichever client wrote it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ..sources.confluent import librdkafka_logger
from .base import Guard, SinkError

if TYPE_CHECKING:
    from ..transactions import Transactions

__all__ = ["ConfluentDelivery"]

# produce() errors that belong to the message, not to the broker: sending it again fails the same way
_NEVER_SENDABLE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError._INVALID_ARG})

log = logging.getLogger(__name__)


class ConfluentDelivery:
    """A librdkafka producer plus the failures reported since the last flush."""

    def __init__(self, conf: dict[str, Any], name: str, flush_timeout_s: float | None,
                 transactions: Transactions | None = None) -> None:
        self.guard = Guard(name)
        self.max_request_size = int(conf.get("message.max.bytes", 1_048_576))
        self.flush_timeout_s = flush_timeout_s
        self._failed: list[KafkaError] = []
        # exactly-once: write through the pipeline's transactional producer (which it may replace), never an own one
        self._txn = transactions
        self._conf = {"partitioner": "murmur2_random", "delivery.report.only.error": True,
                      "logger": librdkafka_logger(), **conf, "on_delivery": self._on_delivery}
        if transactions is not None:
            self._failed = transactions.failed
            return
        try:
            self._own = Producer(self._conf)
        except KafkaException as exc:
            raise SinkError(f"{name}: cannot start a Kafka producer for {conf.get('bootstrap.servers')}: {exc}") \
                from exc

    @property
    def _producer(self) -> Producer:
        return self._own if self._txn is None else self._txn.producer

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed.append(err)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one message; raises `SinkError` on an outage and when the message can never be sent."""
        rejected = self.send_many(topic, [key], [value])
        if rejected:
            raise self.guard.error("send failed", SinkError(rejected[0]))

    def send_many(self, topic: str, keys: list[bytes | None], values: list[bytes | None]) -> dict[int, str]:
        """Queue each (key, value) (None values are skipped); returns the messages that can never be sent
        (index -> why: over `message.max.bytes`), having queued the others. The sink's hot loop."""
        self.guard.check()
        produce, limit = self._producer.produce, self.max_request_size
        rejected: dict[int, str] = {}
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            if value is None:
                continue
            if len(value) + len(key or b"") > limit:
                rejected[i] = f"a {len(value):,}-byte message is over message.max.bytes = {limit:,}"
                continue
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:  # librdkafka's queue is full: let it drain (serves delivery reports too)
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if isinstance(err, KafkaError) and err.code() in _NEVER_SENDABLE:
                        rejected[i] = f"refused by the producer: {err.str()}"
                        break
                    raise self.guard.error("send failed", exc) from exc
        return rejected

    def flush(self) -> None:
        self.guard.check()
        if self._txn is not None:  # inside a transaction: committing it waits for every send (librdkafka flushes
            # first), so a flush here would only add a round trip per batch; a failure seen so far aborts it
            self._txn.producer.poll(0)
            self._failed = self._txn.failed
            if self._failed:
                raise self.guard.error("a send in the transaction failed", KafkaException(self._failed[0]))
            return
        left = self._producer.flush(-1 if self.flush_timeout_s is None else self.flush_timeout_s)
        if left:  # drop what is still queued (the caller writes it again), so retries do not pile up behind it
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.poll(0)  # serves the purged messages' reports
            self._failed.clear()
            raise self.guard.error(f"{left} sends not acknowledged within {self.flush_timeout_s} s",
                                   TimeoutError("flush timed out"))
        if self._failed:
            first, n = self._failed[0], len(self._failed)
            self._failed.clear()
            log.error("%s: %d sends failed; first: %s", self.guard.name, n, first.str())
            raise self.guard.error(f"{n} sends failed", KafkaException(first))

    def close(self) -> None:
        self.guard.close_with(self.flush, self._release)

    def _release(self) -> None:
        if self._txn is not None:  # the pipeline closes the shared producer
            return
        left = self._producer.flush(0)
        if left:
            log.warning("%s: %d messages still in flight at close", self.guard.name, left)
