"""The recurrence's tile geometry on a GPU: docs/s of every (lanes, thread rows, R) against the default choice.

    python bench/gpu_tiles.py [--models LSTM,GRU,HAN] [--batches 32,256] [--out FILE] [--sim]

The recurrence is most of an LSTM / GRU / HAN batch on the GPU (bench/gpu.py's breakdown), and its tile decides
how often W_hh is read (once a step per block) against how many blocks run. This sweeps the tiles the backend
can launch for the issue's models (streamsent.benchmark) and prints docs/s per tile, the default's tile and the
largest probability difference from the default (every tile must compute the same function). A measurement to
choose RNN_TILES / RNN_MIN_BLOCKS by (backends/cuda.py), not a test. Medians of 5 repeats, one model at a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="LSTM,GRU,HAN")
    ap.add_argument("--batches", default="32,256")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sim", action="store_true", help="numba-cuda's simulator, tiny models: checks the script only")
    args = ap.parse_args()
    if args.sim:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        sys.setswitchinterval(1e-4)
    import numpy as np

    from streamsent import DocBatch, Model, ModelConfig, benchmark
    from streamsent.backends.cuda import RNN_MAX_THREADS, RNN_TILES, SHARED_LIMIT
    from streamsent.kernels.cuda.recurrent import shared_bytes
    from streamsent.models.init import random_weights

    sys.path.insert(0, str(Path(__file__).parent))
    from gpu import _tiny_configs

    raw = _tiny_configs() if args.sim else benchmark.issue_configs()
    n_sent, n_tok = (3, 5) if args.sim else (benchmark.N_SENT, benchmark.N_TOK)
    repeats = 1 if args.sim else 5
    lines = ["| model | batch | lanes × rows × R | docs/s | vs default | max \\|Δp\\| |",
             "|---|---:|---|---:|---:|---:|"]
    print(lines[0], lines[1], sep="\n", flush=True)
    worst = 0.0
    for name in args.models.split(","):
        cfg = ModelConfig.from_dict(raw[name])
        model = Model(cfg, random_weights(cfg, seed=1, scale=0.1), device="cuda",
                      **({"threads": 8} if args.sim else {}))
        backend = model.backend
        H = cfg.word_encoder.hidden
        tiles = [(bx, by, R) for bx in (32, 64, 128) for by, R in RNN_TILES
                 if bx * by <= RNN_MAX_THREADS and shared_bytes(by, H, R) <= SHARED_LIMIT and bx <= 32 * -(-H // 32)]
        for bs in (int(b) for b in args.batches.split(",")):
            n_docs = max(2 * bs, 8 if args.sim else 1024)
            docs = benchmark.workload(cfg.vocab_size, n_docs, n_sent, n_tok, seed=bs)
            batches = [DocBatch.from_lists(docs[i : i + bs]) for i in range(0, n_docs, bs)]
            chosen = backend._rnn_block(H, bs * (1 if cfg.doc_encoder is None else n_sent))
            results = {}
            for tile in [None, *tiles]:
                backend.rnn_block = tile
                ref = model.predict_batch(batches[0])[0].probs  # compiles this R's kernel
                rates = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    for b in batches:
                        model.predict_batch(b)
                    rates.append(n_docs / (time.perf_counter() - t))
                results[tile] = (statistics.median(rates), ref)
            base, base_p = results.pop(None)
            lines.append(f"| {name} | {bs} | default {'×'.join(map(str, chosen))} | {base:,.0f} | 1.00× | |")
            print(lines[-1], flush=True)
            for tile, (rate, p) in sorted(results.items(), key=lambda kv: -kv[1][0]):
                diff = float(np.abs(p - base_p).max())
                worst = max(worst, diff)
                lines.append(f"| {name} | {bs} | {'×'.join(map(str, tile))} | {rate:,.0f} | {rate / base:.2f}× | "
                             f"{diff:.1e} |")
                print(lines[-1], flush=True)
        backend.rnn_block = None
    lines.append(f"\nlargest |Δp| from the default tile: {worst:.1e} (over 1e-5 fails the run)")
    print(lines[-1])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 1 if worst > 1e-5 else 0


if __name__ == "__main__":
    sys.exit(main())
