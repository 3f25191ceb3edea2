"""Vocab: token strings in id order, with the padding id 0 and the out-of-vocabulary id 1 fixed.

Fixing both ids (rather than reading them from a file) lets every model share `embedding.padding_idx = 0` and
lets kernels and tests name the OOV id without a tokenizer at hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType

from ..errors import ConfigError, ModelFormatError

__all__ = ["PAD_ID", "UNK_ID", "Vocab"]

PAD_ID = 0
UNK_ID = 1


class Vocab:
    """An immutable list of distinct, non-empty token strings; a token's id is its position."""

    __slots__ = ("_tokens", "_index")

    def __init__(self, tokens: Sequence[str], pad_token: str = "<pad>", unk_token: str = "<unk>") -> None:
        tokens = tuple(tokens)
        if len(tokens) < 2 or tokens[PAD_ID] != pad_token or tokens[UNK_ID] != unk_token:
            raise ModelFormatError(
                f"a vocabulary must start with the padding token {pad_token!r} (id 0) and the unknown-word "
                f"token {unk_token!r} (id 1), got {list(tokens[:2])!r}"
            )
        index: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if not isinstance(tok, str) or not tok:
                raise ModelFormatError(f"vocabulary token {i} must be a non-empty string, got {tok!r}")
            try:
                tok.encode("utf-8")
            except UnicodeEncodeError:
                raise ModelFormatError(f"vocabulary token {i} ({tok!r}) holds a lone surrogate") from None
            j = index.setdefault(tok, i)
            if j != i:
                raise ModelFormatError(f"vocabulary token {tok!r} appears twice (ids {j} and {i})")
        self._tokens = tokens
        self._index = index

    @classmethod
    def build(
        cls,
        tokens: Iterable[str] | Mapping[str, int],
        max_size: int | None = None,
        min_freq: int = 1,
        *,
        pad_token: str = "<pad>",
        unk_token: str = "<unk>",
    ) -> Vocab:
        """From a stream of tokens or a token → count mapping (e.g. a `Counter`).

        Most frequent first, ties in code-point order, so the same data always gives the same ids.
        `max_size` counts the two special tokens, so it equals the model's `embedding.vocab_size`.
        """
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
            raise ConfigError(
                f"max_size must be an int >= 2 (it counts {pad_token!r} and {unk_token!r}), got {max_size!r}"
            )
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(f"min_freq must be an int >= 1, got {min_freq!r}")
        counts = tokens if isinstance(tokens, Mapping) else Counter(tokens)
        kept = [(t, c) for t, c in counts.items() if c >= min_freq and t != pad_token and t != unk_token]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([pad_token, unk_token, *(t for t, _ in kept)], pad_token, unk_token)

    # -- lookups -----------------------------------------------------------------------------------------------
    def id_of(self, token: str) -> int:
        """The token's id, or `UNK_ID` (1) when it is not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def ids_of(self, tokens: Iterable[str]) -> list[int]:
        get = self._index.get
        return [get(t, UNK_ID) for t in tokens]

    def token_of(self, token_id: int) -> str:
        if not 0 <= token_id < len(self._tokens):
            raise IndexError(f"token id {token_id} is outside the vocabulary [0, {len(self._tokens)})")
        return self._tokens[token_id]

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order."""
        return self._tokens

    @property
    def index(self) -> Mapping[str, int]:
        """A read-only token → id mapping."""
        return MappingProxyType(self._index)

    @property
    def pad_token(self) -> str:
        return self._tokens[PAD_ID]

    @property
    def unk_token(self) -> str:
        return self._tokens[UNK_ID]

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._tokens[:6])
        return f"Vocab({len(self)} tokens: {head}{', ...' if len(self) > 6 else ''})"
