"""What the pipeline did, for people and for Prometheus: a recorder fed once per batch, read through snapshots.

The writer thread calls `Metrics.record_batch` after a batch is durably written; the polling thread calls
`set_lag`. Both take a lock for a few counter updates and list appends, and the per-document work is NumPy over
the batch, so recording costs microseconds per batch whatever its size. Readers (the dashboard at <= 4 Hz, a
Prometheus scrape) call `snapshot()`, which copies under the lock and computes rates, percentiles and the
latest documents' most-attended words outside it. Neither reader ever touches the pipeline itself.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "Histogram", "LatestDoc", "Metrics", "MetricsSnapshot", "top_words"]

# Prometheus-style upper bounds, in seconds (an implicit +Inf bucket follows)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OUTCOMES = ("scored", "dead_lettered")
_TAG = re.compile(r"<[^>]{0,40}>")


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum of the observations."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), as Prometheus exposes them, ending with (inf, count)."""
        return list(zip((*self.bounds, float("inf")), np.cumsum(self.counts).tolist(), strict=True))


@dataclass(frozen=True)
class LatestDoc:
    doc_id: str
    label: str
    score: float
    text: str  # the start of the text (or a note for token-id documents)
    words: tuple[str, ...] = ()  # most attended first (attention models only)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything the dashboard and /metrics show, at one instant. Rates are over the last `window_s` seconds."""

    at: float  # wall-clock time of the snapshot
    uptime_s: float
    model_name: str
    model_version: str
    device: str
    labels: tuple[str, ...]  # the model's labels, in its order
    max_docs: int
    max_tokens: int
    window_s: float
    docs_per_s: float = 0.0
    tokens_per_s: float = 0.0
    docs_per_s_history: tuple[float, ...] = ()  # one value per whole second, oldest first (the sparkline)
    latency_p50_s: float | None = None  # end to end: produced (Kafka CreateTime) or polled (files) -> written
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    batch_docs_mean: float = 0.0  # batch fill over the window (docs and tokens, as the batcher counts them)
    batch_tokens_mean: float = 0.0
    batch_seconds_p50: float | None = None  # score + write time of one batch, over the window
    batches: int = 0
    tokens: int = 0
    docs: Mapping[str, int] = field(default_factory=dict)  # by outcome: scored, dead_lettered
    dead_letters: Mapping[str, int] = field(default_factory=dict)  # by reason
    label_counts: Mapping[str, int] = field(default_factory=dict)
    lag: Mapping[tuple[str, int], int] = field(default_factory=dict)  # per (topic, partition); empty for files
    write_retries: int = 0  # failed attempts to write a batch to the sinks (an outage: retried, nothing committed)
    write_error: str | None = None  # the last failure, while the sinks are failing (None once a batch gets through)
    latest: tuple[LatestDoc, ...] = ()  # newest first
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS, (0,) * 14))
    end_to_end_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS, (0,) * 14))

    @property
    def docs_total(self) -> int:
        return sum(self.docs.values())


class _Latest:
    """A recent document as recorded (raw attention), its words worked out on first read."""

    __slots__ = ("doc_id", "label", "score", "text", "tokens", "word_att", "sent_att", "doc")

    def __init__(self, doc_id: str, label: str, score: float, text: str | None, tokens: Any,
                 word_att: Any, sent_att: Any) -> None:
        self.doc_id, self.label, self.score, self.text, self.tokens = doc_id, label, score, text, tokens
        self.word_att, self.sent_att = word_att, sent_att
        self.doc: LatestDoc | None = None


class Metrics:
    """The recorder. One writer thread calls `record_batch`, the polling thread `set_lag`; any thread snapshots."""

    def __init__(self, *, model_name: str, model_version: str, labels: Sequence[str], device: str = "cpu",
                 max_docs: int = 256, max_tokens: int = 65_536, tokenizer: Any = None, window_s: float = 10.0,
                 history_s: int = 60, latest: int = 8, text_chars: int = 240,
                 clock: Callable[[], float] = time.time) -> None:
        self.model_name, self.model_version, self.device = model_name, model_version, device
        self.labels, self.max_docs, self.max_tokens = tuple(labels), max_docs, max_tokens
        self.tokenizer = tokenizer  # to name the attended words of the latest documents
        self.window_s, self.history_s, self.text_chars = window_s, history_s, text_chars
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._docs = dict.fromkeys(OUTCOMES, 0)
        self._dead: dict[str, int] = {}
        self._labels: dict[str, int] = dict.fromkeys(self.labels, 0)
        self._batches = self._tokens = 0
        # (time written, docs, tokens, batch seconds, end-to-end latencies of its docs) per recent batch
        self._recent: deque[tuple[float, int, int, float, np.ndarray]] = deque()
        self._e2e = np.zeros(len(LATENCY_BUCKETS) + 1, np.int64)
        self._e2e_sum = 0.0
        self._batch_h = np.zeros(len(BATCH_BUCKETS) + 1, np.int64)
        self._batch_sum = 0.0
        self._lag: dict[tuple[str, int], int] = {}
        self._latest: deque[_Latest] = deque(maxlen=latest)
        self._write_retries = 0
        self._write_error: str | None = None

    @classmethod
    def for_model(cls, model: Any, **kwargs: Any) -> Metrics:
        """A recorder labelled with a loaded `Model`'s name, version, labels and device."""
        c = model.config
        return cls(model_name=c.name, model_version=c.version, labels=model.labels, device=model.device,
                   tokenizer=model.tokenizer, **kwargs)

    @property
    def wants_attention(self) -> bool:
        """Whether rows should bring their attention columns (to show the latest documents' attended words)."""
        return self.tokenizer is not None and self._latest.maxlen != 0

    # -- writers -----------------------------------------------------------------------------------------------
    def record_write_retry(self, error: str) -> None:
        """The sinks could not take a batch (it will be retried): counted, and shown until a batch gets through."""
        with self._lock:
            self._write_retries += 1
            self._write_error = error

    def record_batch(self, batch: Any, rows: pa.Table | None, seconds: float) -> None:
        """A batch was durably written: `batch` a MicroBatch, `rows` its scored rows (may carry attention
        columns), `seconds` the time it took to score and write it."""
        now = self._clock()
        docs = batch.docs
        # end to end: from when the message was produced (Kafka) or polled (files) until now, one value per doc
        origin = np.fromiter((d.record.timestamp or d.record.received for d in docs), np.float64, len(docs))
        e2e = np.maximum(now - origin, 0.0)
        e2e_bins = np.bincount(np.searchsorted(LATENCY_BUCKETS, e2e), minlength=len(LATENCY_BUCKETS) + 1)
        batch_bin = int(np.searchsorted(BATCH_BUCKETS, seconds))
        n_rows = 0 if rows is None else rows.num_rows
        labels = _value_counts(rows.column("label")) if n_rows else {}
        latest = self._latest_of(docs, rows) if n_rows and self._latest.maxlen else []
        dead: dict[str, int] = {}
        for letter in batch.letters:
            dead[letter.reason] = dead.get(letter.reason, 0) + 1
        with self._lock:
            self._batches += 1
            self._tokens += batch.tokens
            self._docs["scored"] += n_rows - dead.get("sink_rejected", 0)  # scored, but a sink could not take them
            self._docs["dead_lettered"] += len(batch.letters)
            self._write_error = None  # the sinks took this batch
            for k, v in dead.items():
                self._dead[k] = self._dead.get(k, 0) + v
            for k, v in labels.items():
                self._labels[k] = self._labels.get(k, 0) + v
            self._e2e += e2e_bins
            self._e2e_sum += float(e2e.sum())
            self._batch_h[batch_bin] += 1
            self._batch_sum += seconds
            self._recent.append((now, n_rows + len(batch.letters) - dead.get("sink_rejected", 0), batch.tokens,
                                 seconds, e2e))
            horizon = now - max(self.window_s, self.history_s + 1)
            while self._recent and self._recent[0][0] < horizon:
                self._recent.popleft()
            self._latest.extend(latest)

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Messages not yet read per (topic, partition), from the consumer's high-water marks."""
        with self._lock:
            self._lag = dict(lag)

    def _latest_of(self, docs: list, rows: pa.Table) -> list[_Latest]:
        """The last few scored rows with their documents (rows are the batch's docs in order, minus refused ones)."""
        k = min(self._latest.maxlen or 0, rows.num_rows)
        tail = rows.slice(rows.num_rows - k)
        ids = tail.column("doc_id").to_pylist()
        labels, scores = tail.column("label").to_pylist(), tail.column("score").to_pylist()
        names = tail.column_names
        watt = tail.column("word_attention").to_pylist() if "word_attention" in names else [None] * k
        satt = tail.column("sentence_attention").to_pylist() if "sentence_attention" in names else [None] * k
        out, j = [], len(docs) - 1
        for i in range(k - 1, -1, -1):  # walk both from the end: rows are a subsequence of docs
            while j >= 0 and docs[j].doc_id != ids[i]:
                j -= 1
            doc = docs[j] if j >= 0 else None
            j -= 1
            text = None if doc is None else doc.text
            tokens = None if doc is None else doc.tokens
            out.append(_Latest(ids[i], labels[i], scores[i], text, tokens, watt[i], satt[i]))
        return out[::-1]  # oldest first, so that extend() leaves the newest last

    # -- readers -----------------------------------------------------------------------------------------------
    def snapshot(self, latest: bool = True) -> MetricsSnapshot:
        """An immutable copy; `latest=False` skips the latest documents (a Prometheus scrape has no use for them)."""
        now = self._clock()
        with self._lock:
            recent = list(self._recent)
            docs, dead, labels = dict(self._docs), dict(self._dead), dict(self._labels)
            batches, tokens, lag = self._batches, self._tokens, dict(self._lag)
            e2e, e2e_sum = tuple(self._e2e.tolist()), self._e2e_sum
            bh, bsum = tuple(self._batch_h.tolist()), self._batch_sum
            last = list(self._latest) if latest else []
            retries, write_error = self._write_retries, self._write_error
        uptime = max(now - self._started, 1e-9)
        span = min(self.window_s, uptime)
        window = [r for r in recent if r[0] >= now - self.window_s]
        lat = np.concatenate([r[4] for r in window]) if window else np.empty(0)
        p50, p95, p99 = (np.percentile(lat, (50, 95, 99)).tolist() if lat.size else (None, None, None))
        return MetricsSnapshot(
            at=now, uptime_s=uptime, model_name=self.model_name, model_version=self.model_version,
            device=self.device, labels=self.labels, max_docs=self.max_docs, max_tokens=self.max_tokens,
            window_s=self.window_s,
            docs_per_s=sum(r[1] for r in window) / span, tokens_per_s=sum(r[2] for r in window) / span,
            docs_per_s_history=self._history(recent, now),
            latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99,
            batch_docs_mean=float(np.mean([r[1] for r in window])) if window else 0.0,
            batch_tokens_mean=float(np.mean([r[2] for r in window])) if window else 0.0,
            batch_seconds_p50=float(np.median([r[3] for r in window])) if window else None,
            batches=batches, tokens=tokens,
            docs=MappingProxyType(docs), dead_letters=MappingProxyType(dead), label_counts=MappingProxyType(labels),
            lag=MappingProxyType(lag), write_retries=retries, write_error=write_error,
            latest=tuple(self._resolve(x) for x in reversed(last)),
            batch_seconds=Histogram(BATCH_BUCKETS, bh, bsum),
            end_to_end_seconds=Histogram(LATENCY_BUCKETS, e2e, e2e_sum),
        )

    def _history(self, recent: list, now: float) -> tuple[float, ...]:
        """Documents per whole second over the last `history_s` complete seconds (the running second is left out)."""
        end = int(now)
        hist = np.zeros(self.history_s, np.float64)
        for t, n, *_ in recent:
            i = int(t) - (end - self.history_s)
            if 0 <= i < self.history_s:
                hist[i] += n
        first = int(self._started) + 1 - (end - self.history_s)  # seconds before the start are not zeros, just absent
        return tuple(hist[max(first, 0):].tolist())

    def _resolve(self, x: _Latest) -> LatestDoc:
        if x.doc is None:  # two readers may both compute it: same result, no harm
            words = self._words_of(x)
            x.doc = LatestDoc(x.doc_id, x.label, float(x.score), self._text_of(x, words), words)
        return x.doc

    def _text_of(self, x: _Latest, words: tuple[str, ...], lead: int = 30) -> str:
        """One line of the text (no HTML line breaks), from a little before its most attended word, if any."""
        if x.text is None:
            n = 0 if x.tokens is None else sum(len(s) for s in x.tokens)
            return f"({n} token ids)"
        text = " ".join(_TAG.sub(" ", x.text).split())
        m = re.search(rf"(?i)(?<!\w){re.escape(words[0])}(?!\w)", text) if words else None
        if m is None or m.start() <= lead:
            return text[: self.text_chars]
        space = text.find(" ", m.start() - lead, m.start())
        start = space + 1 if space >= 0 else m.start() - lead
        return "…" + text[start : start + self.text_chars]

    def _words_of(self, x: _Latest) -> tuple[str, ...]:
        if x.word_att is None or self.tokenizer is None:
            return ()
        if x.text is not None:
            words = self.tokenizer.encode_batch([x.text], with_tokens=True).tokens.tolist()
        elif x.tokens is not None:
            vocab = self.tokenizer.vocab.tokens
            words = [vocab[t] if 0 <= t < len(vocab) else "<unk>" for s in x.tokens for t in s]
        else:
            return ()
        return top_words(words, x.word_att, x.sent_att)


def top_words(words: Sequence[str], word_attention: Sequence[Sequence[float]],
              sentence_attention: Sequence[float] | None = None, k: int = 3) -> tuple[str, ...]:
    """The `k` distinct words a document's attention weighs most (single ASCII characters left out).

    `word_attention` is per sentence (normalised within its pooling sequence) and `words` the document's tokens
    flattened in the same order; a word's weight in the document is its word attention times its sentence's
    attention (HAN), or the word attention alone when there is no sentence attention.
    """
    sizes = [len(s) for s in word_attention]
    if sum(sizes) != len(words) or not words:
        return ()
    w = np.fromiter((a for s in word_attention for a in s), np.float64, len(words))
    if sentence_attention is not None and len(sentence_attention) == len(sizes):
        w = w * np.repeat(np.asarray(sentence_attention, np.float64), sizes)
    out: list[str] = []
    for i in np.argsort(-w, kind="stable"):
        word = words[i]
        if word not in out and not (len(word) == 1 and word.isascii()):  # "a", "i", "5" explain nothing
            out.append(word)
            if len(out) == k:
                break
    return tuple(out)


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(column)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
