"""PNG plots of an evaluation (`streamsent eval --plots DIR`): the confusion matrix and the score histogram.

matplotlib is an optional extra (`pip install 'streamsent[plots]'`) and runs on its Agg backend, so plots are
written on a server or in CI without a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .evaluate import EvalReport

__all__ = ["write_eval_plots"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("--plots needs matplotlib: pip install 'streamsent[plots]'") from exc
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def write_eval_plots(report: EvalReport, out_dir: str | os.PathLike, title: str = "") -> list[Path]:
    """Write `confusion.png` and `scores.png` into `out_dir` (created if needed); returns their paths."""
    if report.probs is None or report.y_true is None:
        raise ConfigError("this report carries no per-document scores to plot (make it with streamsent.evaluate)")
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_confusion(plt, report, out / "confusion.png", title), _scores(plt, report, out / "scores.png", title)]
    return paths


def _confusion(plt, report: EvalReport, path: Path, title: str) -> Path:
    conf = report.confusion
    n = len(report.labels)
    share = conf / np.maximum(conf.sum(1, keepdims=True), 1)  # each true label's row as shares: readable at any size
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * n, 1.8 + 1.2 * n), dpi=120)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{conf[i, j]:,}\n{share[i, j]:.1%}", ha="center", va="center", fontsize=10,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), report.labels)
    ax.set_yticks(range(n), report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f}".strip(), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _scores(plt, report: EvalReport, path: Path, title: str) -> Path:
    """Binary models: P(second label) per true label, which shows how well the classes separate. More labels:
    the predicted label's probability, for right and wrong predictions."""
    probs, y = report.probs, report.y_true
    bins = np.linspace(0, 1, 41)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if len(report.labels) == 2:
        for k, (label, color) in enumerate(zip(report.labels, ("tab:red", "tab:green"), strict=True)):
            ax.hist(probs[y == k, 1], bins=bins, alpha=0.6, color=color, label=f"true {label} ({(y == k).sum():,})")
        ax.set_xlabel(f"P({report.labels[1]})")
    else:
        pred = probs.argmax(1)
        score = probs[np.arange(len(pred)), pred]
        for ok, name, color in ((True, "right", "tab:green"), (False, "wrong", "tab:red")):
            ax.hist(score[(pred == y) == ok], bins=bins, alpha=0.6, color=color,
                    label=f"{name} ({((pred == y) == ok).sum():,})")
        ax.set_xlabel("probability of the predicted label")
    ax.set_ylabel("documents")
    ax.set_title(f"{title}\nscore distribution ({report.n_docs:,} documents)".strip(), fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
