"""streamsent CUDA vs torch CUDA (cuDNN) on the same weights and documents: docs/s, ratio, agreement.

    python bench/gpu.py [--out FILE] [--models LSTM,GRU,CNN,HAN] [--batches 32,256,4096] [--sim]

Run by bench/gpu.sh on a machine with an NVIDIA GPU (docs/cuda.md). Models are the issue's (streamsent.benchmark:
vocabulary 20k, embedding 100, hidden 128; HAN 50 per direction, attention 100), the workload its synthetic
documents of 8 sentences × 24 tokens. Both sides are timed from token ids on the host to probabilities on the
host (streamsent: DocBatch in, Scores out; torch: padded id tensors copied in, softmax copied out); padding and
DocBatch construction are outside both. Torch runs in float32 without TF32 (the arithmetic streamsent does), under
inference_mode. docs/s are medians of interleaved repeats. `max |Δp|` is the largest difference of the two
sides' probabilities on the first batch.

After the table, a per-stage breakdown of one batch size (default 256; each stage waited for, so timed apart) and
each model's latency for a one-document batch (the fixed cost of a forward pass: launches, copies, host work).

--sim runs the same code on numba-cuda's simulator with tiny models (torch on the CPU): a check that the script
works end to end on a machine without a GPU, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

TARGETS = {("HAN", 256): 1.0, ("LSTM", None): 0.5, ("GRU", None): 0.5}  # the issue's bars: ratio >= value


def _tiny_configs() -> dict[str, dict]:
    """Shapes the simulator runs in seconds (same encoders and compositions as the issue's)."""
    base = {"format": "streamsent-model/1", "labels": ["negative", "positive"],
            "embedding": {"vocab_size": 50, "dim": 8, "padding_idx": 0}}
    han = {"type": "gru", "hidden": 4, "bidirectional": True, "pooling": "attention", "attention_dim": 5}
    return {
        "LSTM": {**base, "name": "lstm", "word_encoder": {"type": "lstm", "hidden": 6},
                 "composition": {"type": "flat"}},
        "GRU": {**base, "name": "gru", "word_encoder": {"type": "gru", "hidden": 6}, "composition": {"type": "flat"}},
        "CNN": {**base, "name": "cnn", "word_encoder": {"type": "cnn", "widths": [2, 3], "maps": 4},
                "composition": {"type": "flat"}},
        "HAN": {**base, "name": "han", "word_encoder": han, "composition": {"type": "hierarchical", "encoder": han}},
    }


def _target(name: str, bs: int) -> float | None:
    return TARGETS.get((name, bs), TARGETS.get((name, None)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="markdown table to write (default: $OUT/gpu-bench.md, else "
                                              "bench/gpu-bench.md)")
    ap.add_argument("--models", default="LSTM,GRU,CNN,HAN")
    ap.add_argument("--batches", help="comma-separated batch sizes (default 32,256,4096; --sim 2,4)")
    ap.add_argument("--repeats", type=int, help="timed repeats per row, median kept (default 3; --sim 1)")
    ap.add_argument("--budget-s", type=float, default=270.0, help="stop starting new rows after this many seconds")
    ap.add_argument("--breakdown", type=int, help="batch size of the per-stage breakdown (default 256; --sim the "
                                                   "last; 0: none)")
    ap.add_argument("--sim", action="store_true", help="numba-cuda's simulator, tiny models, torch on the CPU")
    args = ap.parse_args()
    if args.sim:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before streamsent imports numba.cuda
        sys.setswitchinterval(1e-4)  # the simulator polls its threads (see tests/cuda/conftest.py)
    batches = [int(b) for b in (args.batches or ("2,4" if args.sim else "32,256,4096")).split(",")]
    repeats = args.repeats or (1 if args.sim else 3)
    breakdown_bs = args.breakdown if args.breakdown is not None else (batches[-1] if args.sim else 256)
    if args.out:
        out = args.out
    elif os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "gpu-bench.md"
    else:
        out = Path(__file__).parent / "gpu-bench.md"
    t_start = time.perf_counter()

    import numpy as np
    import torch

    from streamsent import DocBatch, Model, ModelConfig, benchmark
    from streamsent.models.init import random_weights
    from streamsent.train.modules import SentimentModel, encode_docs

    raw = _tiny_configs() if args.sim else benchmark.issue_configs()
    n_sent, n_tok = (3, 5) if args.sim else (benchmark.N_SENT, benchmark.N_TOK)
    dev = torch.device("cpu" if args.sim else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.sim:
        where = "numba-cuda simulator (NOT a measurement), torch on the CPU"
    else:
        where = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})"
    import numba

    versions = f"numba {numba.__version__}, numba-cuda {_version('numba-cuda')}, numpy {np.__version__}"
    lines = [f"streamsent CUDA vs torch {'CPU' if args.sim else 'CUDA'}: {where}; {versions}",
             f"workload: {n_sent} sentences × {n_tok} tokens per document, float32, no TF32", "",
             "| model | batch | streamsent docs/s | torch docs/s | ratio | bar | max \\|Δp\\| | load + first call s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for line in lines:
        print(line, flush=True)
    failed = False
    stage_rows: list[str] = []
    for name in args.models.split(","):
        cfg = ModelConfig.from_dict(raw[name])
        weights = random_weights(cfg, seed=1, scale=0.1)
        geometry = {"threads": 8, "rnn_block": (2, 2)} if args.sim else {}
        t0 = time.perf_counter()
        first_s = None
        ours = Model(cfg, weights, device="cuda", **geometry)
        net = SentimentModel(cfg.to_dict()).eval()
        net.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in weights.items()})
        net = net.to(dev)
        for bs in batches:
            if time.perf_counter() - t_start > args.budget_s:
                lines.append(f"| {name} | {bs} | (skipped: past the {args.budget_s:.0f} s budget) | | | | | |")
                print(lines[-1], flush=True)
                continue
            n_docs = max(2 * bs, 8 if args.sim else 1024)
            docs = benchmark.workload(cfg.vocab_size, n_docs, n_sent, n_tok, seed=bs)
            ours_b = [DocBatch.from_lists(docs[i : i + bs]) for i in range(0, n_docs, bs)]
            theirs = [tuple(t.pin_memory() if dev.type == "cuda" else t for t in encode_docs(docs[i : i + bs]))
                      for i in range(0, n_docs, bs)]

            def torch_run(b, net=net):
                tok, sl = b
                with torch.inference_mode():
                    return torch.softmax(net(tok.to(dev, non_blocking=True), sl.to(dev, non_blocking=True)),
                                         -1).cpu().numpy()

            first = ours.predict_batch(ours_b[0])[0].probs  # the model's first call compiles the kernels
            load_s, first_s = (None, None) if first_s is not None else (time.perf_counter() - t0, True)
            diff = float(np.abs(first - torch_run(theirs[0])).max())
            rates: dict[str, list[float]] = {"ours": [], "torch": []}
            for _ in range(repeats):  # interleaved, so a disturbance falls on both sides alike
                t = time.perf_counter()
                for b in ours_b:
                    ours.predict_batch(b)
                rates["ours"].append(n_docs / (time.perf_counter() - t))
                t = time.perf_counter()
                for b in theirs:
                    torch_run(b)
                rates["torch"].append(n_docs / (time.perf_counter() - t))
            a, b = statistics.median(rates["ours"]), statistics.median(rates["torch"])
            bar = None if args.sim else _target(name, bs)
            ok = bar is None or a / b >= bar
            failed |= diff > 1e-4
            lines.append(f"| {name} | {bs} | {a:,.0f} | {b:,.0f} | {a / b:.2f}× | "
                         f"{'' if bar is None else f'≥ {bar:.1f}× ' + ('met' if ok else 'missed')} | {diff:.1e} | "
                         f"{'' if load_s is None else f'{load_s:.1f}'} |")
            print(lines[-1], flush=True)
            _save(out, lines + ["", "(partial: the run had not finished)"])  # a cut-off run keeps its rows
            if bs == breakdown_bs:
                stage_rows.append(_breakdown(name, ours, ours_b, DocBatch.from_lists(docs[:1])))
                print("breakdown:", stage_rows[-1], flush=True)
    if stage_rows:
        lines += ["", f"per-stage breakdown at batch {breakdown_bs} (each stage waited for: the sum exceeds an "
                      "untimed pass) and the latency of a one-document batch:", "",
                  "| model | batch | ms a batch, timed apart | 1-document batch ms | stages, share of the timed pass |",
                  "|---|---:|---:|---:|---|", *stage_rows]
    lines += ["", f"total {time.perf_counter() - t_start:.0f} s; bars are the issue's (HAN at batch 256 ≥ 1× torch, "
                  "LSTM/GRU ≥ 0.5× cuDNN); max |Δp| over 1e-4 fails the run"]
    print(lines[-1])
    _save(out, lines)
    print(f"wrote {out}")
    return 1 if failed else 0


def _save(out: Path, lines: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def _breakdown(name: str, model, batches: list, one) -> str:
    """One markdown row: the backend's stage timer over `batches`, and the median latency of the batch `one`."""
    spent: dict[str, float] = {}

    def timer(stage: str, seconds: float) -> None:
        spent[stage] = spent.get(stage, 0.0) + seconds

    model.backend.timer = timer
    try:
        for b in batches:
            model.predict_batch(b)
    finally:
        model.backend.timer = None
    total = sum(spent.values())
    lat = []
    for _ in range(20):
        t = time.perf_counter()
        model.predict_batch(one)
        lat.append(time.perf_counter() - t)
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]))
    return (f"| {name} | {batches[0].n_docs} | {1e3 * total / len(batches):.2f} | {1e3 * statistics.median(lat):.2f} | "
            f"{shares} |")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
