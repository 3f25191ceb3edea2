"""What every source promises the pipeline: `poll` records, `commit` progress, rebalance hooks, `close`.

A source hands over `Record`s (bytes or parsed rows plus their coordinates) and never decodes documents itself:
`decode_record` does that, so a bad message becomes a dead letter in one place whatever its origin. A source that
cannot read a message at all says so with `Record(error=...)` at the message's coordinates instead of raising,
because one unreadable message must not stop the stream.

Offsets are committed explicitly by the pipeline after its sinks have flushed (at-least-once). A commit that would
move an offset backwards is a bug in the caller, so it raises `OffsetOrderError` instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from ...errors import StreamsentError
from ..records import Record

__all__ = ["CommitError", "OffsetOrderError", "Partition", "RebalanceHandler", "Source", "SourceError",
           "check_forward"]

Partition = tuple[str, int]  # (topic, partition)
RebalanceHandler = Callable[[list[Partition]], None]


class SourceError(StreamsentError, RuntimeError):
    """A source cannot go on: the broker is unreachable at start, a rebalance handler failed, a fatal Kafka error."""


class OffsetOrderError(SourceError, ValueError):
    """A commit would move a committed offset backwards: the caller lost track of its offsets (a bug)."""


class CommitError(SourceError):
    """The broker did not take a commit. `retriable`: a later commit may succeed (broker down, timeout); if False
    the partitions are no longer ours (rebalanced away, group membership lost) and the commit never will."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


@runtime_checkable
class Source(Protocol):
    """A stream of input records with explicit progress commits.

    `poll` may return [] (nothing arrived within `timeout_s`). `commit` takes, per (topic, partition), the NEXT
    offset to read, as Kafka does. Rebalance handlers run inside `poll`; `on_revoke` returns before the partitions
    are given up, so the pipeline can flush and commit there.
    """

    @property
    def exhausted(self) -> bool:
        """True once a finite source (a file) has handed over everything; a Kafka source never is."""
        ...

    def poll(self, timeout_s: float) -> list[Record]: ...

    def commit(self, offsets: Mapping[Partition, int]) -> None: ...

    def set_rebalance_handlers(self, on_revoke: RebalanceHandler, on_assign: RebalanceHandler,
                               on_lost: RebalanceHandler | None = None) -> None: ...

    def assignment(self) -> list[Partition]: ...

    def lag(self) -> dict[Partition, int]: ...

    def close(self) -> None: ...


def check_forward(committed: Mapping[Partition, int], offsets: Mapping[Partition, int]) -> None:
    """Raise `OffsetOrderError` if any offset is not an int >= 0 or is below the one committed before."""
    bad = [f"{t}[{p}]: {o!r}" for (t, p), o in offsets.items()
           if not isinstance(o, int) or isinstance(o, bool) or o < 0]
    if bad:
        raise OffsetOrderError(f"offsets to commit must be ints >= 0 (the next offset to read); got {', '.join(bad)}")
    back = [f"{t}[{p}]: {committed[(t, p)]} -> {o}" for (t, p), o in sorted(offsets.items())
            if (t, p) in committed and o < committed[(t, p)]]
    if back:
        raise OffsetOrderError(f"commit would move offsets backwards ({', '.join(back)}); commits must be in order, "
                               "a batch's offsets committed after every earlier batch's")
