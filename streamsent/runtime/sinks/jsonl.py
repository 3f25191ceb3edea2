"""Line-oriented sinks: JSON lines to a file or stdout, readable lines on the terminal, dead letters as JSON lines.

Durability: lines are appended to the file and `flush()` flushes Python's buffer and fsyncs the file (and, the
first time, its directory, so a newly created file's name survives a crash too). "-" writes to stdout (stderr for
dead letters): `flush()` flushes the stream and fsyncs it when it is a regular file (`> out.jsonl`); a pipe or a
terminal has nothing to sync. The stream is looked up at each write, so redirections made later (tests' capture,
a CLI that swaps stdout) are honoured.

A crash can leave a half-written last line (rows after the last flush; they are replayed). Opening the file again
first ends that line, so the fragment stays on a line of its own instead of corrupting the next record.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Literal

import pyarrow as pa

from ..records import DeadLetter
from .base import Guard, RowsRejected, require_scored_columns, sync_directory
from .rows import encode_each, text_lines

__all__ = ["JsonlDeadLetterSink", "JsonlSink", "StdoutSink"]


def _sync_stream(stream: IO[str]) -> None:
    stream.flush()
    try:
        os.fsync(stream.fileno())
    except (OSError, AttributeError, ValueError):  # a pipe, a terminal, or a captured stream: nothing to sync
        pass


class _Lines:
    """Appends text lines to a file (bytes, fsync'd) or to a standard stream ("-")."""

    def __init__(self, path: str | os.PathLike, stream: Literal["stdout", "stderr"]) -> None:
        self.path = None if str(path) == "-" else Path(path)
        self._stream_name = stream
        self._file: IO[bytes] | None = None
        self._new_file = False

    def _open(self) -> IO[bytes]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._new_file = self._new_file or not self.path.exists()  # its directory entry still needs a sync
        f = open(self.path, "ab")  # kept open for the sink's life
        if f.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write(b"\n")
        return f

    def write(self, lines: list[bytes]) -> None:
        """Append UTF-8 lines (each already encoded, so one that cannot be is refused before any is written)."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        if self.path is None:
            getattr(sys, self._stream_name).write(data.decode("utf-8"))
            return
        if self._file is None:
            self._file = self._open()
        self._file.write(data)

    def sync(self) -> None:
        if self.path is None:
            _sync_stream(getattr(sys, self._stream_name))
            return
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._new_file:
            sync_directory(self.path.parent)
            self._new_file = False

    def release(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def reset(self) -> None:
        """After a failure: drop the file object (its buffer is in an unknown state); the next write reopens the
        file, which ends a torn line first."""
        try:
            self.release()
        except OSError:
            pass


class _LineSink:
    """write -> lines, flush -> sync, close -> sync + release; a failure resets (see base)."""

    def __init__(self, lines: _Lines, name: str) -> None:
        self._lines = lines
        self._guard = Guard(name)

    def _append(self, lines: list[bytes]) -> None:
        self._guard.check()
        try:
            self._lines.write(lines)
        except OSError as exc:
            self._lines.reset()
            raise self._guard.error("write failed", exc) from exc

    def flush(self) -> None:
        self._guard.check()
        try:
            self._lines.sync()
        except OSError as exc:
            self._lines.reset()
            raise self._guard.error("flush failed", exc) from exc

    def close(self) -> None:
        self._guard.close_with(self.flush, self._lines.reset)


class JsonlSink(_LineSink):
    """Scored rows as JSON objects, one per line, appended to `path` ("-" = stdout)."""

    def __init__(self, path: str | os.PathLike, labels: tuple[str, ...] = ()) -> None:
        super().__init__(_Lines(path, "stdout"), f"jsonl sink {str(path)!r}")
        self.labels = labels

    def write(self, rows: pa.Table) -> None:
        require_scored_columns(rows, self._guard.name)
        _append_json(self, rows, self.labels)


def _append_json(sink: _LineSink, rows: pa.Table, labels: tuple[str, ...]) -> None:
    """The rows as JSON lines; rows that cannot be encoded are left out and reported (`RowsRejected`)."""
    lines, bad = encode_each(rows, labels)
    sink._append([line for line in lines if line is not None])
    if bad:
        raise RowsRejected(sink._guard.name, bad)


class StdoutSink(_LineSink):
    """Scores on stdout: `format="text"`, one readable line per document, or `"jsonl"`, the JSON objects."""

    def __init__(self, format: Literal["text", "jsonl"] = "text", labels: tuple[str, ...] = ()) -> None:
        if format not in ("text", "jsonl"):
            raise ValueError(f'stdout sink format must be "text" or "jsonl", got {format!r}')
        super().__init__(_Lines("-", "stdout"), f"stdout sink ({format})")
        self.format = format
        self.labels = labels
        self.wants_text = format == "text"  # the pipeline adds a `text` column for this sink only

    def write(self, rows: pa.Table) -> None:
        require_scored_columns(rows, self._guard.name)
        if self.format == "text":  # for people: a character with no UTF-8 form is shown as its escape
            self._append([line.encode("utf-8", "backslashreplace") for line in text_lines(rows, self.labels)])
        else:
            _append_json(self, rows, self.labels)


class JsonlDeadLetterSink(_LineSink):
    """Dead letters as JSON lines appended to `path` ("-" = stderr), each `DeadLetter.envelope(max_payload_bytes)`."""

    def __init__(self, path: str | os.PathLike = "dead-letter.jsonl", max_payload_bytes: int = 1_000_000) -> None:
        super().__init__(_Lines(path, "stderr"), f"dead-letter file {str(path)!r}")
        self.max_payload_bytes = max_payload_bytes

    def write(self, letters: list[DeadLetter]) -> None:
        self._append([letter.to_json(self.max_payload_bytes) for letter in letters])
