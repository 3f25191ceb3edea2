"""Training configuration: a TOML file -> a frozen dataclass; errors name the file and the dotted key."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.config import ModelConfig

__all__ = ["TrainConfig", "load_train_config"]


@dataclass(frozen=True)
class TrainConfig:
    source: Path  # the TOML file, for error messages and relative paths
    # [data]
    train: str = "imdb"  # "imdb" (the pinned PyPI-built splits) or a Parquet/CSV file with text + label columns
    text_column: str = "text"
    label_column: str = "label"
    labels: tuple[str, ...] = ("negative", "positive")
    validation_fraction: float = 0.1  # carved from train, never from test
    max_docs: int = 0  # 0 = all (smoke tests use a few hundred)
    # [tokenizer]
    max_vocab: int = 30_000
    min_freq: int = 2
    max_sentences: int = 32
    max_tokens_per_sentence: int = 64
    # [embedding]
    embedding_dim: int = 50
    embedding_init: str = "glove50"  # "glove50" | "random"
    # [model]: word_encoder / composition exactly as in config.json
    name: str = "model"
    version: str = "1.0.0"
    word_encoder: dict[str, Any] = field(default_factory=lambda: {"type": "mean"})
    composition: dict[str, Any] = field(default_factory=lambda: {"type": "flat"})
    # [training]
    seed: int = 13
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    dropout: float = 0.3  # on embeddings, training only (inference has no dropout)
    grad_clip: float = 5.0
    patience: int = 2  # epochs without validation improvement before stopping
    threads: int = 2
    # [output]
    output: Path = Path("models/model")
    dtype: str = "float32"  # "float32" | "float16"

    def model_dict(self, vocab_size: int) -> dict[str, Any]:
        """The config.json of the model this trains (validated by ModelConfig)."""
        raw = {"format": "streamsent-model/1", "name": self.name, "version": self.version,
               "labels": list(self.labels), "embedding": {"vocab_size": vocab_size, "dim": self.embedding_dim,
                                                           "padding_idx": 0},
               "word_encoder": self.word_encoder, "composition": self.composition}
        ModelConfig.from_dict(raw, source=f"{self.source} [model]")
        return raw


_SECTIONS: dict[str, dict[str, tuple[str, type]]] = {
    "data": {"train": ("train", str), "text_column": ("text_column", str), "label_column": ("label_column", str),
             "labels": ("labels", list), "validation_fraction": ("validation_fraction", float),
             "max_docs": ("max_docs", int)},
    "tokenizer": {"max_vocab": ("max_vocab", int), "min_freq": ("min_freq", int),
                  "max_sentences": ("max_sentences", int), "max_tokens_per_sentence": ("max_tokens_per_sentence", int)},
    "embedding": {"dim": ("embedding_dim", int), "init": ("embedding_init", str)},
    "model": {"name": ("name", str), "version": ("version", str), "word_encoder": ("word_encoder", dict),
              "composition": ("composition", dict)},
    "training": {"seed": ("seed", int), "epochs": ("epochs", int), "batch_size": ("batch_size", int),
                 "lr": ("lr", float), "weight_decay": ("weight_decay", float), "dropout": ("dropout", float),
                 "grad_clip": ("grad_clip", float), "patience": ("patience", int), "threads": ("threads", int)},
    "output": {"dir": ("output", str), "dtype": ("dtype", str)},
}


def load_train_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a training TOML. `overrides` maps dotted keys ("training.epochs") to values, e.g. from the CLI."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such training config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        sec, _, key = dotted.partition(".")
        raw.setdefault(sec, {})[key] = value
    values: dict[str, Any] = {"source": path}
    for sec, body in raw.items():
        if sec not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{sec}]; allowed: {', '.join(_SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{sec}] must be a table")
        for key, value in body.items():
            if key not in _SECTIONS[sec]:
                raise ConfigError(f"{path}: unknown key {sec}.{key}; allowed: {', '.join(_SECTIONS[sec])}")
            attr, typ = _SECTIONS[sec][key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
                raise ConfigError(f"{path}: {sec}.{key} = {value!r} must be of type {typ.__name__}")
            values[attr] = value
    if "output" in values:
        values["output"] = Path(values["output"])  # relative to the working directory, like every CLI path
    if "labels" in values:
        values["labels"] = tuple(values["labels"])
    cfg = TrainConfig(**values)
    checks = [
        (0 < cfg.validation_fraction < 0.5, "data.validation_fraction", "in (0, 0.5)"),
        (cfg.embedding_init in ("glove50", "random"), "embedding.init", '"glove50" or "random"'),
        (cfg.embedding_init != "glove50" or cfg.embedding_dim == 50, "embedding.dim", "50 with glove50 vectors"),
        (cfg.dtype in ("float32", "float16"), "output.dtype", '"float32" or "float16"'),
        (0 <= cfg.dropout < 1, "training.dropout", "in [0, 1)"),
        (cfg.epochs > 0 and cfg.batch_size > 0 and cfg.lr > 0, "training", "epochs, batch_size, lr > 0"),
    ]
    for ok, key, allowed in checks:
        if not ok:
            raise ConfigError(f"{path}: {key} is not allowed; expected {allowed}")
    cfg.model_dict(cfg.max_vocab)  # the architecture must be a valid streamsent-model/1
    return cfg
