"""`config.json` of a `streamsent-model/1` directory, parsed into frozen dataclasses.

Every error names the file, the dotted key, the value found and what is allowed (docs/model-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelFormatError

__all__ = ["FORMAT", "EncoderConfig", "ModelConfig", "RECURRENT", "GATES"]

FORMAT = "streamsent-model/1"
RECURRENT = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
WORD_TYPES = ("mean", "rnn", "lstm", "gru", "cnn")
POOLINGS = ("last", "mean", "max", "attention")
COMPOSITIONS = ("flat", "paragraph", "average", "hierarchical")


@dataclass(frozen=True)
class EncoderConfig:
    """One encoder: the word encoder, or the document encoder of a hierarchical model."""

    type: str
    hidden: int = 0  # rnn/lstm/gru: state width per direction
    bidirectional: bool = False
    pooling: str = "last"
    attention_dim: int = 0  # attention pooling: width A of u = tanh(W h + b)
    widths: tuple[int, ...] = ()  # cnn: filter widths
    maps: int = 0  # cnn: feature maps per width

    @property
    def recurrent(self) -> bool:
        return self.type in RECURRENT

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def out_dim(self, input_dim: int) -> int:
        """Width of the per-token outputs and of the pooled vector."""
        if self.type == "mean":
            return input_dim
        if self.type == "cnn":
            return self.maps * len(self.widths)
        return self.hidden * self.directions

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "pooling": self.pooling}
        if self.recurrent:
            d.update(hidden=self.hidden, bidirectional=self.bidirectional)
        if self.type == "cnn":
            d.update(widths=list(self.widths), maps=self.maps)
        if self.pooling == "attention":
            d["attention_dim"] = self.attention_dim
        return d


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str
    labels: tuple[str, ...]
    vocab_size: int
    embed_dim: int
    word_encoder: EncoderConfig
    composition: str = "flat"
    doc_encoder: EncoderConfig | None = None  # hierarchical only
    padding_idx: int | None = 0
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def word_dim(self) -> int:
        return self.word_encoder.out_dim(self.embed_dim)

    @property
    def doc_dim(self) -> int:
        return self.doc_encoder.out_dim(self.word_dim) if self.doc_encoder else self.word_dim

    @property
    def has_attention(self) -> bool:
        return self.word_encoder.pooling == "attention" or (
            self.doc_encoder is not None and self.doc_encoder.pooling == "attention"
        )

    @property
    def can_carry(self) -> bool:
        """Whether a document can be scored a part at a time with carried state (see docs/model-format.md)."""
        if self.composition == "paragraph":
            return True
        return self.composition == "hierarchical" and self.doc_encoder is not None and not (
            self.doc_encoder.bidirectional
        )

    # -- (de)serialisation -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, source: str = "config.json") -> ModelConfig:
        p = _Reader(source)
        p.obj(raw, "")
        p.keys(raw, "", {"format", "name", "version", "labels", "embedding", "word_encoder", "composition",
                         "metadata"}, required={"format", "labels", "embedding", "word_encoder"})
        if raw["format"] != FORMAT:
            p.fail("format", raw["format"], f'"{FORMAT}"')
        labels = raw["labels"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            p.fail("labels", labels, "a list of at least two label names")
        if len(set(labels)) != len(labels):
            p.fail("labels", labels, "distinct label names")
        emb = raw["embedding"]
        p.obj(emb, "embedding")
        p.keys(emb, "embedding", {"vocab_size", "dim", "padding_idx"}, required={"vocab_size", "dim"})
        vocab_size = p.pos_int(emb, "embedding", "vocab_size")
        dim = p.pos_int(emb, "embedding", "dim")
        pad = emb.get("padding_idx", 0)
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < vocab_size):
            p.fail("embedding.padding_idx", pad, f"null or an int in [0, {vocab_size})")
        word = p.encoder(raw["word_encoder"], "word_encoder", WORD_TYPES)
        comp_raw = raw.get("composition", {"type": "flat"})
        p.obj(comp_raw, "composition")
        p.keys(comp_raw, "composition", {"type", "encoder"}, required={"type"})
        comp = comp_raw["type"]
        if comp not in COMPOSITIONS:
            p.fail("composition.type", comp, " | ".join(COMPOSITIONS))
        doc_enc = None
        if comp == "hierarchical":
            if "encoder" not in comp_raw:
                p.fail("composition.encoder", None, "an encoder object (type rnn | lstm | gru) for hierarchical")
            doc_enc = p.encoder(comp_raw["encoder"], "composition.encoder", RECURRENT)
        elif "encoder" in comp_raw:
            p.fail("composition.encoder", comp_raw["encoder"], f"no encoder for composition '{comp}'")
        if comp == "paragraph" and not word.recurrent:
            p.fail("composition.type", comp,
                   f"flat | average | hierarchical for a '{word.type}' word encoder (paragraph carries a "
                   "recurrent state, so it needs rnn | lstm | gru)")
        metadata = raw.get("metadata", {})
        p.obj(metadata, "metadata")
        return cls(
            name=str(raw.get("name", "unnamed")), version=str(raw.get("version", "0")), labels=tuple(labels),
            vocab_size=vocab_size, embed_dim=dim, padding_idx=pad, word_encoder=word, composition=comp,
            doc_encoder=doc_enc, metadata=metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        comp: dict[str, Any] = {"type": self.composition}
        if self.doc_encoder is not None:
            comp["encoder"] = self.doc_encoder.to_dict()
        d: dict[str, Any] = {
            "format": FORMAT, "name": self.name, "version": self.version, "labels": list(self.labels),
            "embedding": {"vocab_size": self.vocab_size, "dim": self.embed_dim, "padding_idx": self.padding_idx},
            "word_encoder": self.word_encoder.to_dict(), "composition": comp,
        }
        if self.metadata:
            d["metadata"] = self.metadata
        return d


class _Reader:
    """Checks one config document; each failure names the file and the dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise ModelFormatError(f"{self.source}: {key} = {value!r} is not allowed; expected {allowed}")

    def obj(self, value: Any, key: str) -> None:
        if not isinstance(value, dict):
            self.fail(key or "<top level>", value, "a JSON object")

    def keys(self, obj: dict, prefix: str, allowed: set[str], required: set[str]) -> None:
        dot = f"{prefix}." if prefix else ""
        for k in obj:
            if k not in allowed:
                raise ModelFormatError(
                    f"{self.source}: unknown key {dot}{k}; allowed keys here: {', '.join(sorted(allowed))}"
                )
        for k in sorted(required - obj.keys()):
            raise ModelFormatError(f"{self.source}: missing key {dot}{k}")

    def pos_int(self, obj: dict, prefix: str, key: str) -> int:
        v = obj.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            self.fail(f"{prefix}.{key}", v, "a positive integer")
        return v

    def encoder(self, raw: Any, key: str, types: tuple[str, ...]) -> EncoderConfig:
        self.obj(raw, key)
        self.keys(raw, key, {"type", "hidden", "bidirectional", "pooling", "attention_dim", "widths", "maps"},
                  required={"type"})
        typ = raw["type"]
        if typ not in types:
            self.fail(f"{key}.type", typ, " | ".join(types))
        recurrent = typ in RECURRENT
        default_pool = {"mean": "mean", "cnn": "max"}.get(typ, "last")
        pooling = raw.get("pooling", default_pool)
        allowed_pool = POOLINGS if recurrent else (default_pool,)
        if pooling not in allowed_pool:
            self.fail(f"{key}.pooling", pooling, " | ".join(allowed_pool) + f" for a '{typ}' encoder")
        hidden = self.pos_int(raw, key, "hidden") if recurrent else 0
        bidi = raw.get("bidirectional", False)
        if not isinstance(bidi, bool) or (bidi and not recurrent):
            self.fail(f"{key}.bidirectional", bidi, "true | false" if recurrent else "false (not recurrent)")
        if not recurrent and "hidden" in raw:
            self.fail(f"{key}.hidden", raw["hidden"], f"no 'hidden' for a '{typ}' encoder")
        att = self.pos_int(raw, key, "attention_dim") if pooling == "attention" else 0
        if pooling != "attention" and "attention_dim" in raw:
            self.fail(f"{key}.attention_dim", raw["attention_dim"], "no attention_dim without attention pooling")
        widths: tuple[int, ...] = ()
        maps = 0
        if typ == "cnn":
            w = raw.get("widths", [3, 4, 5])
            if not isinstance(w, list) or not w or not all(
                isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in w
            ):
                self.fail(f"{key}.widths", w, "a non-empty list of positive integers")
            widths = tuple(w)
            maps = self.pos_int({"maps": raw.get("maps", 100)}, key, "maps")
        else:
            for k in ("widths", "maps"):
                if k in raw:
                    self.fail(f"{key}.{k}", raw[k], f"no '{k}' for a '{typ}' encoder")
        return EncoderConfig(type=typ, hidden=hidden, bidirectional=bidi, pooling=pooling, attention_dim=att,
                             widths=widths, maps=maps)
