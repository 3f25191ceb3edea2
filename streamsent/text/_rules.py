"""The text rules: how raw text is cleaned, and what a sentence boundary, a word and an emoji are.

They live apart from `Tokenizer` so that the benchmark's alternative implementations (bench/tokenizer.py) use
the very same character classes and can be checked token for token against the package.

The tokenizer does one pass of `TOKEN_RE.findall` over the normalised text. A match is one of
- a word: a letter or digit, then letters, digits and combining marks, joined across an apostrophe between
  word characters ("don't", "rock'n'roll") or a "." between digits ("7.5", "v1.2"; that "." ends no sentence);
- an emoji: one pictograph, or a zero-width-joiner sequence of them, or a regional-indicator pair (a flag);
- a boundary: one of BOUNDARY_CHARS. A run such as "!!!" gives several boundaries, and so empty sentences,
  which the packer drops; that keeps boundaries single characters that the id lookup maps to SEP.
Everything else (spaces, other punctuation, symbols, U+FFFD) separates tokens and is dropped.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["BOUNDARY_CHARS", "EMOJI_CLASS", "TOKEN_PATTERN", "TOKEN_RE", "normalise"]

# Sentence ends and line breaks. "<br />" tags become "\n" first, so they are boundaries too.
BOUNDARY_CHARS = ".!?\u2026\u3002\uff01\uff1f\n\r\v\f\x85\u2028\u2029"


def _mark_class() -> str:
    """The combining marks (Unicode category M*) of the BMP as a character-class body, from this Python's tables.

    Marks continue a word ("i̇" from lowercasing "İ", Devanagari vowel signs) instead of splitting it; stdlib
    `re` has no \\p{M}. Marks outside the BMP (historic and a few minority scripts) are left out on purpose:
    a class with astral ranges is matched by linear search and made the whole tokenizer ~12% slower.
    """
    ranges: list[list[int]] = []
    for cp in range(0x10000):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


# Pictographs kept as tokens: they carry sentiment ("👍", "😡", "★★★★☆"). Skin tones and variation selectors
# are removed by `normalise`, so "👍🏽" and "👍" (and "❤️" and "❤") are one token.
EMOJI_CLASS = (
    "\u231a\u231b\u2328\u23cf\u23e9-\u23f3\u23f8-\u23fa"  # ⌚ ⏰ ⏳
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats: ☺ ☹ ♥ ★ ✨ ❤ ✔ ❌
    "\u2b00-\u2bff"  # ⭐ ⭕ ⬛ ⬅
    "\U0001f000-\U0001f1e5"  # mahjong, playing cards, enclosed alphanumerics (not the regional indicators)
    "\U0001f200-\U0001f3fa"  # enclosed ideographs, pictographs (up to the skin-tone modifiers)
    "\U0001f400-\U0001faff"  # pictographs, emoticons, transport, supplemental symbols
)
_REGIONAL = "\U0001f1e6-\U0001f1ff"
_MARKS = _mark_class()

_WORD_REST = rf"[\w{_MARKS}]*"
TOKEN_PATTERN = (
    rf"\w{_WORD_REST}(?:'\w{_WORD_REST}|(?<=\d)\.\d{_WORD_REST})*"  # word ("_" is replaced by a space beforehand)
    rf"|[{re.escape(BOUNDARY_CHARS)}]"  # sentence boundary
    rf"|[{EMOJI_CLASS}](?:\u200d[{EMOJI_CLASS}])*"  # emoji or ZWJ sequence
    rf"|[{_REGIONAL}]{{1,2}}"  # flag
)
TOKEN_RE = re.compile(TOKEN_PATTERN)

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_BR_RE = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)
_TAG_RE = re.compile(r"</?[A-Za-z!][^<>]*>")  # needs a letter, "!" or "/" after "<": "<3" and "a < b" stay
_EMOJI_MODIFIER_RE = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def normalise(text: str, *, lowercase: bool, strip_html: bool) -> str:
    """Clean one text for `TOKEN_RE`; never raises on any `str`.

    Order matters: entities are unescaped before tags are removed, so double-escaped markup ("&lt;br /&gt;")
    still breaks sentences; NFC comes after unescaping because entities can produce decomposed characters.
    Each step runs only when its trigger character is present, which keeps plain ASCII text cheap.
    """
    if not text.isascii() and _SURROGATE_RE.search(text):
        # Lone surrogates (e.g. from JSON "\ud800") become U+FFFD; a valid pair becomes its one character.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if strip_html:
        if "&" in text:
            text = html.unescape(text)
        if "<" in text:
            text = _BR_RE.sub("\n", text)
            if "<" in text:
                text = _TAG_RE.sub(" ", text)  # a space, not "", so "word<p>word" stays two words
    if not text.isascii():
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)  # "cafe\u0301" and "café" are one token
        text = _EMOJI_MODIFIER_RE.sub("", text)
        if "\u2019" in text:
            text = text.replace("\u2019", "'")  # typographic apostrophe: "don’t" is "don't"
    if lowercase:
        text = text.lower()
    if "_" in text:
        text = text.replace("_", " ")  # \w includes "_", words do not
    return text
