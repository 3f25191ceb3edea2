"""An in-memory keyed state store: per conversation key, the carried `CarryState` row and what it has seen.

Compact by design, because a stream can hold a million live conversations: one preallocated float32 slab
(`[max_keys, W]`, a row per slot) and a few flat per-slot arrays, plus a dict key -> slot. Per key that is
W * 4 + 45 bytes of arrays and the dict entry with its key string (~100-150 bytes), not a Python object with
several small arrays. `np.zeros` leaves the slab's pages untouched until a slot is first used, so the resident
size grows with the keys actually held, up to `max_keys`.

A row holds, for the encoder whose state carries (the word encoder of a `paragraph` model, the document encoder
of a unidirectional `hierarchical` one; see `CarryState`):

    [ h (H) | c (H, LSTM only) | m (1) | s (1) | acc (P) | probs (C) ]

A model whose document encoder is bidirectional cannot carry state; in window mode (`[state] window` = W > 0) its
row holds the last W sentence vectors instead (`WindowState`; see scorer.py):

    [ n (1) | vectors (W × P, the oldest first; rows n.. unused) | probs (C) ]

that is 4 · (1 + W·P + C) bytes: 25.6 kB a key for the default HAN (P = 100) at W = 64.

`probs` is the conversation's running score after the key's last applied message (re-emitted for a re-delivered
message). Per slot the store also keeps the number of messages applied, the wall-clock time of the last one (TTL)
and its source coordinate (topic, partition, offset): a message whose offset is <= the key's last applied offset
in the same topic and partition was applied already (at-least-once re-delivery) and must not be applied again.

Bounds: `max_keys` with least-recently-used eviction (a key used in the current lookup is never the victim), and
`ttl_s` (a key idle that long starts afresh; a sweep frees such keys every `ttl_s / 4`). Evicted and expired keys
are reported as removals so that a changelog can write tombstones for them.

Thread safety: every public method takes `self.lock` (re-entrant); a caller that must keep slots stable across
calls (the scorer between gather and scatter) holds it for the span.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...backends.base import CarryState
from ...errors import StateError
from ...models.config import ModelConfig

__all__ = ["Entries", "Removal", "StateChanges", "StateLayout", "StateStore", "WindowState"]

F32 = np.float32
NONE = -1  # partition / offset / topic id of a message that has no Kafka coordinate
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class WindowState:
    """Window mode's per-key state: the last sentence vectors of each conversation (row d = conversation d)."""

    vectors: np.ndarray  # float32[N, W, P]: conversation d's are vectors[d, :count[d]], the oldest first
    count: np.ndarray  # int64[N]: sentence vectors held (<= W)

    @property
    def n_docs(self) -> int:
        return len(self.count)


@dataclass(frozen=True)
class StateLayout:
    """Where each part of the carried state lives in a slab row (model-dependent widths)."""

    hidden: int  # H: the carried encoder's state width (one direction); 0 in window mode
    pooled: int  # P: width of its pooling accumulator; in window mode, of a sentence vector
    labels: int  # C
    lstm: bool  # whether a cell state c is carried
    window: int = 0  # W > 0: window mode (the last W sentence vectors instead of a carried state)

    @classmethod
    def for_model(cls, cfg: ModelConfig, window: int = 0) -> StateLayout:
        """The carried layout when the model can carry state; else, with `window` > 0, the window layout of a
        hierarchical model (its sentence vectors)."""
        if not cfg.can_carry and window > 0 and cfg.composition == "hierarchical":
            return cls(hidden=0, pooled=cfg.word_dim, labels=len(cfg.labels), lstm=False, window=int(window))
        enc = cfg.doc_encoder if cfg.composition == "hierarchical" else cfg.word_encoder
        if enc is None or not enc.recurrent:
            raise StateError(f"model '{cfg.name}' ({cfg.composition} composition) has no recurrent state to carry")
        return cls(hidden=enc.hidden, pooled=enc.out_dim(0), labels=len(cfg.labels), lstm=enc.type == "lstm")

    @property
    def c_at(self) -> int:
        return self.hidden

    @property
    def m_at(self) -> int:
        return self.hidden * (2 if self.lstm else 1)

    @property
    def acc_at(self) -> int:
        return self.m_at + 2

    @property
    def probs_at(self) -> int:
        return 1 + self.window * self.pooled if self.window else self.acc_at + self.pooled

    @property
    def width(self) -> int:
        return self.probs_at + self.labels

    def to_dict(self) -> dict[str, int | bool]:
        out: dict[str, int | bool] = {"hidden": self.hidden, "pooled": self.pooled, "labels": self.labels,
                                      "lstm": self.lstm}
        if self.window:  # carried layouts keep the keys they were saved with
            out["window"] = self.window
        return out

    def split(self, rows: np.ndarray) -> tuple[CarryState | WindowState, np.ndarray]:
        """Slab rows [N, width] -> (the CarryState, or the WindowState in window mode; probs [N, C])."""
        if self.window:
            n, P = len(rows), self.pooled
            vectors = rows[:, 1 : self.probs_at].reshape(n, self.window, P).copy()  # [N, W, P]
            return WindowState(vectors, rows[:, 0].astype(np.int64)), rows[:, self.probs_at :]
        H, m = self.hidden, self.m_at
        h = np.ascontiguousarray(rows[:, :H])
        c = np.ascontiguousarray(rows[:, self.c_at : self.c_at + H]) if self.lstm else np.zeros_like(h)
        state = CarryState(h, c, np.ascontiguousarray(rows[:, m]), np.ascontiguousarray(rows[:, m + 1]),
                           np.ascontiguousarray(rows[:, self.acc_at : self.probs_at]))
        return state, rows[:, self.probs_at :]

    def join(self, state: CarryState | WindowState, probs: np.ndarray) -> np.ndarray:
        """(CarryState or WindowState, probs [N, C]) -> slab rows [N, width]."""
        rows = np.empty((state.n_docs, self.width), F32)
        if isinstance(state, WindowState):
            rows[:, 0] = state.count
            rows[:, 1 : self.probs_at] = state.vectors.reshape(state.n_docs, -1)
            rows[:, self.probs_at :] = probs
            return rows
        H, m = self.hidden, self.m_at
        rows[:, :H] = state.h
        if self.lstm:
            rows[:, self.c_at : self.c_at + H] = state.c
        rows[:, m] = state.m
        rows[:, m + 1] = state.s
        rows[:, self.acc_at : self.probs_at] = state.acc
        rows[:, self.probs_at :] = probs
        return rows


@dataclass(frozen=True)
class Entries:
    """Some keys' complete state, detached from the store (for checkpoints, changelogs and inspection)."""

    keys: list[str]
    rows: np.ndarray  # float32[n, W]
    messages: np.ndarray  # int64[n]: messages applied
    last_seen: np.ndarray  # float64[n]: wall-clock seconds of the last applied message
    topics: list[str | None]  # source topic (or file) of the last applied message
    partitions: np.ndarray  # int32[n]; NONE without a coordinate
    offsets: np.ndarray  # int64[n]; NONE without a coordinate

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def empty(cls, width: int) -> Entries:
        return cls([], np.zeros((0, width), F32), np.zeros(0, np.int64), np.zeros(0, np.float64), [],
                   np.zeros(0, np.int32), np.zeros(0, np.int64))

    def select(self, idx: np.ndarray) -> Entries:
        return Entries([self.keys[i] for i in idx], self.rows[idx], self.messages[idx], self.last_seen[idx],
                       [self.topics[i] for i in idx], self.partitions[idx], self.offsets[idx])


@dataclass(frozen=True)
class Removal:
    """A key that left the store (evicted, expired); `topic`/`partition` say which changelog partition held it."""

    key: str
    topic: str | None
    partition: int


@dataclass
class StateChanges:
    """What one scored batch changed, in order: removals and new values (a changelog writes them as they come)."""

    parts: list[Entries | list[Removal]] = field(default_factory=list)

    def add(self, part: Entries | list[Removal]) -> None:
        if len(part):
            self.parts.append(part)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


class StateStore:
    """Bounded per-key carried state: lookup (creating / refreshing slots), gather, scatter, export, load."""

    def __init__(self, layout: StateLayout, max_keys: int = 100_000, ttl_s: float = 3600.0,
                 prior: np.ndarray | None = None, clock: Callable[[], float] = time.time,
                 evict_slack: float = 1 / 256) -> None:
        """`prior`: the running probs of a conversation with no message yet (the model's score of the empty
        document); `evict_slack`: when the store is full, free this share of `max_keys` more than needed at once,
        so that a stream of new keys does not pay a full LRU scan per batch (0 = exactly as many as needed)."""
        if max_keys < 1:
            raise StateError(f"[state] max_keys must be >= 1, got {max_keys}")
        self.layout = layout
        self.max_keys = int(max_keys)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.lock = threading.RLock()
        W = layout.width
        self._init_row = np.zeros(W, F32)
        if prior is not None:
            self._init_row[layout.probs_at :] = prior
        self._slack = max(0, int(self.max_keys * evict_slack))
        n = self.max_keys
        self.slab = np.zeros((n, W), F32)  # pages are touched only when a slot is first used
        self.messages = np.zeros(n, np.int64)
        self.last_seen = np.zeros(n, np.float64)
        self.topic_id = np.full(n, NONE, np.int32)
        self.partition = np.full(n, NONE, np.int32)
        self.offset = np.full(n, NONE, np.int64)
        self._tick = np.full(n, _NEVER, np.int64)  # LRU clock per slot; _NEVER = free
        self._clock_tick = 0
        self._index: dict[str, int] = {}
        self._slot_key: list[str | None] = [None] * n
        self._free = np.arange(n - 1, -1, -1, dtype=np.int64)  # a stack; slot 0 is handed out first
        self._n_free = n
        self._topics: list[str] = []
        self._topic_ids: dict[str, int] = {}
        self._removed: list[Removal] = []
        self._next_sweep = 0.0

    # -- introspection -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays (the dict and key strings come on top)."""
        return sum(a.nbytes for a in (self.slab, self.messages, self.last_seen, self.topic_id, self.partition,
                                      self.offset, self._tick, self._free))

    def topic_name(self, topic_id: int) -> str | None:
        return None if topic_id == NONE else self._topics[topic_id]

    def topic_ids(self, topics: Sequence[str | None]) -> np.ndarray:
        """Topic names -> small ints (interned; None -> NONE)."""
        out = np.empty(len(topics), np.int32)
        for i, t in enumerate(topics):
            if t is None:
                out[i] = NONE
                continue
            tid = self._topic_ids.get(t)
            if tid is None:
                tid = self._topic_ids[t] = len(self._topics)
                self._topics.append(t)
            out[i] = tid
        return out

    def slot_of(self, key: str) -> int | None:
        return self._index.get(key)

    # -- the scoring path --------------------------------------------------------------------------------------
    def lookup(self, keys: Sequence[str], now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Slots for distinct `keys`: existing ones, or fresh (zero state, prior probs) for new and expired keys.

        Returns (slots int64[n], fresh bool[n]). Marks the keys most recently used, so they are never evicted here.
        """
        with self.lock:
            now = self.clock() if now is None else now
            self._maybe_sweep(now)
            n = len(keys)
            slots = np.empty(n, np.int64)
            new = []
            for i, k in enumerate(keys):
                s = self._index.get(k)
                if s is None:
                    new.append(i)
                    slots[i] = NONE
                else:
                    slots[i] = s
            self._clock_tick += 1
            old = slots[slots != NONE]
            self._tick[old] = self._clock_tick
            fresh = np.zeros(n, bool)
            if self.ttl_s > 0 and len(old):
                expired = (now - self.last_seen[slots]) > self.ttl_s
                expired &= slots != NONE
                fresh |= expired
            if new:
                if len(new) + len(old) > self.max_keys:
                    raise StateError(f"{n} keys in one lookup exceed [state] max_keys = {self.max_keys}")
                short = len(new) - self._n_free
                if short > 0:
                    self._evict_lru(min(short + self._slack, len(self._index) - len(old)))
                got = self._free[self._n_free - len(new) : self._n_free][::-1].copy()
                self._n_free -= len(new)
                idx = np.asarray(new)
                slots[idx] = got
                for i, s in zip(new, got.tolist(), strict=True):
                    self._index[keys[i]] = s
                    self._slot_key[s] = keys[i]
                self._tick[got] = self._clock_tick
                fresh[idx] = True
            self._reset(slots[fresh], now)
            return slots, fresh

    def seen(self, slots: np.ndarray, topic_ids: np.ndarray, partitions: np.ndarray,
             offsets: np.ndarray) -> np.ndarray:
        """Whether each message (with its coordinate) was applied to its key already: same topic and partition as
        the key's last applied message, and an offset no later than it. Messages without a coordinate never are."""
        with self.lock:
            return ((offsets != NONE) & (self.topic_id[slots] == topic_ids) & (self.partition[slots] == partitions)
                    & (offsets <= self.offset[slots]))

    def gather(self, slots: np.ndarray) -> tuple[CarryState | WindowState, np.ndarray]:
        """The carried state (the backend's CarryState form; WindowState in window mode) and running probs of some
        slots (copies)."""
        with self.lock:
            return self.layout.split(self.slab[slots])

    def scatter(self, slots: np.ndarray, state: CarryState | WindowState, probs: np.ndarray, topic_ids: np.ndarray,
                partitions: np.ndarray, offsets: np.ndarray, now: float | None = None) -> None:
        """Store the state after one message per slot (slots distinct), counting the message."""
        with self.lock:
            now = self.clock() if now is None else now
            self.slab[slots] = self.layout.join(state, probs)
            self.messages[slots] += 1
            self.last_seen[slots] = now
            self.topic_id[slots] = topic_ids
            self.partition[slots] = partitions
            self.offset[slots] = offsets

    # -- moving state in and out -------------------------------------------------------------------------------
    def export(self, slots: np.ndarray | None = None) -> Entries:
        """A detached copy of some slots' entries (default: every key)."""
        with self.lock:
            if slots is None:
                slots = np.asarray(list(self._index.values()), np.int64)
            slots = np.asarray(slots, np.int64)
            tids = self.topic_id[slots]
            return Entries([self._slot_key[s] for s in slots.tolist()], self.slab[slots], self.messages[slots].copy(),
                           self.last_seen[slots].copy(), [self.topic_name(t) for t in tids.tolist()],
                           self.partition[slots].copy(), self.offset[slots].copy())

    def load(self, entries: Entries, now: float | None = None) -> int:
        """Insert or overwrite entries (a checkpoint, a changelog), oldest first so that LRU order survives; those
        already past the TTL are skipped. Returns how many were loaded."""
        if entries.rows.shape[1:] != (self.layout.width,):
            raise StateError(f"state entries have rows of width {entries.rows.shape[1:]}, but this model's state "
                             f"needs {self.layout.width} ({self.layout.to_dict()}); was it saved by another model?")
        with self.lock:
            now = self.clock() if now is None else now
            keep = np.ones(len(entries), bool)
            if self.ttl_s > 0:
                keep &= (now - entries.last_seen) <= self.ttl_s
            idx = np.flatnonzero(keep)
            idx = idx[np.argsort(entries.last_seen[idx], kind="stable")]
            # the newest max_keys entries win; with several loads the LRU order is by last_seen within each
            last = {k: i for i, k in enumerate(entries.keys)}  # a key given twice: its later entry wins
            idx = idx[[last[entries.keys[i]] == i for i in idx.tolist()]] if len(last) < len(entries) else idx
            idx = idx[-self.max_keys :]
            if len(idx) == 0:
                return 0
            part = entries.select(idx)
            slots, _ = self.lookup(part.keys, now=now)  # may evict the least recently used keys
            self.slab[slots] = part.rows
            self.messages[slots] = part.messages
            self.last_seen[slots] = part.last_seen
            self.topic_id[slots] = self.topic_ids(part.topics)
            self.partition[slots] = part.partitions
            self.offset[slots] = part.offsets
            # what was loaded is the most recent, in last_seen order (lookup gave them all one tick)
            self._tick[slots] = self._clock_tick + np.arange(1, len(slots) + 1)
            self._clock_tick += len(slots)
            return len(slots)

    def remove(self, keys: Sequence[str], record: bool = False) -> int:
        """Forget keys (a changelog tombstone, a test). `record`: report them as removals too."""
        with self.lock:
            slots = [s for k in keys if (s := self._index.get(k)) is not None]
            self._free_slots(np.asarray(slots, np.int64), record=record)
            return len(slots)

    def drop_partition(self, topic: str, partition: int) -> int:
        """Forget every key whose last message came from a partition given up in a rebalance (its new owner restores
        it from the changelog). Not a removal: the state stays valid, it just lives elsewhere now."""
        with self.lock:
            tid = self._topic_ids.get(topic)
            if tid is None:
                return 0
            hit = np.flatnonzero((self.topic_id == tid) & (self.partition == partition) & (self._tick != _NEVER))
            self._free_slots(hit, record=False)
            return len(hit)

    def take_removals(self) -> list[Removal]:
        """Removals (evictions, expiries) since the last call, oldest first."""
        with self.lock:
            out, self._removed = self._removed, []
            return out

    def expire(self, now: float | None = None) -> int:
        """Free every key idle longer than `ttl_s` (vectorised sweep); returns how many."""
        if self.ttl_s <= 0:
            return 0
        with self.lock:
            now = self.clock() if now is None else now
            hit = np.flatnonzero((self._tick != _NEVER) & ((now - self.last_seen) > self.ttl_s))
            self._free_slots(hit, record=True)
            return len(hit)

    # -- internals ---------------------------------------------------------------------------------------------
    def _maybe_sweep(self, now: float) -> None:
        if self.ttl_s > 0 and now >= self._next_sweep:
            self._next_sweep = now + self.ttl_s / 4
            self.expire(now)

    def _reset(self, slots: np.ndarray, now: float) -> None:
        if len(slots):
            self.slab[slots] = self._init_row
            self.messages[slots] = 0
            self.last_seen[slots] = now
            self.topic_id[slots] = NONE
            self.partition[slots] = NONE
            self.offset[slots] = NONE

    def _evict_lru(self, k: int) -> None:
        """Free the k least recently used keys (free slots carry tick _NEVER, so they sort last)."""
        if k <= 0:
            return
        victims = np.argpartition(self._tick, k - 1)[:k] if k < len(self._tick) else np.arange(len(self._tick))
        victims = victims[self._tick[victims] != _NEVER]
        self._free_slots(victims, record=True)

    def _free_slots(self, slots: np.ndarray, record: bool) -> None:
        if len(slots) == 0:
            return
        tids, parts = self.topic_id[slots].tolist(), self.partition[slots].tolist()
        for s, tid, p in zip(slots.tolist(), tids, parts, strict=True):
            key = self._slot_key[s]
            assert key is not None
            del self._index[key]
            self._slot_key[s] = None
            if record:
                self._removed.append(Removal(key, self.topic_name(tid), p))
        self._tick[slots] = _NEVER
        self._free[self._n_free : self._n_free + len(slots)] = slots
        self._n_free += len(slots)
