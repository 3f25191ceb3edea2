"""What every sink promises the pipeline: `write` buffers, `flush` makes durable (or raises), `close` flushes.

At-least-once delivery rests on one rule: the pipeline commits source offsets only after every sink's `flush()`
returned. So `flush()` must not return until the rows are durable (fsync'd, or acknowledged by Kafka), and must
raise `SinkError` when it cannot promise that.

After a `SinkError` (from `write` or `flush`) the sink has *forgotten* the rows written since its last successful
flush: some may have arrived, some not. It is usable again at once (a Kafka sink makes a new producer, a file sink
a new file), so the caller either writes those rows again before the next flush (the pipeline retries the batch,
which rides out a broker restart) or does not commit and replays from the committed offsets. What the caller must
never do is move on to the next batch and commit: that would commit the forgotten rows. Rows that arrived twice
are fine: outputs carry doc_id so downstream can de-duplicate.

A row the sink cannot take at all (one it cannot encode, a message over the topic's size limit) is not an outage:
retrying would fail the same way forever. `write` then takes every other row and raises `RowsRejected` naming the
rejected ones; the pipeline dead-letters them (`sink_rejected`) and goes on.

Sinks are used from one thread (the pipeline's output stage); they are not thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import pyarrow as pa

from ...errors import StreamsentError
from ..records import SCORED_COLUMNS, DeadLetter

__all__ = ["DeadLetterSink", "RowsRejected", "Sink", "SinkError", "require_scored_columns", "sync_directory"]


class SinkError(StreamsentError, RuntimeError):
    """A sink could not make its rows durable (or was used after close); offsets must not be committed."""


class RowsRejected(StreamsentError):
    """Some rows can never be taken by this sink (a deterministic, per-row failure); every other row was taken.

    `rejected` maps a row's index in the table given to `write` to why."""

    def __init__(self, sink: str, rejected: dict[int, str]) -> None:
        first = next(iter(rejected.items()))
        super().__init__(f"{sink}: {len(rejected)} row(s) rejected; row {first[0]}: {first[1]}")
        self.sink, self.rejected = sink, rejected


@runtime_checkable
class Sink(Protocol):
    """A destination for scored rows (a table with at least the `SCORED_COLUMNS`; extra columns are kept)."""

    def write(self, rows: pa.Table) -> None:
        """Take rows; they may stay buffered until `flush()`."""
        ...

    def flush(self) -> None:
        """Return only when everything written so far is durable; else raise `SinkError` (and forget the rows
        written since the last successful flush: see the module doc)."""
        ...

    def close(self) -> None:
        """Flush, then release files / connections. Idempotent."""
        ...


@runtime_checkable
class DeadLetterSink(Protocol):
    """A destination for input that could not be scored (same durability contract as `Sink`)."""

    def write(self, letters: list[DeadLetter]) -> None:
        """Take dead letters; they may stay buffered until `flush()`."""
        ...

    def flush(self) -> None:
        ...

    def close(self) -> None:
        ...


def require_scored_columns(rows: pa.Table, sink: str) -> None:
    """Fail loudly on a table that breaks the pipeline's contract (a bug upstream, not bad input)."""
    missing = [c for c in SCORED_COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"{sink}: scored rows lack the columns {missing}; got {rows.column_names}")


def sync_directory(path: str | os.PathLike) -> None:
    """fsync a directory so that a file created or renamed in it survives a crash (POSIX; no-op elsewhere)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows) do not sync directories
        pass
    finally:
        os.close(fd)


class Guard:
    """The closed state and error wording every sink shares."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def check(self) -> None:
        """Raise if the sink may no longer be used."""
        if self.closed:
            raise SinkError(f"{self.name} is closed")

    def close_with(self, flush: Callable[[], None], release: Callable[[], None] | None = None) -> None:
        """A sink's close: flush once, then mark it closed and release what it holds even if the flush failed;
        closing twice does nothing."""
        if self.closed:
            return
        try:
            flush()
        finally:
            self.closed = True
            if release is not None:
                release()

    def error(self, what: str, exc: BaseException) -> SinkError:
        """The error to raise after a failure (the caller has already reset the sink)."""
        return SinkError(f"{self.name}: {what}: {exc!r}; the rows written since the last successful flush must be "
                         f"written again (or replayed) before offsets are committed")
