"""File sources: Parquet and Arrow IPC read a record batch at a time, JSON lines a line at a time.

Memory stays bounded by `batch_rows` whatever the file size: Parquet goes through `pyarrow.dataset` fragment by
fragment (one file at a time, so every row keeps its file and row number), Arrow IPC files are memory-mapped and
sliced, IPC streams and JSON lines are read incrementally. Rows are handed over already parsed (`Record.parsed`, a
dict of the row's columns as Python values); JSON lines are handed over as their bytes, so a line that is not UTF-8
or not JSON is dead-lettered with the bytes it had.

Coordinates: `file` is the path as found (or "<stdin>"); `row` is the 0-based row index within that file for
Parquet and Arrow (what `table.slice(row, 1)` takes) and the 1-based line number for JSON lines (what an editor
shows). Blank lines are skipped, not dead-lettered; a UTF-8 byte-order mark at the start of a JSON-lines file is
dropped.

A file that cannot be read (corrupt, not Arrow, vanished) becomes one `Record(error=...)` at the row where reading
stopped, and the source moves on to the next file: one bad file in a directory does not stop the run.

Files have no consumer group: `commit` only records progress in `committed` (with the same ordering check as
Kafka) and writes nothing, so a rerun reads everything again; `lag()` is {} and `assignment()` is [].
"""

from __future__ import annotations

import glob
import logging
import os
import select
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from ...errors import ConfigError
from ..config import FileSourceConfig
from ..jsonlines import strip_bom
from ..records import Record
from ..score import bounded_scan, open_dataset
from .base import Partition, RebalanceHandler, SourceError, check_forward

__all__ = ["ArrowSource", "JsonlSource", "ParquetSource"]

log = logging.getLogger(__name__)

STDIN_NAME = "<stdin>"
_ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_ARROW_FILE_MAGIC = b"ARROW1"


def expand_paths(path: str, suffixes: tuple[str, ...], what: str) -> list[str]:
    """A file, a directory (its files with `suffixes`, recursively, sorted; hidden and `_` files skipped, as
    pyarrow.dataset does) or a glob (sorted), as a list of files; a ConfigError when that is none."""
    if any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise ConfigError(f"input {path!r}: the pattern matches no file")
        return files
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                       and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts))
        if not files:
            raise ConfigError(f"input {path!r}: the directory holds no {what} file ({', '.join(suffixes)})")
        return files
    if not p.exists():
        raise ConfigError(f"input {path!r}: no such file or directory")
    return [path]


class _FileSource:
    """What all file sources share: finite, no group, progress commits recorded in memory only."""

    def __init__(self, cfg: FileSourceConfig) -> None:
        self._cfg = cfg
        self._exhausted = False
        self._closed = False
        self.committed: dict[Partition, int] = {}  # progress the pipeline reported; never persisted

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Record progress (checked to move forward); nothing is written: a file source always starts at the top."""
        check_forward(self.committed, offsets)
        self.committed.update(offsets)

    def set_rebalance_handlers(self, on_revoke: RebalanceHandler, on_assign: RebalanceHandler,
                               on_lost: RebalanceHandler | None = None) -> None:
        """Files are never rebalanced: the handlers are never called."""

    def assignment(self) -> list[Partition]:
        return []

    def lag(self) -> dict[Partition, int]:
        return {}

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError(f"poll() on a closed {type(self).__name__}")


class _BatchFileSource(_FileSource):
    """Parquet and Arrow: a generator of record chunks (one Arrow batch of at most `batch_rows` rows each)."""

    def __init__(self, cfg: FileSourceConfig) -> None:
        super().__init__(cfg)
        self._chunks: Iterator[list[Record]] = self._read()

    def poll(self, timeout_s: float) -> list[Record]:
        """The next chunk of rows (at most `batch_rows`); [] once exhausted. Never waits: files are all there."""
        self._check_open()
        if self._exhausted:
            return []
        chunk = next(self._chunks, None)
        if chunk is None:
            self._exhausted = True
            return []
        return chunk

    def close(self) -> None:
        super().close()
        self._chunks.close()  # runs the generator's cleanup: open files are closed

    def _read(self) -> Iterator[list[Record]]:
        raise NotImplementedError

    @staticmethod
    def _rows(batch: pa.RecordBatch, file: str, first_row: int) -> list[Record]:
        now = time.time()
        return [Record(value=None, file=file, row=first_row + i, parsed=row, received=now)
                for i, row in enumerate(batch.to_pylist())]

    @staticmethod
    def _unreadable(file: str, row: int, what: str, exc: BaseException) -> list[Record]:
        log.error("cannot read %s file %s at row %d: %s; skipping the rest of it", what, file, row, exc)
        return [Record(value=None, file=file, row=row, error=f"cannot read the {what} file from this row on: {exc}")]


class ParquetSource(_BatchFileSource):
    """A Parquet file, directory or glob (through `open_dataset`), file by file, `batch_rows` rows at a time."""

    def __init__(self, cfg: FileSourceConfig) -> None:
        self._dataset = open_dataset(cfg.path)
        super().__init__(cfg)

    def _read(self) -> Iterator[list[Record]]:
        schema = self._dataset.schema  # every file is read as the dataset's schema (missing columns are null)
        for fragment in sorted(self._dataset.get_fragments(), key=lambda f: f.path):
            row = 0
            try:
                for batch in fragment.to_batches(schema=schema, batch_size=self._cfg.batch_rows,
                                                 **bounded_scan(self._dataset)):
                    if batch.num_rows:
                        yield self._rows(batch, fragment.path, row)
                        row += batch.num_rows
            except (pa.ArrowException, OSError) as exc:
                yield self._unreadable(fragment.path, row, "Parquet", exc)


class ArrowSource(_BatchFileSource):
    """Arrow IPC, file format (memory-mapped) or stream format, told apart by the file's first bytes; a file,
    directory, glob, or "-" for a stream on stdin (there `poll` waits for the writer's next record batch)."""

    def __init__(self, cfg: FileSourceConfig) -> None:
        self._files = [STDIN_NAME] if cfg.path == "-" else expand_paths(cfg.path, _ARROW_SUFFIXES, "Arrow IPC")
        super().__init__(cfg)

    def _read(self) -> Iterator[list[Record]]:
        n = self._cfg.batch_rows
        for file in self._files:
            row = 0
            try:
                for batch in _ipc_batches(file):
                    for start in range(0, batch.num_rows, n):  # zero-copy slices of the writer's batches
                        piece = batch.slice(start, n)
                        yield self._rows(piece, file, row)
                        row += piece.num_rows
            except (pa.ArrowException, OSError) as exc:
                yield self._unreadable(file, row, "Arrow IPC", exc)


def _ipc_batches(file: str) -> Iterator[pa.RecordBatch]:
    """Record batches of an IPC file (random-access format) or stream, whichever the file holds."""
    if file == STDIN_NAME:
        yield from pyarrow.ipc.open_stream(sys.stdin.buffer)
        return
    with open(file, "rb") as f:
        is_file_format = f.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC
    if is_file_format:
        with pa.memory_map(file) as source:
            reader = pyarrow.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
    else:
        with pa.OSFile(file) as source:
            yield from pyarrow.ipc.open_stream(source)


class _LineReader:
    """Lines from a file descriptor; on a pipe (stdin) it waits at most a timeout for more instead of blocking, so
    the pipeline's batch deadline and shutdown still work while input trickles in."""

    _CHUNK = 1 << 20

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._pos = 0  # start of the first unread line in _buf
        self._at_end = False  # the descriptor said end of file (the buffer may still hold a last line)
        self.line = 0  # number of the last line handed out (1-based)
        self.done = False  # everything handed out

    def read(self, max_lines: int, timeout_s: float) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < max_lines and not self.done:
            newline = self._buf.find(b"\n", self._pos)
            if newline >= 0:
                out.append(self._take(newline, newline + 1))
            elif self._at_end:
                if self._pos < len(self._buf):  # a last line without a newline
                    out.append(self._take(len(self._buf), len(self._buf)))
                self.done = True
            elif out and not self._ready(0.0):
                break  # hand over what we have rather than wait for more
            elif not self._ready(max(0.0, deadline - time.monotonic())):
                break
            else:
                chunk = os.read(self._fd, self._CHUNK)
                del self._buf[:self._pos]
                self._pos = 0
                if chunk:
                    self._buf += chunk
                else:
                    self._at_end = True
        return out

    def _take(self, end: int, next_pos: int) -> tuple[int, bytes]:
        raw = bytes(self._buf[self._pos:end])
        self._pos = next_pos
        self.line += 1
        if raw.endswith(b"\r") and next_pos > end:
            raw = raw[:-1]  # CRLF line ending
        if self.line == 1:
            raw = strip_bom(raw)
        return self.line, raw

    def _ready(self, timeout_s: float) -> bool:
        if os.name != "posix":  # pragma: no cover - select() takes no pipes on Windows: read blocks there
            return True
        return bool(select.select([self._fd], [], [], timeout_s)[0])


class JsonlSource(_FileSource):
    """JSON lines from a file, directory, glob or stdin ("-"): each non-blank line is a Record with the line's bytes."""

    def __init__(self, cfg: FileSourceConfig) -> None:
        super().__init__(cfg)
        self._files = [STDIN_NAME] if cfg.path == "-" else expand_paths(cfg.path, _JSONL_SUFFIXES, "JSON-lines")
        self._next_file = 0
        self._file: str | None = None
        self._reader: _LineReader | None = None
        self._fd: int | None = None

    def poll(self, timeout_s: float) -> list[Record]:
        """Up to `batch_rows` lines; from stdin, what arrived within `timeout_s` ([] if nothing did)."""
        self._check_open()
        out: list[Record] = []
        deadline = time.monotonic() + max(0.0, timeout_s)
        while len(out) < self._cfg.batch_rows and not self._exhausted:
            if self._reader is None:
                error = self._open_next()
                if error is not None:
                    out.append(error)
                continue
            assert self._file is not None
            try:
                lines = self._reader.read(self._cfg.batch_rows - len(out), max(0.0, deadline - time.monotonic()))
            except OSError as exc:
                row = self._reader.line + 1
                log.error("cannot read JSON-lines file %s at line %d: %s; skipping the rest of it", self._file, row,
                          exc)
                out.append(Record(value=None, file=self._file, row=row,
                                  error=f"cannot read the JSON-lines file from this line on: {exc}"))
                self._close_file()
                continue
            now = time.time()
            out.extend(Record(value=raw, file=self._file, row=number, received=now)
                       for number, raw in lines if raw.strip())
            if self._reader.done:
                self._close_file()
            elif len(out) < self._cfg.batch_rows:
                break  # a pipe with nothing more for now
        return out

    def close(self) -> None:
        super().close()
        self._close_file()

    def _open_next(self) -> Record | None:
        """Open the next file (sets exhausted after the last); a file that cannot be opened -> an error record."""
        if self._next_file >= len(self._files):
            self._exhausted = True
            return None
        file = self._files[self._next_file]
        self._next_file += 1
        try:
            fd = sys.stdin.buffer.fileno() if file == STDIN_NAME else os.open(file, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            log.error("cannot open JSON-lines file %s: %s; skipping it", file, exc)
            return Record(value=None, file=file, row=None, error=f"cannot open the JSON-lines file: {exc}")
        self._file, self._fd, self._reader = file, fd, _LineReader(fd)
        return None

    def _close_file(self) -> None:
        if self._fd is not None and self._file != STDIN_NAME:
            os.close(self._fd)
        self._file = self._fd = self._reader = None

