"""Tokenizer implementations side by side on synthetic movie reviews: docs/s and tokens/s.

    python bench/tokenizer.py [--docs 2000] [--repeats 5]

Every implementation applies the same rules (streamsent/text/_rules.py) and must produce exactly the package's
ids, offsets and truncation flags; a row that disagrees says so. Each figure is the median of `--repeats` runs
of encoding the whole corpus into one DocBatch, measured in this one process.
"""

from __future__ import annotations

import argparse
import html
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from itertools import chain, repeat

import numpy as np

from streamsent.text import EncodedDocs, Tokenizer
from streamsent.text._pack import SEP, pack
from streamsent.text._rules import BOUNDARY_CHARS, EMOJI_CLASS, TOKEN_PATTERN, normalise

# -- a synthetic review corpus ---------------------------------------------------------------------------------
_WORDS = (
    "the a and of to is in it this that was movie film I but for with as on not you he his are have be one all "
    "at they by an who so from like there her or just about out if has what some can good more when very up no "
    "time even she my would which story only really see their had we were me well than much been get bad will "
    "also do people other great because how first its most him made then them make way could characters too "
    "any after watch think acting plot seen character never life love best little show where over better off "
    "man scene scenes still say these here why director while something go end actors thing back performance "
    "don't it's can't didn't I'm doesn't isn't wasn't 7.5/10 10/10 (1999) 1/2 &amp; &#39;quote&#39; "
    "&quot;great&quot; <i>Casablanca</i> <b>must</b> AWFUL Brilliant - , ; : (really) well-made"
).split()
_NON_ASCII = (
    "café naïve Amélie Björk São Paulo über déjà vu façade résumé Zoë Ångström isn\u2019t don\u2019t — \u2026 "
    "😀 😂 👍🏽 👎 ❤️ 😡 🎬 🍿 ★★★★☆ 👨\u200d👩\u200d👧 🇺🇸"
).split()
_ENDS = (". ", ". ", ". ", "! ", "!!! ", "? ", "... ", "?! ", ".\n")


def make_reviews(n_docs: int, non_ascii_share: float = 0.5, seed: int = 0) -> list[str]:
    """IMDB-like reviews: 4-20 sentences of 5-25 words, paragraphs joined by "<br /><br />".

    Made-up names give the out-of-vocabulary rate of real text; `non_ascii_share` of the reviews carry
    accented words, typographic punctuation and emoji (the rest are pure ASCII, as many real reviews are).
    """
    rng = random.Random(seed)
    syllables = "ka lo mi ra ven tor sha li den bru gal mor fi ne zo".split()
    docs = []
    for _ in range(n_docs):
        fancy = rng.random() < non_ascii_share
        parts = []
        for s in range(rng.randint(4, 20)):
            words = []
            for _ in range(rng.randint(5, 25)):
                r = rng.random()
                if r < 0.04:
                    words.append("".join(rng.choices(syllables, k=rng.randint(2, 4))).capitalize())
                elif fancy and r < 0.10:
                    words.append(rng.choice(_NON_ASCII))
                else:
                    words.append(rng.choice(_WORDS))
            words[0] = words[0].capitalize()
            parts.append(" ".join(words) + rng.choice(_ENDS))
            if s % 5 == 4:
                parts.append("<br /><br />")
        docs.append("".join(parts).strip())
    return docs


# -- alternative implementations -------------------------------------------------------------------------------
def regex_package_encoder(tok: Tokenizer) -> Callable[[Sequence[str]], EncodedDocs] | None:
    """The package's rules with the third-party `regex` engine instead of stdlib `re`."""
    try:
        import regex
    except ImportError:
        return None
    findall = regex.compile(TOKEN_PATTERN).findall
    lookup = dict(tok.vocab.index) | dict.fromkeys(BOUNDARY_CHARS, SEP)
    s = tok.settings()

    def encode(texts: Sequence[str]) -> EncodedDocs:
        per_doc = [findall(normalise(t, lowercase=s["lowercase"], strip_html=s["strip_html"])) for t in texts]
        return _finish(per_doc, lookup, s)

    return encode


def hf_tokenizers_encoder(tok: Tokenizer, fast: bool) -> Callable[[Sequence[str]], EncodedDocs]:
    """Hugging Face `tokenizers`: normalizers + a Split pre-tokenizer + WordLevel, run in Rust on all cores.

    Python keeps the two steps `tokenizers` cannot do: lone surrogates (a Rust string cannot hold them) and
    HTML entities. Boundaries map to an extra id that becomes SEP, then the package's packer runs.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import WordLevel

    assert tok.lowercase and tok.strip_html, "this comparison encodes the default settings"
    sep_id = len(tok.vocab)
    vocab = dict(tok.vocab.index) | dict.fromkeys(BOUNDARY_CHARS, sep_id)
    hf = HFTokenizer(WordLevel(vocab, unk_token=tok.vocab.unk_token))
    hf.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"(?i)<br\s*/?\s*>"), "\n"),
        normalizers.Replace(Regex(r"</?[A-Za-z!][^<>]*>"), " "),
        normalizers.NFC(),
        normalizers.Replace(Regex("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]"), ""),
        normalizers.Replace("\u2019", "'"),
        normalizers.Lowercase(),
        normalizers.Replace("_", " "),
    ])  # fmt: skip
    w, rest = r"[\p{L}\p{N}]", r"[\p{L}\p{N}\p{M}]*"
    pattern = (
        rf"{w}{rest}(?:'{w}{rest}|(?<=\p{{Nd}})\.\p{{Nd}}{rest})*|[{BOUNDARY_CHARS}]"
        rf"|[{EMOJI_CLASS}](?:\x{{200D}}[{EMOJI_CLASS}])*|[\x{{1F1E6}}-\x{{1F1FF}}]{{1,2}}"
    )
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    encode_batch = hf.encode_batch_fast if fast else hf.encode_batch
    s = tok.settings()

    def prepare(t: str) -> str:
        if not t.isascii():
            t = t.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return html.unescape(t) if "&" in t else t

    def encode(texts: Sequence[str]) -> EncodedDocs:
        encs = encode_batch([prepare(t) for t in texts], add_special_tokens=False)
        per_doc = [e.ids for e in encs]
        doc_lens = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
        flat = np.fromiter(chain.from_iterable(per_doc), dtype=np.int64, count=int(doc_lens.sum()))
        flat[flat == sep_id] = SEP
        batch, truncated, _ = pack(flat, doc_lens, s["max_sentences"], s["max_tokens_per_sentence"])
        return EncodedDocs(batch, truncated)

    return encode


def plain_path_encoder(tok: Tokenizer) -> Callable[[Sequence[str]], EncodedDocs]:
    """`Tokenizer.encode` per text (Python loops per token), the oracle of the fast path."""
    from streamsent.batch import DocBatch

    def encode(texts: Sequence[str]) -> EncodedDocs:
        docs = [tok.encode(t) for t in texts]
        cut = [len(s) > tok.max_sentences or any(len(x) > tok.max_tokens_per_sentence for x in s)
               for s in map(tok._sentences, texts)]  # fmt: skip
        return EncodedDocs(DocBatch.from_lists(docs), np.array(cut, dtype=bool))

    return encode


def _finish(per_doc: list[list[str]], lookup: dict[str, int], s: dict) -> EncodedDocs:
    doc_lens = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
    flat_tokens = list(chain.from_iterable(per_doc))
    flat = np.fromiter(map(lookup.get, flat_tokens, repeat(1)), dtype=np.int64, count=len(flat_tokens))
    batch, truncated, _ = pack(flat, doc_lens, s["max_sentences"], s["max_tokens_per_sentence"])
    return EncodedDocs(batch, truncated)


# -- measurement -----------------------------------------------------------------------------------------------
def _same(a: EncodedDocs, b: EncodedDocs) -> bool:
    return (
        np.array_equal(a.batch.token_ids, b.batch.token_ids)
        and np.array_equal(a.batch.sent_offsets, b.batch.sent_offsets)
        and np.array_equal(a.batch.doc_offsets, b.batch.doc_offsets)
        and np.array_equal(a.truncated, b.truncated)
    )


def _timed(encode: Callable[[Sequence[str]], EncodedDocs], texts: list[str], repeats: int) -> float:
    """Median seconds to encode `texts`, after one warm-up run."""
    encode(texts)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode(texts)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _setup(args: argparse.Namespace) -> tuple[list[str], Tokenizer]:
    texts = make_reviews(args.docs, args.non_ascii_share)
    return texts, Tokenizer.build(texts[: len(texts) // 2], max_vocab=args.vocab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=5000, help="vocabulary size, built from half the reviews")
    ap.add_argument("--non-ascii-share", type=float, default=0.5)
    ap.add_argument("--hf-one-thread", action="store_true", help=argparse.SUPPRESS)  # the child run below
    args = ap.parse_args()
    texts, tok = _setup(args)
    if args.hf_one_thread:
        print(_timed(hf_tokenizers_encoder(tok, fast=True), texts, args.repeats))
        return

    import tokenizers

    reference = tok.encode_batch(texts)
    b = reference.batch
    print(f"{len(texts)} reviews ({args.non_ascii_share:.0%} with non-ASCII), {sum(map(len, texts)) / len(texts):.0f} "
          f"chars, {b.n_sentences / len(texts):.1f} sentences and {b.n_tokens / len(texts):.0f} tokens per review, "
          f"OOV {np.mean(b.token_ids == 1):.1%}")  # fmt: skip
    print(f"Python {platform.python_version()}, tokenizers {tokenizers.__version__}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} runs")  # fmt: skip
    impls = {
        "re (stdlib): streamsent.text": tok.encode_batch,
        "regex package, same rules": regex_package_encoder(tok),
        "tokenizers encode_batch": hf_tokenizers_encoder(tok, fast=False),
        "tokenizers encode_batch_fast": hf_tokenizers_encoder(tok, fast=True),
        "re, plain path (encode per text)": plain_path_encoder(tok),
    }
    print(f"{'implementation':<40}{'docs/s':>10}{'tokens/s':>12}  same ids")
    for name, encode in impls.items():
        if encode is None:
            print(f"{name:<40}{'not installed':>22}")
            continue
        same = _same(encode(texts), reference)
        dt = _timed(encode, texts, args.repeats)
        print(f"{name:<40}{len(texts) / dt:>10,.0f}{b.n_tokens / dt:>12,.0f}  {'yes' if same else 'NO'}")
    # tokenizers runs on every core; its one-core speed shows the cost per core that scoring competes for.
    child = subprocess.run(
        [sys.executable, __file__, "--hf-one-thread", *sys.argv[1:]],
        env=os.environ | {"TOKENIZERS_PARALLELISM": "false"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    dt = float(child.stdout.strip().splitlines()[-1])
    print(f"{'tokenizers encode_batch_fast, 1 thread':<40}{len(texts) / dt:>10,.0f}{b.n_tokens / dt:>12,.0f}  yes")


if __name__ == "__main__":
    main()
