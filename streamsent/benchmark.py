"""streamsent CPU vs PyTorch CPU on the same weights and data, and vs this machine's GEMM ceiling.

Used by `streamsent bench` (the user's model, default the built-in one) and `bench/encoders.py` (the five
encoders of the issue's workload). Everything is measured side by side in one process; docs/s are medians of
interleaved repeats; torch (when installed) runs under `inference_mode` with the better of 1 and 2 threads.
Tokenisation is excluded from both sides (the same token ids go in).

Two FLOP counts per document (2 × multiply-adds of every matrix product):
- nominal: what the model needs, input projections included (the issue's metric). docs/s × nominal ÷ the
  GEMM ceiling is "% of ceiling"; it passes 100 % for streamsent because its CPU backend reads the input
  projection of each vocabulary entry from a table built once per model instead of computing it per token.
- executed: what streamsent really computes with its tables; docs/s × executed ÷ the ceiling is "% FPU" — how
  busy the floating-point units were, the honest hardware figure.
At batch 1 a document runs on one core, so batch-1 rows are held against the single-core ceiling.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batch import DocBatch
from .models.config import EncoderConfig, ModelConfig
from .models.init import random_weights
from .models.model import Model

__all__ = ["BenchRow", "bench_model", "breakdown", "flops_per_doc", "gemm_gflops", "issue_configs", "workload"]

V, E, H = 20_000, 100, 128  # the issue's workload
N_SENT, N_TOK = 8, 24
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def issue_configs() -> dict[str, dict]:
    """The five encoders of the issue: vocabulary 20k, embedding 100, hidden 128 (HAN 50 per direction)."""
    base = {"format": "streamsent-model/1", "labels": ["negative", "positive"],
            "embedding": {"vocab_size": V, "dim": E, "padding_idx": 0}}
    rec = {t.upper(): {"word_encoder": {"type": t, "hidden": H}, "composition": {"type": "flat"}}
           for t in ("rnn", "lstm", "gru")}
    han_enc = {"type": "gru", "hidden": 50, "bidirectional": True, "pooling": "attention", "attention_dim": 100}
    out = rec | {
        "CNN": {"word_encoder": {"type": "cnn", "widths": [3, 4, 5], "maps": 100}, "composition": {"type": "flat"}},
        "HAN": {"word_encoder": han_enc, "composition": {"type": "hierarchical", "encoder": han_enc}},
    }
    return {k: {"name": k.lower(), **base, **v} for k, v in out.items()}


def flops_per_doc(cfg: ModelConfig, n_sent: int = N_SENT, n_tok: int = N_TOK, tables: bool = False) -> float:
    """FLOPs of one document of n_sent sentences × n_tok tokens; tables=True: what the CPU backend executes
    when its vocabulary tables are on (no word-level input projection; for the CNN only the adds of the rows)."""
    T, S, Din = n_sent * n_tok, n_sent, cfg.embed_dim

    def rec(enc: EncoderConfig, n_in: int, steps: int, skip_input: bool = False) -> float:
        g = _GATES[enc.type] * enc.hidden
        f = steps * enc.directions * 2 * g * ((0 if skip_input else n_in) + enc.hidden)
        if enc.pooling == "attention":
            f += steps * (2 * enc.out_dim(n_in) * enc.attention_dim + 2 * enc.attention_dim)
        return f

    w = cfg.word_encoder
    if w.type == "cnn":
        f = sum((1 if tables else 2 * Din) * w.maps * k * max(T - k + 1, 1) for k in w.widths)
    elif w.recurrent:
        f = rec(w, Din, T, skip_input=tables)
    else:
        f = 0.0  # mean of embeddings: adds only
    if cfg.doc_encoder is not None:
        f += rec(cfg.doc_encoder, cfg.word_dim, S)
    return f + 2 * cfg.doc_dim * len(cfg.labels)


def gemm_gflops(threads: int = 2, n: int = 2048, repeats: int = 7) -> float:
    """Best float32 GEMM GFLOP/s of NumPy's BLAS (and torch's, when installed) on `threads` threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    runs: list[Callable[[], object]] = [lambda: a @ b]
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        runs.append(lambda: ta @ tb)
    best = 0.0
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeats):
            for f in runs:
                t = time.perf_counter()
                f()
                best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def workload(vocab: int = V, n_docs: int = 512, n_sent: int = N_SENT, n_tok: int = N_TOK,
             seed: int = 0) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, vocab, size=(n_docs, n_sent, n_tok)).tolist()


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_net(model: Model):
    """The same model in torch.nn (streamsent.train.modules), or None without torch."""
    torch = _torch()
    if torch is None:
        return None
    from .train.modules import SentimentModel

    net = SentimentModel(model.config.to_dict()).eval()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in model.weights.items()})
    return net


def _rate(run: Callable, batches: list, sizes: list[int]) -> float:
    t = time.perf_counter()
    for b in batches:
        run(b)
    return sum(sizes) / (time.perf_counter() - t)


@dataclass(frozen=True)
class BenchRow:
    model: str
    batch: int
    ours: float  # docs/s
    torch: float | None  # docs/s, better of 1 and 2 threads
    nominal: float  # FLOPs per document
    executed: float
    ceiling: float  # GFLOP/s this row is held against (single core at batch 1)

    def pct(self, docs_s: float, flops: float) -> float:
        return 100 * docs_s * flops / (self.ceiling * 1e9)


def _batches(docs: list, bs: int) -> Iterator[list]:
    n = min(len(docs), 64) if bs == 1 else len(docs)
    return (docs[i : i + bs] for i in range(0, n, bs))


def bench_model(name: str, model: Model, docs: list, batch_sizes: list[int], repeats: int,
                ceilings: tuple[float, float], use_torch: bool = True) -> Iterator[BenchRow]:
    """One BenchRow per batch size; ceilings = (1-core, 2-thread) GEMM GFLOP/s."""
    net = _torch_net(model) if use_torch else None
    torch = _torch() if net is not None else None
    n_sent, n_tok = len(docs[0]), len(docs[0][0])
    cfg = model.config
    backend = model.backend
    has_table = (any(d.table is not None for d in backend.word.dirs) or backend.word.conv_table is not None
                 if hasattr(backend, "word") else False)
    nominal = flops_per_doc(cfg, n_sent, n_tok)
    executed = flops_per_doc(cfg, n_sent, n_tok, tables=has_table)
    for bs in batch_sizes:
        sub = list(_batches(docs, bs))
        ours_b = [DocBatch.from_lists(d) for d in sub]
        sizes = [b.n_docs for b in ours_b]
        rates: dict[str, list[float]] = defaultdict(list)
        model.predict_batch(ours_b[0])  # compile / warm
        if torch is not None:
            from .train.modules import encode_docs

            theirs = [encode_docs(d) for d in sub]

            def torch_run(b):
                torch.softmax(net(*b), -1)

            with torch.inference_mode():
                torch_run(theirs[0])
        for _ in range(repeats):  # interleaved, so load from elsewhere falls on both sides alike
            rates["ours"].append(_rate(model.predict_batch, ours_b, sizes))
            if torch is not None:
                with torch.inference_mode():
                    for threads in (1, 2):
                        torch.set_num_threads(threads)
                        rates[f"torch{threads}"].append(_rate(torch_run, theirs, sizes))
        med = {k: statistics.median(v) for k, v in rates.items()}
        yield BenchRow(name, bs, med["ours"], max(med["torch1"], med["torch2"]) if torch is not None else None,
                       nominal, executed, ceilings[0] if bs == 1 else ceilings[1])


def table_lines(rows: list[BenchRow], with_torch: bool) -> list[str]:
    head = ["model", "batch", "streamsent docs/s"]
    if with_torch:
        head += ["torch docs/s", "ratio"]
    head += ["% of ceiling (nominal)"]
    if with_torch:
        head += ["torch % of ceiling"]
    head += ["% FPU (executed)", "ceiling GFLOP/s"]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [r.model, str(r.batch), f"{r.ours:,.0f}"]
        if with_torch:
            cells += [f"{r.torch:,.0f}", f"{r.ours / r.torch:.2f}×"] if r.torch else ["–", "–"]
        cells += [f"{r.pct(r.ours, r.nominal):.0f}%"]
        if with_torch:
            cells += [f"{r.pct(r.torch, r.nominal):.0f}%" if r.torch else "–"]
        cells += [f"{r.pct(r.ours, r.executed):.0f}%", f"{r.ceiling:.0f}" + (" (1 core)" if r.batch == 1 else "")]
        out.append("| " + " | ".join(cells) + " |")
    return out


STAGES = ("prepare", "projection", "recurrent", "conv", "attention", "pooling", "classifier")  # add up to 100 %
HOT_ROWS = 64  # the gather's baseline: token ids folded into this many vocabulary rows (they stay in L1/L2)
GATHER_PAIRS = 7


def breakdown(model: Model, docs: list, bs: int, repeats: int = 3) -> tuple[float, dict[str, float]]:
    """(µs per document, % of the forward pass) per stage, and for the two parts measured beside the pass.

    STAGES are timed around each kernel call by the CPU backend's timer hook and add up to the pass. Two parts
    live inside those kernels:
    - 'gather': each recurrent/conv step reads its token's row of a vocabulary table (fused and prefetched),
      so its cost is the pass minus the same pass with every token id folded into the first HOT_ROWS rows
      (same shapes, same FLOPs; only the memory traffic of the gather differs), medians of interleaved runs;
    - 'attention GEMM': the projection W·o + b inside the attention kernel (a GEMM counted in the FLOPs),
      timed standalone on inputs of the same shapes; 'attention' minus it is the attention's own work
      (tanh·context, softmax, the weighted sum).
    The issue's 'gather + attention + pooling' is gather + (attention − attention GEMM) + pooling.
    """
    backend = model.backend
    batches = [DocBatch.from_lists(d) for d in _batches(docs, bs)]
    hot = [DocBatch(b.token_ids % min(HOT_ROWS, model.config.vocab_size), b.sent_offsets, b.doc_offsets)
           for b in batches]
    model.predict_batch(batches[0])
    spent: dict[str, float] = defaultdict(float)

    def timer(stage: str, seconds: float) -> None:
        spent[stage.split(".")[-1]] += seconds

    def seconds(bs_: list[DocBatch]) -> float:
        t = time.perf_counter()
        for b in bs_:
            model.predict_batch(b)
        return time.perf_counter() - t

    backend.timer = timer
    try:
        for _ in range(repeats):
            seconds(batches)
    finally:
        backend.timer = None
    real, cool = [], []
    for _ in range(max(repeats, GATHER_PAIRS)):  # a difference of two noisy times: more pairs, interleaved
        real.append(seconds(batches))
        cool.append(seconds(hot))
    total = sum(spent.values())
    n_docs = sum(b.n_docs for b in batches)
    pct = {k: 100 * spent.get(k, 0.0) / total for k in STAGES}
    pct["gather"] = max(0.0, 100 * (1 - statistics.median(cool) / statistics.median(real)))
    gemm = min(_attention_gemm_seconds(backend, batches) for _ in range(repeats))
    pct["attention GEMM"] = min(pct["attention"], 100 * gemm * repeats / total)
    return 1e6 * total / (repeats * n_docs), pct


def _attention_gemm_seconds(backend: Any, batches: list[DocBatch]) -> float:
    """Seconds of the attention projections of one pass over `batches` alone: the `linear` kernel on random
    inputs of the shapes the pass makes ([T, D] word outputs, [S, D] sentence outputs), run as the pass runs
    (backend._serially: one BLAS thread, one Numba thread for small batches), each after one untimed run."""
    from .kernels.cpu.linear import linear

    levels = [(e, word) for e, word in ((backend.word, True), (backend.doc, False))
              if e is not None and e.att_WT is not None]
    if not levels:
        return 0.0
    rng = np.random.default_rng(0)
    work = []
    for b in batches:
        for enc, word in levels:
            rows = b.n_tokens if word else int(np.count_nonzero(np.diff(b.sent_offsets)))
            o = rng.standard_normal((rows, enc.att_WT.shape[0]), dtype=np.float32)
            work.append((b.n_tokens, o, enc, np.empty((rows, enc.att_WT.shape[1]), np.float32)))
    spent = 0.0
    for n_tokens, o, enc, u in work:  # o read once first: in the pass it was just written by the recurrence
        backend._serially(n_tokens, linear, o, enc.att_WT, enc.att_b, u)
        t = time.perf_counter()
        backend._serially(n_tokens, linear, o, enc.att_WT, enc.att_b, u)
        spent += time.perf_counter() - t
    return spent


def breakdown_lines(results: list[tuple[str, int, float, dict[str, float]]]) -> list[str]:
    head = ["model", "batch", "µs/doc", *STAGES, "gather", "attention GEMM", "gather+attention+pooling"]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, bs, us, pct in results:
        small = pct["gather"] + pct["attention"] - pct["attention GEMM"] + pct["pooling"]
        cells = [f"{pct[s]:.1f}%" for s in (*STAGES, "gather", "attention GEMM")]
        out.append("| " + " | ".join([name, str(bs), f"{us:,.1f}", *cells, f"{small:.1f}%"]) + " |")
    return out


def first_doc_latency(model: Model, cold: bool = False) -> float:
    """Seconds from a fresh `python` to its first scored document: with the Numba cache warm (the best of 3),
    or, cold=True, with NUMBA_CACHE_DIR pointed at an empty directory (every kernel compiles)."""
    import os

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        model.save(tmp)
        code = textwrap.dedent(f"""
            import time; t0 = time.perf_counter()
            import streamsent
            m = streamsent.load_model({tmp!r})
            m.predict_batch(streamsent.DocBatch.from_lists([[[1, 2, 3], [4, 5]]]))
            print(time.perf_counter() - t0)
        """)
        run = [sys.executable, "-c", code]
        if cold:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            return float(subprocess.run(run, check=True, capture_output=True, text=True, env=env).stdout)
        subprocess.run(run, check=True, capture_output=True)  # fills the cache if it is cold
        return min(float(subprocess.run(run, check=True, capture_output=True, text=True).stdout) for _ in range(3))


def run(models: dict[str, Model], batch_sizes: list[int], repeats: int, n_docs: int = 512,
        n_sent: int = N_SENT, n_tok: int = N_TOK, use_torch: bool = True, with_breakdown: bool = False,
        emit: Callable[[str], None] = lambda line: None, gemm_size: int = 2048) -> list[str]:
    """The bench table (and breakdown) as markdown lines; emit(line) is called as each line is ready."""
    import numba

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        emit(line)

    torch = _torch() if use_torch else None
    one, two = gemm_gflops(1, gemm_size), gemm_gflops(2, gemm_size)
    say(f"float32 GEMM ceiling: {two:.0f} GFLOP/s (2 threads), {one:.0f} (1 thread); numba threads: "
        f"{numba.get_num_threads()}; " + (f"torch {torch.__version__}" if torch is not None
                                                 else "torch not installed" if use_torch else "torch off"))
    say("")
    rows: list[BenchRow] = []
    header_done = False
    for name, model in models.items():
        docs = workload(model.config.vocab_size, n_docs, n_sent, n_tok)
        for row in bench_model(name, model, docs, batch_sizes, repeats, (one, two), torch is not None):
            rows.append(row)
            tl = table_lines([row], torch is not None)
            if not header_done:
                say(tl[0])
                say(tl[1])
                header_done = True
            say(tl[2])
    if with_breakdown:
        say("")
        res = []
        for name, model in models.items():
            docs = workload(model.config.vocab_size, n_docs, n_sent, n_tok)
            for bs in batch_sizes:
                us, pct = breakdown(model, docs, bs, max(1, repeats // 2))
                res.append((name, bs, us, pct))
                bl = breakdown_lines([res[-1]])
                if len(res) == 1:
                    say(bl[0])
                    say(bl[1])
                say(bl[2])
    return lines


def issue_models() -> dict[str, Model]:
    out = {}
    for name, raw in issue_configs().items():
        cfg = ModelConfig.from_dict(raw)
        out[name] = Model(cfg, random_weights(cfg, seed=1, scale=0.1))
    return out


def default_han() -> Model:
    """A default-sized HAN (vocabulary 30k, embedding 50) for the start-up latencies."""
    raw = issue_configs()["HAN"]
    cfg = ModelConfig.from_dict({**raw, "embedding": {"vocab_size": 30_000, "dim": 50, "padding_idx": 0}})
    return Model(cfg, random_weights(cfg, seed=2))
