"""In-memory sinks for tests (the Quix Streams idea): keep what was written, and fail on demand.

`fail_flush` lets a pipeline test check the at-least-once rule without a broken disk or broker: while it holds an
exception, every `flush()` raises `SinkError` and, like a real sink, forgets the rows written since the last good
flush (they are moved to `lost`), so a pipeline that does not write them again loses them visibly.
"""

from __future__ import annotations

import pyarrow as pa

from ..records import DeadLetter
from .base import Guard

__all__ = ["MemoryDeadLetterSink", "MemorySink"]


class MemorySink:
    """Keeps every durable table in `tables` (and those written since in `tables[flushed_tables:]`)."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.lost: list[pa.Table] = []  # written, then forgotten by a failed flush
        self.flushed_tables = 0
        self.flushes = 0
        self.fail_flush: BaseException | None = None
        self._guard = Guard("memory sink")

    @property
    def closed(self) -> bool:
        return self._guard.closed

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables)

    @property
    def flushed_rows(self) -> int:
        return sum(t.num_rows for t in self.tables[:self.flushed_tables])

    def table(self) -> pa.Table | None:
        """Everything written so far as one table (None before the first write)."""
        return pa.concat_tables(self.tables, promote_options="default") if self.tables else None

    def write(self, rows: pa.Table) -> None:
        self._guard.check()
        self.tables.append(rows)

    def flush(self) -> None:
        self._guard.check()
        if self.fail_flush is not None:
            self.lost.extend(self.tables[self.flushed_tables:])
            del self.tables[self.flushed_tables:]
            raise self._guard.error("flush failed (fail_flush)", self.fail_flush) from self.fail_flush
        self.flushed_tables = len(self.tables)
        self.flushes += 1

    def close(self) -> None:
        if self._guard.closed:
            return
        try:
            self.flush()
        finally:
            self._guard.closed = True


class MemoryDeadLetterSink:
    """Keeps every dead letter in `letters`; `flushed` counts those covered by the last good flush."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.lost: list[DeadLetter] = []
        self.flushed = 0
        self.fail_flush: BaseException | None = None
        self._guard = Guard("memory dead-letter sink")

    @property
    def closed(self) -> bool:
        return self._guard.closed

    def write(self, letters: list[DeadLetter]) -> None:
        self._guard.check()
        self.letters.extend(letters)

    def flush(self) -> None:
        self._guard.check()
        if self.fail_flush is not None:
            self.lost.extend(self.letters[self.flushed:])
            del self.letters[self.flushed:]
            raise self._guard.error("flush failed (fail_flush)", self.fail_flush) from self.fail_flush
        self.flushed = len(self.letters)

    def close(self) -> None:
        if self._guard.closed:
            return
        try:
            self.flush()
        finally:
            self._guard.closed = True
