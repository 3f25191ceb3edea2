"""The IMDB accuracy table: every trained model scored by the Numba backend on the held-out test split, plus
the VADER lexicon as a baseline row.

    python -m streamsent.data.imdb                      # once: the pinned splits
    streamsent train --config configs/train/<m>.toml    # for each model (see README)
    python bench/accuracy.py models/imdb-* --out docs/accuracy.md

Columns: accuracy and macro-F1 on the 24,678 test reviews (never seen in training or validation), parameters,
size on disk (config + weights + tokenizer), training time (from the model's metadata), docs/s of
`Model.predict` (tokenisation + Numba scoring, this machine, 2 threads) and the share of test documents on
which the PyTorch modules with the same weights predict the same label.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import streamsent
from streamsent.data.imdb import build_imdb
from streamsent.evaluate import evaluate, metrics


def vader_row(table) -> str:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    texts = table.column("text").to_pylist()
    y = np.array([lab == "positive" for lab in table.column("label").to_pylist()], np.int64)
    t = time.perf_counter()
    pred = np.array([sia.polarity_scores(x)["compound"] >= 0 for x in texts], np.int64)
    rate = len(texts) / (time.perf_counter() - t)
    acc, f1, _ = metrics(y, pred, 2)
    return f"| VADER 3.3.2 (lexicon, compound ≥ 0) | {acc:.4f} | {f1:.4f} | – | – | – | {rate:,.0f} | – |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-vader", action="store_true")
    args = ap.parse_args()
    test = pq.read_table(build_imdb()["test"])
    rows = ["| model | accuracy | macro-F1 | parameters | size on disk | train time | docs/s (Numba) "
            "| same label as torch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in args.models:
        model = streamsent.load_model(path)
        rep = evaluate(model, test)
        meta = json.loads((path / "config.json").read_text()).get("metadata", {}).get("training", {})
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        params = sum(w.size for w in model.weights.values())
        row = (f"| {model.config.name} | {rep.accuracy:.4f} | {rep.macro_f1:.4f} | {params:,} | {size / 2**20:.1f} MB "
               f"| {meta.get('seconds', float('nan')) / 60:.1f} min | {rep.docs_per_s:,.0f} | "
               f"{100 * (rep.torch_agreement or 0):.2f}% |")
        print(row, flush=True)
        rows.append(row)
    if not args.no_vader:
        rows.append(vader_row(test))
        print(rows[-1])
    if args.out:
        args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
