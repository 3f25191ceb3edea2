"""streamsent CPU vs PyTorch CPU on the issue's five encoders (RNN, LSTM, GRU, CNN, HAN), the GEMM ceiling,
a per-stage breakdown and the start-up latencies. The code is `streamsent.benchmark` (also `streamsent bench`).

    python bench/encoders.py [--quick] [--breakdown] [--cold] [--out results.md]

Workload: 512 seeded synthetic documents of 8 sentences × 24 tokens, vocabulary 20,000, embedding 100, hidden
128 (HAN: 50 per direction, attention 100), 2 labels. See streamsent/benchmark.py for the two FLOP counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamsent import benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--models", default="RNN,LSTM,GRU,CNN,HAN")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--repeats", type=int, help="timed repeats per row (default 5, --quick 2)")
    ap.add_argument("--breakdown", action="store_true", help="also the per-stage share of a forward pass")
    ap.add_argument("--no-latency", action="store_true", help="skip the fresh-process first-document latencies")
    ap.add_argument("--cold", action="store_true", help="also the cold-cache (empty NUMBA_CACHE_DIR) latency")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    all_models = benchmark.issue_models()
    by_name = {k.lower(): k for k in all_models}
    asked = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in asked if m.lower() not in by_name]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; choose from {','.join(all_models)}")
    models = {by_name[m.lower()]: all_models[by_name[m.lower()]] for m in asked}
    lines = benchmark.run(models, [int(b) for b in args.batches.split(",")], repeats,
                          with_breakdown=args.breakdown, emit=lambda s: print(s, flush=True))
    if not args.no_latency:
        han = benchmark.default_han()
        tail = [f"\nwarm-cache start to first scored document (default-sized HAN, fresh process): "
                f"{benchmark.first_doc_latency(han):.2f} s"]
        if args.cold:
            cold = benchmark.first_doc_latency(han, cold=True)
            tail.append(f"cold-cache start to first scored document (empty NUMBA_CACHE_DIR): {cold:.2f} s")
        for t in tail:
            print(t, flush=True)
        lines += tail
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
