import json
import re

import pytest

from streamsent.errors import ModelFormatError
from streamsent.text import Tokenizer, Vocab

GOOD = {
    "format": "streamsent-tokenizer/1",
    "lowercase": True,
    "strip_html": True,
    "max_sentences": 64,
    "max_tokens_per_sentence": 128,
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "vocab": ["<pad>", "<unk>", "great", "café", "😀"],
}


def write(tmp_path, data) -> str:
    path = tmp_path / "tokenizer.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_save_load_round_trip(tmp_path):
    tok = Tokenizer(
        Vocab(["<pad>", "<unk>", "great", "café", "don't", "😀", "i\u0307stanbul"]),
        lowercase=False,
        strip_html=False,
        max_sentences=3,
        max_tokens_per_sentence=7,
    )
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = Tokenizer.from_file(path)
    assert loaded == tok
    assert loaded.vocab.tokens == tok.vocab.tokens
    assert loaded.settings() == {"lowercase": False, "strip_html": False, "max_sentences": 3,
                                 "max_tokens_per_sentence": 7}  # fmt: skip
    assert loaded.encode("Great café 😀. x") == tok.encode("Great café 😀. x")
    assert not (tmp_path / "tokenizer.json.tmp").exists()


def test_saved_file_is_the_documented_format_and_easy_to_read(tmp_path):
    tok = Tokenizer(Vocab(["<pad>", "<unk>", "café"]))
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {**GOOD, "vocab": ["<pad>", "<unk>", "café"]}
    assert "café" in text  # not \u-escaped
    lines = text.splitlines()
    assert lines[9:12] == ['  "<pad>",', '  "<unk>",', '  "café"']  # one token per line: line id + 10


def test_load_the_documented_example(tmp_path):
    tok = Tokenizer.from_file(write(tmp_path, GOOD))
    assert tok.max_sentences == 64 and tok.max_tokens_per_sentence == 128
    assert tok.encode("Great 😀!! Awful") == [[2, 4], [1]]


def expect_error(tmp_path, data, *fragments):
    path = write(tmp_path, data)
    with pytest.raises(ModelFormatError) as info:
        Tokenizer.from_file(path)
    msg = str(info.value)
    assert path in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ModelFormatError, match=re.escape(str(tmp_path / "nope.json")) + ".*not found"):
        Tokenizer.from_file(tmp_path / "nope.json")


def test_invalid_json(tmp_path):
    expect_error(tmp_path, '{"format": ', "not valid JSON")


def test_not_an_object(tmp_path):
    expect_error(tmp_path, [1, 2], "expected a JSON object, got list")


def test_wrong_format(tmp_path):
    expect_error(tmp_path, {**GOOD, "format": "hf-tokenizer/2"}, "'format'", "'streamsent-tokenizer/1'",
                 "'hf-tokenizer/2'")  # fmt: skip


def test_missing_format(tmp_path):
    data = {k: v for k, v in GOOD.items() if k != "format"}
    expect_error(tmp_path, data, "'format'", "expected 'streamsent-tokenizer/1'", "missing")


@pytest.mark.parametrize("key", [k for k in GOOD if k != "format"])
def test_missing_key(tmp_path, key):
    data = {k: v for k, v in GOOD.items() if k != key}
    expect_error(tmp_path, data, f"key {key!r} is missing")


def test_unknown_key(tmp_path):
    expect_error(tmp_path, {**GOOD, "lowercse": True}, "unknown key 'lowercse'")


@pytest.mark.parametrize(
    ("key", "value", "expected", "actual"),
    [
        ("lowercase", "yes", "true or false", "'yes'"),
        ("strip_html", 1, "true or false", "1"),
        ("max_sentences", 0, "an integer >= 1", "0"),
        ("max_sentences", True, "an integer >= 1", "True"),
        ("max_tokens_per_sentence", 12.5, "an integer >= 1", "12.5"),
        ("pad_token", "", "a non-empty string", "''"),
        ("unk_token", None, "a non-empty string", "None"),
        ("vocab", {"a": 1}, "a list of token strings", "a dict"),
    ],
)
def test_wrong_value(tmp_path, key, value, expected, actual):
    expect_error(tmp_path, {**GOOD, key: value}, f"key {key!r}", f"expected {expected}", f"got {actual}")


@pytest.mark.parametrize(
    ("vocab", "fragment"),
    [
        (["<unk>", "<pad>", "a"], "must start with"),
        (["<pad>", "<unk>", "a", "a"], "'a' appears twice"),
        (["<pad>", "<unk>", 3], "token 2 must be a non-empty string"),
    ],
)
def test_bad_vocabulary(tmp_path, vocab, fragment):
    expect_error(tmp_path, {**GOOD, "vocab": vocab}, "key 'vocab'", fragment)


def test_special_tokens_must_match_the_vocabulary(tmp_path):
    expect_error(tmp_path, {**GOOD, "unk_token": "[UNK]"}, "key 'vocab'", "'[UNK]'")


def test_from_dict_names_its_source():
    with pytest.raises(ModelFormatError, match="^models/x/tokenizer.json: key 'lowercase'"):
        Tokenizer.from_dict({**GOOD, "lowercase": None}, source="models/x/tokenizer.json")
    assert Tokenizer.from_dict(GOOD).to_dict() == GOOD
