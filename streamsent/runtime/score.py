"""`streamsent score`: batch-score Parquet / Arrow files into one Parquet file, a record batch at a time.

Memory stays bounded by `batch_rows` whatever the input size: the dataset is scanned lazily and the output is
appended batch by batch to a temporary file that is renamed into place only when complete, so a crash never
leaves a half-written result under the final name.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import BatchError, ConfigError, DataError
from ..models.model import Model

__all__ = ["ScoreSummary", "bounded_scan", "open_dataset", "score_files", "score_table"]

_INPUT_ONLY = ("text", "tokens")  # consumed by the model, not copied to the output


@dataclass(frozen=True)
class ScoreSummary:
    rows: int  # every input row, each written to the output
    seconds: float
    output: Path
    unscored: int = 0  # rows with no token to score (null label, score and probs; see Model.predict)

    @property
    def docs_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def bounded_scan(dataset: ds.Dataset) -> dict:
    """Scan options (`to_batches(**bounded_scan(ds))`) that keep memory near one batch whatever the file size.

    Arrow's scanner reads ahead 16 batches and 4 files and pre-buffers whole Parquet row groups: `streamsent
    score` over a 1 GB file peaked at ~2 GB that way. One batch of read-ahead and a 1 MiB read buffer are enough:
    the scoring, not the reading, is the bottleneck.
    """
    options: dict = {"batch_readahead": 1, "fragment_readahead": 1}
    if isinstance(dataset, ds.FileSystemDataset) and isinstance(dataset.format, ds.ParquetFileFormat):
        options["fragment_scan_options"] = ds.ParquetFragmentScanOptions(use_buffered_stream=True,
                                                                         buffer_size=1 << 20, pre_buffer=False)
    return options


def open_dataset(source: str | os.PathLike) -> ds.Dataset:
    """A file, a directory or a glob of Parquet (or Arrow IPC: .arrow/.feather/.ipc) files.

    Arrow reads the schema of the first file here: one that is not of the format (or unreadable) is a DataError
    naming it, and so is a directory with no file at all."""
    src = str(source)
    files = sorted(glob.glob(src)) if any(c in src for c in "*?[") else None
    if files == []:
        raise ConfigError(f"input {src!r}: the pattern matches no file")
    target = files or src
    if files is None and not Path(src).exists():
        raise ConfigError(f"input {src!r}: no such file or directory")
    first = Path(files[0] if files else src)
    fmt = "ipc" if first.suffix in (".arrow", ".feather", ".ipc") else "parquet"
    try:
        dataset = ds.dataset(target, format=fmt)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"input {src!r}: cannot be read as {_FORMATS[fmt]} ({_one_line(exc)})") from None
    if not dataset.files:
        raise DataError(f"input {src!r}: the directory holds no {_FORMATS[fmt]} file")
    return dataset


_FORMATS = {"parquet": "Parquet", "ipc": "Arrow IPC"}


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (Arrow's can span several), for a one-line CLI error."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _fmt_name(dataset: ds.Dataset) -> str:
    return "Arrow IPC" if isinstance(dataset.format, ds.IpcFileFormat) else "Parquet"


def _check_files(dataset: ds.Dataset) -> int:
    """Read every file's own schema and row count before anything is scored, so that a file that cannot be read
    or lacks a needed column stops the run at once, naming it (not after the files before it were scored)."""
    total = 0
    for fragment in dataset.get_fragments():
        try:
            names = fragment.physical_schema.names
            total += fragment.count_rows()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{fragment.path}: cannot be read as {_fmt_name(dataset)} ({_one_line(exc)})") from None
        if "doc_id" not in names or not set(_INPUT_ONLY) & set(names):
            raise BatchError(f"{fragment.path}: input rows need 'doc_id' and 'text' or 'tokens'; its columns are "
                             f"{names}")
    return total


def _batches(dataset: ds.Dataset, batch_rows: int) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, record batch), file by file, each read as the dataset's schema (that of its first file); a file whose
    columns cannot be read so (another type) is a DataError naming both files."""
    for fragment in dataset.get_fragments():
        try:
            for rb in fragment.to_batches(schema=dataset.schema, batch_size=batch_rows, **bounded_scan(dataset)):
                if rb.num_rows:
                    yield fragment.path, rb
        except (pa.ArrowException, OSError) as exc:
            if fragment.path == dataset.files[0]:
                raise DataError(f"{fragment.path}: cannot be read as {_fmt_name(dataset)} ({_one_line(exc)})") \
                    from None
            raise DataError(f"{fragment.path}: cannot be read with the columns of {dataset.files[0]} (score files "
                            f"whose column types differ separately): {_one_line(exc)}") from None


def score_table(model: Model, table: pa.Table) -> pa.Table:
    """Scores for one table: doc_id, label, score, probs (+ attention), then every other input column except
    the text; an input column whose name an output column takes is kept as `input_<name>`. A row with no token
    to score keeps its place with null label, score and probs."""
    if "doc_id" not in table.column_names:
        raise BatchError(f"input rows need a 'doc_id' column; the input has {table.column_names}")
    scored = model.predict(table, batch_size=max(table.num_rows, 1))
    out_names = set(scored.column_names)
    for name in table.column_names:
        if name in _INPUT_ONLY or name == "doc_id":
            continue
        scored = scored.append_column(f"input_{name}" if name in out_names else name, table.column(name))
    return scored


def score_files(model: Model, source: str | os.PathLike, output: str | os.PathLike, batch_rows: int = 4096,
                progress: bool = True, console: Console | None = None) -> ScoreSummary:
    """Score every row of `source` into the Parquet file `output`; a problem with a file (unreadable, not the
    format, a column missing or of another type) or with the output raises an error naming it, leaving no output."""
    dataset = open_dataset(source)
    total = _check_files(dataset)
    output = Path(output)
    if output.is_dir():
        raise DataError(f"output {str(output)!r} is a directory; give the path of the Parquet file to write")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"output {str(output)!r}: cannot create its directory ({_one_line(exc)})") from None
    tmp = output.with_name(f".{output.name}.partial")
    writer: pq.ParquetWriter | None = None
    rows, unscored, t0 = 0, 0, time.perf_counter()
    cols = [TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn()]
    try:
        with Progress(*cols, console=console or Console(stderr=True), disable=not progress) as bar:
            task = bar.add_task("score", total=total, rate="")
            for path, rb in _batches(dataset, batch_rows):
                try:
                    out = score_table(model, pa.Table.from_batches([rb]))
                except BatchError as exc:  # e.g. token ids outside the vocabulary: say which file
                    raise BatchError(f"{path}: {exc}") from None
                unscored += out.column("label").null_count
                writer = _write(writer, tmp, output, out)
                rows += rb.num_rows
                bar.update(task, completed=rows, rate=f"{rows / (time.perf_counter() - t0):,.0f} docs/s")
        if writer is None:  # no rows: still write a valid, empty result
            writer = _write(None, tmp, output, score_table(model, dataset.schema.empty_table()))
        try:
            writer.close()
            writer = None
            os.replace(tmp, output)
        except OSError as exc:
            raise DataError(f"output {str(output)!r}: cannot be written ({_one_line(exc)})") from None
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return ScoreSummary(rows, time.perf_counter() - t0, output, unscored)


def _write(writer: pq.ParquetWriter | None, tmp: Path, output: Path, table: pa.Table) -> pq.ParquetWriter:
    """Append `table` to the temporary output (opened on the first call); an OSError names the output."""
    try:
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.cast(writer.schema))
    except OSError as exc:
        if writer is not None:
            writer.close()
        raise DataError(f"output {str(output)!r}: cannot be written ({_one_line(exc)})") from None
    return writer
