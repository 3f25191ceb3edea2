"""The micro-batcher: documents gather until `max_docs`, `max_tokens` or `max_wait_ms`, whichever comes first."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .records import DeadLetter, Doc

__all__ = ["MicroBatch", "MicroBatcher", "estimate_tokens"]


def estimate_tokens(doc: Doc) -> int:
    """Tokens a document will cost, without tokenising it twice: words for text, ids for token lists."""
    if doc.tokens is not None:
        return sum(len(s) for s in doc.tokens)
    return doc.text.count(" ") + 1 if doc.text else 0


@dataclass
class MicroBatch:
    seq: int
    docs: list[Doc] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)  # bad input that arrived with these docs
    tokens: int = 0
    opened: float = field(default_factory=time.monotonic)
    # highest offset per (topic, partition) this batch covers (docs and dead letters alike)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.docs) + len(self.letters)


class MicroBatcher:
    def __init__(self, max_docs: int, max_tokens: int, max_wait_ms: int) -> None:
        self.max_docs, self.max_tokens, self.max_wait_s = max_docs, max_tokens, max_wait_ms / 1000
        self._seq = 0
        self._open = MicroBatch(0)

    def add(self, item: Doc | DeadLetter) -> MicroBatch | None:
        """Add one decoded record; returns a batch when this closed one."""
        full = self.extend([item])
        return full[0] if full else None

    def extend(self, items: list[Doc | DeadLetter]) -> list[MicroBatch]:
        """Add a poll's decoded records, in one loop (the polling thread's per-message cost); returns the batches
        they closed, in order."""
        full: list[MicroBatch] = []
        b = self._open
        max_docs, max_tokens = self.max_docs, self.max_tokens
        for item in items:
            if not b.docs and not b.letters:
                b.opened = time.monotonic()
            rec = item.record
            if rec.topic is not None and rec.offset is not None:
                tp = (rec.topic, rec.partition)
                if b.offsets.get(tp, -1) < rec.offset:
                    b.offsets[tp] = rec.offset
            if type(item) is DeadLetter:
                b.letters.append(item)
                continue
            b.docs.append(item)
            b.tokens += estimate_tokens(item)
            if len(b.docs) >= max_docs or b.tokens >= max_tokens:
                full.append(self.close())
                b = self._open
        return full

    def due(self) -> bool:
        return bool(len(self._open)) and time.monotonic() - self._open.opened >= self.max_wait_s

    def wait_s(self) -> float:
        """How long the caller may block waiting for input before the open batch falls due."""
        if not len(self._open):
            return self.max_wait_s if self.max_wait_s > 0 else 0.1
        return max(0.0, self.max_wait_s - (time.monotonic() - self._open.opened))

    def close(self) -> MicroBatch | None:
        """Close the open batch (if it holds anything) and start a new one."""
        if not len(self._open):
            return None
        done = self._open
        self._seq += 1
        self._open = MicroBatch(self._seq)
        return done
