"""PyTorch modules that compute `streamsent-model/1` exactly (docs/model-format.md).

They serve as the oracle the Numba and NumPy backends are tested against, as the PyTorch CPU baseline of
the benchmarks, and as the model that training fits. `SentimentModel(config).state_dict()` has exactly the
tensor names and shapes of `weights.safetensors`.

The batched path works on padded tensors: `tokens[B, S, L]` (sentences padded with 0 to L, documents padded
with length-0 sentences to S) and `sent_lengths[B, S]`. Internally every composition first gathers the real
tokens into one flat list (doc by doc, sentence by sentence), embeds them once, and re-pads that list into
whatever sequences the composition runs over (documents or non-empty sentences). Recurrent encoders pack
ragged batches (`pack_padded_sequence`) and skip packing when all lengths are equal; sequences of length 0
never reach a cell and encode to zeros.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from streamsent.errors import ModelFormatError

__all__ = [
    "FORMAT",
    "AttentionPool",
    "CNNEncoder",
    "EncoderSpec",
    "MeanEncoder",
    "ModelSpec",
    "RecurrentEncoder",
    "SentimentModel",
    "encode_docs",
    "load_model_dir",
    "parse_config",
    "random_init_",
    "save_model_dir",
]

FORMAT = "streamsent-model/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"

_RECURRENT = ("rnn", "lstm", "gru")
_WORD_TYPES = ("mean", *_RECURRENT, "cnn")
_COMPOSITIONS = ("flat", "paragraph", "average", "hierarchical")
_POOLINGS = {
    "mean": ("mean",),
    "cnn": ("max",),
    **{t: ("last", "mean", "max", "attention") for t in _RECURRENT},
}
_DEFAULT_POOLING = {"mean": "mean", "cnn": "max", **{t: "last" for t in _RECURRENT}}
_TOP_KEYS = ("format", "name", "version", "labels", "embedding", "word_encoder", "composition", "metadata")


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder of the config (`word_encoder`, or `composition.encoder`), defaults filled in."""

    type: str  # mean | rnn | lstm | gru | cnn
    pooling: str  # last | mean | max | attention
    hidden: int = 0  # recurrent: H
    bidirectional: bool = False  # recurrent: a second cell runs from the last token to the first
    attention_dim: int = 0  # attention pooling: A
    widths: tuple[int, ...] = ()  # cnn: window widths
    maps: int = 0  # cnn: feature maps per width

    def out_dim(self, input_dim: int) -> int:
        """D, the width of this encoder's outputs (and of its pooled vector)."""
        if self.type == "mean":
            return input_dim
        if self.type == "cnn":
            return self.maps * len(self.widths)
        return self.hidden * (2 if self.bidirectional else 1)


@dataclass(frozen=True)
class ModelSpec:
    """The architecture a `config.json` describes, validated, defaults filled in."""

    labels: tuple[str, ...]
    vocab_size: int
    dim: int  # E
    padding_idx: int | None
    word_encoder: EncoderSpec
    composition: str  # flat | paragraph | average | hierarchical
    doc_encoder: EncoderSpec | None  # hierarchical only


def _fail(key: str, message: str) -> ModelFormatError:
    return ModelFormatError(f"config.json: {key}: {message}")


def _section(config: dict, key: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(config, dict):
        raise _fail(key, f"must be an object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise _fail(key, f"unknown key(s) {unknown}; allowed here: {list(allowed)}")
    return config


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(key, f"must be an int > 0, got {value!r}")
    return value


def _choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(key, f"{value!r} is not allowed; use one of {list(allowed)}")
    return value


def _parse_encoder(section: Any, key: str, types: tuple[str, ...]) -> EncoderSpec:
    if not isinstance(section, dict):
        raise _fail(key, f"must be an object, got {type(section).__name__}")
    if "type" not in section:
        raise _fail(f"{key}.type", f"is required; use one of {list(types)}")
    kind = _choice(section["type"], f"{key}.type", types)
    allowed = ["type", "pooling"]
    if kind in _RECURRENT:
        allowed += ["hidden", "bidirectional", "attention_dim"]
    elif kind == "cnn":
        allowed += ["widths", "maps"]
    _section(section, key, tuple(allowed))
    pooling = _choice(section.get("pooling", _DEFAULT_POOLING[kind]), f"{key}.pooling", _POOLINGS[kind])
    if kind == "cnn":
        widths = section.get("widths", [3, 4, 5])
        if not isinstance(widths, list) or not widths:
            raise _fail(f"{key}.widths", f"must be a non-empty list of ints > 0, got {widths!r}")
        widths = tuple(_positive_int(w, f"{key}.widths") for w in widths)
        maps = _positive_int(section.get("maps", 100), f"{key}.maps")
        return EncoderSpec(kind, pooling, widths=widths, maps=maps)
    if kind == "mean":
        return EncoderSpec(kind, pooling)
    if "hidden" not in section:
        raise _fail(f"{key}.hidden", f"is required for type {kind!r}")
    hidden = _positive_int(section["hidden"], f"{key}.hidden")
    bidirectional = section.get("bidirectional", False)
    if not isinstance(bidirectional, bool):
        raise _fail(f"{key}.bidirectional", f"must be true or false, got {bidirectional!r}")
    attention_dim = 0
    if pooling == "attention":
        if "attention_dim" not in section:
            raise _fail(f"{key}.attention_dim", "is required with attention pooling")
        attention_dim = _positive_int(section["attention_dim"], f"{key}.attention_dim")
    elif "attention_dim" in section:
        raise _fail(f"{key}.attention_dim", f"applies only to attention pooling, not {pooling!r}")
    return EncoderSpec(kind, pooling, hidden, bidirectional, attention_dim)


def parse_config(config: dict) -> ModelSpec:
    """Validate a parsed `config.json` and fill in the defaults of docs/model-format.md."""
    _section(config, "(top level)", _TOP_KEYS)
    if config.get("format", FORMAT) != FORMAT:
        raise _fail("format", f"is {config['format']!r}; this version reads {FORMAT!r}")
    labels = config.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise _fail("labels", f"must be a non-empty list of strings, got {labels!r}")
    if "embedding" not in config:
        raise _fail("embedding", "is required")
    emb = _section(config["embedding"], "embedding", ("vocab_size", "dim", "padding_idx"))
    for name in ("vocab_size", "dim"):
        if name not in emb:
            raise _fail(f"embedding.{name}", "is required")
    vocab_size = _positive_int(emb["vocab_size"], "embedding.vocab_size")
    dim = _positive_int(emb["dim"], "embedding.dim")
    padding_idx = emb.get("padding_idx", 0)
    if padding_idx is not None and (
        isinstance(padding_idx, bool) or not isinstance(padding_idx, int) or not 0 <= padding_idx < vocab_size
    ):
        raise _fail("embedding.padding_idx", f"must be null or an int in [0, vocab_size), not {padding_idx!r}")
    if "word_encoder" not in config:
        raise _fail("word_encoder", "is required")
    word = _parse_encoder(config["word_encoder"], "word_encoder", _WORD_TYPES)
    comp = _section(config.get("composition", {}), "composition", ("type", "encoder"))
    composition = _choice(comp.get("type", "flat"), "composition.type", _COMPOSITIONS)
    doc_encoder = None
    if composition == "hierarchical":
        if "encoder" not in comp:
            raise _fail("composition.encoder", "is required for hierarchical composition")
        doc_encoder = _parse_encoder(comp["encoder"], "composition.encoder", _RECURRENT)
    elif "encoder" in comp:
        raise _fail("composition.encoder", f"applies only to hierarchical composition, not {composition!r}")
    if composition == "paragraph" and word.type not in _RECURRENT:
        raise _fail(
            "composition.type",
            f"paragraph needs a recurrent word encoder (rnn, lstm, gru), not {word.type!r}",
        )
    return ModelSpec(tuple(labels), vocab_size, dim, padding_idx, word, composition, doc_encoder)


# ------------------------------------------------------------------------------------ ragged helpers


def _length_mask(lengths: Tensor, width: int) -> Tensor:
    """mask[n, t] = t < lengths[n]  # (N, width) bool"""
    return torch.arange(width, device=lengths.device) < lengths.unsqueeze(-1)


def _pad_flat(values: Tensor, lengths: Tensor) -> Tensor:
    """Cut `values[sum(lengths), ...]` into consecutive runs of `lengths[N]`, zero-padded: (N, max, ...)."""
    n = lengths.shape[0]
    width = int(lengths.max()) if n else 0
    if n and int(lengths.min()) == width:  # all equal: the padded tensor is a view
        return values.reshape(n, width, *values.shape[1:])
    rows = torch.repeat_interleave(torch.arange(n, device=lengths.device), lengths)  # (T_all,)
    starts = torch.cumsum(lengths, 0) - lengths  # (N,)
    cols = torch.arange(values.shape[0], device=lengths.device) - starts[rows]  # (T_all,)
    out = values.new_zeros(n, width, *values.shape[1:])
    return out.index_put((rows, cols), values)


def encode_docs(docs: list[list[list[int]]]) -> tuple[Tensor, Tensor]:
    """Pad ragged documents: `tokens[D, S, L]` (0-padded) and `sent_lengths[D, S]` (0 for padding)."""
    n_docs = len(docs)
    n_sents = max((len(d) for d in docs), default=0)
    sent_lengths = torch.zeros(n_docs, n_sents, dtype=torch.long)
    for i, doc in enumerate(docs):
        sent_lengths[i, : len(doc)] = torch.tensor([len(s) for s in doc], dtype=torch.long)
    width = int(sent_lengths.max()) if sent_lengths.numel() else 0
    tokens = torch.zeros(n_docs, n_sents, width, dtype=torch.long)
    flat = [t for doc in docs for sent in doc for t in sent]
    # Boolean-mask assignment fills in row-major order: doc by doc, sentence by sentence.
    tokens[_length_mask(sent_lengths, width)] = torch.tensor(flat, dtype=torch.long)
    return tokens, sent_lengths


# ------------------------------------------------------------------------------------------ encoders


class AttentionPool(nn.Module):
    """Yang et al. (2016): u_t = tanh(W o_t + b), a = softmax_t(u_t · context), pooled = Σ_t a_t o_t."""

    def __init__(self, in_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, attention_dim)
        self.context = nn.Parameter(torch.empty(attention_dim))
        nn.init.uniform_(self.context, -(attention_dim**-0.5), attention_dim**-0.5)

    def weights(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """Attention weights a[N, T] over the valid steps (0 where masked; uniform for an empty row)."""
        u = torch.tanh(self.proj(outputs))  # (N, T, A)
        scores = u @ self.context  # (N, T)
        # A finite floor, not -inf: an all-masked row stays NaN-free (its pooled vector is zeroed later).
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=1)

    def forward(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """outputs (N, T, D), mask (N, T) bool -> pooled (N, D)."""
        a = self.weights(outputs, mask)  # (N, T)
        pooled = torch.bmm(a.unsqueeze(1), outputs).squeeze(1)  # (N, D)
        return torch.where(mask.any(1, keepdim=True), pooled, 0.0)


class MeanEncoder(nn.Module):
    """Bag of embeddings: the mean of a sequence's vectors."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (N, T, E), lengths (N,) -> (N, E); steps t >= lengths[n] are ignored."""
        mask = _length_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # (N, T, 1)
        return (x * mask).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(x.dtype)


class CNNEncoder(nn.Module):
    """Kim (2014): per width w, ReLU(conv_w(x)) over the valid windows, max over time; widths concatenated.

    A sequence shorter than w is right-padded with zero vectors to w (exactly one window); an empty
    sequence encodes to zeros.
    """

    def __init__(self, in_dim: int, widths: tuple[int, ...], maps: int) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, maps, w) for w in self.widths)
        self.out_dim = maps * len(self.widths)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (N, T, E), lengths (N,) -> (N, maps * len(widths))."""
        n, width, _ = x.shape
        x = x * _length_mask(lengths, width).unsqueeze(-1).to(x.dtype)  # padding = zero vectors
        if width < max(self.widths):
            x = F.pad(x, (0, 0, 0, max(self.widths) - width))
        xt = x.transpose(1, 2)  # (N, E, T')
        pooled = []
        for conv, w in zip(self.convs, self.widths, strict=True):
            c = torch.relu(conv(xt))  # (N, maps, T' - w + 1)
            n_windows = torch.where(lengths > 0, lengths.clamp(min=w) - w + 1, 0)  # (N,)
            valid = _length_mask(n_windows, c.shape[2]).unsqueeze(1)  # (N, 1, T' - w + 1)
            pooled.append(c.masked_fill(~valid, 0.0).amax(2))  # ReLU >= 0, so 0 never beats a real window
        return torch.cat(pooled, dim=1)


_RNN_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_RNN_OPS = {"rnn": torch.rnn_tanh, "lstm": torch.lstm, "gru": torch.gru}  # what nn.RNN/LSTM/GRU call


class RecurrentEncoder(nn.Module):
    """One-layer rnn/lstm/gru (optionally bidirectional) over a sequence, pooled by last/mean/max/attention.

    Used as the word encoder and as the hierarchical document encoder (`composition`).
    """

    def __init__(self, in_dim: int, spec: EncoderSpec) -> None:
        super().__init__()
        self.kind = spec.type
        self.pooling = spec.pooling
        self.hidden = spec.hidden
        self.bidirectional = spec.bidirectional
        kwargs = {"nonlinearity": "tanh"} if spec.type == "rnn" else {}
        self.rnn = _RNN_CLASSES[spec.type](
            in_dim, spec.hidden, num_layers=1, batch_first=True, bidirectional=spec.bidirectional, **kwargs
        )
        self.out_dim = spec.out_dim(in_dim)
        self.attention: AttentionPool | None = None
        if spec.pooling == "attention":
            self.attention = AttentionPool(self.out_dim, spec.attention_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (N, T, in), lengths (N,) -> pooled (N, D); a length-0 sequence pools to zeros."""
        outputs, last = self.run(x, lengths)
        return self.pool(outputs, last, lengths)

    def run(self, x: Tensor, lengths: Tensor, direction: int | None = None) -> tuple[Tensor, Tensor]:
        """Run the cell(s) from zero state: outputs (N, T', Dr) zero past each length, T' = max(lengths),
        and the final states (N, Dr) as `h_n` orders them (forward, then backward).

        `direction` None runs every direction of the module (Dr = D); 0 or 1 runs only the forward or
        only the backward (`_reverse`) cell (Dr = H).
        """
        n = x.shape[0]
        width = int(lengths.max()) if n else 0
        dims = self.out_dim if direction is None else self.hidden
        if width == 0:
            return x.new_zeros(n, 0, dims), x.new_zeros(n, dims)
        nonempty = lengths > 0
        if not bool(nonempty.all()):  # packing refuses length 0: run the rest, scatter back into zeros
            idx = nonempty.nonzero().squeeze(1)
            out, last = self.run(x[idx], lengths[idx], direction)
            return (
                x.new_zeros(n, width, dims).index_copy(0, idx, out),
                x.new_zeros(n, dims).index_copy(0, idx, last),
            )
        x = x[:, :width]
        if direction == 1:  # the backward cell = a forward pass over each sequence reversed in place
            rev = _reverse_index(lengths, width).unsqueeze(-1)  # (N, T', 1)
            out, last = self._run_ragged(x.gather(1, rev.expand_as(x)), lengths, direction)
            return out.gather(1, rev.expand_as(out)), last
        return self._run_ragged(x, lengths, direction)

    def _run_ragged(self, x: Tensor, lengths: Tensor, direction: int | None) -> tuple[Tensor, Tensor]:
        width = x.shape[1]
        equal = int(lengths.min()) == width
        inp = x if equal else pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if direction is None:
            out, h_n = self.rnn(inp)
        else:
            out, h_n = self._one_direction(inp, reverse=direction == 1)
        if isinstance(h_n, tuple):  # lstm: (h_n, c_n)
            h_n = h_n[0]
        if not equal:
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
        return out, h_n.transpose(0, 1).reshape(x.shape[0], -1)  # (N, T', Dr), (N, Dr)

    def _one_direction(self, inp: Tensor | PackedSequence, reverse: bool) -> tuple[Any, Tensor]:
        """One direction's cell as a unidirectional torch op (the op nn.RNN/LSTM/GRU call) on its weights."""
        suffix = "_reverse" if reverse else ""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [getattr(self.rnn, f"{p}_l0{suffix}") for p in names]
        packed = isinstance(inp, PackedSequence)
        data = inp.data if packed else inp
        n = int(inp.batch_sizes[0]) if packed else inp.shape[0]
        h0 = data.new_zeros(1, n, self.hidden)
        hx = [h0, h0] if self.kind == "lstm" else h0
        op, train = _RNN_OPS[self.kind], self.rnn.training
        if packed:
            res = op(data, inp.batch_sizes, hx, params, True, 1, 0.0, train, False)
            out = PackedSequence(res[0], inp.batch_sizes, inp.sorted_indices, inp.unsorted_indices)
            return out, res[1].index_select(1, inp.unsorted_indices)
        res = op(data, hx, params, True, 1, 0.0, train, False, True)
        return res[0], res[1]

    def pool(self, outputs: Tensor, last: Tensor, lengths: Tensor) -> Tensor:
        """outputs (N, T, D), final states (N, D), lengths (N,) -> pooled (N, D)."""
        if self.pooling == "last":
            return last
        if outputs.shape[1] == 0:
            return outputs.new_zeros(outputs.shape[0], outputs.shape[2])
        mask = _length_mask(lengths, outputs.shape[1])  # (N, T)
        if self.pooling == "mean":
            summed = (outputs * mask.unsqueeze(-1).to(outputs.dtype)).sum(1)
            return summed / lengths.clamp(min=1).unsqueeze(-1).to(outputs.dtype)
        if self.pooling == "max":
            peak = outputs.masked_fill(~mask.unsqueeze(-1), torch.finfo(outputs.dtype).min).amax(1)
            return torch.where((lengths > 0).unsqueeze(-1), peak, 0.0)
        assert self.attention is not None
        return self.attention(outputs, mask)


def _reverse_index(lengths: Tensor, width: int) -> Tensor:
    """idx[n, t] = lengths[n] - 1 - t for t < lengths[n], else t: reverses each sequence in place."""
    t = torch.arange(width, device=lengths.device)
    return torch.where(t < lengths.unsqueeze(-1), lengths.unsqueeze(-1) - 1 - t, t)  # (N, T)


def _make_word_encoder(in_dim: int, spec: EncoderSpec) -> nn.Module:
    if spec.type == "mean":
        return MeanEncoder(in_dim)
    if spec.type == "cnn":
        return CNNEncoder(in_dim, spec.widths, spec.maps)
    return RecurrentEncoder(in_dim, spec)


# --------------------------------------------------------------------------------------------- model


class SentimentModel(nn.Module):
    """embedding -> word encoder -> composition -> head; `forward` returns logits (B, C).

    Submodules (and so `state_dict()` names): `embedding`, `word_encoder` (`.rnn`, `.convs`, `.attention`),
    `composition` (hierarchical only: `.rnn`, `.attention`; None otherwise), `head`.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = copy.deepcopy(config)
        self.spec = spec = parse_config(config)
        self.embedding = nn.Embedding(spec.vocab_size, spec.dim, padding_idx=spec.padding_idx)
        self.word_encoder = _make_word_encoder(spec.dim, spec.word_encoder)
        doc_dim = self.word_encoder.out_dim
        self.composition: RecurrentEncoder | None = None
        if spec.doc_encoder is not None:
            self.composition = RecurrentEncoder(doc_dim, spec.doc_encoder)
            doc_dim = self.composition.out_dim
        self.head = nn.Linear(doc_dim, len(spec.labels))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def forward(self, tokens: Tensor, sent_lengths: Tensor) -> Tensor:
        """tokens (B, S, L) int, sent_lengths (B, S) int -> logits (B, C)."""
        return self.head(self.encode(tokens, sent_lengths))

    def encode(self, tokens: Tensor, sent_lengths: Tensor) -> Tensor:
        """tokens (B, S, L), sent_lengths (B, S) -> document vectors (B, D_doc)."""
        if tokens.dim() != 3 or sent_lengths.shape != tokens.shape[:2]:
            raise ValueError(
                f"tokens must be (B, S, L) and sent_lengths (B, S); got {tuple(tokens.shape)} "
                f"and {tuple(sent_lengths.shape)}"
            )
        sent_lengths = sent_lengths.to(device=tokens.device, dtype=torch.long)
        width = tokens.shape[2]
        if sent_lengths.numel() and (int(sent_lengths.min()) < 0 or int(sent_lengths.max()) > width):
            raise ValueError(f"sent_lengths must lie in [0, L={width}]")
        mask = _length_mask(sent_lengths, width)  # (B, S, L)
        # (T_all,): the real tokens, doc by doc, sentence by sentence
        ids = tokens.reshape(-1) if bool(mask.all()) else tokens[mask]
        x = self.embedding(ids.long())  # (T_all, E)
        kind = self.spec.composition
        doc_lengths = sent_lengths.sum(1)  # (B,)
        if kind == "flat" or (kind == "paragraph" and not self.spec.word_encoder.bidirectional):
            # paragraph's forward cell over the sentences one after another is the flat forward pass
            return self.word_encoder(_pad_flat(x, doc_lengths), doc_lengths)  # (B, D)
        nonempty = sent_lengths > 0  # (B, S): empty sentences count for nothing
        lengths = sent_lengths[nonempty]  # (N,) doc by doc
        per_doc = nonempty.sum(1)  # (B,) non-empty sentences per document
        if kind == "paragraph":
            return self._paragraph(x, doc_lengths, lengths, per_doc)
        sents = self.word_encoder(_pad_flat(x, lengths), lengths)  # (N, D)
        if kind == "average":
            doc_of = torch.repeat_interleave(torch.arange(len(per_doc), device=x.device), per_doc)  # (N,)
            summed = sents.new_zeros(len(per_doc), sents.shape[1]).index_add(0, doc_of, sents)
            return summed / per_doc.clamp(min=1).unsqueeze(-1).to(sents.dtype)
        assert self.composition is not None  # hierarchical
        return self.composition(_pad_flat(sents, per_doc), per_doc)  # (B, D_doc)

    def _paragraph(self, x: Tensor, doc_lengths: Tensor, lengths: Tensor, per_doc: Tensor) -> Tensor:
        """Bidirectional paragraph: forward cell over the whole document, backward cell per sentence."""
        enc = self.word_encoder
        assert isinstance(enc, RecurrentEncoder)
        fwd, fwd_last = enc.run(_pad_flat(x, doc_lengths), doc_lengths, direction=0)  # (B, T, H), (B, H)
        bwd, bwd_last = enc.run(_pad_flat(x, lengths), lengths, direction=1)  # (N, L', H), (N, H)
        bwd = _pad_flat(bwd[_length_mask(lengths, bwd.shape[1])], doc_lengths)  # (B, T, H) in token order
        outputs = torch.cat([fwd, bwd], dim=-1)  # (B, T, 2H)
        # `last`: the backward state after the first token of the document's last non-empty sentence
        last_sent = torch.cumsum(per_doc, 0) - 1  # (B,) index into the N sentences
        if len(lengths):
            bwd_doc = torch.where((per_doc > 0).unsqueeze(-1), bwd_last[last_sent.clamp(min=0)], 0.0)
        else:
            bwd_doc = torch.zeros_like(fwd_last)  # (B, H)
        return enc.pool(outputs, torch.cat([fwd_last, bwd_doc], dim=-1), doc_lengths)

    def predict_proba(self, docs: list[list[list[int]]]) -> Tensor:
        """Probabilities (D, C) in `labels` order for ragged token-id documents (eval mode, no autograd)."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                tokens, sent_lengths = encode_docs(docs)
                device = self.head.weight.device
                return torch.softmax(self(tokens.to(device), sent_lengths.to(device)), dim=-1)
        finally:
            self.train(was_training)


# ------------------------------------------------------------------------------------- init and I/O


def random_init_(model: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter with seeded uniform noise: embeddings in ±1, everything else in ±0.5."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if name.startswith("embedding.") else 0.5
            noise = torch.rand(p.shape, generator=gen, dtype=torch.float64) * (2 * scale) - scale
            p.copy_(noise.to(p.dtype))
    return model


def save_model_dir(model: SentimentModel, path: str | Path, config: dict) -> None:
    """Write `config.json` and `weights.safetensors` (float32 as trained) of `model` into directory `path`."""
    if parse_config(config) != model.spec:
        raise ModelFormatError("save_model_dir: config describes another architecture than the model")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": FORMAT})


def load_model_dir(path: str | Path) -> SentimentModel:
    """Read a model directory back (float32, eval mode); tensor names and shapes must match exactly."""
    path = Path(path)
    config = json.loads((path / CONFIG_FILE).read_text())
    model = SentimentModel(config)
    tensors = load_file(str(path / WEIGHTS_FILE))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFormatError(f"{path / WEIGHTS_FILE}: missing tensors {missing}, unexpected {unexpected}")
    for name, want in expected.items():
        if tensors[name].shape != want.shape:
            raise ModelFormatError(
                f"{path / WEIGHTS_FILE}: {name} has shape {list(tensors[name].shape)}, "
                f"config.json implies {list(want.shape)}"
            )
        if not tensors[name].is_floating_point():
            raise ModelFormatError(f"{path / WEIGHTS_FILE}: {name} is {tensors[name].dtype}; use float32/16")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return model.eval()
