"""The `streamsent` command line. Every command is a thin layer over the public Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import StreamsentError


def _predict(args: argparse.Namespace) -> int:
    from . import load_model

    model = load_model(args.model, device=args.device)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    table = model.predict(texts)
    for row in table.to_pylist():
        row["probs"] = dict(zip(model.labels, (round(p, 6) for p in row["probs"]), strict=True))
        row.pop("word_attention", None)
        row.pop("sentence_attention", None)
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from . import load_model

    model = load_model(args.model, device="cpu")
    cfg = model.config
    t = Table(title=f"{cfg.name} v{cfg.version}", show_header=False)
    t.add_row("labels", ", ".join(cfg.labels))
    t.add_row("embedding", f"{cfg.vocab_size} × {cfg.embed_dim}")
    t.add_row("word encoder", json.dumps(cfg.word_encoder.to_dict()))
    doc = f" + {json.dumps(cfg.doc_encoder.to_dict())}" if cfg.doc_encoder else ""
    t.add_row("composition", cfg.composition + doc)
    t.add_row("parameters", f"{sum(w.size for w in model.weights.values()):,}")
    t.add_row("tokenizer", "yes" if model.tokenizer is not None else "no (token ids only)")
    t.add_row("path", str(model.path))
    Console().print(t)
    return 0


def _warmup(args: argparse.Namespace) -> int:
    from .warmup import warmup

    n = warmup()
    print(f"compiled and cached the CPU kernels for {n} architectures")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamsent", description="Sentiment of text as it streams.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="score texts given as arguments (or one per line on stdin) as JSON lines")
    p.add_argument("text", nargs="*")
    p.add_argument("--model", default="default", help="model directory or built-in name (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "reference"])
    p.set_defaults(func=_predict)
    p = sub.add_parser("inspect", help="summarise a model directory")
    p.add_argument("model", nargs="?", default="default")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("warmup", help="compile the Numba kernels into the on-disk cache (e.g. in a Docker build)")
    p.set_defaults(func=_warmup)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StreamsentError as exc:
        print(f"streamsent: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
