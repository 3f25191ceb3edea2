"""Numba CPU backend: prepares the weights once, then runs the kernels of `streamsent.kernels.cpu` per batch.

Weights are re-laid for the kernels at load time (W^T contiguous; for every vocabulary entry the input
projection W_ih·e + b_ih of the word encoder, or the per-offset products of the CNN, when that table fits
`table_budget_mb`; otherwise they are computed per batch for the batch's distinct tokens only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls: load it before the controller looks)
import threadpoolctl
from threadpoolctl import ThreadpoolController

from ..batch import DocBatch
from ..kernels.cpu.conv import cnn_max_over_time
from ..kernels.cpu.linear import linear, softmax_linear
from ..kernels.cpu.pooling import MODES, attention_pool, pool_accumulate
from ..kernels.cpu.recurrent import KINDS, recurrent
from ..models.config import EncoderConfig, ModelConfig
from .base import CarryState, Scores, check_carry_state, check_sentence_level, sentence_level_inputs

__all__ = ["CpuBackend"]

_T = TypeVar("_T")

F32 = np.float32
CHUNK = 64  # most sequences one thread advances together (rows of its per-step GEMM)
# A batch with fewer tokens runs on the calling thread alone: each parallel region's launch and join costs
# ~5-20 µs (a HAN batch has ~15 of them), and a whole time slice when another process holds the other core;
# under ~512 tokens (a few documents) that costs more than the second core saves (HAN at batch 1: 2.6k
# docs/s on one thread, 0.3-0.7k on two with a busy neighbour).
SERIAL_TOKENS = 512
# A batch is scored in slices of whole documents of at most this many tokens: the intermediates ([T, D] word
# outputs, [T, A] attention projections) then stay ~25 MB each whatever the batch (a 4096-review batch held
# ~1 GB of them), and a slice still has ~100+ sequences to share between the threads.
SLICE_TOKENS = 1 << 16

_log = logging.getLogger(__name__)
# A backend's first forward pass compiles its kernels when the Numba cache is cold (~10-20 s); it first scores
# a one-token batch, and if that has not finished after COMPILE_NOTICE_S, says so once. A warm cache loads
# them in well under that.
COMPILE_NOTICE_S = 1.0


def _compile_notice() -> None:
    _log.warning("streamsent: compiling the CPU kernels (first run with an empty Numba cache, about 10-20 s; "
                 "`streamsent warmup` does this ahead of time)")


class _SingleThreadedBlas:
    """Numba threads each call BLAS on small matrices; BLAS's own threads would fight them for the cores.

    The BLAS thread count is process-wide, so forward passes on several threads at once (the pipeline's
    `scorers`) share one limit: the first to enter sets it, the last to leave restores it. (A lock around each
    pass, as before, ran them one at a time.) It talks to the BLAS libraries found at import directly: through
    `threadpool_limits` it cost ~13 µs a pass (4 % of a batch-1 HAN document), this ~2 µs. threadpoolctl >= 3.6
    lets only one "controlling" thread change a pthreads OpenBLAS and silently ignores the others (a model
    first used on the main thread left BLAS multi-threaded, and spinning, inside every later pass on another
    thread), so the setter bypasses that rule, which is threadpoolctl's, not OpenBLAS's."""

    def __init__(self, libs: list) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._libs = libs
        self._saved: list[tuple[Callable[[int], object], int]] = []

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                for lib in self._libs:
                    n = lib.get_num_threads()
                    if n is not None and n != 1:
                        setter = _blas_setter(lib)
                        setter(1)
                        self._saved.append((setter, n))
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for setter, n in self._saved:
                    setter(n)
                self._saved.clear()


def _blas_setter(lib: threadpoolctl.LibController) -> Callable[[int], object]:
    """lib's set_num_threads without threadpoolctl's controlling-thread rule (see _SingleThreadedBlas)."""
    real = getattr(lib, "_real_set_num_threads", None)  # threadpoolctl >= 3.6's OpenBLAS
    if real is not None:
        return real
    return lib.set_num_threads


_single_threaded_blas = _SingleThreadedBlas(ThreadpoolController().select(user_api="blas").lib_controllers)


class _NumbaThreads:
    """numba.get/set_num_threads for the calling thread, ~0.2 µs a call instead of ~3: the public functions take a
    multiprocessing lock each time (to start the thread pool once), and a batch-1 forward pass asks ~5 times. Once
    the pool is up, numba's C entry points (`numba.np.ufunc.parallel._get/_set_num_threads`, there since 0.49)
    do the work; where a Numba lacks them, the public functions."""

    def __init__(self) -> None:
        self._get: Callable[[], int] = numba.get_num_threads
        self.set: Callable[[int], None] = numba.set_num_threads

    def get(self) -> int:
        n = self._get()
        return n if n > 0 else numba.get_num_threads()  # (the public function raises on what would be a bug)

    def bind(self) -> None:
        numba.get_num_threads()  # starts the pool; that sets the C entry points
        from numba.np.ufunc import parallel

        get, set_ = getattr(parallel, "_get_num_threads", None), getattr(parallel, "_set_num_threads", None)
        if callable(get) and callable(set_):
            self._get, self.set = get, set_


_threads = _NumbaThreads()


def _n_chunks(n: int) -> int:
    threads = _threads.get()
    return min(n, threads * -(-n // (threads * CHUNK)))


def _linear(x: np.ndarray, WT: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], WT.shape[1]), F32)
    linear(np.ascontiguousarray(x, dtype=F32), WT, b, out)
    return out


@dataclass
class _Direction:
    W_ihT: np.ndarray  # [Din, G]
    b_ih: np.ndarray  # [G]
    W_hhT: np.ndarray  # [H, G]
    b_hh: np.ndarray  # [G]
    table: np.ndarray | None = None  # [V, G] = E @ W_ihT + b_ih (word level only)


@dataclass
class _Encoder:
    cfg: EncoderConfig
    kind: int = -1
    dirs: tuple[_Direction, ...] = ()
    conv_WT: np.ndarray | None = None  # [Din, maps·Σw]: column base_k + o·maps + m is W_k[m, :, o]
    conv_b: np.ndarray | None = None  # [maps·len(widths)]
    conv_table: np.ndarray | None = None  # [V, maps·Σw]
    widths: np.ndarray | None = None
    att_WT: np.ndarray | None = None  # [D, A]
    att_b: np.ndarray | None = None
    att_ctx: np.ndarray | None = None

    def table_bytes(self, vocab: int) -> int:
        if self.cfg.recurrent:
            return sum(vocab * d.W_ihT.shape[1] * 4 for d in self.dirs)
        return vocab * self.conv_WT.shape[1] * 4 if self.conv_WT is not None else 0

    def build_tables(self, E: np.ndarray) -> None:
        for d in self.dirs:
            d.table = np.ascontiguousarray(E @ d.W_ihT + d.b_ih, dtype=F32)
        if self.conv_WT is not None:
            self.conv_table = np.ascontiguousarray(E @ self.conv_WT, dtype=F32)


def _prepare(cfg: EncoderConfig, p: str, w: dict[str, np.ndarray]) -> _Encoder:
    enc = _Encoder(cfg)
    T = np.ascontiguousarray
    if cfg.recurrent:
        enc.kind = KINDS[cfg.type]
        enc.dirs = tuple(
            _Direction(T(w[f"{p}.rnn.weight_ih_l0{s}"].T), w[f"{p}.rnn.bias_ih_l0{s}"],
                       T(w[f"{p}.rnn.weight_hh_l0{s}"].T), w[f"{p}.rnn.bias_hh_l0{s}"])
            for s in ("", "_reverse")[: cfg.directions]
        )
    elif cfg.type == "cnn":
        cols = [w[f"{p}.convs.{k}.weight"][:, :, o].T for k, wd in enumerate(cfg.widths) for o in range(wd)]
        enc.conv_WT = T(np.concatenate(cols, axis=1))  # [Din, maps·Σw]
        enc.conv_b = T(np.concatenate([w[f"{p}.convs.{k}.bias"] for k in range(len(cfg.widths))]))
        enc.widths = np.asarray(cfg.widths, np.int64)
    if cfg.pooling == "attention":
        enc.att_WT = T(w[f"{p}.attention.proj.weight"].T)
        enc.att_b = w[f"{p}.attention.proj.bias"]
        enc.att_ctx = w[f"{p}.attention.context"]
    return enc


@dataclass
class _Inputs:
    """Where an encoder's inputs come from: token ids into the embedding table, or dense vectors."""

    rows: np.ndarray  # int32[T]: row of `table` for each position
    table: np.ndarray  # [V, Din] embedding matrix, or the vectors themselves
    is_tokens: bool

    def project(self, WT: np.ndarray, b: np.ndarray | None, full: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(proj, rows) with proj[rows[p]] = W x_p + b, from the full table or the distinct inputs only."""
        if full is not None:
            return full, self.rows
        bias = b if b is not None else np.zeros(WT.shape[1], F32)
        if not self.is_tokens:
            return _linear(self.table, WT, bias), self.rows
        uniq_vectors, inv = self._distinct
        return _linear(uniq_vectors, WT, bias), inv

    @cached_property
    def _distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """The batch's distinct tokens' vectors and each position's index among them (shared by both directions)."""
        uniq, inv = np.unique(self.rows, return_inverse=True)
        return self.table[uniq], inv.astype(np.int32)


class _Laps:
    """Optional per-stage timer: `lap(name)` charges the time since the previous lap to `name`.

    Off (timer None) it costs one attribute test per stage; on, it calls timer(stage, seconds) per kernel call.
    """

    __slots__ = ("timer", "t")

    def __init__(self, timer: Callable[[str, float], None] | None) -> None:
        self.timer = timer
        self.t = time.perf_counter() if timer is not None else 0.0

    def lap(self, name: str) -> None:
        if self.timer is not None:
            t = time.perf_counter()
            self.timer(name, t - self.t)
            self.t = t


def _run_direction(enc: _Encoder, k: int, inputs: _Inputs, starts: np.ndarray, lengths: np.ndarray,
                   h0: np.ndarray, c0: np.ndarray, outs: np.ndarray, laps: _Laps,
                   level: str) -> tuple[np.ndarray, np.ndarray]:
    """Direction k (0 forward, 1 backward) of a recurrent encoder -> final (h, c); outputs go to outs[:, kH:]."""
    d, H = enc.dirs[k], enc.cfg.hidden
    h_n, c_n = np.empty((len(starts), H), F32), np.empty((len(starts), H), F32)
    if len(starts):
        proj, rows = inputs.project(d.W_ihT, d.b_ih, d.table)
        laps.lap(f"{level}.projection")
        recurrent(enc.kind, proj, rows, starts, lengths, k == 1, d.W_hhT, d.b_hh, h0, c0, outs, k * H, h_n, c_n,
                  _n_chunks(len(starts)))
        laps.lap(f"{level}.recurrent")
    return h_n, c_n


def _positions(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int32)


def _slices(doc_tokens: np.ndarray, most: int) -> np.ndarray:
    """Document bounds [0, .., D] of consecutive slices of at most `most` tokens (a longer document alone)."""
    D = len(doc_tokens) - 1
    bounds = [0]
    while bounds[-1] < D:
        d0 = bounds[-1]
        d1 = int(np.searchsorted(doc_tokens, doc_tokens[d0] + most, side="right")) - 1
        bounds.append(min(max(d1, d0 + 1), D))
    return np.asarray(bounds if D else [0, 0])


def _doc_slice(batch: DocBatch, d0: int, d1: int) -> DocBatch:
    """Documents d0 .. d1 - 1 of a batch, as a batch of their own."""
    s0, s1 = batch.doc_offsets[d0], batch.doc_offsets[d1]
    t0, t1 = batch.sent_offsets[s0], batch.sent_offsets[s1]
    return DocBatch(batch.token_ids[t0:t1], batch.sent_offsets[s0 : s1 + 1] - t0, batch.doc_offsets[d0 : d1 + 1] - s0)


def _concat_scores(parts: list[Scores]) -> Scores:
    def cat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)

    return Scores(np.concatenate([p.probs for p in parts]), cat([p.word_attention for p in parts]),
                  cat([p.sentence_attention for p in parts]))


def _concat_states(parts: list[CarryState | None]) -> CarryState | None:
    if parts[0] is None:
        return None
    return CarryState(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("h", "c", "m", "s", "acc")))


class CpuBackend:
    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], table_budget_mb: float = 256) -> None:
        self.config = config
        self.embedding = weights["embedding.weight"]
        self.word = _prepare(config.word_encoder, "word_encoder", weights)
        self.doc = _prepare(config.doc_encoder, "composition", weights) if config.doc_encoder else None
        self.head_WT = np.ascontiguousarray(weights["head.weight"].T, dtype=F32)
        self.head_b = np.ascontiguousarray(weights["head.bias"], dtype=F32)
        # called as timer(stage, seconds) after each kernel call when set (bench --breakdown); stages are
        # '{word|doc}.{projection|recurrent|conv|attention|pooling}', 'prepare' and 'classifier'
        self.timer: Callable[[str, float], None] | None = None
        self._warmed = False
        if self.word.table_bytes(config.vocab_size) <= table_budget_mb * 2**20:
            self.word.build_tables(self.embedding)

    # -- public ------------------------------------------------------------------------------------------------
    def forward(self, batch: DocBatch, state: CarryState | None = None) -> tuple[Scores, CarryState | None]:
        batch.check_vocab(self.config.vocab_size)
        if state is not None:
            check_carry_state(self.config, state, batch.n_docs)
        if not self._warmed:  # a one-token batch first: it compiles (or loads) every kernel, under the notice
            _threads.bind()
            notice = threading.Timer(COMPILE_NOTICE_S, _compile_notice)
            notice.daemon = True
            notice.start()
            try:
                self._run(DocBatch.from_lists([[[0]]]), None)
            finally:
                notice.cancel()
                self._warmed = True
        if batch.n_tokens <= SLICE_TOKENS:
            return self._run(batch, state)
        bounds = _slices(batch.doc_token_offsets(), SLICE_TOKENS)
        parts = [self._run(_doc_slice(batch, d0, d1), state.take(np.arange(d0, d1)) if state is not None else None)
                 for d0, d1 in zip(bounds[:-1], bounds[1:], strict=False)]
        return _concat_scores([p[0] for p in parts]), _concat_states([p[1] for p in parts])

    def _run(self, batch: DocBatch, state: CarryState | None) -> tuple[Scores, CarryState | None]:
        return self._serially(batch.n_tokens, self._forward, batch, state)


    # -- the two halves of a sentence-level model (window mode of conversation state) ----------------------------
    def sentence_vectors(self, batch: DocBatch) -> np.ndarray:
        """float32[S, P]: the word encoder's pooled vector of each non-empty sentence, in batch order.

        With `score_sentences` it splits a `hierarchical` (or `average`) forward pass in two, so that a stream can
        keep sentence vectors and re-run only the document level over a window of them (a bidirectional document
        encoder cannot carry state). Same kernels and code path as `forward`.
        """
        check_sentence_level(self.config)
        batch.check_vocab(self.config.vocab_size)
        if not self._warmed:
            self.forward(DocBatch.from_lists([[[0]]]))
        bounds = _slices(batch.doc_token_offsets(), SLICE_TOKENS)
        parts = [self._serially(b.n_tokens, self._sentence_vectors, b)
                 for b in ([batch] if len(bounds) == 2 else
                           [_doc_slice(batch, d0, d1) for d0, d1 in zip(bounds[:-1], bounds[1:], strict=False)])]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def score_sentences(self, vectors: np.ndarray, doc_offsets: np.ndarray) -> Scores:
        """Documents given as their sentence vectors (float32[S, P]; document d = rows doc_offsets[d] ..
        doc_offsets[d+1]) -> Scores: document encoder, pooling and classifier, as `forward` runs them after the word
        level. `sentence_attention` (attention pooling) is per row of `vectors`; `word_attention` is None."""
        vectors, do = sentence_level_inputs(self.config, vectors, doc_offsets)
        return self._serially(8 * len(vectors), self._score_sentences, vectors, do)

    def _serially(self, n_tokens: int, fn: Callable[..., _T], *args: object) -> _T:
        """fn(*args) with BLAS single-threaded, and on one Numba thread below SERIAL_TOKENS."""
        with _single_threaded_blas:
            if n_tokens >= SERIAL_TOKENS:
                return fn(*args)
            threads = _threads.get()
            _threads.set(1)  # per calling thread: other threads' settings are untouched
            try:
                return fn(*args)
            finally:
                _threads.set(threads)

    def _sentence_vectors(self, batch: DocBatch) -> np.ndarray:
        _, starts, lengths, _ = batch.nonempty_sentences()
        vecs, _ = self._encode(self.word, _Inputs(batch.token_ids, self.embedding, True), starts, lengths, None,
                               None, None, None, _Laps(self.timer), "word")
        return vecs

    def _score_sentences(self, vectors: np.ndarray, do: np.ndarray) -> Scores:
        laps = _Laps(self.timer)
        rows = np.arange(len(vectors), dtype=np.int32)
        sent_att = None
        if self.config.composition == "average":
            docvec = self._pool(MODES["mean"], vectors, rows, do[:-1], np.diff(do))
            laps.lap("doc.pooling")
        else:
            assert self.doc is not None
            if self.doc.cfg.pooling == "attention":
                sent_att = np.zeros(len(vectors), F32)
            docvec, _ = self._encode(self.doc, _Inputs(rows, vectors, False), do[:-1], np.diff(do), None, None,
                                     sent_att, None, laps, "doc")
        probs = np.empty((len(docvec), self.head_b.shape[0]), F32)
        softmax_linear(np.ascontiguousarray(docvec, dtype=F32), self.head_WT, self.head_b, probs)
        laps.lap("classifier")
        return Scores(probs, None, sent_att)

    # -- orchestration -----------------------------------------------------------------------------------------
    def _forward(self, batch: DocBatch, state: CarryState | None) -> tuple[Scores, CarryState | None]:
        cfg = self.config
        laps = _Laps(self.timer)
        tokens = _Inputs(batch.token_ids, self.embedding, True)
        word_att = np.zeros(batch.n_tokens, F32) if cfg.word_encoder.pooling == "attention" else None
        sent_att = None
        new_state = None
        if cfg.composition in ("flat", "paragraph"):
            tok = batch.doc_token_offsets()
            bwd = batch.nonempty_sentences()[1:] if cfg.composition == "paragraph" else None
            laps.lap("prepare")
            docvec, new_state = self._encode(self.word, tokens, tok[:-1], np.diff(tok), bwd, state, word_att, None,
                                             laps, "word")
            if cfg.composition == "flat":
                new_state = None
        else:
            ne, starts, lengths, doc_ne = batch.nonempty_sentences()
            laps.lap("prepare")
            sentvec, _ = self._encode(self.word, tokens, starts, lengths, None, None, word_att, None, laps, "word")
            if cfg.composition == "average":
                docvec = self._pool(MODES["mean"], sentvec, np.arange(len(ne), dtype=np.int32),
                                    doc_ne[:-1], np.diff(doc_ne))
                laps.lap("doc.pooling")
            else:
                assert self.doc is not None
                if self.doc.cfg.pooling == "attention":
                    sent_att = np.zeros(batch.n_sentences, F32)
                rows = np.arange(len(ne), dtype=np.int32)
                laps.lap("prepare")
                docvec, new_state = self._encode(self.doc, _Inputs(rows, sentvec, False), doc_ne[:-1],
                                                 np.diff(doc_ne), None, state, sent_att, ne, laps, "doc")
                if not cfg.can_carry:
                    new_state = None
        probs = np.empty((len(docvec), self.head_b.shape[0]), F32)
        softmax_linear(np.ascontiguousarray(docvec, dtype=F32), self.head_WT, self.head_b, probs)
        laps.lap("classifier")
        return Scores(probs, word_att, sent_att), new_state

    def _pool(self, mode: int, table: np.ndarray, rows: np.ndarray, starts: np.ndarray,
              lengths: np.ndarray) -> np.ndarray:
        n, d = len(starts), table.shape[1]
        m, s, acc = np.zeros(n, F32), np.zeros(n, F32), np.zeros((n, d), F32)
        out = np.empty((n, d), F32)
        pool_accumulate(mode, table, rows, starts, lengths, m, s, acc, out)
        return out

    def _encode(self, enc: _Encoder, inputs: _Inputs, starts: np.ndarray, lengths: np.ndarray,
                bwd: tuple[np.ndarray, np.ndarray, np.ndarray] | None, carry: CarryState | None,
                att_out: np.ndarray | None, att_slots: np.ndarray | None, laps: _Laps,
                level: str) -> tuple[np.ndarray, CarryState | None]:
        """Encode and pool N segments (positions starts[n] .. + lengths[n] of `inputs`) -> ([N, D], state).

        bwd: for paragraph mode, the backward direction's own segments (non-empty sentences) and, per segment n,
        the range of them it owns (bwd[2][n] .. bwd[2][n+1]); None means the same segments as forward.
        """
        cfg = enc.cfg
        N = len(starts)
        T = len(inputs.rows)
        if cfg.type == "mean":
            pooled = self._pool(MODES["mean"], inputs.table, inputs.rows, starts, lengths)
            laps.lap(f"{level}.pooling")
            return pooled, None
        if cfg.type == "cnn":
            proj, rows = inputs.project(enc.conv_WT, None, enc.conv_table)
            laps.lap(f"{level}.projection")
            out = np.empty((N, enc.conv_b.shape[0]), F32)
            cnn_max_over_time(proj, rows, starts, lengths, enc.widths, enc.conv_b, cfg.maps, out)
            laps.lap(f"{level}.conv")
            return out, None
        H, D = cfg.hidden, cfg.out_dim(0)
        store = cfg.pooling != "last"
        outs = np.empty((T if store else 0, D), F32)
        zeros = np.zeros((N, H), F32)  # read-only initial states
        h0, c0 = (carry.h, carry.c) if carry is not None else (zeros, zeros)
        laps.lap("prepare")
        h_n, c_n = _run_direction(enc, 0, inputs, starts, lengths, h0, c0, outs, laps, level)
        if cfg.bidirectional:  # from zero state, over its own segments in paragraph mode
            b_starts, b_lengths = (bwd[0], bwd[1]) if bwd is not None else (starts, lengths)
            if len(b_starts) != N:
                zeros = np.zeros((len(b_starts), H), F32)
            laps.lap("prepare")
            h_b, _ = _run_direction(enc, 1, inputs, b_starts, b_lengths, zeros, zeros, outs, laps, level)
        m = carry.m.copy() if carry is not None else np.zeros(N, F32)
        s = carry.s.copy() if carry is not None else np.zeros(N, F32)
        acc = carry.acc.copy() if carry is not None else np.zeros((N, D), F32)
        if cfg.pooling == "last":
            acc[:, :H] = h_n
            if cfg.bidirectional:
                if bwd is None:
                    acc[:, H:] = h_b
                else:  # backward state of each document's last non-empty sentence; else keep what was carried
                    has = bwd[2][1:] > bwd[2][:-1]
                    acc[has, H:] = h_b[bwd[2][1:][has] - 1]
            s += lengths
            pooled = acc.copy()
            laps.lap(f"{level}.pooling")
        else:
            pooled = np.empty((N, D), F32)
            if cfg.pooling == "attention":
                weights = att_out if att_out is not None else np.zeros(0, F32)
                slots = att_slots if att_slots is not None else _positions(T)
                attention_pool(outs, starts, lengths, enc.att_WT, enc.att_b, enc.att_ctx, np.empty(T, F32), m, s,
                               acc, pooled, weights, slots)
                laps.lap(f"{level}.attention")
            else:
                pool_accumulate(MODES[cfg.pooling], outs, _positions(T), starts, lengths, m, s, acc, pooled)
                laps.lap(f"{level}.pooling")
        return pooled, CarryState(h_n, c_n, m, s, acc)
