"""Property tests: any text, whatever its Unicode, tokenizes without raising and within the limits, and the fast
path (`encode_batch`, NumPy packing) agrees with the plain path (`split` / `encode`) on every document."""

import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsent.text import Tokenizer, Vocab
from streamsent.text._pack import SEP, pack
from streamsent.text._rules import BOUNDARY_CHARS

# Pieces that exercise each rule, mixed with arbitrary characters (surrogates included).
FRAGMENTS = [
    "<br />", "<BR>", "<br/>", "<i>", "</i>", "<", ">", "&amp;", "&#39;", "&lt;br&gt;", "&#xd800;", "&", ";",
    ".", "!!!", "?", "...", "\u2026", "7", "7.5", "don't", "don\u2019t", "'", "\n", "\r\n", " ", "\t",
    "\U0001f600", "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\u200d", "\U0001f1fa\U0001f1f8", "\U0001f1fa",
    "\ud800", "\udfff", "\ud83d", "\ude00", "é", "e\u0301", "\u0301", "İ", "ß", "Σ", "_", "a", "Great",
    "film", "café", "日本", "\x00", "\ufffd", "\u2028",
]  # fmt: skip
any_char = st.characters(exclude_categories=())  # every code point, lone surrogates too
texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(any_char, max_size=4), st.characters(min_codepoint=0xD800,
                                                                                      max_codepoint=0xDFFF)),
    max_size=40,
).map("".join)  # fmt: skip
VOCAB = Vocab(["<pad>", "<unk>", "great", "film", "a", "7.5", "7", "don't", "\U0001f600", "café", "日本", "é"])
tokenizers = st.builds(
    Tokenizer,
    st.just(VOCAB),
    lowercase=st.booleans(),
    strip_html=st.booleans(),
    max_sentences=st.integers(1, 4),
    max_tokens_per_sentence=st.integers(1, 4),
)
common = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def unlimited(tok: Tokenizer) -> Tokenizer:
    return Tokenizer(tok.vocab, lowercase=tok.lowercase, strip_html=tok.strip_html, max_sentences=10**9,
                     max_tokens_per_sentence=10**9)  # fmt: skip


@common
@given(tok=tokenizers, docs=st.lists(st.one_of(texts, st.none()), max_size=6))
def test_encode_batch_agrees_with_the_plain_path_on_any_text(tok, docs):
    enc = tok.encode_batch(docs, with_tokens=True)  # never raises
    b = enc.batch  # DocBatch checked its own offsets on construction
    assert b.n_docs == len(docs)
    assert b.token_ids.dtype == np.int32
    assert np.all((b.token_ids >= 0) & (b.token_ids < len(tok.vocab)))
    assert np.all(b.token_ids != 0)  # the padding id never comes out of text
    lens = b.sentence_lengths()
    assert np.all(lens >= 1) and np.all(lens <= tok.max_tokens_per_sentence)  # no empty sentence, limit kept
    assert np.all(np.diff(b.doc_offsets) <= tok.max_sentences)

    full = unlimited(tok)
    expected_cut = []
    for d, text in enumerate(docs):
        text = text or ""
        sentences = full.split(text)
        cut = len(sentences) > tok.max_sentences or any(len(s) > tok.max_tokens_per_sentence for s in sentences)
        expected_cut.append(cut)
        limited = [s[: tok.max_tokens_per_sentence] for s in sentences[: tok.max_sentences]]
        assert tok.split(text) == limited
        assert b.to_lists()[d] == tok.encode(text) == [tok.vocab.ids_of(s) for s in limited]
    assert enc.truncated.tolist() == expected_cut

    assert enc.tokens is not None and len(enc.tokens) == b.n_tokens
    assert tok.vocab.ids_of(enc.tokens) == b.token_ids.tolist()
    for token in enc.tokens:
        assert token and not any(c.isspace() or (c in BOUNDARY_CHARS and c != ".") for c in token)
        assert not re.search(r"(?<!\d)\.|\.(?!\d)", token)  # only a "." between digits ("7.5") is in a word
        token.encode("utf-8")  # valid Unicode: no surrogate survives


@common
@given(tok=tokenizers, text=texts)
def test_tokenizing_the_tokens_again_changes_nothing(tok, text):
    full = unlimited(tok)
    sentences = full.split(text)
    assert full.split(". ".join(" ".join(s) for s in sentences)) == sentences


@common
@given(
    docs=st.lists(st.lists(st.one_of(st.integers(2, 9), st.just(SEP)), max_size=12), max_size=6),
    max_sentences=st.integers(1, 3),
    max_tokens=st.integers(1, 3),
)
def test_pack_matches_a_plain_loop(docs, max_sentences, max_tokens):
    flat = np.array([x for d in docs for x in d], dtype=np.int64)
    doc_lens = np.array([len(d) for d in docs], dtype=np.int64)
    batch, truncated, kept = pack(flat, doc_lens, max_sentences, max_tokens)

    expected, expected_cut = [], []
    for d in docs:
        sentences, current = [], []
        for x in [*d, SEP]:
            if x == SEP:
                if current:
                    sentences.append(current)
                current = []
            else:
                current.append(x)
        expected.append([s[:max_tokens] for s in sentences[:max_sentences]])
        expected_cut.append(len(sentences) > max_sentences or any(len(s) > max_tokens for s in sentences))
    assert batch.to_lists() == expected
    assert truncated.tolist() == expected_cut
    assert flat[kept].tolist() == batch.token_ids.tolist()
