"""`Model`: a loaded model directory plus the backend that scores it. The one API the CLI also uses."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..backends.base import Backend, CarryState, Scores
from ..batch import DocBatch
from ..errors import BatchError, DeviceError, ModelFormatError
from .config import ModelConfig
from .io import read_model_dir, validate_weights, write_model_dir

__all__ = ["Model", "load_model", "unscored_documents", "BUILTIN_DIR", "DEVICES"]

BUILTIN_DIR = Path(__file__).parent / "builtin"
DEVICES = ("auto", "cpu", "cuda", "reference")


def _driver_present() -> bool:
    """The driver library loads, or the kernel driver's device node exists (numba-cuda may find a library that the
    loader's default path does not)."""
    try:
        ctypes.CDLL(os.environ.get("NUMBA_CUDA_DRIVER") or "libcuda.so.1")
        return True
    except OSError:
        return os.path.exists("/dev/nvidiactl")


def cuda_problem() -> str | None:
    """None when device = 'cuda' can run in this process, else what was looked for and not found.

    Cheap checks first, so that 'auto' on a machine without a GPU never imports numba.cuda: numba-cuda
    installed? the simulator asked for (NUMBA_ENABLE_CUDASIM=1)? the driver library loadable? Only then
    numba.cuda itself: does `cuda.is_available()` find a GPU?
    """
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install 'streamsent[cuda]')"
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    if "numba.cuda" in sys.modules:  # imported already: its mode is fixed for this process
        from ..kernels.cuda.compiler import is_simulator

        if is_simulator():
            return None if sim else ("numba.cuda was imported in simulator mode, but NUMBA_ENABLE_CUDASIM=1 is no "
                                     "longer set")
    elif not sim and not _driver_present():
        driver = os.environ.get("NUMBA_CUDA_DRIVER") or "libcuda.so.1"
        return (f"numba-cuda is installed, but the CUDA driver library ({driver}) could not be loaded and there is no "
                "/dev/nvidiactl: no NVIDIA driver on this machine")
    from numba import cuda

    if not cuda.is_available():
        return "numba-cuda and a driver library were found, but numba.cuda.is_available() is False (no usable GPU)"
    return None


def _make_backend(device: str, cfg: ModelConfig, weights: dict[str, np.ndarray], **options: Any) -> Backend:
    if device not in DEVICES:
        raise DeviceError(f"device = {device!r} is not known; use one of {', '.join(DEVICES)}")
    if device == "reference":
        from ..backends.reference import ReferenceBackend

        return ReferenceBackend(cfg, weights)
    if device == "cuda":
        problem = cuda_problem()
        if problem is not None:
            raise DeviceError(
                f"device = 'cuda' needs an NVIDIA GPU that numba-cuda can use: {problem}. "
                "To score on the CPU use device = 'cpu' (--device cpu), or 'auto', which picks the GPU when there "
                "is one and the CPU otherwise"
            )
        from ..backends.cuda import CudaBackend

        return CudaBackend(cfg, weights, **options)
    from ..backends.cpu import CpuBackend

    return CpuBackend(cfg, weights, **options)


class Model:
    """A `streamsent-model/1` model on one backend.

    `predict` takes documents in any of the forms users have them and returns an Arrow table;
    `predict_batch` is the streaming entry point: a DocBatch in, Scores and the carried state out.
    """

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], tokenizer: Any = None,
                 device: str = "cpu", path: Path | None = None, **backend_options: Any) -> None:
        self.config = config
        self.weights = validate_weights(config, weights)
        self.tokenizer = tokenizer
        self.path = path
        # what `device` resolved to: 'auto' is 'cuda' where cuda_problem() finds none, else 'cpu'
        self.device = ("cuda" if cuda_problem() is None else "cpu") if device == "auto" else device
        self.backend = _make_backend(self.device, config, self.weights, **backend_options)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({c.name!r} v{c.version}, {c.word_encoder.type}/{c.composition}, "
                f"labels={list(c.labels)}, device={self.device!r})")

    # -- scoring -----------------------------------------------------------------------------------------------
    def predict_batch(self, batch: DocBatch, state: CarryState | None = None) -> tuple[Scores, CarryState | None]:
        """Score a ragged batch; pass the returned state back in to continue the same documents.

        A document with nothing to score (`unscored_documents`: no token in the batch and none carried in
        `state`) gets a row of NaN probs: the backends would score it from the zero vector (softmax of the head's
        bias), a label that says nothing about the document. The returned state is the backend's, unchanged."""
        scores, after = self.backend.forward(batch, state)
        empty = unscored_documents(batch, state)
        if empty.any():
            probs = scores.probs.copy()
            probs[empty] = np.nan
            scores = dataclasses.replace(scores, probs=probs)
        return scores, after

    def encode(self, docs: str | Sequence[str | None] | pa.Table | Sequence[Sequence[Sequence[int]]]) -> DocBatch:
        """Documents as raw strings (one str is one document), sentences of token ids, or a table with `text` or
        `tokens` -> DocBatch. A None text (an Arrow null) is an empty document."""
        if isinstance(docs, pa.Table):
            if "tokens" in docs.column_names:
                return DocBatch.from_arrow(docs.column("tokens"))
            if "text" in docs.column_names:
                return self._tokenize(docs.column("text").to_pylist())
            raise BatchError(f"input table needs a 'text' or a 'tokens' column; it has {docs.column_names}")
        docs = _as_documents(docs)
        if any(isinstance(d, str) for d in docs) and all(d is None or isinstance(d, str) for d in docs):
            return self._tokenize(docs)
        return DocBatch.from_lists(docs)

    def _tokenize(self, texts: list[Any]) -> DocBatch:
        if self.tokenizer is None:
            raise BatchError(f"model '{self.config.name}' has no tokenizer.json, so it scores token ids only "
                             "(give 'tokens' as sentences of ids)")
        return self.tokenizer.encode_batch(texts).batch

    def predict(self, docs: str | Sequence[str | None] | pa.Table | Sequence[Sequence[Sequence[int]]],
                batch_size: int = 256) -> pa.Table:
        """Scores as a table, one row per document in input order: doc_id, label, score, probs (+ word/sentence
        attention for attention models). One str is one document.

        A document with no token to score (null, empty or whitespace-only text, text of which the tokenizer keeps
        no word, e.g. only punctuation or zero-width spaces, or token sentences that are all empty) is not scored:
        its row has null label, score and probs (and attention)."""
        if not isinstance(docs, pa.Table):
            docs = _as_documents(docs)
        if isinstance(docs, pa.Table) and "doc_id" in docs.column_names:
            doc_ids = docs.column("doc_id").combine_chunks()
        else:
            n = docs.num_rows if isinstance(docs, pa.Table) else len(docs)
            doc_ids = pa.array(np.arange(n, dtype=np.int64))
        n = len(doc_ids)
        parts = []
        for lo in range(0, max(n, 1), batch_size):
            part = docs.slice(lo, batch_size) if isinstance(docs, pa.Table) else docs[lo : lo + batch_size]
            batch = self.encode(part)
            scores, _ = self.predict_batch(batch)
            parts.append(scores_to_table(self.config, batch, scores, doc_ids.slice(lo, batch_size)))
        return pa.concat_tables(parts)

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, dtype: type = np.float32) -> Path:
        root = write_model_dir(path, self.config, self.weights, dtype=dtype)
        if self.tokenizer is not None:
            self.tokenizer.save(root / "tokenizer.json")
        return root


def unscored_documents(batch: DocBatch, state: CarryState | None = None) -> np.ndarray:
    """bool[D]: the documents with nothing to score: no token in `batch` (no sentence, or only empty ones) and, with
    a carried `state`, nothing seen before either (its pooling count `s` is 0: every pooling adds to it per item)."""
    empty = np.diff(batch.doc_token_offsets()) == 0
    if state is not None:
        empty &= state.s == 0
    return empty


def _as_documents(docs: Any) -> list[Any]:
    """A list of documents: one str is one document (not one per character); bytes are refused (which encoding
    they are in is the caller's to know)."""
    if isinstance(docs, str):
        return [docs]
    if isinstance(docs, bytes | bytearray | memoryview):
        raise BatchError("documents must be str (or sentences of token ids), got bytes: decode them first, e.g. "
                         "data.decode('utf-8')")
    docs = list(docs)
    for i, d in enumerate(docs):
        if isinstance(d, bytes | bytearray | memoryview):
            raise BatchError(f"document {i} is bytes; documents must be str (or sentences of token ids): decode it "
                             "first, e.g. data.decode('utf-8')")
    return docs


def scores_to_table(cfg: ModelConfig, batch: DocBatch, scores: Scores, doc_ids: pa.Array) -> pa.Table:
    """The Arrow rows of a scored batch; a row of NaN probs (a document with nothing to score, see
    `Model.predict_batch`) has null label, score, probs and attention."""
    probs = scores.probs
    unscored = np.isnan(probs).any(axis=1)
    mask = pa.array(unscored) if unscored.any() else None
    best = np.where(unscored, 0, probs.argmax(axis=1))
    cols: dict[str, pa.Array] = {
        "doc_id": doc_ids,
        "label": pa.DictionaryArray.from_arrays(pa.array(best.astype(np.int32), mask=unscored),
                                                pa.array(list(cfg.labels))).cast(pa.string()),
        "score": pa.array(probs[np.arange(len(best)), best], mask=unscored),
        "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), len(cfg.labels), mask=mask).cast(
            pa.list_(pa.float32())),
    }
    so = pa.array(batch.sent_offsets.astype(np.int32))
    do = pa.array(batch.doc_offsets.astype(np.int32))
    if scores.word_attention is not None:
        sents = pa.ListArray.from_arrays(so, pa.array(scores.word_attention))
        cols["word_attention"] = pa.ListArray.from_arrays(do, sents, mask=mask)
    if scores.sentence_attention is not None:
        cols["sentence_attention"] = pa.ListArray.from_arrays(do, pa.array(scores.sentence_attention), mask=mask)
    return pa.table(cols)


def _resolve(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name)
    if p.is_dir():
        return p
    builtin = BUILTIN_DIR / str(path_or_name)
    if isinstance(path_or_name, str) and "/" not in path_or_name and builtin.is_dir():
        return builtin
    known = sorted(d.name for d in BUILTIN_DIR.iterdir() if d.is_dir()) if BUILTIN_DIR.is_dir() else []
    raise ModelFormatError(
        f"no model directory at '{path_or_name}', and no built-in model of that name "
        f"(built-in: {', '.join(known) or 'none installed'})"
    )


def load_model(path_or_name: str | os.PathLike = "default", device: str = "cpu", **backend_options: Any) -> Model:
    """Load a model directory (or a built-in model by name) onto a backend: 'cpu', 'cuda', 'reference' or 'auto'
    (the GPU when one is usable, else the CPU)."""
    root = _resolve(path_or_name)
    cfg, weights = read_model_dir(root)
    tokenizer = None
    if (root / "tokenizer.json").is_file():
        from ..text import Tokenizer

        tokenizer = Tokenizer.from_file(root / "tokenizer.json")
        if len(tokenizer.vocab) != cfg.vocab_size:
            raise ModelFormatError(f"{root / 'tokenizer.json'}: vocabulary has {len(tokenizer.vocab)} entries, "
                                   f"but config.json embedding.vocab_size = {cfg.vocab_size}")
    return Model(cfg, weights, tokenizer=tokenizer, device=device, path=root, **backend_options)
