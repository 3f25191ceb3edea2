"""`LiveState`: the state layer's part in a running pipeline, behind the few hooks the pipeline calls.

The pipeline stays ignorant of stores, checkpoints and changelogs; it calls
- `score(docs)` on the scorer thread (instead of scoring each message on its own);
- `written(changes)` on the writer thread, once a batch's rows are flushed to every sink: the batch's state
  changes go to the changelog (asynchronously);
- `before_commit(offsets)` on the polling thread, right before those offsets are committed: the changelog is
  flushed (a failure raises StateError and the commit must wait) and the checkpoint is saved with the offsets.
  So neither the changelog nor the checkpoint is ever behind the committed offsets; they may be ahead (the
  scorer runs ahead of the commits), which the store's re-delivery rule absorbs: a re-delivered message the
  state already holds is recognised by its offset and not applied twice;
- `assigned` / `revoked` / `lost` from the rebalance handlers: with a changelog, a partition's keys are dropped
  when it leaves and read back from the changelog when it arrives, before any of its messages is scored.
  Without one (a single worker) the keys stay: they can go nowhere else.

Known limit: writes are not fenced. A worker whose partitions were *lost* (its session expired while it was
busy) may still have changelog writes in flight for them, which can land after the new owner's; Kafka Streams
fences those with transactions. Keep `max_poll_interval_ms` above the longest batch and it does not arise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import StateError
from ..records import Doc
from .changelog import Changelog
from .checkpoint import load_checkpoint, save_checkpoint
from .scorer import STATE_COLUMNS, KeyedResult, KeyedScorer
from .store import StateChanges

__all__ = ["LiveState", "STATE_COLUMN_NAMES"]

log = logging.getLogger(__name__)

STATE_COLUMN_NAMES = tuple(name for name, _ in STATE_COLUMNS)
Partition = tuple[str, int]


class LiveState:
    """A `KeyedScorer` plus, optionally, a checkpoint directory and a changelog; see the module docstring."""

    def __init__(self, scorer: KeyedScorer, checkpoint_dir: Path | None = None,
                 changelog: Changelog | None = None) -> None:
        self.scorer = scorer
        self.store = scorer.store
        self.checkpoint_dir = checkpoint_dir
        self.changelog = changelog
        self.offsets: dict[Partition, int] = {}  # committed with the state so far (the checkpoint's offsets)
        self._model = f"{scorer.model.config.name}@{scorer.model.config.version}"

    # -- start and stop ----------------------------------------------------------------------------------------
    def load_checkpoint(self) -> int:
        """Restore the checkpoint in `checkpoint_dir`, if there is one; returns the keys loaded."""
        if self.checkpoint_dir is None:
            return 0
        ckpt = load_checkpoint(self.checkpoint_dir)
        if ckpt is None:
            log.info("no state checkpoint in %s yet: conversations start afresh", self.checkpoint_dir)
            return 0
        n = ckpt.restore(self.store)
        self.offsets = dict(ckpt.offsets)
        log.info("restored %d of %d conversation keys from %s (saved %.0f s ago by %s)", n, len(ckpt.entries),
                 ckpt.path, time.time() - ckpt.saved_at, ckpt.model or "?")
        return n

    def close(self) -> None:
        """Final changelog flush and checkpoint (the pipeline has drained and committed), then the producer."""
        try:
            if self.changelog is not None:
                self.changelog.flush()
            self.checkpoint()
        finally:
            if self.changelog is not None:
                self.changelog.close()

    # -- the scorer and writer threads -------------------------------------------------------------------------
    def score(self, docs: list[Doc]) -> KeyedResult:
        return self.scorer.score(docs)

    def written(self, changes: StateChanges) -> None:
        """A batch's rows are flushed to every sink: queue its state changes for the changelog."""
        if self.changelog is not None and len(changes):
            self.changelog.send(changes)

    # -- the polling thread ------------------------------------------------------------------------------------
    def before_commit(self, offsets: Mapping[Partition, int]) -> None:
        """Make the changelog and the checkpoint cover everything up to `offsets` before they are committed.
        Raises StateError when the changelog cannot be flushed (commit nothing then; retry later)."""
        try:
            if self.changelog is not None:
                self.changelog.flush()
            self.checkpoint(pending=offsets)
        except StateError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Kafka client error, a full disk: the same for the pipeline
            raise StateError(f"saving conversation state failed: {exc!r}") from exc
        self.offsets.update(offsets)

    def checkpoint(self, pending: Mapping[Partition, int] | None = None) -> None:
        """Save the store with the offsets committed so far plus `pending` (those about to be committed)."""
        if self.checkpoint_dir is not None:
            offsets = {**self.offsets, **(pending or {})}
            save_checkpoint(self.checkpoint_dir, self.store, offsets, model=self._model,
                            labels=self.scorer.model.config.labels)

    def assigned(self, partitions: Sequence[Partition]) -> None:
        """New partitions: read their keys' state back from the changelog before any message is scored."""
        if self.changelog is None or not partitions:
            return
        by_topic: dict[str, list[int]] = {}
        for topic, p in partitions:
            by_topic.setdefault(topic, []).append(p)
        self.changelog.ensure_source_topics(list(by_topic))
        for topic, parts in sorted(by_topic.items()):
            self.changelog.restore(self.store, topic, parts)

    def revoked(self, partitions: Sequence[Partition]) -> None:
        """Partitions given up after the final commit: their keys now live with the next owner (changelog)."""
        if self.changelog is None:
            return
        dropped = sum(self.store.drop_partition(t, p) for t, p in partitions)
        for tp in partitions:
            self.offsets.pop(tp, None)
        log.info("dropped the state of %d keys of partitions %s (their next owner restores it)", dropped,
                 list(partitions))

    lost = revoked
