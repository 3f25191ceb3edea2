"""Rolling Parquet files, durable at every flush without one small file per flush.

A Parquet file is readable only once its footer is written, so "fsync the open file" would make rows durable but
unreadable after a crash, and "close a file at every flush" would tie the file size to the commit rate (a file per
micro-batch). Instead each open file is journalled:

- Rows are appended to a hidden Arrow IPC *stream* ``.scores-<start>-<seq>-<sink>.arrows``. A stream has no
  footer: every complete record batch in it is readable, even after a crash mid-write.
- ``flush()`` fsyncs the journal (and, once, the directory). That is the durability point offsets may be
  committed after; the rows are not yet visible as Parquet.
- The file *rolls* when it holds ``rows_per_file`` rows, when it is ``roll_seconds`` old (checked at each write
  and flush, so a pipeline that flushes while idle still rolls), when the table schema changes, at ``close()``
  and, with ``roll_on_flush=True``, at every flush: the journal is rewritten as
  ``.scores-....parquet.tmp``, fsync'd, atomically renamed to ``scores-<start>-<seq>-<sink>.parquet`` (the
  directory is fsync'd), and the journal is deleted. Readers globbing ``scores-*.parquet`` only ever see
  complete files.
- A crashed writer's journals are *recovered* by the next ParquetSink opened on the directory (a failed writer
  recovers its own, see `ParquetSink`): every complete batch is published as Parquet (a torn last batch was never
  flushed, so its rows were never committed and will be replayed). A journal still being written is protected by
  an exclusive ``flock``, so several workers can share a directory; the ``<sink>`` token keeps their file names
  apart. Without ``flock`` (Windows) nothing is recovered automatically; the journals stay readable with
  ``pyarrow.ipc.open_stream``.

``<start>`` is the UTC time the file was opened (``20250101T120000123Z``, milliseconds), ``<seq>`` counts the
sink's files from 000001, so names sort by time. Columns are written as given (``extra`` stays a JSON string).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ParquetSinkConfig
from .base import Guard, SinkError, require_scored_columns, sync_directory

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ParquetSink", "recover_journals"]

log = logging.getLogger(__name__)

_STEM = r"scores-\d{8}T\d{9}Z-\d{6}-[0-9a-f]{8}"
_JOURNAL_RE = re.compile(rf"\.({_STEM})\.arrows")
_TMP_RE = re.compile(rf"\.({_STEM})\.parquet\.tmp")
_OPENING_RE = re.compile(rf"\.({_STEM})\.arrows\.opening")
_STALE_OPENING_S = 3600.0  # an .opening file this old belongs to nobody (it is renamed within microseconds)


def _try_lock(f: IO[bytes]) -> bool:
    if fcntl is None:
        return False
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _codec(compression: str) -> str | None:
    return None if compression == "none" else compression


def _read_journal(path: Path) -> pa.Table | None:
    """Every complete record batch of a journal (None if it holds not even a schema)."""
    if path.stat().st_size == 0:
        return None
    source = pa.memory_map(str(path))
    try:
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowException):
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (OSError, pa.ArrowException) as exc:  # a torn last batch: written, never flushed
            log.warning("%s: keeping %d complete batches, dropping a torn tail (%s)", path.name, len(batches), exc)
            break
    return pa.Table.from_batches(batches, schema=reader.schema)


def _publish(journal: Path, final: Path, compression: str) -> Path | None:
    """Journal -> fsync'd Parquet under its final name; the journal is deleted. None if it held no rows."""
    table = _read_journal(journal)
    published: Path | None = None
    if table is not None and table.num_rows:
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression=_codec(compression))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        sync_directory(final.parent)
        published = final
    del table  # the memory map must go before the file does (Windows)
    journal.unlink()
    return published


def recover_journals(directory: str | os.PathLike, compression: str = "zstd") -> list[Path]:
    """Publish the journals of dead writers in `directory` as Parquet files; returns the files written.

    A journal whose writer is alive is locked and left alone. Safe to run from several processes at once.
    """
    directory = Path(directory)
    if fcntl is None:
        return []
    published: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if m := _OPENING_RE.fullmatch(entry.name):
            try:
                if time.time() - entry.stat().st_mtime > _STALE_OPENING_S:
                    entry.unlink()
            except FileNotFoundError:
                pass
            continue
        if (m := _TMP_RE.fullmatch(entry.name)) and not (directory / f".{m.group(1)}.arrows").exists():
            entry.unlink(missing_ok=True)  # a conversion whose journal was published or removed meanwhile
            continue
        if not (m := _JOURNAL_RE.fullmatch(entry.name)):
            continue
        try:
            f = open(entry, "rb")
        except FileNotFoundError:
            continue
        with f:
            if not _try_lock(f):
                continue  # a live writer
            try:
                if os.fstat(f.fileno()).st_ino != entry.stat().st_ino:
                    continue  # replaced under us
            except FileNotFoundError:
                continue  # another recoverer finished it
            final = directory / f"{m.group(1)}.parquet"
            if final.exists():  # published, then crashed before deleting the journal
                entry.unlink(missing_ok=True)
                continue
            out = _publish(entry, final, compression)
            if out is not None:
                log.warning("recovered %s from a writer that did not close it", out.name)
                published.append(out)
    return published


class _Journal:
    """One open file: an Arrow IPC stream under an exclusive lock."""

    def __init__(self, directory: Path, stem: str, schema: pa.Schema) -> None:
        self.path = directory / f".{stem}.arrows"
        self.final = directory / f"{stem}.parquet"
        opening = directory / f".{stem}.arrows.opening"
        self.file = open(opening, "xb")  # lock before the name is one recovery looks at
        try:
            _try_lock(self.file)
            os.replace(opening, self.path)
            self.writer = pa.ipc.new_stream(self.file, schema)
        except BaseException:
            self.file.close()
            raise
        self.schema = schema
        self.rows = 0
        self.opened = time.monotonic()
        self._named = False  # the directory entry is not yet fsync'd

    def append(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        if not self._named:
            sync_directory(self.path.parent)
            self._named = True

    def finish(self) -> None:
        self.writer.close()  # the end-of-stream marker; the file stays open (and locked)
        self.sync()

    def release(self) -> None:
        """Close (and unlock) the file; after a failure the file may be torn, which recovery tolerates."""
        try:
            self.writer.close()  # no-op after finish(); else an end-of-stream marker, harmless after a torn batch
        except (OSError, pa.ArrowException):
            pass
        self.file.close()


class ParquetSink:
    """Scored rows as rolling Parquet files in `path` (a directory, created if missing); see the module doc.

    `published` lists the Parquet files this sink rolled; `recovered` those it rebuilt from journals left behind
    (by dead writers, found when it opened, or by its own failures).

    After a failure (see base) the open file is let go, its journal (flushed rows included) is published by
    recovery at once if the disk allows, else at the next successful roll or the next start, and the next write
    starts a new file.
    """

    def __init__(self, path: str | os.PathLike, *, rows_per_file: int = 100_000, roll_seconds: float = 60.0,
                 compression: str = "zstd", roll_on_flush: bool = False) -> None:
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
        self.directory = Path(path)
        self.rows_per_file = rows_per_file
        self.roll_seconds = roll_seconds
        self.compression = compression
        self.roll_on_flush = roll_on_flush
        self.published: list[Path] = []
        self._guard = Guard(f"parquet sink {str(path)!r}")
        self._token = uuid.uuid4().hex[:8]
        self._seq = 0
        self._current: _Journal | None = None
        self._leftovers = False  # a failure left a journal behind that recovery has not published yet
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recovered = recover_journals(self.directory, compression)

    @classmethod
    def from_config(cls, cfg: ParquetSinkConfig) -> ParquetSink:
        return cls(cfg.path, rows_per_file=cfg.rows_per_file, roll_seconds=cfg.roll_seconds,
                   compression=cfg.compression)

    def _too_old(self, journal: _Journal) -> bool:
        return self.roll_seconds > 0 and time.monotonic() - journal.opened >= self.roll_seconds

    def _open(self, schema: pa.Schema) -> _Journal:
        self._seq += 1
        now = datetime.now(UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        return _Journal(self.directory, f"scores-{stamp}-{self._seq:06d}-{self._token}", schema)

    def _roll(self) -> None:
        journal, self._current = self._current, None
        if journal is None:
            return
        try:
            journal.finish()
            out = _publish(journal.path, journal.final, self.compression)
        finally:
            journal.release()  # on failure the journal stays on disk, unlocked, for recovery
        if out is not None:
            log.debug("rolled %s (%d rows)", out.name, journal.rows)
            self.published.append(out)
        if self._leftovers:
            self._recover()

    def _recover(self) -> None:
        try:
            self.recovered.extend(recover_journals(self.directory, self.compression))
            self._leftovers = False
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s: a journal left by a failure stays unpublished for now: %r", self._guard.name, exc)

    def _reset(self, what: str, exc: BaseException) -> SinkError:
        """Let go of the open file after a failure (see the class doc) and return the error to raise."""
        if self._current is not None:
            journal, self._current = self._current, None
            try:
                journal.release()
            except OSError:
                pass
        self._leftovers = True
        self._recover()
        return self._guard.error(what, exc)

    def write(self, rows: pa.Table) -> None:
        self._guard.check()
        require_scored_columns(rows, self._guard.name)
        rows = rows.replace_schema_metadata(None)
        try:
            start = 0
            while start < rows.num_rows:
                cur = self._current
                if cur is not None and (not cur.schema.equals(rows.schema) or self._too_old(cur)):
                    self._roll()
                    cur = None
                if cur is None:
                    cur = self._current = self._open(rows.schema)
                take = min(rows.num_rows - start, self.rows_per_file - cur.rows)
                cur.append(rows.slice(start, take))
                start += take
                if cur.rows >= self.rows_per_file:
                    self._roll()
        except (OSError, pa.ArrowException) as exc:
            raise self._reset("write failed", exc) from exc

    def flush(self) -> None:
        self._guard.check()
        cur = self._current
        if cur is None:
            return
        try:
            if self.roll_on_flush or self._too_old(cur):
                self._roll()
            else:
                cur.sync()
        except (OSError, pa.ArrowException) as exc:
            raise self._reset("flush failed", exc) from exc

    def close(self) -> None:
        """Roll the open file (so its rows become visible) and release it."""
        if self._guard.closed:
            return
        try:
            self._roll()
        except (OSError, pa.ArrowException) as exc:
            raise self._reset("close failed", exc) from exc
        finally:
            self._guard.closed = True
        if self._leftovers:
            self._recover()
