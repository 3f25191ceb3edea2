"""In-memory sinks for tests (the Quix Streams idea): keep what was written, and fail on demand.

`fail_flush` lets a pipeline test check the at-least-once rule without a broken disk or broker: while it holds an
exception, every `flush()` raises `SinkError` and, like a real sink, forgets the rows written since the last good
flush (they are moved to `lost`), so a pipeline that does not write them again loses them visibly.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import pyarrow as pa

from ..records import DeadLetter
from .base import Guard

__all__ = ["MemoryDeadLetterSink", "MemorySink"]

T = TypeVar("T")


class _Memory(Generic[T]):
    """What both memory sinks share: items written, the last good flush, and failure on demand."""

    def __init__(self, name: str) -> None:
        self.items: list[T] = []
        self.lost: list[T] = []  # written, then forgotten by a failed flush
        self.flushed = 0  # items covered by the last good flush
        self.flushes = 0
        self.fail_flush: BaseException | None = None
        self._guard = Guard(name)

    @property
    def closed(self) -> bool:
        return self._guard.closed

    def _append(self, items: list[T]) -> None:
        self._guard.check()
        self.items.extend(items)

    def flush(self) -> None:
        self._guard.check()
        if self.fail_flush is not None:
            self.lost.extend(self.items[self.flushed:])
            del self.items[self.flushed:]
            raise self._guard.error("flush failed (fail_flush)", self.fail_flush) from self.fail_flush
        self.flushed = len(self.items)
        self.flushes += 1

    def close(self) -> None:
        self._guard.close_with(self.flush)


class MemorySink(_Memory[pa.Table]):
    """Keeps every table written in `tables`; `flushed` of them are durable."""

    def __init__(self) -> None:
        super().__init__("memory sink")

    @property
    def tables(self) -> list[pa.Table]:
        return self.items

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.items)

    @property
    def flushed_rows(self) -> int:
        return sum(t.num_rows for t in self.items[:self.flushed])

    def table(self) -> pa.Table | None:
        """Everything written so far as one table (None before the first write)."""
        return pa.concat_tables(self.items, promote_options="default") if self.items else None

    def write(self, rows: pa.Table) -> None:
        self._append([rows])


class MemoryDeadLetterSink(_Memory[DeadLetter]):
    """Keeps every dead letter in `letters`; `flushed` counts those covered by the last good flush."""

    def __init__(self) -> None:
        super().__init__("memory dead-letter sink")

    @property
    def letters(self) -> list[DeadLetter]:
        return self.items

    def write(self, letters: list[DeadLetter]) -> None:
        self._append(list(letters))
