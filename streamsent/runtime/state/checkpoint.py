"""The state store and the source offsets it goes with, in one local file written atomically.

State and offsets must move together: after a crash the worker loads the checkpoint and resumes each partition
at the checkpoint's offset (not later), so no message is missing from the carried state; a message the state
already holds (the store may run ahead of the offsets it was saved with) is recognised by the store's
re-delivery rule and not applied twice.

One file, `<dir>/state.arrow` (Arrow IPC, one row per key), replaced by rename: written to a temporary file in
the same directory, fsync'd, renamed over the old one, and the directory fsync'd, so a reader sees the old
checkpoint or the new one, never a torn one. The schema metadata holds the format, the state layout, the model
and the offsets (`[[topic, partition, next_offset], ...]`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ...errors import StateError
from .store import Entries, StateLayout, StateStore

__all__ = ["Checkpoint", "FILE_NAME", "FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "streamsent-state/1"
FILE_NAME = "state.arrow"
Offsets = Mapping[tuple[str, int], int]  # (topic, partition) -> next offset to read


@dataclass(frozen=True)
class Checkpoint:
    layout: StateLayout
    entries: Entries
    offsets: dict[tuple[str, int], int]
    model: str
    saved_at: float
    path: Path
    labels: tuple[str, ...] = ()

    def restore(self, store: StateStore) -> int:
        """Load the entries into a store (keys past the TTL are skipped); returns how many were loaded."""
        if store.layout != self.layout:
            raise StateError(f"{self.path}: checkpoint state layout {self.layout.to_dict()} does not fit the model's "
                             f"{store.layout.to_dict()} (saved by model '{self.model}'); move the [state] dir aside "
                             "to start afresh")
        return store.load(self.entries)


def _table(entries: Entries, width: int) -> pa.Table:
    rows = pa.FixedSizeListArray.from_arrays(pa.array(entries.rows.reshape(-1)), width)
    return pa.table({
        "key": pa.array(entries.keys, pa.string()),
        "row": rows,
        "messages": pa.array(entries.messages, pa.int64()),
        "last_seen": pa.array(entries.last_seen, pa.float64()),
        "topic": pa.array(entries.topics, pa.string()).dictionary_encode(),
        "partition": pa.array(entries.partitions, pa.int32()),
        "offset": pa.array(entries.offsets, pa.int64()),
    })


def save_checkpoint(directory: str | os.PathLike, store: StateStore, offsets: Offsets, model: str = "",
                    labels: Sequence[str] = ()) -> Path:
    """Write every key's state with `offsets` (those about to be committed), atomically. Call it before the
    commit: a crash in between leaves state ahead of the committed offsets, which re-delivery detection absorbs."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    entries = store.export()
    table = _table(entries, store.layout.width)
    meta = {"format": FORMAT, "layout": store.layout.to_dict(), "model": model, "labels": list(labels),
            "saved_at": time.time(),
            "offsets": [[t, int(p), int(o)] for (t, p), o in sorted(offsets.items())]}
    table = table.replace_schema_metadata({"streamsent": json.dumps(meta)})
    final = root / FILE_NAME
    tmp = root / f".{FILE_NAME}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            with pa.ipc.new_file(f, table.schema) as writer:
                writer.write_table(table, max_chunksize=1 << 16)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)
    return final


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint in `directory`, or None when there is none yet."""
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    try:
        with pa.memory_map(str(path)) as src:
            table = pa.ipc.open_file(src).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StateError(f"{path}: not a readable state checkpoint ({exc})") from None
    raw = (table.schema.metadata or {}).get(b"streamsent")
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != FORMAT:
        raise StateError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    layout = StateLayout(**meta["layout"])
    n = table.num_rows
    rows_col = table.column("row").combine_chunks()
    rows = np.asarray(rows_col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(n, layout.width)
    entries = Entries(
        keys=table.column("key").to_pylist(),
        rows=rows,
        messages=table.column("messages").to_numpy().astype(np.int64),
        last_seen=table.column("last_seen").to_numpy().astype(np.float64),
        topics=table.column("topic").cast(pa.string()).to_pylist(),
        partitions=table.column("partition").to_numpy().astype(np.int32),
        offsets=table.column("offset").to_numpy().astype(np.int64),
    )
    offsets = {(t, int(p)): int(o) for t, p, o in meta.get("offsets", [])}
    return Checkpoint(layout, entries, offsets, str(meta.get("model", "")), float(meta.get("saved_at", 0.0)), path,
                      tuple(meta.get("labels", ())))
