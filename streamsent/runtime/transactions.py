"""Exactly-once delivery: one transactional librdkafka producer that every Kafka output of the pipeline writes
through, and the consumer offsets committed inside the same transaction.

The pipeline's writer opens a transaction, writes batches into it (scored rows, dead letters), and commits it with
the offsets that follow those batches (`send_offsets_to_transaction` with the consumer's group metadata, so a
worker that was replaced in its group — a zombie — cannot commit: KIP-447). A read_committed consumer sees all of a
transaction or nothing, so each input record's result is seen once, whatever crashes.

Failures, and what the writer does about each (`classify`):

- ``moved``: the group moved on (the partitions belong to another member now). The transaction is aborted and its
  batches dropped; the partitions' new owner reads them again from the committed offsets.
- ``fenced``: another producer took this transactional id (a newer instance of this worker). This one is a zombie
  and must stop.
- ``restart``: any other fatal producer error (e.g. the broker lost the producer's state). A new producer is made
  (`init_transactions` aborts what the old one left open) and the batches are written again.
- ``retry``: everything else (an abortable error, a timeout, a broker away): abort, wait, write the batches
  again in a new transaction.

The transactional id must be the same for a worker and its restarted self (so the restart aborts the transaction
its predecessor left open at once) and different for two live workers (or they fence each other). Unless
configured, it is "<group_id>-<host>-<n>", n the lowest number whose lock file no other live process of this host
holds (`claim_transactional_id`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from collections.abc import Mapping
from typing import IO, Any, Literal

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from ..errors import StreamsentError
from .sources.confluent import librdkafka_logger

try:
    import fcntl
except ImportError:  # Windows: no lock files; the id gets the process id instead (no prompt abort on restart)
    fcntl = None  # type: ignore[assignment]

__all__ = ["Transactions", "claim_transactional_id", "classify"]

log = logging.getLogger(__name__)

Verdict = Literal["moved", "fenced", "restart", "retry"]

# The group has moved on: these offsets can never be committed by this member
_MOVED = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID,
          KafkaError._ASSIGNMENT_LOST}
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
           KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}


def classify(exc: BaseException) -> Verdict:
    """What a failure inside a transaction means for the writer (see the module doc)."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if not isinstance(err, KafkaError):
        return "retry"  # a sink's own error (a flush timed out, a delivery failed): the transaction is abortable
    if err.code() in _MOVED:
        return "moved"
    if err.code() in _FENCED:
        return "fenced"
    return "restart" if err.fatal() else "retry"


class TransactionFenced(StreamsentError, RuntimeError):
    """Another producer holds this worker's transactional id: this worker has been replaced and must stop."""


class Transactions:
    """The transactional producer and its open transaction. Used from the pipeline's writer thread only."""

    def __init__(self, conf: Mapping[str, Any], transactional_id: str, timeout_ms: int, *,
                 op_timeout_s: float = 30.0) -> None:
        self.transactional_id = transactional_id
        self.op_timeout_s = op_timeout_s
        self._conf = {"partitioner": "murmur2_random", "logger": librdkafka_logger(), **conf,
                      "transactional.id": transactional_id, "transaction.timeout.ms": timeout_ms,
                      "enable.idempotence": True, "acks": "all", "delivery.report.only.error": True,
                      "on_delivery": self._on_delivery}
        self.failed: list[KafkaError] = []  # delivery failures since the transaction began
        self.open = False
        self.lock: IO[bytes] | None = None  # the lock file that holds a claimed id (claim_transactional_id)
        self.producer = self._start()

    def _start(self) -> Producer:
        try:
            producer = Producer(self._conf)
            producer.init_transactions(self.op_timeout_s)  # fences an older instance, aborts what it left open
        except KafkaException as exc:
            if classify(exc) == "fenced":
                raise TransactionFenced(f"transactional id {self.transactional_id!r}: {exc}") from exc
            raise StreamsentError(f"cannot start a transactional producer for {self._conf.get('bootstrap.servers')} "
                                  f"(transactional.id {self.transactional_id!r}): {exc}") from exc
        log.info("transactional producer %r ready", self.transactional_id)
        return producer

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.failed.append(err)

    def begin(self) -> None:
        if not self.open:
            self.failed.clear()
            self.producer.begin_transaction()
            self.open = True

    def commit(self, offsets: Mapping[tuple[str, int], int], group_metadata: object) -> None:
        """Commit the open transaction together with `offsets` (the next offset to read per partition)."""
        assert self.open, "commit without a transaction"
        if offsets:
            self.producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())], group_metadata,
                self.op_timeout_s)
        self.producer.commit_transaction(self.op_timeout_s)
        if self.failed:  # librdkafka fails the commit itself on a failed delivery; never trust a commit past one
            raise KafkaException(self.failed[0])
        self.open = False

    def abort(self) -> None:
        """Abort the open transaction (nothing it holds becomes visible); a producer that cannot is replaced."""
        if not self.open:
            return
        self.open = False
        try:
            self.producer.abort_transaction(self.op_timeout_s)
        except KafkaException as exc:
            if classify(exc) == "fenced":
                raise TransactionFenced(f"transactional id {self.transactional_id!r}: {exc}") from exc
            log.warning("aborting the transaction failed (%s); starting a new producer", exc)
            self.restart()

    def restart(self) -> None:
        """A new producer under the same id: `init_transactions` aborts whatever the old one left open."""
        self.open = False
        old, self.producer = self.producer, None
        try:
            old.purge()
            old.flush(0)
        except (KafkaException, RuntimeError):
            pass
        self.producer = self._start()

    def close(self) -> None:
        if self.producer is not None:
            if self.open:
                self.abort()
            self.producer.flush(5)


def claim_transactional_id(group_id: str, lock_dir: str | os.PathLike | None = None) -> tuple[str, IO[bytes] | None]:
    """"<group_id>-<host>-<n>" for the lowest n no live process of this host holds, with the open lock file that
    holds it (keep it open for the worker's life; the kernel releases it when the process dies, even by SIGKILL,
    so a restarted worker gets the same id back)."""
    host = socket.gethostname() or "host"
    if fcntl is None:
        return f"{group_id}-{host}-{os.getpid()}", None
    directory = os.path.join(lock_dir or tempfile.gettempdir(), "streamsent-transactions")
    os.makedirs(directory, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group_id)
    for n in range(10_000):
        f = open(os.path.join(directory, f"{safe}-{n}.lock"), "ab")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return f"{group_id}-{host}-{n}", f
    raise StreamsentError(f"no free transactional id for group {group_id!r} in {directory}")
