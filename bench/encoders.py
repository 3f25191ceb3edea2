"""streamsent CPU vs PyTorch CPU on the same weights and data, and vs this machine's GEMM ceiling.

    python bench/encoders.py [--quick] [--out results.md]

Workload (issue 2): 512 seeded synthetic documents of 8 sentences × 24 tokens, vocabulary 20,000, embedding
100, hidden 128 (HAN: 50 per direction, attention 100), 2 labels. RNN/LSTM/GRU read each document as one
sequence (flat composition, last-state pooling); CNN is Kim's (widths 3/4/5, 100 maps); HAN is hierarchical
bi-GRU + attention at both levels. Everything is measured side by side in this one run; docs/s are medians of
repeats, interleaved; torch runs under `inference_mode` with the better of 1 and 2 threads. Tokenisation is
excluded from both sides (the same token ids go in).

Ceiling = measured float32 GEMM GFLOP/s ÷ the model's nominal FLOPs per document (2 × multiply-adds of every
matrix product, input projections included). streamsent's CPU backend precomputes the input projection of
each vocabulary entry once per model, so it does fewer FLOPs per document than that nominal count and can
pass 100 % of this ceiling: that column says how fast it is against the hardware. The last column is the
arithmetic streamsent really did per second (without the projections the tables replace), to hold against
the GEMM figure: how busy the FPU was.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from streamsent import DocBatch, Model, ModelConfig
from streamsent.models.init import random_weights
from streamsent.train.modules import SentimentModel, encode_docs

V, E, H, N_DOCS, N_SENT, N_TOK = 20_000, 100, 128, 512, 8, 24


def configs() -> dict[str, dict]:
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


def flops_per_doc(cfg: ModelConfig, tables: bool = False) -> float:
    """Nominal FLOPs of one document of this workload (2 × multiply-adds).

    tables=True counts what streamsent's CPU backend really computes when its vocabulary tables are on:
    no word-level input projection (a table row is read instead); for the CNN, only the adds of the rows.
    """
    gates = {"rnn": 1, "gru": 3, "lstm": 4}
    T, S = N_SENT * N_TOK, N_SENT

    def rec(enc, n_in, steps, skip_input=False):
        g = gates[enc.type] * enc.hidden
        f = steps * enc.directions * 2 * g * ((0 if skip_input else n_in) + enc.hidden)
        if enc.pooling == "attention":
            d = enc.out_dim(n_in)
            f += steps * (2 * d * enc.attention_dim + 2 * enc.attention_dim)
        return f

    w = cfg.word_encoder
    if w.type == "cnn":
        f = sum((1 if tables else 2 * E) * w.maps * k * (T - k + 1) for k in w.widths)
    else:
        f = rec(w, E, T, skip_input=tables)
    if cfg.doc_encoder is not None:
        f += rec(cfg.doc_encoder, cfg.word_dim, S)
    return f + 2 * cfg.doc_dim * len(cfg.labels)


def gemm_gflops(threads: int = 2, n: int = 2048, repeats: int = 7) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    best = 0.0
    for _ in range(repeats):  # torch's and numpy's BLAS: take the better, it is the machine we want
        for f in (lambda: a @ b, lambda: ta @ tb):
            t = time.perf_counter()
            f()
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def workload(seed: int = 0) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, size=(N_DOCS, N_SENT, N_TOK))
    return ids.tolist()


def _rate(run, batches, sizes) -> float:
    t = time.perf_counter()
    for b in batches:
        run(b)
    return sum(sizes) / (time.perf_counter() - t)


def time_side_by_side(model: Model, net: SentimentModel, ours: list[DocBatch],
                      theirs: list[tuple[torch.Tensor, torch.Tensor]], repeats: int) -> tuple[float, float]:
    """docs/s of streamsent and of torch (better of 1 and 2 threads), repeats interleaved so that load from
    elsewhere on a shared machine falls on both sides alike; medians of the repeats."""
    sizes = [b.n_docs for b in ours]

    def torch_run(b):
        torch.softmax(net(*b), -1)

    rates: dict[str, list[float]] = {"ours": [], "torch1": [], "torch2": []}
    with torch.inference_mode():
        model.predict_batch(ours[0])  # compile / warm
        torch_run(theirs[0])
        for _ in range(repeats):
            rates["ours"].append(_rate(model.predict_batch, ours, sizes))
            for threads in (1, 2):
                torch.set_num_threads(threads)
                rates[f"torch{threads}"].append(_rate(torch_run, theirs, sizes))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return med["ours"], max(med["torch1"], med["torch2"])


def first_doc_latency(model: Model) -> float:
    """Seconds from a fresh `python` to the first scored document, with the Numba cache already warm."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        code = textwrap.dedent(f"""
            import time; t0 = time.perf_counter()
            import streamsent
            m = streamsent.load_model({tmp!r})
            m.predict_batch(streamsent.DocBatch.from_lists([[[1, 2, 3], [4, 5]]]))
            print(time.perf_counter() - t0)
        """)
        run = [sys.executable, "-c", code]
        subprocess.run(run, check=True, capture_output=True)  # fills the cache if it is cold
        return min(float(subprocess.run(run, check=True, capture_output=True, text=True).stdout) for _ in range(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--models", default="RNN,LSTM,GRU,CNN,HAN")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    docs = workload()
    gflops = gemm_gflops()
    lines = [f"float32 GEMM ceiling: {gflops:.0f} GFLOP/s (2 threads); numba threads: "
             f"{__import__('numba').get_num_threads()}; torch {torch.__version__}",
             "", "| model | batch | streamsent docs/s | torch docs/s | ratio | % of ceiling (streamsent) "
             "| % of ceiling (torch) | streamsent GFLOP/s done |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    print(lines[0])
    cfgs = configs()
    for name in args.models.split(","):
        raw = cfgs[name]
        cfg = ModelConfig.from_dict(raw)
        weights = random_weights(cfg, seed=1, scale=0.1)
        model = Model(cfg, weights)
        net = SentimentModel(raw).eval()
        net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        ceiling = gflops * 1e9 / flops_per_doc(cfg)
        done = flops_per_doc(cfg, tables=model.backend.word.dirs[0].table is not None if cfg.word_encoder.recurrent
                             else model.backend.word.conv_table is not None)
        for bs in (int(b) for b in args.batches.split(",")):
            n = min(N_DOCS, 64) if bs == 1 else N_DOCS
            sub = [docs[i : i + bs] for i in range(0, n, bs)]
            ours, theirs = time_side_by_side(model, net, [DocBatch.from_lists(d) for d in sub],
                                             [encode_docs(d) for d in sub], repeats)
            row = (f"| {name} | {bs} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}× | "
                   f"{100 * ours / ceiling:.0f}% | {100 * theirs / ceiling:.0f}% | {ours * done / 1e9:.0f} |")
            print(row, flush=True)
            lines.append(row)
    han = ModelConfig.from_dict({**cfgs["HAN"], "embedding": {"vocab_size": 30_000, "dim": 50, "padding_idx": 0}})
    lat = first_doc_latency(Model(han, random_weights(han, seed=2)))
    tail = f"\nwarm-cache start to first scored document (default-sized HAN, fresh process): {lat:.2f} s"
    print(tail)
    lines.append(tail)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
