"""Read and write `streamsent-model/1` directories: config.json + weights.safetensors (+ tokenizer.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..errors import ModelFormatError
from .config import GATES, EncoderConfig, ModelConfig

__all__ = ["expected_shapes", "read_model_dir", "record_metadata", "write_model_dir", "validate_weights"]

Weights = dict[str, np.ndarray]


def _encoder_shapes(prefix: str, enc: EncoderConfig, input_dim: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    if enc.recurrent:
        g, h = GATES[enc.type] * enc.hidden, enc.hidden
        for sfx in ("", "_reverse")[: enc.directions]:
            shapes[f"{prefix}.rnn.weight_ih_l0{sfx}"] = (g, input_dim)
            shapes[f"{prefix}.rnn.weight_hh_l0{sfx}"] = (g, h)
            shapes[f"{prefix}.rnn.bias_ih_l0{sfx}"] = (g,)
            shapes[f"{prefix}.rnn.bias_hh_l0{sfx}"] = (g,)
    elif enc.type == "cnn":
        for i, w in enumerate(enc.widths):
            shapes[f"{prefix}.convs.{i}.weight"] = (enc.maps, input_dim, w)
            shapes[f"{prefix}.convs.{i}.bias"] = (enc.maps,)
    if enc.pooling == "attention":
        a, d = enc.attention_dim, enc.out_dim(input_dim)
        shapes[f"{prefix}.attention.proj.weight"] = (a, d)
        shapes[f"{prefix}.attention.proj.bias"] = (a,)
        shapes[f"{prefix}.attention.context"] = (a,)
    return shapes


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name the config implies, with its `torch.nn` shape."""
    shapes = {"embedding.weight": (cfg.vocab_size, cfg.embed_dim)}
    shapes |= _encoder_shapes("word_encoder", cfg.word_encoder, cfg.embed_dim)
    if cfg.doc_encoder is not None:
        shapes |= _encoder_shapes("composition", cfg.doc_encoder, cfg.word_dim)
    shapes["head.weight"] = (len(cfg.labels), cfg.doc_dim)
    shapes["head.bias"] = (len(cfg.labels),)
    return shapes


def validate_weights(cfg: ModelConfig, weights: Weights, source: str = "weights") -> Weights:
    """Check names and shapes against the config; return float32 C-contiguous copies of the tensors."""
    want = expected_shapes(cfg)
    for name, shape in want.items():
        if name not in weights:
            raise ModelFormatError(f"{source}: missing tensor '{name}' (expected shape {list(shape)})")
        got = tuple(weights[name].shape)
        if got != shape:
            raise ModelFormatError(
                f"{source}: tensor '{name}' has shape {list(got)}, expected {list(shape)} from config.json"
            )
    extra = sorted(set(weights) - set(want))
    if extra:
        raise ModelFormatError(f"{source}: unexpected tensor(s) {extra} for this config; expected only {sorted(want)}")
    out: Weights = {}
    for name, arr in weights.items():
        if arr.dtype not in (np.float32, np.float16, np.float64):
            raise ModelFormatError(f"{source}: tensor '{name}' has dtype {arr.dtype}, expected float32 or float16")
        a = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise ModelFormatError(f"{source}: tensor '{name}' holds NaN or infinite values")
        out[name] = a
    return out


def read_model_dir(path: str | os.PathLike) -> tuple[ModelConfig, Weights]:
    root = Path(path)
    cfg_path, w_path = root / "config.json", root / "weights.safetensors"
    if not root.is_dir():
        raise ModelFormatError(f"model directory {root} does not exist")
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelFormatError(f"{root}: missing {p.name} (a model directory holds config.json and "
                                   "weights.safetensors)")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{cfg_path}: not valid JSON: {exc}") from None
    cfg = ModelConfig.from_dict(raw, source=str(cfg_path))
    try:
        weights = load_file(str(w_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{w_path}: cannot read safetensors: {exc}") from None
    return cfg, validate_weights(cfg, weights, source=str(w_path))


def write_model_dir(path: str | os.PathLike, cfg: ModelConfig, weights: Weights, dtype: type = np.float32) -> Path:
    """Write config.json and weights.safetensors (float32, or float16 to halve the size on disk)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    checked = validate_weights(cfg, weights)
    save_file({k: np.ascontiguousarray(v.astype(dtype)) for k, v in checked.items()},
              str(root / "weights.safetensors"), metadata={"format": "streamsent-model/1"})
    os.chmod(root / "weights.safetensors", 0o644)  # safetensors writes 0600; a model is data others must read
    (root / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return root


def record_metadata(path: str | os.PathLike, entries: dict) -> None:
    """Merge entries into config.json's free-form `metadata` (e.g. test scores after training)."""
    cfg_path = Path(path) / "config.json"
    raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    raw.setdefault("metadata", {}).update(entries)
    ModelConfig.from_dict(raw, source=str(cfg_path))
    tmp = cfg_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, cfg_path)
