"""Tokenizer: raw text → sentences → normalised word tokens → ids, with limits and truncation recorded.

One compiled stdlib `re` pass per text, chosen by measurement over Hugging Face `tokenizers` (see
bench/tokenizer.py and the module docstring of `_rules` for the exact rules). In short:
- sentences end at runs of . ! ? … (not a "." between digits: "7.5" is one token), at line breaks and at
  `<br>`/`<br/>`/`<br />` (any case); other HTML tags are removed and entities unescaped (`strip_html`);
- words are runs of letters and digits with inner apostrophes ("don't", "it's"; "’" counts as "'");
  other punctuation is dropped; each emoji is a token of its own (they carry sentiment), without its skin tone;
- text is NFC-normalised and lowercased (`lowercase`); lone surrogates become U+FFFD and are dropped;
- empty sentences are dropped, so empty or whitespace-only text is a document with zero sentences.

`encode_batch` is the fast path (one dict lookup per token, then NumPy); `split` / `encode` are the plain path
for one text and serve as its oracle in the tests.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import DocBatch
from ..errors import BatchError, ConfigError, ModelFormatError
from ._pack import SEP, pack
from ._rules import BOUNDARY_CHARS, TOKEN_RE, normalise
from .vocab import UNK_ID, Vocab

__all__ = ["FORMAT", "EncodedDocs", "Tokenizer"]

FORMAT = "streamsent-tokenizer/1"
_BOUNDARIES = frozenset(BOUNDARY_CHARS)
_KEYS = ("format", "lowercase", "strip_html", "max_sentences", "max_tokens_per_sentence", "pad_token",
         "unk_token", "vocab")  # fmt: skip


@dataclass(frozen=True)
class EncodedDocs:
    """The result of `Tokenizer.encode_batch`: what the model scores, and what was cut to get it."""

    batch: DocBatch
    truncated: np.ndarray  # bool[D]: max_sentences or max_tokens_per_sentence cut something from document d
    tokens: np.ndarray | None = None  # object[T]: the normalised word behind each id (encode_batch(with_tokens=True))

    def __len__(self) -> int:
        return self.batch.n_docs


class Tokenizer:
    """Normalisation settings plus a `Vocab`; immutable, so one instance may serve many threads."""

    def __init__(
        self,
        vocab: Vocab,
        *,
        lowercase: bool = True,
        strip_html: bool = True,
        max_sentences: int = 64,
        max_tokens_per_sentence: int = 128,
    ) -> None:
        if not isinstance(vocab, Vocab):
            raise ConfigError(f"vocab must be a streamsent.text.Vocab, got {type(vocab).__name__}")
        for name, value in (("lowercase", lowercase), ("strip_html", strip_html)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        for name, value in (("max_sentences", max_sentences), ("max_tokens_per_sentence", max_tokens_per_sentence)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        self._vocab = vocab
        self._lowercase = lowercase
        self._strip_html = strip_html
        self._max_sentences = max_sentences
        self._max_tokens = max_tokens_per_sentence
        # The id lookup of the fast path: vocabulary ids, plus SEP for each boundary character.
        self._lookup = dict(vocab.index)
        self._lookup.update(dict.fromkeys(BOUNDARY_CHARS, SEP))

    # -- settings ----------------------------------------------------------------------------------------------
    @property
    def vocab(self) -> Vocab:
        return self._vocab

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    @property
    def strip_html(self) -> bool:
        return self._strip_html

    @property
    def max_sentences(self) -> int:
        return self._max_sentences

    @property
    def max_tokens_per_sentence(self) -> int:
        return self._max_tokens

    def settings(self) -> dict[str, Any]:
        """The normalisation settings as keyword arguments of the constructor."""
        return {
            "lowercase": self._lowercase,
            "strip_html": self._strip_html,
            "max_sentences": self._max_sentences,
            "max_tokens_per_sentence": self._max_tokens,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"Tokenizer(vocab of {len(self._vocab)}, {args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # equality by value, but a vocabulary is too big to hash often

    # -- building and files ------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, texts: Iterable[str | None], *, max_vocab: int = 30000, min_freq: int = 1, **settings: Any
    ) -> Tokenizer:
        """Count the words of `texts` and keep the `max_vocab` most frequent (ties alphabetically).

        Words are counted before the limits cut anything (more data for the vocabulary); `None` texts are
        skipped. `max_vocab` includes "<pad>" and "<unk>", so it is the model's `embedding.vocab_size`.
        """
        probe = cls(Vocab(["<pad>", "<unk>"]), **settings)  # checks the settings before the long count
        counts: Counter[str] = Counter()
        for text in texts:
            if text is not None:  # an Arrow null, as in encode_batch
                counts.update(probe._raw_tokens(_check_text(text)))
        for b in BOUNDARY_CHARS:
            counts.pop(b, None)
        return cls(Vocab.build(counts, max_size=max_vocab, min_freq=min_freq), **settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **self.settings(),
            "pad_token": self._vocab.pad_token,
            "unk_token": self._vocab.unk_token,
            "vocab": list(self._vocab.tokens),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "tokenizer") -> Tokenizer:
        """From the parsed `tokenizer.json`; errors name `source`, the key, and expected vs actual."""

        def bad(key: str, expected: str, actual: Any) -> ModelFormatError:
            shown = repr(actual) if not isinstance(actual, list | dict) else f"a {type(actual).__name__}"
            return ModelFormatError(f"{source}: key {key!r}: expected {expected}, got {shown}")

        if not isinstance(data, dict):
            raise ModelFormatError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise bad("format", repr(FORMAT), data.get("format", "nothing (the key is missing)"))
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise ModelFormatError(f"{source}: key {missing[0]!r} is missing (required: {', '.join(_KEYS)})")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ModelFormatError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(_KEYS)})")
        for key in ("lowercase", "strip_html"):
            if not isinstance(data[key], bool):
                raise bad(key, "true or false", data[key])
        for key in ("max_sentences", "max_tokens_per_sentence"):
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, "an integer >= 1", v)
        for key in ("pad_token", "unk_token"):
            if not isinstance(data[key], str) or not data[key]:
                raise bad(key, "a non-empty string", data[key])
        tokens = data["vocab"]
        if not isinstance(tokens, list):
            raise bad("vocab", "a list of token strings in id order", tokens)
        try:
            vocab = Vocab(tokens, pad_token=data["pad_token"], unk_token=data["unk_token"])
        except ModelFormatError as exc:
            raise ModelFormatError(f"{source}: key 'vocab': {exc}") from None
        return cls(vocab, **{k: data[k] for k in ("lowercase", "strip_html", "max_sentences",
                                                  "max_tokens_per_sentence")})  # fmt: skip

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load `tokenizer.json` (format `streamsent-tokenizer/1`)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelFormatError(f"{path}: tokenizer file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{path}: cannot read the tokenizer file: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `tokenizer.json` atomically, one vocabulary token per line (line number = token id + 10)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    # -- the plain path: one text ------------------------------------------------------------------------------
    def split(self, text: str) -> list[list[str]]:
        """Sentences of normalised word tokens, as the model sees them (limits applied)."""
        return [s[: self._max_tokens] for s in self._sentences(_check_text(text))[: self._max_sentences]]

    def encode(self, text: str) -> list[list[int]]:
        """Sentences of token ids (limits applied); equals one document of `encode_batch`."""
        get = self._vocab.index.get
        return [[get(t, UNK_ID) for t in s] for s in self.split(text)]

    def decode_ids(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Token strings of ids, e.g. for the most-attended words; an OOV word comes back as "<unk>"."""
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        return [self._vocab.token_of(i) for i in ids]

    # -- the fast path: many texts -----------------------------------------------------------------------------
    def encode_batch(self, texts: Sequence[str | None] | Any, *, with_tokens: bool = False) -> EncodedDocs:
        """Encode many texts into one `DocBatch`. A `None` text (an Arrow null) is an empty document.

        `texts` may also be a pyarrow string array or chunked array. With `with_tokens`, the result also holds
        the normalised word behind every id, so explanations can show OOV words too.
        """
        texts = _check_texts(texts)
        lowercase, strip_html, findall = self._lowercase, self._strip_html, TOKEN_RE.findall
        per_doc = [findall(normalise(t, lowercase=lowercase, strip_html=strip_html)) for t in texts]
        doc_lens = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
        flat_tokens = list(chain.from_iterable(per_doc))
        flat = np.fromiter(map(self._lookup.get, flat_tokens, repeat(UNK_ID)), dtype=np.int64, count=len(flat_tokens))
        batch, truncated, kept = pack(flat, doc_lens, self._max_sentences, self._max_tokens)
        tokens = None
        if with_tokens:
            tokens = np.empty(len(flat_tokens), dtype=object)
            tokens[:] = flat_tokens
            tokens = tokens[kept]
        return EncodedDocs(batch=batch, truncated=truncated, tokens=tokens)

    # -- internals ---------------------------------------------------------------------------------------------
    def _raw_tokens(self, text: str) -> list[str]:
        """Words and single boundary characters, in order, before any limit."""
        return TOKEN_RE.findall(normalise(text, lowercase=self._lowercase, strip_html=self._strip_html))

    def _sentences(self, text: str) -> list[list[str]]:
        """All non-empty sentences of `text`, no limits."""
        sentences: list[list[str]] = []
        current: list[str] = []
        for tok in self._raw_tokens(text):
            if tok in _BOUNDARIES:
                if current:
                    sentences.append(current)
                    current = []
            else:
                current.append(tok)
        if current:
            sentences.append(current)
        return sentences


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise BatchError(f"text must be a str, got {type(text).__name__}")
    return text


def _check_texts(texts: Any) -> list[str]:
    if hasattr(texts, "to_pylist"):  # pyarrow Array / ChunkedArray of strings
        texts = texts.to_pylist()
    elif isinstance(texts, str | bytes):
        raise BatchError("encode_batch takes a sequence of texts, got a single text; wrap it in a list")
    texts = list(texts)
    if all(type(t) is str for t in texts):
        return texts
    out: list[str] = []
    for i, t in enumerate(texts):
        if t is None:
            out.append("")
        elif isinstance(t, str):
            out.append(t)
        else:
            raise BatchError(f"text {i} must be a str or None, got {type(t).__name__}")
    return out
