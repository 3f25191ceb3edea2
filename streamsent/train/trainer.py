"""Train a `streamsent-model/1` model with PyTorch and write the model directory.

Seeded; the validation split is carved from the training data (never the test set); early stopping keeps the
best validation epoch; mini-batches hold documents of similar length so little compute goes to padding.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..batch import DocBatch
from ..errors import ConfigError
from ..evaluate import label_indices, read_labelled_table
from ..models.config import ModelConfig
from ..models.model import Model
from ..text import Tokenizer
from .config import TrainConfig
from .modules import SentimentModel

__all__ = ["TrainResult", "load_labelled", "pad_docs", "train"]


@dataclass
class TrainResult:
    output: Path
    best_epoch: int
    validation_accuracy: float
    losses: list[float]  # mean training loss per epoch
    seconds: float


def load_labelled(cfg: TrainConfig) -> tuple[list[str], np.ndarray]:
    """(texts, label indices in cfg.labels order) from 'imdb' or a Parquet/CSV file."""
    if cfg.train == "imdb":
        import pyarrow.parquet as pq

        from ..data.imdb import build_imdb

        table = pq.read_table(build_imdb()["train"])
    else:
        table = read_labelled_table(cfg.train, what=f"{cfg.source}: data.train =")
    for col in (cfg.text_column, cfg.label_column):
        if col not in table.column_names:
            raise ConfigError(f"{cfg.source}: data column '{col}' is not in {cfg.train} ({table.column_names})")
    y = label_indices(table.column(cfg.label_column), cfg.labels, f"{cfg.source}: data.labels, for {cfg.train}")
    texts = table.column(cfg.text_column).to_pylist()
    if cfg.max_docs:
        order = np.random.default_rng(cfg.seed).permutation(len(texts))[: cfg.max_docs]
        texts, y = [texts[i] for i in order], y[order]
    return texts, y


def pad_docs(batch: DocBatch, docs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Some documents of a DocBatch as padded tensors: tokens (B, S, L), sent_lengths (B, S)."""
    so, do, ids = batch.sent_offsets, batch.doc_offsets, batch.token_ids
    n_sent = do[docs + 1] - do[docs]
    S = max(int(n_sent.max()) if len(docs) else 0, 1)
    sents = np.concatenate([np.arange(do[d], do[d + 1]) for d in docs]) if len(docs) else np.zeros(0, np.int64)
    lens = so[sents + 1] - so[sents]
    L = max(int(lens.max()) if len(lens) else 0, 1)
    tokens = np.zeros((len(docs), S, L), np.int64)
    sent_lengths = np.zeros((len(docs), S), np.int64)
    row = np.repeat(np.arange(len(docs)), n_sent)
    col = np.concatenate([np.arange(k) for k in n_sent]) if len(docs) else np.zeros(0, np.int64)
    sent_lengths[row, col] = lens
    for r, c, s, n in zip(row, col, sents, lens, strict=True):
        tokens[r, c, :n] = ids[so[s] : so[s + 1]]
    return torch.from_numpy(tokens), torch.from_numpy(sent_lengths)


def _buckets(batch: DocBatch, docs: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Mini-batches of documents of similar length (with a little noise so epochs differ), in random order."""
    tok = batch.doc_token_offsets()
    cost = (tok[docs + 1] - tok[docs]) + rng.uniform(0, 8, len(docs))
    ordered = docs[np.argsort(cost, kind="stable")]
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    rng.shuffle(chunks)
    return chunks


def _accuracy(net: SentimentModel, batch: DocBatch, docs: np.ndarray, y: np.ndarray, size: int) -> float:
    net.eval()
    correct = 0
    with torch.inference_mode():
        for chunk in _buckets(batch, docs, size * 2, np.random.default_rng(0)):
            correct += int((net(*pad_docs(batch, chunk)).argmax(1).numpy() == y[chunk]).sum())
    net.train()
    return correct / max(len(docs), 1)


def _init_embeddings(net: SentimentModel, tokenizer: Tokenizer, cfg: TrainConfig, rng: np.random.Generator) -> int:
    """GloVe rows for the vocabulary words GloVe knows; small random rows for the rest; zero padding row."""
    E = net.embedding.weight
    init = rng.normal(0, 0.1, size=tuple(E.shape)).astype(np.float32)
    found = 0
    if cfg.embedding_init == "glove50":
        from ..data.imdb import load_glove50

        words, vectors = load_glove50()
        where = {w: i for i, w in enumerate(words)}
        for i, tok in enumerate(tokenizer.vocab.tokens):
            j = where.get(tok)
            if j is not None:
                init[i] = vectors[j]
                found += 1
    init[0] = 0.0
    with torch.no_grad():
        E.copy_(torch.from_numpy(init))
    return found


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train(cfg: TrainConfig, console: Console | None = None, progress: bool = True) -> TrainResult:
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    texts, y = load_labelled(cfg)
    perm = rng.permutation(len(texts))
    n_val = max(1, int(round(len(texts) * cfg.validation_fraction)))
    val_docs, train_docs = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    tokenizer = Tokenizer.build([texts[i] for i in train_docs], max_vocab=cfg.max_vocab, min_freq=cfg.min_freq,
                                max_sentences=cfg.max_sentences, max_tokens_per_sentence=cfg.max_tokens_per_sentence)
    batch = tokenizer.encode_batch(texts).batch
    model_dict = cfg.model_dict(len(tokenizer.vocab))
    net = SentimentModel(model_dict)
    found = _init_embeddings(net, tokenizer, cfg, rng)
    console.log(f"{cfg.name}: {len(train_docs)} train / {len(val_docs)} validation docs, vocabulary "
                f"{len(tokenizer.vocab)} ({found} from GloVe), {sum(p.numel() for p in net.parameters()):,} parameters")
    if cfg.dropout:
        net.embedding.register_forward_hook(lambda m, _i, out: F.dropout(out, cfg.dropout, m.training))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_epoch, stale, losses = -1.0, 0, 0, []
    best_state: dict[str, torch.Tensor] = {}
    net.train()
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    with Progress(*cols, console=console, disable=not progress) as bar:
        for epoch in range(1, cfg.epochs + 1):
            chunks = _buckets(batch, train_docs, cfg.batch_size, rng)
            task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(chunks), info="")
            total, seen, started = 0.0, 0, time.perf_counter()
            for i, chunk in enumerate(chunks):
                logits = net(*pad_docs(batch, chunk))
                loss = F.cross_entropy(logits, torch.from_numpy(y[chunk]))
                opt.zero_grad()
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                total += float(loss.detach()) * len(chunk)
                seen += len(chunk)
                if i % 10 == 0 or i == len(chunks) - 1:
                    rate = seen / (time.perf_counter() - started)
                    bar.update(task, completed=i + 1, info=f"loss {total / seen:.4f} · {rate:,.0f} docs/s")
            losses.append(total / seen)
            acc = _accuracy(net, batch, val_docs, y, cfg.batch_size)
            bar.update(task, info=f"loss {losses[-1]:.4f} · validation accuracy {acc:.4f}")
            console.log(f"epoch {epoch}: loss {losses[-1]:.4f}, validation accuracy {acc:.4f}, "
                        f"{time.perf_counter() - started:.0f} s")
            if acc > best:
                best, best_epoch, stale = acc, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    console.log(f"early stop after epoch {epoch}: best validation accuracy {best:.4f} (epoch "
                                f"{best_epoch})")
                    break
    seconds = time.perf_counter() - t0
    weights = {k: v.numpy().astype(np.float32) for k, v in best_state.items()}
    model_dict["metadata"] = {
        "training": {"data": cfg.train if cfg.train != "imdb" else _imdb_record(), "docs": len(train_docs),
                     "validation_docs": len(val_docs), "validation_accuracy": round(best, 5),
                     "best_epoch": best_epoch, "epochs_run": len(losses), "seconds": round(seconds, 1),
                     "seed": cfg.seed, "config": str(cfg.source), "code_commit": _git_commit(),
                     "torch": torch.__version__},
    }
    mcfg = ModelConfig.from_dict(model_dict)
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    Model(mcfg, weights, tokenizer=tokenizer).save(cfg.output, dtype=dtype)
    console.log(f"wrote {cfg.output} (best epoch {best_epoch}, validation accuracy {best:.4f}, {seconds:.0f} s)")
    return TrainResult(cfg.output, best_epoch, best, losses, seconds)


def _imdb_record() -> dict[str, Any]:
    from ..data.imdb import read_manifest

    m = read_manifest()
    return json.loads(json.dumps({k: m[k] for k in m if k in ("sources", "splits", "train", "pins")}, default=str))
