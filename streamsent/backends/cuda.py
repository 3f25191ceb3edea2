"""CUDA backend: the CPU backend's passes as numba-cuda kernels (`streamsent.kernels.cuda`), weights resident.

At load the weights are uploaded once, re-laid as the kernels want them (W^T contiguous), and the word
encoder's input projection W_ih·e + b_ih of every vocabulary entry (or the CNN's per-offset products) is
computed on the device when that table fits `table_budget_mb`; otherwise it is computed per batch for the
batch's token positions. Per batch the host only builds index arrays (segments, length order, slots) from the
batch's offsets, packs them with the token ids into pinned buffers and copies them in two transfers on the
backend's stream; every pass then runs on that stream, and the results come back through pinned buffers with
one synchronisation at the end. See docs/cuda.md.

Importing this module imports numba.cuda: `models.model` does so only when `device = "cuda"` is usable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..batch import DocBatch
from ..kernels.cuda import memory
from ..kernels.cuda.compiler import cuda
from ..kernels.cuda.conv import cnn_max_over_time
from ..kernels.cuda.linear import linear, softmax_linear
from ..kernels.cuda.pooling import MODES, attention_scores_linear, pool_segments
from ..kernels.cuda.recurrent import KINDS, recurrent, shared_bytes
from ..models.config import EncoderConfig, ModelConfig
from .base import CarryState, Scores, check_carry_state, check_sentence_level, sentence_level_inputs
from .cpu import _concat_scores, _concat_states, _doc_slice, _slices

__all__ = ["CudaBackend"]

F32 = np.float32
# A batch is scored in slices of whole documents of at most this many tokens, so the [T, D] intermediates stay
# bounded (~400 MB at D = 100) whatever the batch.
SLICE_TOKENS = 1 << 20
THREADS = 128  # threads per block of the 1-d kernels
# Recurrence tiles (kernels/cuda/recurrent.py): lanes = H rounded up to a warp multiple, at most RNN_LANES;
# (thread rows, R sequences a thread) from RNN_TILES, the largest tile that still gives RNN_MIN_BLOCKS blocks.
# A block reads each W_hh element once a step whatever its tile, so larger tiles divide the weight traffic
# (W_hh^T of an H = 128 LSTM is 256 kB a step, past L1); smaller ones give more blocks when sequences are few.
# R stops at 4: at 8 its per-sequence bookkeeping leaves the registers (tests/cuda/test_compile.py checks).
RNN_LANES = 128
RNN_MAX_THREADS = 256
RNN_TILES = ((4, 4), (2, 4), (1, 4), (1, 2), (1, 1))
RNN_MIN_BLOCKS = 256  # about 2 per multiprocessor of an H100 / H200 (132)
SHARED_LIMIT = 48 * 1024  # dynamic shared memory a block may use without opting in


def _blocks(n: int, threads: int) -> int:
    return max(1, -(-n // threads))


@dataclass
class _Direction:
    W_ihT: object  # device [Din, G]
    b_ih: object  # device [G]
    W_hhT: object  # device [H, G]
    b_hh: object  # device [G]
    table: object | None = None  # device [V, G] = E @ W_ihT + b_ih (word level only)


@dataclass
class _Encoder:
    cfg: EncoderConfig
    kind: int = -1  # recurrent: RNN | GRU | LSTM (kernels/cuda/recurrent.py)
    dirs: tuple[_Direction, ...] = ()  # forward, then backward
    conv_WT: object | None = None  # device [Din, maps·Σw]: column base_k + o·maps + m is W_k[m, :, o]
    conv_b: object | None = None  # device [maps·len(widths)]
    conv_zero_b: object | None = None  # device zeros [maps·Σw]: the conv projection has no bias
    conv_table: object | None = None  # device [V, maps·Σw]
    widths: object | None = None  # device int64[len(widths)]
    att_WT: object | None = None  # device [D, A]
    att_b: object | None = None
    att_ctx: object | None = None
    proj_cols: int = 0  # width of a vocabulary-table row: G of a direction, or maps·Σw

    def table_bytes(self, vocab: int) -> int:
        if self.cfg.recurrent:
            return len(self.dirs) * vocab * self.proj_cols * 4
        return vocab * self.proj_cols * 4 if self.cfg.type == "cnn" else 0


@dataclass
class _Inputs:
    """Where an encoder's inputs come from: rows of a device table (embedding matrix or dense vectors)."""

    rows: object  # device int32[T]
    table: object  # device [V, Din]
    n: int  # T


@dataclass
class _Segments:
    """N ragged segments of an input sequence: tickets of int64 arrays in the batch's staging (`_Staging`)."""

    starts: int
    lengths: int
    order: int  # sequence indices, longest first: the recurrence's tiles
    n: int


class _Staging:
    """Host arrays packed into one reusable pinned buffer and copied to the device in one transfer.

    `add` returns a ticket; `upload` copies everything added since the last upload and `view(ticket)` is then
    the device slice holding that array. The pinned and device buffers grow, never shrink.
    """

    def __init__(self, dtype: type) -> None:
        self.dtype = np.dtype(dtype)
        self.parts: list[np.ndarray] = []
        self.offsets: list[int] = []
        self.size = 0
        self.lengths: list[int] = []
        self.views: dict[int, object] = {}
        self.host: np.ndarray | None = None  # pinned
        self.dev = None  # device, same capacity

    def add(self, arr: np.ndarray) -> int:
        self.parts.append(np.ascontiguousarray(arr, dtype=self.dtype).reshape(-1))
        self.offsets.append(self.size)
        self.size += len(self.parts[-1])
        return len(self.parts) - 1

    def upload(self, stream) -> None:
        n = max(self.size, 1)
        if self.host is None or len(self.host) < n:
            cap = 1 << (n - 1).bit_length()
            self.host = cuda.pinned_array(cap, self.dtype)
            self.dev = cuda.device_array(cap, self.dtype)
        for off, part in zip(self.offsets, self.parts, strict=True):
            self.host[off : off + len(part)] = part
        self.dev[:n].copy_to_device(self.host[:n], stream=stream)
        self.lengths = [len(p) for p in self.parts]
        self.views: dict[int, object] = {}

    def view(self, ticket: int):
        """The device slice of an uploaded array (made once per batch: a device-array view costs microseconds)."""
        v = self.views.get(ticket)
        if v is None:
            off = self.offsets[ticket]
            v = self.views[ticket] = self.dev[off : off + self.lengths[ticket]]
        return v

    def reset(self) -> None:
        self.parts, self.offsets, self.size = [], [], 0


class CudaBackend:
    """Scores batches on the GPU; the same `forward` contract, results and carried state as `CpuBackend`.

    threads: block size of the 1-d kernels; rnn_block: (hidden-unit lanes, thread rows, sequences per thread) of
    the recurrence, by default chosen per launch (`_rnn_block`). The tests pass tiny ones so that the simulator
    runs many blocks. concurrent_directions: a bidirectional encoder's backward recurrence runs on a second
    stream beside the forward one (each is a chain of dependent steps that leaves most of the GPU idle at small
    batches); False runs them one after the other.
    """

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], table_budget_mb: float = 256,
                 threads: int = THREADS, rnn_block: tuple[int, ...] | None = None,
                 concurrent_directions: bool = True) -> None:
        self.config = config
        self.threads = int(threads)
        self.rnn_block = rnn_block
        self.stream = cuda.stream()  # every pass, copies and the final synchronisation
        self.concurrent = concurrent_directions
        self.side = cuda.stream()  # the backward direction, between a fork and a join event on `stream`
        self._fork, self._join = cuda.event(), cuda.event()
        # One call at a time: the staging, workspace and streams are the backend's own (the GPU runs one stream's
        # work in order anyway). Threads that share a backend queue here instead of corrupting each other's buffers.
        self._lock = threading.Lock()
        self._i64 = _Staging(np.int64)
        self._i32 = _Staging(np.int32)
        self._aranges = None  # device int32[cap]: 0, 1, 2, ... for inputs that are their own rows
        self._arange_views: dict[int, object] = {}
        self._ws: dict[str, object] = {}  # workspace: reusable device buffers by name (see _empty)
        self._pinned: dict[str, np.ndarray] = {}
        # called as timer(stage, seconds) after each stage when set (bench/gpu.py --breakdown); each lap waits for
        # the stream, so the stages are timed apart (and the pass runs a little slower). Stages: 'upload',
        # '{word|doc}.{projection|recurrent|conv|attention_scores|pooling}', 'classifier', 'download'
        self.timer: Callable[[str, float], None] | None = None
        self._t = 0.0
        up = self._up
        self.embedding = up(weights["embedding.weight"])
        self.word = self._prepare(config.word_encoder, "word_encoder", weights)
        self.doc = self._prepare(config.doc_encoder, "composition", weights) if config.doc_encoder else None
        self.head_WT = up(weights["head.weight"].T)
        self.head_b = up(weights["head.bias"])
        if self.word.table_bytes(config.vocab_size) <= table_budget_mb * 2**20:
            rows = self._arange(config.vocab_size)
            for d in self.word.dirs:
                d.table = self._linear(self.embedding, rows, config.vocab_size, d.W_ihT, d.b_ih)
            if self.word.conv_WT is not None:
                self.word.conv_table = self._linear(self.embedding, rows, config.vocab_size, self.word.conv_WT,
                                                    self.word.conv_zero_b)
        self.stream.synchronize()

    # -- weights -----------------------------------------------------------------------------------------------
    def _up(self, a: np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a, dtype=F32 if a.dtype.kind == "f" else a.dtype),
                              stream=self.stream)

    def _prepare(self, cfg: EncoderConfig, p: str, w: dict[str, np.ndarray]) -> _Encoder:
        enc = _Encoder(cfg)
        up = self._up
        if cfg.recurrent:
            enc.kind = KINDS[cfg.type]
            enc.dirs = tuple(
                _Direction(up(w[f"{p}.rnn.weight_ih_l0{s}"].T), up(w[f"{p}.rnn.bias_ih_l0{s}"]),
                           up(w[f"{p}.rnn.weight_hh_l0{s}"].T), up(w[f"{p}.rnn.bias_hh_l0{s}"]))
                for s in ("", "_reverse")[: cfg.directions]
            )
            enc.proj_cols = w[f"{p}.rnn.weight_ih_l0"].shape[0]
        elif cfg.type == "cnn":
            cols = [w[f"{p}.convs.{k}.weight"][:, :, o].T for k, wd in enumerate(cfg.widths) for o in range(wd)]
            WT = np.concatenate(cols, axis=1)  # [Din, maps·Σw]
            enc.conv_WT = up(WT)
            enc.conv_b = up(np.concatenate([w[f"{p}.convs.{k}.bias"] for k in range(len(cfg.widths))]))
            enc.conv_zero_b = up(np.zeros(WT.shape[1], F32))
            enc.widths = up(np.asarray(cfg.widths, np.int64))
            enc.proj_cols = WT.shape[1]
        if cfg.pooling == "attention":
            enc.att_WT = up(w[f"{p}.attention.proj.weight"].T)
            enc.att_b = up(w[f"{p}.attention.proj.bias"])
            enc.att_ctx = up(w[f"{p}.attention.context"])
        return enc

    # -- small device helpers ----------------------------------------------------------------------------------
    def _lap(self, stage: str) -> None:
        if self.timer is not None:
            self.stream.synchronize()
            self.side.synchronize()
            t = time.perf_counter()
            self.timer(stage, t - self._t)
            self._t = t

    def _launch1(self, kern, n: int, stream=None):
        return kern[_blocks(n, self.threads), self.threads, self.stream if stream is None else stream]

    def _empty(self, shape, name: str | None = None):
        """A float32 device array: with a name, a view of that reusable workspace buffer (grown as needed), valid
        until the next batch (each batch ends with a synchronisation, and its buffers are named apart); without
        one, a fresh allocation (resident tables). Reuse spares a cudaMalloc per intermediate and numba's
        deferred frees, whose flush synchronises the device in the middle of a batch."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape))
        if name is None or size == 0:
            return cuda.device_array(shape, F32, stream=self.stream)
        buf = self._ws.get(name)
        if buf is None or buf.shape[0] < size:
            buf = self._ws[name] = cuda.device_array(1 << max(size - 1, 1).bit_length(), F32, stream=self.stream)
        view = buf[:size]
        return view if len(shape) == 1 else view.reshape(shape)

    def _full(self, shape, name: str, value: float = 0.0):
        a = self._empty(shape, name)
        flat = a.reshape(-1)
        if flat.shape[0]:
            self._launch1(memory.fill, flat.shape[0])(flat, F32(value))
        return a

    def _zeros(self, n: int, d: int, name: str) -> tuple:
        """Pooling accumulators m [n], s [n], acc [n, d] at zero: one buffer, one fill."""
        buf = self._full(n * (d + 2), name)
        return buf[:n], buf[n : 2 * n], buf[2 * n :].reshape(n, d)

    def _arange(self, n: int):
        if self._aranges is None or self._aranges.shape[0] < n:
            cap = 1 << max(n - 1, 1).bit_length()
            self._aranges = cuda.to_device(np.arange(cap, dtype=np.int32), stream=self.stream)
            self._arange_views = {}
        v = self._arange_views.get(n)
        if v is None:
            v = self._arange_views[n] = self._aranges[:n]
        return v

    def _linear(self, x, rows, n: int, WT, b, name: str | None = None, stream=None):
        out = self._empty((n, WT.shape[1]), name)
        if n:
            self._launch1(linear, n * WT.shape[1], stream)(x, rows, WT, b, out)
        return out

    def _download(self, name: str, dev) -> np.ndarray:
        """Start copying `dev` into a reusable pinned buffer; valid after the stream is synchronised."""
        size = int(np.prod(dev.shape))
        buf = self._pinned.get(name)
        if buf is None or len(buf) < size:
            buf = self._pinned[name] = cuda.pinned_array(1 << max(size - 1, 1).bit_length(), F32)
        host = buf[:size].reshape(dev.shape)
        if size:
            dev.copy_to_host(host, stream=self.stream)
        return host

    # -- public ------------------------------------------------------------------------------------------------
    def forward(self, batch: DocBatch, state: CarryState | None = None) -> tuple[Scores, CarryState | None]:
        batch.check_vocab(self.config.vocab_size)
        if state is not None:
            check_carry_state(self.config, state, batch.n_docs)
        bounds = _slices(batch.doc_token_offsets(), SLICE_TOKENS)
        with self._lock:
            if len(bounds) == 2:
                return self._forward(batch, state)
            parts = [self._forward(_doc_slice(batch, d0, d1), state.take(np.arange(d0, d1)) if state is not None
                                   else None) for d0, d1 in zip(bounds[:-1], bounds[1:], strict=False)]
        return _concat_scores([p[0] for p in parts]), _concat_states([p[1] for p in parts])


    # -- the two halves of a sentence-level model (window mode of conversation state) ----------------------------
    def sentence_vectors(self, batch: DocBatch) -> np.ndarray:
        """float32[S, P]: the word encoder's pooled vector of each non-empty sentence, as CpuBackend's."""
        check_sentence_level(self.config)
        batch.check_vocab(self.config.vocab_size)
        _, starts, lengths, _ = batch.nonempty_sentences()
        with self._lock:
            self._t = time.perf_counter()
            ticket = self._begin(batch.token_ids)
            seg = self._segments(starts, lengths)
            tokens = self._upload(ticket, batch.n_tokens)
            vecs, _ = self._encode(self.word, tokens, seg, None, None, None, None, "word")
            out = self._download("vectors", vecs)
            self.stream.synchronize()
            return out.copy()

    def score_sentences(self, vectors: np.ndarray, doc_offsets: np.ndarray) -> Scores:
        """Documents given as their sentence vectors (float32[S, P], document d = rows doc_offsets[d] ..
        doc_offsets[d+1]) -> Scores, as CpuBackend.score_sentences."""
        vectors, do = sentence_level_inputs(self.config, vectors, doc_offsets)
        with self._lock:
            self._t = time.perf_counter()
            self._begin(np.zeros(0, np.int32))
            seg = self._segments(do[:-1], np.diff(do))
            slots = self._i64.add(np.arange(len(vectors)))
            self._upload(0, 0)
            sent_att = None
            if self.config.composition == "average":
                docvec = self._pool(MODES["mean"], self._up(vectors), self._arange(len(vectors)), seg, "doc")
            else:
                assert self.doc is not None
                if self.doc.cfg.pooling == "attention":
                    sent_att = self._full(len(vectors), "sent_att")
                inputs = _Inputs(self._arange(len(vectors)), self._up(vectors), len(vectors))
                docvec, _ = self._encode(self.doc, inputs, seg, None, None, sent_att, self._i64.view(slots), "doc")
            probs = self._head(docvec)
            att = self._download("sent_att", sent_att) if sent_att is not None else None
            self.stream.synchronize()
            return Scores(probs.copy(), None, None if att is None else att.copy())

    # -- host-side index arrays ------------------------------------------------------------------------------
    def _segments(self, starts: np.ndarray, lengths: np.ndarray) -> _Segments:
        lengths = np.asarray(lengths, np.int64)
        order = np.argsort(-lengths, kind="stable")
        return _Segments(self._i64.add(starts), self._i64.add(lengths), self._i64.add(order), n=len(lengths))

    def _begin(self, token_ids: np.ndarray) -> int:
        """Start a batch's staging with its token ids; returns their ticket."""
        self._i64.reset()
        self._i32.reset()
        return self._i32.add(token_ids)

    def _upload(self, tokens: int, n_tokens: int) -> _Inputs:
        """Copy every index array staged for this batch (two transfers) -> the token inputs on the device."""
        for st in (self._i64, self._i32):
            st.upload(self.stream)
        return _Inputs(self._i32.view(tokens), self.embedding, n_tokens)

    # -- orchestration (mirrors CpuBackend._forward) -------------------------------------------------------------
    def _forward(self, batch: DocBatch, state: CarryState | None) -> tuple[Scores, CarryState | None]:
        cfg = self.config
        ne, ne_starts, ne_lengths, doc_ne = batch.nonempty_sentences()
        self._t = time.perf_counter()
        ticket = self._begin(batch.token_ids)
        word_att = self._full(batch.n_tokens, "word_att") if cfg.word_encoder.pooling == "attention" else None
        sent_att = None
        new_state = None
        carry = self._carry(state) if state is not None else None
        if cfg.composition in ("flat", "paragraph"):
            tok = batch.doc_token_offsets()
            seg = self._segments(tok[:-1], np.diff(tok))
            bwd = None
            if cfg.composition == "paragraph" and cfg.word_encoder.bidirectional:
                # the backward direction runs over each non-empty sentence; document n's last one gives its
                # part of a `last`-pooled vector (-1: the document has none, keep what was carried)
                last = np.where(doc_ne[1:] > doc_ne[:-1], doc_ne[1:] - 1, -1)
                bwd = (self._segments(ne_starts, ne_lengths), self._i64.add(last))
            tokens = self._upload(ticket, batch.n_tokens)
            self._lap("upload")
            docvec, new_state = self._encode(self.word, tokens, seg, bwd, carry, word_att, None, "word")
            if cfg.composition == "flat":
                new_state = None
        else:
            seg = self._segments(ne_starts, ne_lengths)
            doc_seg = self._segments(doc_ne[:-1], np.diff(doc_ne))
            slots = self._i64.add(ne)
            tokens = self._upload(ticket, batch.n_tokens)
            self._lap("upload")
            sentvec, _ = self._encode(self.word, tokens, seg, None, None, word_att, None, "word")
            if cfg.composition == "average":
                docvec = self._pool(MODES["mean"], sentvec, self._arange(len(ne)), doc_seg, "doc")
                self._lap("doc.pooling")
            else:
                assert self.doc is not None
                if self.doc.cfg.pooling == "attention":
                    sent_att = self._full(batch.n_sentences, "sent_att")
                inputs = _Inputs(self._arange(len(ne)), sentvec, len(ne))
                docvec, new_state = self._encode(self.doc, inputs, doc_seg, None, carry, sent_att,
                                                 self._i64.view(slots), "doc")
                if not cfg.can_carry:
                    new_state = None
        probs = self._head(docvec)
        self._lap("classifier")
        host_w = self._download("word_att", word_att) if word_att is not None else None
        host_s = self._download("sent_att", sent_att) if sent_att is not None else None
        host_state = [self._download(f"state_{k}", a) for k, a in enumerate(new_state)] if new_state else None
        self.stream.synchronize()
        self._lap("download")
        scores = Scores(probs.copy(), None if host_w is None else host_w.copy(),
                        None if host_s is None else host_s.copy())
        return scores, (CarryState(*(a.copy() for a in host_state)) if host_state else None)

    def _carry(self, state: CarryState) -> tuple:
        return tuple(self._up(a) for a in (state.h, state.c, state.m, state.s, state.acc))

    def _head(self, docvec) -> np.ndarray:
        n, C = docvec.shape[0], self.head_b.shape[0]
        probs = self._empty((n, C), "probs")
        if n:
            self._launch1(softmax_linear, n)(docvec, self.head_WT, self.head_b, probs)
        return self._download("probs", probs)

    def _pool(self, mode: int, table, rows, seg: _Segments, level: str, scores=None, acc=None, att_out=None,
              att_slots=None):
        """Pool N segments of table[rows[p]] (accumulate, finalize and attention weights: one launch) -> [N, D].

        acc: the accumulators (m, s, acc) to fold into (a carried state), else fresh zeros; att_out/att_slots: where
        the attention weights go (attention mode)."""
        n, d = seg.n, table.shape[1]
        m, s, a = acc if acc is not None else self._zeros(n, d, f"{level}.pool_acc")
        out = self._empty((n, d), f"{level}.pooled")
        if n:
            dummy = self._empty(1, "dummy")
            pool_segments[n, min(self.threads, 32 * -(-d // 32)), self.stream](
                mode, table, rows, self._i64.view(seg.starts), self._i64.view(seg.lengths),
                dummy if scores is None else scores, m, s, a, out, dummy if att_out is None else att_out,
                rows if att_slots is None else att_slots, int(att_out is not None))
        return out

    def _run_direction(self, enc: _Encoder, k: int, inputs: _Inputs, seg: _Segments, h0, c0, outs, store: bool,
                       level: str, stream):
        """Direction k (0 forward, 1 backward) of a recurrent encoder on `stream` -> final (h, c) on the device.

        Everything it reads must be enqueued on `stream` or before the fork event (see _encode)."""
        d, H = enc.dirs[k], enc.cfg.hidden
        h_n, c_n = self._empty((seg.n, H), f"{level}.h_n{k}"), self._empty((seg.n, H), f"{level}.c_n{k}")
        if seg.n:
            if d.table is not None and inputs.table is self.embedding:
                proj, rows = d.table, inputs.rows
            else:
                proj = self._linear(inputs.table, inputs.rows, inputs.n, d.W_ihT, d.b_ih, f"{level}.proj{k}", stream)
                rows = self._arange(inputs.n)
                self._lap(f"{level}.projection")
            v = self._i64.view
            recurrent(enc.kind, proj, rows, v(seg.starts), v(seg.lengths), v(seg.order), k, d.W_hhT, d.b_hh, h0,
                      c0, outs, store, k * H, h_n, c_n, block=self._rnn_block(H, seg.n), stream=stream)
            self._lap(f"{level}.recurrent")
        return h_n, c_n

    def _rnn_block(self, H: int, n: int) -> tuple[int, int, int]:
        """(lanes, thread rows, R) of a recurrence over n sequences of hidden size H (see RNN_TILES)."""
        if self.rnn_block is not None:
            return (*self.rnn_block, 1)[:3]
        bx = min(32 * -(-H // 32), RNN_LANES)
        fits = [(by, R) for by, R in RNN_TILES
                if bx * by <= RNN_MAX_THREADS and shared_bytes(by, H, R) <= SHARED_LIMIT]  # the tile's states
        if not fits:
            raise ValueError(f"hidden size {H} is too large for the CUDA recurrence (its state, {shared_bytes(1, H)} "
                             f"bytes of shared memory a sequence, exceeds {SHARED_LIMIT}); use device = 'cpu'")
        by, R = next(((by, R) for by, R in fits if n >= RNN_MIN_BLOCKS * by * R), fits[-1])
        return bx, by, R

    def _encode(self, enc: _Encoder, inputs: _Inputs, seg: _Segments, bwd: tuple[_Segments, int] | None,
                carry: tuple | None, att_out, att_slots, level: str) -> tuple[object, tuple | None]:
        """Encode and pool N segments of `inputs` -> (device [N, D], device state (h, c, m, s, acc) or None).

        bwd: for paragraph mode, the backward direction's own segments (non-empty sentences) and the ticket of
        each document's last one (-1: none); None means the same segments as forward.
        """
        cfg = enc.cfg
        N, T = seg.n, inputs.n
        if cfg.type == "mean":
            pooled = self._pool(MODES["mean"], inputs.table, inputs.rows, seg, level)
            self._lap(f"{level}.pooling")
            return pooled, None
        if cfg.type == "cnn":
            if enc.conv_table is not None and inputs.table is self.embedding:
                proj, rows = enc.conv_table, inputs.rows
            else:
                proj = self._linear(inputs.table, inputs.rows, T, enc.conv_WT, enc.conv_zero_b, f"{level}.proj")
                rows = self._arange(T)
                self._lap(f"{level}.projection")
            F = cfg.maps * len(cfg.widths)
            out = self._empty((N, F), f"{level}.conv_out")
            if N:
                v = self._i64.view
                self._launch1(cnn_max_over_time, N * F)(proj, rows, v(seg.starts), v(seg.lengths), enc.widths,
                                                         enc.conv_b, cfg.maps, out)
            self._lap(f"{level}.conv")
            return out, None
        H, D = cfg.hidden, cfg.out_dim(0)
        store = cfg.pooling != "last"
        outs = self._empty((T if store else 1, D), f"{level}.outs")
        h0, c0 = (carry[0], carry[1]) if carry is not None else (None, None)  # None: zeros
        side = self.side if cfg.bidirectional and self.concurrent else self.stream
        if side is self.side:  # fork: the side stream waits for everything enqueued so far (uploads, inputs)
            self._arange(inputs.n)  # (an arange that must grow is uploaded on `stream`: before the fork)
            self._fork.record(self.stream)
            self._fork.wait(self.side)
        h_n, c_n = self._run_direction(enc, 0, inputs, seg, h0, c0, outs, store, level, self.stream)
        h_b = None
        if cfg.bidirectional:  # from zero state, over its own segments in paragraph mode
            b_seg = bwd[0] if bwd is not None else seg
            h_b, _ = self._run_direction(enc, 1, inputs, b_seg, None, None, outs, store, level, side)
        if side is self.side:  # join: what follows on `stream` waits for the backward direction
            self._join.record(self.side)
            self._join.wait(self.stream)
        if carry is not None:
            m, s, acc = carry[2], carry[3], carry[4]  # uploaded for this batch: updated in place
        else:
            m, s, acc = self._zeros(N, D, f"{level}.acc")
        v = self._i64.view
        if cfg.pooling == "last":
            if N:
                self._launch1(memory.scatter_cols, N * H)(h_n, self._arange(N), 0, acc)
                if h_b is not None:
                    idx = self._arange(N) if bwd is None else v(bwd[1])
                    self._launch1(memory.scatter_cols, N * H)(h_b, idx, H, acc)
                self._launch1(memory.add_lengths, N)(s, v(seg.lengths))
            pooled = acc
            self._lap(f"{level}.pooling")
        else:
            mode = MODES[cfg.pooling]
            scores = self._empty(1, "dummy")  # unused without attention
            if mode == MODES["attention"]:
                scores = self._empty(T, f"{level}.scores")
                if T:
                    lanes = min(32, max(1, self.threads // 4))  # 128 threads: a warp per position, 4 a block
                    rows = max(1, self.threads // lanes)
                    attention_scores_linear[_blocks(T, rows), (lanes, rows), self.stream, 4 * lanes * rows](
                        outs, enc.att_WT, enc.att_b, enc.att_ctx, scores)
                self._lap(f"{level}.attention_scores")
            pooled = self._pool(mode, outs, self._arange(T), seg, level, scores, (m, s, acc), att_out, att_slots)
            self._lap(f"{level}.pooling")
        return pooled, (h_n, c_n, m, s, acc)
