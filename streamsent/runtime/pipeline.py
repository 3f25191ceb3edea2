"""The streaming pipeline: read -> decode -> micro-batch -> score -> write -> commit, at least once.

Threads overlap the work through bounded queues, so a slow sink applies back-pressure instead of growing
memory. The calling thread polls the source: a Kafka consumer is not thread-safe, so every consumer call,
commits included, happens on it, or in a rebalance callback while it is blocked inside poll(). Scorer threads
run the model (Numba kernels release the GIL): two by default (`scorers`), each scoring a different batch on
its share of the cores, which keeps every core busy without a parallel region waiting for a core that
the polling or writing thread holds. A writer thread takes the batches in the order they were read, waits for
each to be scored, writes it to every sink and the dead-letter sink and flushes them. Only when a batch is
durably written does the polling thread commit its offsets; batches complete in order, so committed offsets
only move forward. Before partitions are given up in
a rebalance, and on SIGINT/SIGTERM, the pipeline drains: the open batch is closed, every batch in flight is
written, offsets are committed.

With conversation state (`state`, a `LiveState`), the scorer continues each key's running score instead of scoring
messages alone; the writer hands each written batch's state changes to the changelog; every commit is preceded by
a changelog flush and a checkpoint (a failed flush holds the commit back, like a sink outage); and the rebalance
handlers move a partition's state with the partition.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import PipelineError, StreamsentError
from ..models.model import Model
from .batcher import MicroBatch, MicroBatcher
from .metrics import Metrics
from .records import SCORED_COLUMNS, DeadLetter, DocFields, Record, decode_record
from .scoring import score_docs
from .sinks.base import RowsRejected, SinkError
from .sources.base import CommitError

if TYPE_CHECKING:
    from .state.live import LiveState
    from .transactions import Transactions

__all__ = ["Pipeline", "PipelineStats"]

log = logging.getLogger(__name__)

_STOP = object()
_TXN_IDLE_S = 0.1  # exactly-once: commit the open transaction once no batch came for this long (output latency)


@dataclass
class PipelineStats:
    """Counters the dashboard and the metrics endpoint read (snapshots; never locks the hot path)."""

    records: int = 0
    docs_scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    commits: int = 0
    write_retries: int = 0
    rows_rejected: int = 0  # scored rows a sink could never take (dead-lettered as sink_rejected)
    state_failures: int = 0  # changelog writes that failed (the commit waited for them)
    last_batch_ms: float = 0.0
    started: float = field(default_factory=time.time)


class Pipeline:
    def __init__(self, source, model: Model, sinks: Sequence, dead_letter, *, max_docs: int = 1024,
                 max_tokens: int = 65_536, max_wait_ms: int = 50, queue_size: int = 4,
                 fields: DocFields | None = None, max_message_bytes: int = 1_048_576,
                 on_batch: Callable[[MicroBatch, object], None] | None = None,
                 commit_interval_s: float = 0.5, metrics: Metrics | None = None, threads: int = 0,
                 scorers: int = 2, state: LiveState | None = None, tune_gc: bool = True,
                 transactions: Transactions | None = None, stop: threading.Event | None = None) -> None:
        self.source, self.model, self.sinks, self.dead_letter = source, model, list(sinks), dead_letter
        # batches scored at once, each on its own thread; one with conversation state (a key's messages must be
        # scored in order) or where Numba's threading layer cannot take launches from two threads (workqueue)
        self.scorers = 1 if state is not None else max(1, scorers)
        self.threads = threads  # Numba threads per scorer; 0 = Numba's default (all cores)
        self.tune_gc = tune_gc  # see _quiet_gc
        self.fields, self.max_message_bytes = fields or DocFields(), max_message_bytes
        self.batcher = MicroBatcher(max_docs, max_tokens, max_wait_ms)
        self.stats = PipelineStats()
        self.on_batch = on_batch  # e.g. the dashboard's feed of the latest documents
        self.commit_interval_s = commit_interval_s  # bounds re-delivery after a crash, costs a round trip each
        self.metrics = metrics  # the dashboard's and /metrics' recorder: fed once per batch by the writer thread
        self._attention = metrics is not None and metrics.wants_attention
        self.state = state  # conversation state (keyed running scores), or None: each message scored alone
        self._columns = SCORED_COLUMNS  # what the sinks get: no attention columns, the state columns if any
        if state is not None:
            from .state.live import STATE_COLUMN_NAMES

            self._columns = SCORED_COLUMNS + STATE_COLUMN_NAMES
        self._to_score: queue.Queue = queue.Queue(queue_size)  # _Slots for the scorers
        self._to_write: queue.Queue = queue.Queue(2 * queue_size + self.scorers)  # the same _Slots, in read order
        self._done: queue.Queue = queue.Queue()  # batches durably written, in order
        self._in_flight = 0  # batches handed to the scorer and not yet committed
        self._stop = stop if stop is not None else threading.Event()  # set: drain and return (stop())
        self._failed: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._pending: dict[tuple[str, int], int] = {}  # next offsets of finished batches, not yet committed
        self._last_commit = time.monotonic()
        # exactly-once: the writer commits results and offsets in one Kafka transaction (see _write_loop_txn)
        self.transactions = transactions
        self._commit_now = threading.Event()  # the polling thread is draining: commit the open transaction now
        if hasattr(source, "set_rebalance_handlers"):
            source.set_rebalance_handlers(self._on_revoke, self._on_assign, on_lost=self._on_lost)

    # -- control -----------------------------------------------------------------------------------------------
    def stop(self, *_args: object) -> None:
        """Ask the pipeline to drain and return from `run` (safe from a signal handler or another thread)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)

    def run(self, stop_after_idle_s: float | None = None) -> PipelineStats:
        """Run until stopped, the source is exhausted, or (if given) no input arrived for that long after some did."""
        with _quiet_gc() if self.tune_gc else contextlib.nullcontext():
            return self._run(stop_after_idle_s)

    def _run(self, stop_after_idle_s: float | None) -> PipelineStats:
        if self.scorers > 1 and self.model.device != "cpu":
            self.scorers = 1  # the GPU and the NumPy reference gain nothing from it
        if self.scorers > 1 and not _concurrent_launches_ok(self.model):
            log.warning("Numba's threading layer is %r, which cannot run kernels for two threads at once: scoring "
                        "one batch at a time", _threading_layer())
            self.scorers = 1
        self._threads = [threading.Thread(target=self._score_loop, name=f"streamsent-score-{i}", daemon=True)
                         for i in range(self.scorers)]
        self._threads.append(threading.Thread(target=self._write_loop, name="streamsent-write", daemon=True))
        for t in self._threads:
            t.start()
        last_input = last_lag = time.monotonic()
        seen_any = False
        try:
            while not self._stop.is_set():
                self._raise_if_failed()
                if self.metrics is not None and time.monotonic() - last_lag >= 1.0:  # consumer calls: this thread
                    self.metrics.set_lag(self.source.lag())
                    last_lag = time.monotonic()
                records = self.source.poll(self.batcher.wait_s())
                if records:
                    last_input, seen_any = time.monotonic(), True
                if records:
                    self.stats.records += len(records)
                    fields, max_bytes = self.fields, self.max_message_bytes
                    for full in self.batcher.extend([decode_record(r, fields, max_bytes) for r in records]):
                        self._submit(full)
                if self.batcher.due():
                    self._submit(self.batcher.close())
                self._commit_done()
                if getattr(self.source, "exhausted", False) and not records:
                    break
                if stop_after_idle_s is not None and seen_any and time.monotonic() - last_input > stop_after_idle_s:
                    break
            self._drain()
            if self.state is not None:
                self.state.close()  # final changelog flush and checkpoint
        finally:
            self._shutdown_threads()
        self._raise_if_failed()
        return self.stats

    # -- the polling thread ------------------------------------------------------------------------------------
    def _submit(self, batch: MicroBatch | None) -> None:
        if batch is None:
            return
        self._in_flight += 1
        slot = _Slot(batch)
        self._put(self._to_score, slot)
        self._put(self._to_write, slot)

    def _put(self, q: queue.Queue, item: object) -> None:
        while True:  # bounded queue: wait for room (back-pressure), but keep an eye on failures
            self._raise_if_failed()
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                self._commit_done()

    def _commit_done(self, block: bool = False, force: bool = False) -> None:
        """Commit the offsets of the batches the writer has finished (in order, so offsets only move forward).

        Finished offsets gather in `_pending` and go to the broker at most every `commit_interval_s` (a commit
        is a synchronous round trip), and always when draining (`force`).
        """
        while True:
            try:
                batch = self._done.get(timeout=0.1) if block else self._done.get_nowait()
            except queue.Empty:
                break
            self._in_flight -= 1
            if self.transactions is None:  # exactly-once: the writer committed the offsets in its transaction
                for tp, off in batch.offsets.items():
                    self._pending[tp] = max(self._pending.get(tp, 0), off + 1)
            if block:
                break
        if not self._pending or not (force or time.monotonic() - self._last_commit >= self.commit_interval_s):
            return
        nxt, self._pending = self._pending, {}
        self._last_commit = time.monotonic()
        if self.state is not None:
            try:  # the changelog and the checkpoint must cover what is committed
                self.state.before_commit(nxt)
            except StreamsentError as exc:  # the changelog is unreachable: commit nothing, try again later
                self._pending = nxt
                self.stats.state_failures += 1
                log.warning("state not saved (%s); offsets not committed, will retry", exc)
                return
        try:
            self.source.commit(nxt)
        except CommitError as exc:
            if exc.retriable:  # the broker is away: keep the offsets and commit them with the next batch
                self._pending = nxt
                log.warning("commit failed (%s); will retry", exc)
            else:  # the partitions moved on (rebalance, broker restart): their records will be delivered again
                log.warning("commit refused (%s); those records will be re-delivered (at-least-once)", exc)
            return
        self.stats.commits += 1

    def _drain(self) -> None:
        """Close the open batch and wait until everything in flight is written and committed."""
        self._submit(self.batcher.close())
        self._commit_now.set()
        try:
            while self._in_flight > 0:
                self._raise_if_failed()
                self._commit_done(block=True)
            self._commit_done(force=True)
        finally:
            self._commit_now.clear()

    def _on_revoke(self, partitions: list[tuple[str, int]]) -> None:
        """Runs while the polling thread is blocked inside poll(), before the partitions are given up."""
        log.info("partitions %s are being revoked: draining and committing first", partitions)
        self._drain()
        if self.state is not None:
            self.state.revoked(partitions)

    def _on_assign(self, partitions: list[tuple[str, int]]) -> None:
        """Runs inside poll() before any record of the new partitions is returned: their state comes back first."""
        if self.state is not None:
            self.state.assigned(partitions)

    def _on_lost(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions taken away without a chance to commit: finish writing; their commits will be refused."""
        log.warning("partitions %s were lost; their uncommitted records will be re-delivered", partitions)
        self._drain()
        if self.state is not None:
            self.state.lost(partitions)

    # -- worker threads ----------------------------------------------------------------------------------------
    def _score_loop(self) -> None:
        try:
            if self.threads or self.scorers > 1:  # numba.set_num_threads is per thread: set it where it scores
                import numba

                cores = numba.config.NUMBA_NUM_THREADS
                numba.set_num_threads(min(self.threads, cores) if self.threads else max(1, cores // self.scorers))
            while (slot := self._to_score.get()) is not _STOP:
                batch = slot.batch
                t = time.perf_counter()
                changes = None
                if not batch.docs:
                    rows, refused = None, []
                elif self.state is not None:
                    result = self.state.score(batch.docs)
                    rows, refused, changes = result.rows, result.letters, result.changes
                else:
                    rows, refused = score_docs(self.model, batch.docs, attention=self._attention)
                batch.letters.extend(refused)
                self.stats.last_batch_ms = (time.perf_counter() - t) * 1000
                slot.rows, slot.started, slot.changes = rows, t, changes
                slot.done.set()
        except BaseException as exc:  # noqa: BLE001 - surfaced on the polling thread
            self._fail(exc)

    def _scored(self, slot: _Slot):
        """Wait until the scorers finished this slot (they may finish out of order); its rows for the sinks, or
        _STOP when the pipeline failed meanwhile."""
        while not slot.done.wait(0.1):
            if self._failed is not None:
                return _STOP
        rows = slot.rows  # attention columns are for the dashboard, not the sinks
        return rows.select(self._columns) if rows is not None and rows.num_columns > len(self._columns) else rows

    def _written(self, slot: _Slot, out, letters: list[DeadLetter]) -> None:
        """A batch is durably written (committed, under exactly-once): count it, show it, let its offsets go."""
        batch, rows = slot.batch, slot.rows
        rejected = len(letters) - len(batch.letters)
        batch.letters = letters
        self.stats.batches += 1
        self.stats.rows_rejected += rejected
        self.stats.docs_scored += (0 if rows is None else rows.num_rows) - rejected
        for letter in letters:
            self.stats.dead_letters[letter.reason] = self.stats.dead_letters.get(letter.reason, 0) + 1
        if self.metrics is not None:
            self.metrics.record_batch(batch, rows, time.perf_counter() - slot.started)
        if self.on_batch is not None:
            self.on_batch(batch, out)
        self._done.put(batch)

    def _write_loop(self) -> None:
        if self.transactions is not None:
            return self._write_loop_txn()
        try:
            while (slot := self._to_write.get()) is not _STOP:
                if (out := self._scored(slot)) is _STOP:
                    return
                letters = self._write_durably(slot.batch, out)
                if slot.changes is not None:
                    self._send_state(slot.batch, slot.changes)
                self._written(slot, out, letters)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)

    def _write_durably(self, batch: MicroBatch, rows) -> list[DeadLetter]:
        """Write to every sink and flush; on a sink outage retry with back-off (nothing is committed meanwhile).
        Returns the batch's dead letters, the rows the sinks rejected included (see `_write_once`)."""
        delay = 0.2
        while True:
            try:
                return self._write_once(batch, rows)
            except Exception as exc:  # noqa: BLE001 - a sink outage: retry until it comes back or we stop
                if self._stop.is_set() and delay > 5:
                    raise
                self._retrying(f"writing batch {batch.seq}", exc, delay)
                delay = min(delay * 2, 10.0)

    def _retrying(self, what: str, exc: BaseException, delay: float) -> None:
        """Count, show and log a failed attempt, then wait before the next (a stop wakes the wait)."""
        self.stats.write_retries += 1
        if self.metrics is not None:
            self.metrics.record_write_retry(str(exc))
        log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
        self._stop.wait(delay)

    def _write_once(self, batch: MicroBatch, rows) -> list[DeadLetter]:
        """One attempt: every sink, the dead letters, every flush; raises on an outage.

        A row a sink can never take (`RowsRejected`, or any other error that the row alone reproduces) is not an
        outage: it is dead-lettered as `sink_rejected` and the batch goes on, so one odd row cannot wedge the
        pipeline in a retry loop. The rejections are worked out again on each attempt (no letter twice)."""
        rejected: list[DeadLetter] = []
        if rows is not None and rows.num_rows:
            for sink in self.sinks:
                given = _with_text(rows, batch) if getattr(sink, "wants_text", False) else rows
                rejected += self._write_rows(sink, given, batch)
        letters = batch.letters + rejected
        if letters:
            self.dead_letter.write(letters)
        for sink in self.sinks:
            sink.flush()
        self.dead_letter.flush()
        return letters

    # -- exactly-once ------------------------------------------------------------------------------------------
    def _write_loop_txn(self) -> None:
        """The writer under exactly-once: batches go into an open Kafka transaction, which is committed with their
        offsets every `commit_interval_s`, when no batch came for that long, and at once when the polling thread
        drains (a rebalance, a stop). Nothing of a batch counts as written before its transaction committed."""
        txn = self.transactions
        assert txn is not None
        open_: list[tuple[_Slot, object, list[DeadLetter]]] = []  # written into the open transaction
        opened = last = 0.0
        idle_s = min(self.commit_interval_s, _TXN_IDLE_S)
        try:
            while True:
                try:
                    slot = self._to_write.get(timeout=0.01 if open_ else 0.1)
                except queue.Empty:
                    slot = None
                if slot is _STOP:
                    if open_:
                        self._commit_txn(open_)
                    return
                now = time.monotonic()
                if slot is not None:
                    if (out := self._scored(slot)) is _STOP:
                        return
                    if not open_:
                        opened = now
                    last = now
                    open_.append((slot, out, []))
                    self._in_txn(open_, len(open_) - 1)
                if open_ and (now - opened >= self.commit_interval_s or now - last >= idle_s
                              or self._commit_now.is_set()):
                    self._commit_txn(open_)
                    open_ = []
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            with contextlib.suppress(Exception):
                txn.abort()  # a failure left it open: nothing of it becomes visible

    def _in_txn(self, open_: list, start: int) -> None:
        """Write open_[start:] into the transaction (opening one if none is open); on failure recover (which
        writes all of open_ again)."""
        txn = self.transactions
        delay = 0.2
        while open_:
            try:
                txn.begin()
                for i in range(start, len(open_)):
                    slot, out, _ = open_[i]
                    open_[i] = (slot, out, self._write_once(slot.batch, out))
                return
            except Exception as exc:  # noqa: BLE001 - classified in _recover
                if not self._recover(open_, exc, delay):
                    return
                delay, start = min(delay * 2, 10.0), 0

    def _commit_txn(self, open_: list) -> None:
        """Commit the open transaction with the offsets after its batches; then they count as written."""
        txn = self.transactions
        delay = 0.2
        while open_:
            offsets: dict[tuple[str, int], int] = {}
            for slot, _, _ in open_:
                for tp, off in slot.batch.offsets.items():
                    offsets[tp] = max(offsets.get(tp, 0), off + 1)
            try:
                txn.commit(offsets, self.source.group_metadata())
            except Exception as exc:  # noqa: BLE001 - classified in _recover
                if not self._recover(open_, exc, delay):
                    return
                delay = min(delay * 2, 10.0)
                self._in_txn(open_, 0)
                continue
            self.stats.commits += 1
            for slot, out, letters in open_:
                self._written(slot, out, letters)
            return

    def _recover(self, open_: list, exc: BaseException, delay: float) -> bool:
        """After a failure in the open transaction: abort it, then either have its batches written again in a new
        one (True, after a back-off) or, when their partitions have moved to another member, drop them (False:
        the new owner reads them again from the committed offsets). A fenced producer stops the pipeline."""
        from .transactions import TransactionFenced, classify

        txn = self.transactions
        verdict = classify(exc)
        if verdict == "fenced":
            raise TransactionFenced(f"this worker was replaced (transactional id {txn.transactional_id!r}): {exc}")
        if verdict == "moved":
            txn.abort()
            log.warning("transaction of %d batch(es) aborted: the group moved on (%s); their records go to the "
                        "partitions' new owner", len(open_), exc)
            for slot, _, _ in open_:  # written by no one here: let the polling thread stop waiting for them
                self._in_flight_dropped(slot)
            open_.clear()
            return False
        if verdict == "restart":
            log.warning("transactional producer failed (%s); starting a new one", exc)
            txn.restart()
        else:
            txn.abort()
        if self._stop.is_set() and delay > 5:
            raise exc
        self._retrying(f"the transaction of {len(open_)} batch(es)", exc, delay)
        return True

    def _in_flight_dropped(self, slot: _Slot) -> None:
        self._done.put(slot.batch)  # counts down _in_flight on the polling thread; its offsets are not committed

    def _write_rows(self, sink, rows, batch: MicroBatch) -> list[DeadLetter]:
        """`sink.write(rows)`; the rows it can never take come back as dead letters. A sink outage (`SinkError`)
        propagates. Any other error is blamed on rows by halving: a half that writes is taken, a single row
        that fails alone is the culprit (a sink that took part of a failed write may then hold a row twice:
        at-least-once)."""
        try:
            sink.write(rows)
            return []
        except RowsRejected as exc:
            return [_rejected(batch, rows, i, f"{exc.sink}: {why}") for i, why in sorted(exc.rejected.items())]
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - not an outage: find the rows it belongs to
            if rows.num_rows <= 1:
                return [_rejected(batch, rows, 0, f"{type(sink).__name__}: {type(exc).__name__}: {exc}")]
            log.warning("%s could not take %d rows (%r); finding the rows at fault", type(sink).__name__,
                        rows.num_rows, exc)
            half = rows.num_rows // 2
            first = self._write_rows(sink, rows.slice(0, half), batch)
            return first + self._write_rows(sink, rows.slice(half), batch)

    def _send_state(self, batch: MicroBatch, changes) -> None:
        """Queue a written batch's state changes for the changelog; retried like a sink (the commit waits)."""
        assert self.state is not None
        delay = 0.2
        while True:
            try:
                self.state.written(changes)
                return
            except Exception as exc:  # noqa: BLE001 - the changelog producer cannot take them now
                if self._stop.is_set() and delay > 5:
                    raise
                self.stats.state_failures += 1
                log.warning("queueing the state changes of batch %d failed (%s); retrying in %.1f s", batch.seq,
                            exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            log.error("pipeline stopping: %s", exc, exc_info=exc)  # the traceback, for the log only
        self._stop.set()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise PipelineError(f"pipeline stopped: {self._failed}") from self._failed

    def _shutdown_threads(self) -> None:
        deadline = time.monotonic() + 30
        for q, threads in ((self._to_score, self._threads[:-1]), (self._to_write, self._threads[-1:])):
            for _ in threads:
                while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
                    try:  # a thread may be gone (a failure) and its queue full: never block forever here
                        q.put(_STOP, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))



@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of the hot path while the pipeline runs.

    Each document makes a handful of short-lived objects (record, document, rows), so the collector ran ~400
    times in a 60k-tweet run and its full passes walked every object of the process (the model, numpy, pyarrow,
    numba), holding the interpreter lock for 70-90 ms each: ~0.4 s of a ~2.5 s run (bench/pipeline.py).
    `gc.freeze()` moves what exists at start into a generation the collector never scans, and a higher
    first threshold makes young collections rarer (the pipeline's objects are freed by reference counting; the
    collector only matters for cycles). Both are undone when the pipeline returns."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 10_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _Slot:
    """One batch on its way through the scorers to the writer: the writer waits on `done`."""

    __slots__ = ("batch", "done", "rows", "started", "changes")

    def __init__(self, batch: MicroBatch) -> None:
        self.batch, self.done = batch, threading.Event()
        self.rows = self.changes = None
        self.started = 0.0


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "unknown"


def _concurrent_launches_ok(model: Model) -> bool:
    """Whether two threads may run parallel kernels at once: OpenMP and TBB allow it, workqueue aborts."""
    if _threading_layer() == "unknown":
        model.predict(["warm up the threading layer"])  # the layer is chosen at the first parallel kernel
    return _threading_layer() in ("omp", "tbb")


def _rejected(batch: MicroBatch, rows, i: int, detail: str) -> DeadLetter:
    """The dead letter for row i of a written table: the record of the document it was scored from, found by its
    coordinates (a row whose document is not found, which would be a bug, keeps the row itself as the payload)."""
    row = rows.slice(i, 1).to_pylist()[0]
    coords = (row.get("topic"), row.get("partition"), row.get("offset"), row.get("file"), row.get("row"))
    for d in batch.docs:
        r = d.record
        if (r.topic, r.partition, r.offset, r.file, r.row) == coords and d.doc_id == row.get("doc_id"):
            return DeadLetter(r, "sink_rejected", detail)
    return DeadLetter(Record(None, parsed={k: v for k, v in row.items() if k != "probs"}, topic=row.get("topic"),
                             partition=row.get("partition"), offset=row.get("offset"), file=row.get("file"),
                             row=row.get("row")), "sink_rejected", detail)


def _with_text(rows, batch: MicroBatch):
    """The scored rows plus the documents' text, for sinks meant for people (the terminal), not for downstream."""
    import pyarrow as pa

    text = {d.doc_id: d.text for d in batch.docs}
    return rows.append_column("text", pa.array([text.get(i) for i in rows.column("doc_id").to_pylist()], pa.string()))
