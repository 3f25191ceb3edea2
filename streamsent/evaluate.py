"""Accuracy, macro-F1, confusion matrix and docs/s of a model on a labelled table, scored by the Numba backend."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError, DataError
from .models.model import Model

__all__ = ["EvalReport", "evaluate", "label_indices", "read_labelled_table"]


@dataclass
class EvalReport:
    labels: tuple[str, ...]
    n_docs: int
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # [true, predicted]
    docs_per_s: float  # tokenisation + scoring, one process
    torch_agreement: float | None = None  # share of documents where torch predicts the same label
    extra: dict[str, Any] = field(default_factory=dict)
    y_true: np.ndarray | None = field(default=None, repr=False)  # int64[N]: index of each document's true label
    probs: np.ndarray | None = field(default=None, repr=False)  # float32[N, C]: the model's probabilities (plots)
    unscored: int = 0  # documents with no token to score (Model.predict's null rows): not in n_docs or the metrics

    def as_dict(self) -> dict[str, Any]:
        d = {"n_docs": self.n_docs, "accuracy": round(self.accuracy, 5), "macro_f1": round(self.macro_f1, 5),
             "confusion": {"labels": list(self.labels), "rows_true_cols_predicted": self.confusion.tolist()},
             "docs_per_s": round(self.docs_per_s, 1)}
        if self.torch_agreement is not None:
            d["torch_agreement"] = round(self.torch_agreement, 6)
        if self.unscored:
            d["unscored"] = self.unscored
        return d | self.extra


def read_labelled_table(path: str | Path, what: str = "--data", label_column: str | None = None) -> pa.Table:
    """A Parquet or CSV file of labelled documents (`what` names the setting it came from, for errors). A file that
    cannot be read as such, or (with `label_column`) lacks that column or a 'text' / 'tokens' one, is an error
    naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path}: no such file")
    kind = "CSV" if path.suffix == ".csv" else "Parquet"
    try:
        if kind == "CSV":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{what} {path}: cannot be read as {kind} ({' '.join(str(exc).split())})") from None
    if label_column is not None and label_column not in table.column_names:
        raise DataError(f"{what} {path}: no label column {label_column!r} (--label-column); its columns are "
                        f"{table.column_names}")
    if label_column is not None and not {"text", "tokens"} & set(table.column_names):
        raise DataError(f"{what} {path}: needs a 'text' or a 'tokens' column; its columns are {table.column_names}")
    return table


def label_indices(column: pa.ChunkedArray | pa.Array, labels: tuple[str, ...], where: str) -> np.ndarray:
    """int64 index of each row's label in `labels`; a label outside them is an error naming `where`."""
    names = column.cast(pa.string())
    index = pc.index_in(names, value_set=pa.array(list(labels)))
    if index.null_count:
        bad = sorted(set(pc.filter(names, pc.is_null(index)).to_pylist()), key=str)[:5]
        raise ConfigError(f"{where}: labels {bad} are not among {list(labels)}")
    return index.to_numpy(zero_copy_only=False).astype(np.int64)


def metrics(y: np.ndarray, pred: np.ndarray, n_labels: int) -> tuple[float, float, np.ndarray]:
    conf = np.zeros((n_labels, n_labels), np.int64)
    np.add.at(conf, (y, pred), 1)
    tp = np.diag(conf).astype(np.float64)
    precision = np.divide(tp, conf.sum(0), out=np.zeros(n_labels), where=conf.sum(0) > 0)
    recall = np.divide(tp, conf.sum(1), out=np.zeros(n_labels), where=conf.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_labels), where=precision + recall > 0)
    return float(tp.sum() / max(len(y), 1)), float(f1.mean()), conf


def evaluate(model: Model, table: pa.Table, label_column: str = "label", batch_size: int = 256,
             compare_torch: bool = True) -> EvalReport:
    y = label_indices(table.column(label_column), model.labels, f"column '{label_column}'")
    t0 = time.perf_counter()
    out = model.predict(table.select([c for c in ("doc_id", "text", "tokens") if c in table.column_names]),
                        batch_size=batch_size)
    seconds = time.perf_counter() - t0
    scored = out.column("probs").is_valid().to_numpy(zero_copy_only=False)  # no token to score: a null row
    probs = np.stack(out.column("probs").drop_null().to_numpy(zero_copy_only=False)) if scored.any() else \
        np.empty((0, len(model.labels)), np.float32)
    pred = np.full(len(y), -1, np.int64)  # -1: not scored
    pred[scored] = probs.argmax(1)
    acc, f1, conf = metrics(y[scored], pred[scored], len(model.labels))
    report = EvalReport(model.labels, int(scored.sum()), acc, f1, conf, len(y) / seconds, y_true=y[scored],
                        probs=probs, unscored=int((~scored).sum()))
    if compare_torch:
        report.torch_agreement = _torch_agreement(model, table, pred, batch_size)
    return report


def _torch_agreement(model: Model, table: pa.Table, pred: np.ndarray, batch_size: int) -> float | None:
    """Share of the scored documents (`pred` >= 0) where the PyTorch modules (same weights) predict the same label;
    None without torch."""
    try:
        import torch

        from .train.modules import SentimentModel
        from .train.trainer import pad_docs
    except ImportError:
        return None
    net = SentimentModel(model.config.to_dict()).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
    same = 0
    with torch.inference_mode():
        for lo in range(0, table.num_rows, batch_size):
            batch = model.encode(table.slice(lo, batch_size))
            docs = np.arange(batch.n_docs)
            tp = net(*pad_docs(batch, docs)).argmax(1).numpy()
            same += int((tp == pred[lo : lo + batch.n_docs]).sum())  # an unscored -1 is never the same
    return same / max(int((pred >= 0).sum()), 1)
