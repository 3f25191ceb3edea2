"""`KeyedScorer`: score a micro-batch of messages, each continuing its conversation (key) from the carried state.

Each message costs O(its own tokens): the model runs on the message alone, starting from the key's carried state
(`Model.predict_batch(batch, state)`), and the running sentiment of the whole conversation comes out. A batch can
hold several messages of one key; they are applied in order, in waves (wave i = each key's i-th message in the
batch), so every wave has distinct keys and is one `predict_batch` call.

Output: the usual scored columns (`SCORED_SCHEMA`, so every sink takes it) where `label`, `score` and `probs`
are the **conversation's running sentiment** after this message, plus
- `messages_seen` (int64): messages of the conversation applied so far, this one included;
- `probs_delta` (list<float32>): this message's contribution, the change it made to the running `probs`
  (against the empty conversation's score, softmax(head.bias), for a key's first message). It costs nothing
  extra; scoring the message on its own as well would double the work;
- `redelivered` (bool): the message was applied before (offset <= the key's last applied offset in its
  partition, an at-least-once re-delivery); it is not applied again, and the stored running result is re-emitted
  (exact when it was the key's latest message; for an older one it is the later running result), with a zero
  delta.
A message without a key is a conversation of one message (nothing is stored).

**Window mode** (`window` = W > 0) is for hierarchical models whose document encoder is bidirectional (the default
HAN): its backward pass needs the sentences not yet received, so nothing carries. Per key the store keeps the last W
sentence vectors instead (`WindowState`); each wave runs the word level on the new messages only
(`backend.sentence_vectors`, one call), appends each message's vectors to its key's window (dropping the oldest
beyond W) and re-runs the document level over every window (`backend.score_sentences`, one call). The running
score is then that of the conversation's last W (non-empty) sentences scored as one document: exactly the whole
conversation's while it has at most W sentences. Cost per message: O(its tokens) at the word level plus O(W)
document-RNN steps (both directions) and attention, and W·P·4 bytes of state per key (25.6 kB for the default
HAN, P = 100, at W = 64).

Models that cannot carry state otherwise (flat, average, or a bidirectional document encoder with `window` = 0)
are refused with a `ConfigError` naming `[state]`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ...backends.base import CarryState
from ...batch import DocBatch
from ...errors import ConfigError, StreamsentError
from ...models.config import ModelConfig
from ...models.model import Model
from ..records import SCORED_SCHEMA, DeadLetter, Doc
from ..scoring import scored_columns
from .store import NONE, StateChanges, StateLayout, StateStore, WindowState

__all__ = ["KeyedResult", "KeyedScorer", "STATE_COLUMNS", "KEYED_SCHEMA", "check_model"]

log = logging.getLogger(__name__)

State = CarryState | WindowState  # what a store row holds: carried (CarryState) or window mode
STATE_COLUMNS = (("messages_seen", pa.int64()), ("probs_delta", pa.list_(pa.float32())), ("redelivered", pa.bool_()))
KEYED_SCHEMA = pa.schema(list(SCORED_SCHEMA) + [pa.field(n, t) for n, t in STATE_COLUMNS])


def check_model(model: Model | ModelConfig, window: int = 0) -> None:
    """Refuse, naming `[state]`, a model whose score can be neither continued message by message nor, with
    `window` > 0, re-scored over a window of sentence vectors (a hierarchical model's bidirectional document level)."""
    cfg = model if isinstance(model, ModelConfig) else model.config
    if cfg.can_carry or (window > 0 and cfg.composition == "hierarchical"):
        return
    why = ("its document encoder is bidirectional (the backward pass needs messages not yet received) and [state] "
           "window = 0 (set it > 0 to re-score each conversation's last `window` sentences per message)"
           if cfg.composition == "hierarchical" else f"'{cfg.composition}' composition keeps no state")
    raise ConfigError(
        f"[state]: model '{cfg.name}' cannot score conversations incrementally: {why}. Use a model with "
        "composition 'paragraph' (rnn | lstm | gru word encoder) or 'hierarchical', or remove the [state] section "
        "to score each message on its own")


def prior_probs(model: Model) -> np.ndarray:
    """The running score of a conversation with no message yet: the empty document (softmax(head.bias)), from the
    backend, since `Model.predict_batch` leaves a document with nothing to score unscored (NaN)."""
    scores, _ = model.backend.forward(DocBatch.from_lists([[]]))
    return scores.probs[0].copy()


@dataclass
class KeyedResult:
    rows: pa.Table  # KEYED_SCHEMA, one row per scored message, in input order
    letters: list[DeadLetter]
    changes: StateChanges = field(default_factory=StateChanges)  # for the changelog, in order


class KeyedScorer:
    """Scores micro-batches of keyed messages against a `StateStore` (one per model)."""

    def __init__(self, model: Model, store: StateStore | None = None, *, max_keys: int = 100_000,
                 ttl_s: float = 3600.0, window: int = 0) -> None:
        """`window`: sentence vectors kept per key for a model whose document encoder is bidirectional (window mode;
        0 refuses such a model). Models that carry state ignore it."""
        check_model(model, window)
        self.model = model
        self.layout = StateLayout.for_model(model.config, window)
        if self.layout.window:
            log.info("[state] window mode for model '%s' (bidirectional document encoder): the last %d sentence "
                     "vectors per key, %d bytes a key", model.config.name, self.layout.window, self.layout.width * 4)
        self.prior = prior_probs(model)
        if store is None:
            store = StateStore(self.layout, max_keys=max_keys, ttl_s=ttl_s, prior=self.prior)
        elif store.layout != self.layout:
            raise ConfigError(f"[state]: the state store's layout {store.layout.to_dict()} does not fit model "
                              f"'{model.config.name}' ({self.layout.to_dict()})")
        self.store = store

    @classmethod
    def from_config(cls, model: Model, state_cfg: object) -> KeyedScorer:
        """From a `[state]` config section (max_keys, ttl_s, window)."""
        return cls(model, max_keys=int(state_cfg.max_keys), ttl_s=float(state_cfg.ttl_s),  # type: ignore[attr-defined]
                   window=int(state_cfg.window))  # type: ignore[attr-defined]

    # -- public ------------------------------------------------------------------------------------------------
    def score(self, docs: list[Doc]) -> KeyedResult:
        """Apply a micro-batch in order; documents the model cannot take become dead letters (state unchanged)."""
        letters: list[DeadLetter] = []
        sents = self._sentences(docs, letters)
        n = len(docs)
        probs = np.zeros((n, self.layout.labels), np.float32)
        delta = np.zeros_like(probs)
        seen = np.ones(n, np.int64)
        redelivered = np.zeros(n, bool)
        ok = np.array([s is not None for s in sents], bool)
        changes = StateChanges()
        waves = _waves([d.key if ok[i] else None for i, d in enumerate(docs)])
        with self.store.lock:
            for wave in waves:
                self._apply_wave(docs, sents, wave, probs, delta, seen, redelivered, ok, letters, changes)
            changes.add(self.store.take_removals())
        loose = np.flatnonzero(ok & np.array([d.key is None for d in docs], bool))
        if len(loose):  # messages without a key: each its own conversation, nothing stored
            self._score_alone(docs, sents, loose, probs, delta, ok, letters)
        keep = np.flatnonzero(ok)
        rows = self._rows([docs[i] for i in keep], probs[keep], delta[keep], seen[keep], redelivered[keep])
        return KeyedResult(rows, letters, changes)

    # -- internals ---------------------------------------------------------------------------------------------
    def _sentences(self, docs: list[Doc], letters: list[DeadLetter]) -> list[list[list[int]] | None]:
        """Each message as sentences of token ids (texts through the tokenizer's batch path); None = refused."""
        vocab = self.model.config.vocab_size
        out: list[list[list[int]] | None] = [None] * len(docs)
        texts = []
        for i, d in enumerate(docs):
            if d.tokens is None:
                texts.append(i)
            elif any(t >= vocab for s in d.tokens for t in s):
                letters.append(DeadLetter(d.record, "token_out_of_range",
                                          f"token ids must be < {vocab} (the model's vocabulary size)"))
            else:
                out[i] = d.tokens
        if texts and self.model.tokenizer is None:
            for i in texts:
                letters.append(DeadLetter(docs[i].record, "scoring_failed", f"model '{self.model.config.name}' "
                                          "has no tokenizer.json, so it scores token ids only (send 'tokens')"))
        elif texts:
            encoded = self.model.tokenizer.encode_batch([docs[i].text for i in texts]).batch.to_lists()
            for i, sents in zip(texts, encoded, strict=True):
                out[i] = sents
        return out

    def _apply_wave(self, docs: list[Doc], sents: list, wave: np.ndarray, probs: np.ndarray, delta: np.ndarray,
                    seen: np.ndarray, redelivered: np.ndarray, ok: np.ndarray, letters: list[DeadLetter],
                    changes: StateChanges) -> None:
        store = self.store
        now = store.clock()
        recs = [docs[i].record for i in wave]
        tids = store.topic_ids([r.topic if r.topic is not None else r.file for r in recs])
        parts = np.array([_or_none(r.partition if r.topic is not None else 0 if r.file is not None else None)
                          for r in recs], np.int32)
        offs = np.array([_or_none(r.offset if r.topic is not None else r.row) for r in recs], np.int64)
        slots, _ = store.lookup([docs[i].key for i in wave], now=now)
        changes.add(store.take_removals())
        dup = store.seen(slots, tids, parts, offs)
        if dup.any():
            d_slots = slots[dup]
            _, stored = store.gather(d_slots)
            probs[wave[dup]] = stored
            seen[wave[dup]] = store.messages[d_slots]
            redelivered[wave[dup]] = True
        go = np.flatnonzero(~dup)
        if len(go) == 0:
            return
        state, before = store.gather(slots[go])
        try:
            new_probs, after = self._predict([sents[i] for i in wave[go]], state)
        except (StreamsentError, ValueError) as exc:  # one bad message must not sink its wave
            log.warning("wave of %d keyed messages failed to score (%s); scoring one at a time", len(go), exc)
            for j in go.tolist():
                self._apply_one(docs, sents, wave, j, slots, tids, parts, offs, probs, delta, seen, ok, letters, now)
        else:
            store.scatter(slots[go], after, new_probs, tids[go], parts[go], offs[go], now=now)
            rows = wave[go]
            probs[rows] = new_probs
            delta[rows] = new_probs - before
            seen[rows] = store.messages[slots[go]]
        changes.add(store.export(slots[go]))

    def _apply_one(self, docs: list[Doc], sents: list, wave: np.ndarray, j: int, slots: np.ndarray,
                   tids: np.ndarray, parts: np.ndarray, offs: np.ndarray, probs: np.ndarray, delta: np.ndarray,
                   seen: np.ndarray, ok: np.ndarray, letters: list[DeadLetter], now: float) -> None:
        store, i, sl = self.store, wave[j], slots[j : j + 1]
        state, before = store.gather(sl)
        try:
            new_probs, after = self._predict([sents[i]], state)
        except (StreamsentError, ValueError) as exc:
            letters.append(DeadLetter(docs[i].record, "scoring_failed", str(exc)))
            ok[i] = False
            return
        store.scatter(sl, after, new_probs, tids[j : j + 1], parts[j : j + 1], offs[j : j + 1], now=now)
        probs[i], delta[i], seen[i] = new_probs[0], new_probs[0] - before[0], store.messages[sl[0]]

    def _score_alone(self, docs: list[Doc], sents: list, idx: np.ndarray, probs: np.ndarray, delta: np.ndarray,
                     ok: np.ndarray, letters: list[DeadLetter]) -> None:
        try:
            new_probs, _ = self._predict([sents[i] for i in idx], None)
        except (StreamsentError, ValueError) as exc:
            if len(idx) > 1:
                for i in idx.tolist():
                    self._score_alone(docs, sents, np.array([i]), probs, delta, ok, letters)
                return
            letters.append(DeadLetter(docs[idx[0]].record, "scoring_failed", str(exc)))
            ok[idx[0]] = False
            return
        probs[idx] = new_probs
        delta[idx] = new_probs - self.prior

    def _predict(self, sents: list, state: State | None) -> tuple[np.ndarray, State]:
        """Messages (one per key, in `state`'s row order; None = fresh conversations) -> (running probs [n, C], the
        state after them)."""
        batch = DocBatch.from_lists(sents)
        if not self.layout.window:
            # the backend, not Model.predict_batch: a message with no token leaves the running score where it was
            # (the prior for a new conversation), it does not make the conversation unscored
            scores, after = self.model.backend.forward(batch, state)  # type: ignore[arg-type]
            assert after is not None
            return scores.probs, after
        if state is None:
            W, P = self.layout.window, self.layout.pooled
            state = WindowState(np.zeros((batch.n_docs, W, P), np.float32), np.zeros(batch.n_docs, np.int64))
        assert isinstance(state, WindowState)
        return self._predict_window(batch, state)

    def _predict_window(self, batch: DocBatch, state: WindowState) -> tuple[np.ndarray, WindowState]:
        """Window mode: the new messages' sentence vectors (one call) appended to their keys' windows, the oldest
        beyond W dropped, then every window scored as a document (one call)."""
        backend = self.model.backend
        W = self.layout.window
        new = backend.sentence_vectors(batch)  # [S_new, P], the non-empty sentences of every message
        nonempty = np.diff(batch.sent_offsets) > 0
        own = np.concatenate([[0], np.cumsum(nonempty)])[batch.doc_offsets]  # message j: new[own[j] : own[j + 1]]
        vectors = np.zeros_like(state.vectors)  # [N, W, P]
        for j in range(batch.n_docs):
            kept = np.concatenate([state.vectors[j, : state.count[j]], new[own[j] : own[j + 1]]])[-W:]
            vectors[j, : len(kept)] = kept
        count = np.minimum(state.count + np.diff(own), W)
        held = np.arange(W)[None, :] < count[:, None]  # [N, W]
        scores = backend.score_sentences(vectors[held], np.concatenate([[0], np.cumsum(count)]))
        return scores.probs, WindowState(vectors, count)

    def _rows(self, docs: list[Doc], probs: np.ndarray, delta: np.ndarray, seen: np.ndarray,
              redelivered: np.ndarray) -> pa.Table:
        if not docs:
            return KEYED_SCHEMA.empty_table()
        labels = self.model.config.labels
        best = probs.argmax(axis=1)
        C = len(labels)

        def lists(a: np.ndarray) -> pa.Array:
            return pa.ListArray.from_arrays(pa.array(np.arange(0, len(a) * C + 1, C, dtype=np.int32)),
                                            pa.array(a.reshape(-1)))

        cols = scored_columns(self.model, docs, pa.array([labels[b] for b in best.tolist()], pa.string()),
                              pa.array(probs[np.arange(len(best)), best], pa.float32()), lists(probs))
        cols |= {"messages_seen": pa.array(seen, pa.int64()), "probs_delta": lists(delta),
                 "redelivered": pa.array(redelivered, pa.bool_())}
        return pa.table(cols, schema=KEYED_SCHEMA)


def _or_none(v: int | None) -> int:
    return NONE if v is None else int(v)


def _waves(keys: list[str | None]) -> list[np.ndarray]:
    """Positions grouped by occurrence: wave i holds each key's i-th message (keys distinct within a wave).
    None keys are in no wave (scored on their own)."""
    count: dict[str, int] = {}
    waves: list[list[int]] = []
    for i, k in enumerate(keys):
        if k is None:
            continue
        w = count.get(k, 0)
        count[k] = w + 1
        if w == len(waves):
            waves.append([])
        waves[w].append(i)
    return [np.asarray(w, np.int64) for w in waves]
