"""One key's carried state as a summary (`streamsent state inspect KEY`), read from a state checkpoint directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import StateError
from .checkpoint import load_checkpoint
from .store import StateLayout

__all__ = ["inspect_key", "format_summary"]


def inspect_key(key: str, directory: str | os.PathLike, labels: tuple[str, ...] | list[str] = (),
                now: float | None = None) -> dict[str, Any]:
    """A JSON-ready summary of `key` in the checkpoint in `directory`: messages applied, last message (time and
    source coordinate), the running label/score/probs, and the size of the carried vectors. `labels` name the
    probabilities (default: those saved with the checkpoint; else they are numbered). Raises StateError when there is no
    checkpoint or no such key (saying how many keys there are)."""
    ckpt = load_checkpoint(directory)
    if ckpt is None:
        raise StateError(f"no state checkpoint in {Path(directory)} (the [state] dir of a pipeline that ran with "
                         "state); nothing to inspect")
    keys = ckpt.entries.keys
    try:
        i = keys.index(key)
    except ValueError:
        raise StateError(f"key {key!r} is not in the checkpoint {ckpt.path} ({len(keys):,} keys; it may never have "
                         "been seen, or was evicted or expired)") from None
    e, lay = ckpt.entries, ckpt.layout
    row = e.rows[i]
    probs = row[lay.probs_at :].astype(float)
    names = next((list(n) for n in (labels, ckpt.labels) if len(n) == lay.labels), [str(j) for j in range(lay.labels)])
    best = int(np.argmax(probs))
    now = time.time() if now is None else now
    out: dict[str, Any] = {
        "key": key,
        "messages": int(e.messages[i]),
        "label": names[best],
        "score": round(float(probs[best]), 6),
        "probs": {n: round(float(p), 6) for n, p in zip(names, probs, strict=True)},
        "last_message_at": float(e.last_seen[i]),
        "idle_s": round(now - float(e.last_seen[i]), 3),
        "last_coordinate": None if e.offsets[i] < 0 else
        {"topic": e.topics[i], "partition": int(e.partitions[i]), "offset": int(e.offsets[i])},
        "state": _vectors(row, lay),
        "model": ckpt.model,
        "checkpoint": str(ckpt.path),
        "checkpoint_saved_at": ckpt.saved_at,
        "checkpoint_keys": len(keys),
    }
    return out


def _vectors(row: np.ndarray, lay: StateLayout) -> dict[str, Any]:
    """Sizes and norms of the carried vectors (a person checks that something is there, not the numbers)."""
    if lay.window:
        n = int(row[0])
        held = row[1 : 1 + n * lay.pooled].reshape(n, lay.pooled)
        return {"window": lay.window, "sentences_in_window": n, "sentence_dim": lay.pooled,
                "last_sentence_norm": round(float(np.linalg.norm(held[-1])), 6) if n else 0.0}
    h = row[: lay.hidden]
    out: dict[str, Any] = {"hidden": lay.hidden, "h_norm": round(float(np.linalg.norm(h)), 6)}
    if lay.lstm:
        out["c_norm"] = round(float(np.linalg.norm(row[lay.c_at : lay.c_at + lay.hidden])), 6)
    out["pool_count_or_sum_exp"] = round(float(row[lay.m_at + 1]), 6)
    out["pool_max_score"] = round(float(row[lay.m_at]), 6)
    out["pool_acc_norm"] = round(float(np.linalg.norm(row[lay.acc_at : lay.probs_at])), 6)
    return out


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The summary as aligned `name  value` lines for a terminal."""
    lines = []
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif k in ("last_message_at", "checkpoint_saved_at"):
            v = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v)) + f" ({v:.3f})"
        lines.append(f"{k:<20} {v}")
    return lines
