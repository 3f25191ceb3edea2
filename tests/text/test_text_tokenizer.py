import json

import numpy as np
import pyarrow as pa
import pytest

from streamsent.errors import BatchError, ConfigError
from streamsent.text import EncodedDocs, Tokenizer, Vocab

WORDS = ["<pad>", "<unk>", "the", "film", "was", "great", "bad", "i", "loved", "it", "don't", "café", "😀", "👍"]


@pytest.fixture
def tok() -> Tokenizer:
    return Tokenizer(Vocab(WORDS))


def split(text: str, **settings) -> list[list[str]]:
    return Tokenizer(Vocab(WORDS), **settings).split(text)


# -- empty input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", " ", "   \t  ", "\n\n\r\n", "<br /><br />", "...!!!???", "&nbsp;", "\ud800"])
def test_text_without_words_is_an_empty_document(tok, text):
    assert tok.split(text) == []
    assert tok.encode(text) == []
    enc = tok.encode_batch([text, "great film"])
    assert enc.batch.doc_offsets.tolist() == [0, 0, 1]
    assert enc.truncated.tolist() == [False, False]


def test_batch_of_only_empty_documents(tok):
    enc = tok.encode_batch(["", "  ", None])
    assert enc.batch.n_docs == 3 and enc.batch.n_sentences == 0 and enc.batch.n_tokens == 0
    assert enc.batch.doc_offsets.tolist() == [0, 0, 0, 0]
    assert enc.batch.sent_offsets.tolist() == [0]


def test_empty_batch(tok):
    enc = tok.encode_batch([])
    assert enc.batch.n_docs == 0 and enc.truncated.shape == (0,) and len(enc) == 0


# -- sentences -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("br", ["<br />", "<br/>", "<br>", "<BR>", "<Br />", "<br / >", "<br  />"])
def test_html_breaks_split_sentences(br):
    assert split(f"first part{br}second part") == [["first", "part"], ["second", "part"]]


def test_runs_of_punctuation_are_one_boundary():
    assert split("Wow!!! Really?! Fine... ok.") == [["wow"], ["really"], ["fine"], ["ok"]]
    assert split("a\u2026b") == [["a"], ["b"]]  # the ellipsis character


def test_newlines_split_sentences():
    assert split("one line\ntwo line\r\nthree") == [["one", "line"], ["two", "line"], ["three"]]


def test_a_dot_between_digits_is_part_of_a_number():
    assert split("I give it 7.5/10. Next") == [["i", "give", "it", "7.5", "10"], ["next"]]
    assert split("Rated 10.The end") == [["rated", "10"], ["the", "end"]]


def test_typical_imdb_review():
    text = (
        "This movie was GREAT!!! I loved it.<br /><br />The acting &amp; the plot... don&#39;t miss it. "
        "<i>Really</i>, 10/10 \U0001f44d"
    )
    assert split(text) == [
        ["this", "movie", "was", "great"],
        ["i", "loved", "it"],
        ["the", "acting", "the", "plot"],
        ["don't", "miss", "it"],
        ["really", "10", "10", "\U0001f44d"],
    ]


# -- HTML ------------------------------------------------------------------------------------------------------
def test_other_tags_are_removed_without_joining_words():
    assert split("<i>great</i> film") == [["great", "film"]]
    assert split("word<p>word") == [["word", "word"]]
    assert split('<a href="x.html">link</a>') == [["link"]]


def test_text_that_only_looks_like_a_tag_is_kept():
    assert split("I <3 it, 3 < 5 > 2") == [["i", "3", "it", "3", "5", "2"]]


def test_entities_are_unescaped():
    assert split("Tom &amp; Jerry&#39;s &quot;best&quot; &eacute;t&eacute;") == [["tom", "jerry's", "best", "été"]]
    assert split("one&lt;br /&gt;two") == [["one"], ["two"]]  # escaped markup is still markup


def test_strip_html_off_keeps_markup_as_text():
    assert split("a<br />b &amp; c", strip_html=False) == [["a", "br", "b", "amp", "c"]]


# -- words -----------------------------------------------------------------------------------------------------
def test_apostrophes_inside_words_are_kept():
    assert split("Don't, it's, DON\u2019T rock'n'roll") == [["don't", "it's", "don't", "rock'n'roll"]]
    assert split("'tis the students' 'quoted'") == [["tis", "the", "students", "quoted"]]


def test_punctuation_and_underscores_are_not_tokens():
    assert split("well-made (really), snake_case; a:b") == [["well", "made", "really", "snake", "case", "a", "b"]]


def test_lowercase_is_configurable():
    assert split("Great FILM") == [["great", "film"]]
    assert split("Great FILM", lowercase=False) == [["Great", "FILM"]]


def test_non_ascii_words(tok):
    assert split("Café naïve Björk São Ångström straße") == [["café", "naïve", "björk", "são", "ångström", "straße"]]
    assert split("Привет мир. 日本語") == [["привет", "мир"], ["日本語"]]
    # NFC: a decomposed "é" is the same token as the composed one
    assert tok.encode("cafe\u0301") == tok.encode("caf\u00e9") == [[WORDS.index("café")]]


def test_combining_marks_continue_a_word():
    assert split("İstanbul") == [["i\u0307stanbul"]]  # "İ".lower() is "i" + a combining dot
    assert split("हिंदी") == [["हिंदी"]]  # vowel signs are marks


# -- emoji -----------------------------------------------------------------------------------------------------
def test_each_emoji_is_a_token():
    assert split("Loved it😍👍") == [["loved", "it", "\U0001f60d", "\U0001f44d"]]
    assert split("★★★☆☆") == [["★", "★", "★", "☆", "☆"]]


def test_skin_tones_and_variation_selectors_are_dropped(tok):
    assert split("\U0001f44d\U0001f3fd \u2764\ufe0f") == [["\U0001f44d", "\u2764"]]
    assert tok.encode("\U0001f44d\U0001f3fd") == tok.encode("\U0001f44d") == [[WORDS.index("👍")]]


def test_joined_emoji_and_flags_are_one_token():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert split(f"{family} \U0001f1fa\U0001f1f8") == [[family, "\U0001f1fa\U0001f1f8"]]


# -- broken Unicode --------------------------------------------------------------------------------------------
def test_lone_surrogates_do_not_raise(tok):
    assert split("a\ud800b \udfff c") == [["a", "b", "c"]]
    enc = tok.encode_batch(["\ud800", "x\udc00y", "great\ud83d"])
    assert enc.batch.doc_offsets.tolist() == [0, 0, 1, 2]
    assert tok.decode_ids(enc.batch.token_ids) == ["<unk>", "<unk>", "great"]


def test_a_surrogate_pair_from_json_is_one_character():
    assert split("\ud83d\ude00") == [["\U0001f600"]]  # json.loads('"\\ud83d\\ude00"') gives a valid pair anyway
    assert split(json.loads('"\\ud83d"')) == []


# -- ids -------------------------------------------------------------------------------------------------------
def test_out_of_vocabulary_words_get_id_1(tok):
    assert tok.encode("the film was dreadful") == [[2, 3, 4, 1]]


def test_decode_ids(tok):
    assert tok.decode_ids([2, 3, 1, 0]) == ["the", "film", "<unk>", "<pad>"]
    assert tok.decode_ids(np.array([5], dtype=np.int32)) == ["great"]
    with pytest.raises(IndexError):
        tok.decode_ids([len(WORDS)])


# -- limits ----------------------------------------------------------------------------------------------------
def test_max_sentences_keeps_the_first_sentences_and_flags_truncation():
    t = Tokenizer(Vocab(WORDS), max_sentences=2)
    assert t.split("a. b. c.") == [["a"], ["b"]]
    enc = t.encode_batch(["a. b. c.", "a. b.", "a"])
    assert enc.batch.to_lists() == [[[1], [1]], [[1], [1]], [[1]]]
    assert enc.truncated.tolist() == [True, False, False]


def test_max_tokens_per_sentence_cuts_each_sentence_and_flags_truncation():
    t = Tokenizer(Vocab(WORDS), max_tokens_per_sentence=2)
    assert t.split("the film was great. i loved it. the film") == [["the", "film"], ["i", "loved"], ["the", "film"]]
    enc = t.encode_batch(["the film was great", "the film", "great!!! the film"])
    assert enc.batch.to_lists() == [[[2, 3]], [[2, 3]], [[5], [2, 3]]]
    assert enc.truncated.tolist() == [True, False, False]


def test_empty_sentences_do_not_count_towards_max_sentences():
    t = Tokenizer(Vocab(WORDS), max_sentences=2)
    enc = t.encode_batch(["...a!!! ?? b..."])
    assert enc.batch.to_lists() == [[[1], [1]]]
    assert not enc.truncated[0]


# -- the batch -------------------------------------------------------------------------------------------------
def test_encode_batch_equals_encode_per_text(tok):
    texts = ["The film was great. I loved it!", "", "bad. bad. bad", "café 😀 don't<br />the end", None]
    enc = tok.encode_batch(texts)
    assert isinstance(enc, EncodedDocs)
    assert enc.batch.to_lists() == [tok.encode(t or "") for t in texts]
    assert enc.batch.token_ids.dtype == np.int32


def test_encode_batch_accepts_arrow_strings_with_nulls(tok):
    arr = pa.array(["great film", None, "bad"])
    assert tok.encode_batch(arr).batch.to_lists() == [[[5, 3]], [], [[6]]]
    chunked = pa.chunked_array([["great"], [None, "bad"]])
    assert tok.encode_batch(chunked).batch.to_lists() == [[[5]], [], [[6]]]


def test_encode_batch_rejects_what_is_not_text(tok):
    with pytest.raises(BatchError, match="text 1 must be a str or None, got bytes"):
        tok.encode_batch(["ok", b"bytes"])
    with pytest.raises(BatchError, match="wrap it in a list"):
        tok.encode_batch("a single text")
    with pytest.raises(BatchError, match="must be a str"):
        tok.split(None)  # type: ignore[arg-type]


def test_with_tokens_keeps_the_words_behind_the_ids(tok):
    enc = tok.encode_batch(["The film was dreadful!", "Superb 😀"], with_tokens=True)
    assert enc.tokens is not None
    assert enc.tokens.tolist() == ["the", "film", "was", "dreadful", "superb", "😀"]
    assert enc.batch.token_ids.tolist() == [2, 3, 4, 1, 1, 12]
    assert tok.encode_batch(["x"]).tokens is None


# -- building --------------------------------------------------------------------------------------------------
def test_build_counts_normalised_words():
    texts = ["Great film!!! Great.", "great <br /> FILM &amp; plot", "plot"]
    t = Tokenizer.build(texts, max_vocab=4, max_sentences=8)
    assert t.vocab.tokens == ("<pad>", "<unk>", "great", "film")
    assert t.max_sentences == 8 and t.lowercase
    assert Tokenizer.build(texts, min_freq=2).vocab.tokens[2:] == ("great", "film", "plot")


def test_build_skips_none_and_rejects_non_text():
    assert Tokenizer.build(["good", None, "good bad"]).vocab.tokens == ("<pad>", "<unk>", "good", "bad")
    with pytest.raises(BatchError, match="got int"):
        Tokenizer.build(["good", 3])


def test_build_never_puts_boundaries_in_the_vocabulary():
    t = Tokenizer.build(["a. b! c? d\n e\u2026"])
    assert set(t.vocab.tokens[2:]) == {"a", "b", "c", "d", "e"}


def test_build_checks_settings_first():
    def texts():
        raise AssertionError("texts must not be read when the settings are wrong")
        yield ""

    with pytest.raises(ConfigError, match="max_sentences"):
        Tokenizer.build(texts(), max_sentences=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lowercase": "yes"}, "lowercase must be true or false, got 'yes'"),
        ({"strip_html": 1}, "strip_html"),
        ({"max_sentences": 0}, "max_sentences must be an int >= 1, got 0"),
        ({"max_tokens_per_sentence": 2.5}, "max_tokens_per_sentence"),
        ({"max_tokens_per_sentence": True}, "max_tokens_per_sentence"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Tokenizer(Vocab(WORDS), **kwargs)
