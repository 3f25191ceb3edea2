from collections import Counter

import pytest

from streamsent.errors import ConfigError, ModelFormatError
from streamsent.text import PAD_ID, UNK_ID, Vocab


def test_special_ids_are_fixed():
    v = Vocab(["<pad>", "<unk>", "good", "bad"])
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert v.id_of("<pad>") == 0 and v.id_of("<unk>") == 1
    assert v.pad_token == "<pad>" and v.unk_token == "<unk>"
    assert v.id_of("good") == 2 and v.id_of("bad") == 3
    assert len(v) == 4
    assert v.tokens == ("<pad>", "<unk>", "good", "bad")


def test_oov_maps_to_unk_id():
    v = Vocab(["<pad>", "<unk>", "good"])
    assert v.id_of("terrible") == UNK_ID
    assert v.ids_of(["good", "terrible", "good"]) == [2, 1, 2]
    assert "terrible" not in v and "good" in v


def test_build_orders_by_frequency_then_alphabetically():
    v = Vocab.build("b a c a b a d".split())  # a:3, b:2, c:1, d:1
    assert v.tokens == ("<pad>", "<unk>", "a", "b", "c", "d")


def test_build_is_deterministic_whatever_the_insertion_order():
    words = "x y z x y z w".split()
    assert Vocab.build(words) == Vocab.build(list(reversed(words)))
    assert Vocab.build(words).tokens[2:] == ("x", "y", "z", "w")


def test_build_from_counter_equals_build_from_tokens():
    words = "the film the plot the end film".split()
    assert Vocab.build(Counter(words)) == Vocab.build(words)
    assert Vocab.build(iter(words)) == Vocab.build(words)


def test_build_max_size_counts_the_special_tokens():
    v = Vocab.build("a a a b b c".split(), max_size=4)
    assert len(v) == 4
    assert v.tokens == ("<pad>", "<unk>", "a", "b")
    assert len(Vocab.build("a b".split(), max_size=2)) == 2


def test_build_min_freq_drops_rare_tokens():
    v = Vocab.build("a a a b b c".split(), min_freq=2)
    assert v.tokens[2:] == ("a", "b")
    assert v.id_of("c") == UNK_ID


def test_build_ignores_the_special_tokens_in_the_data():
    v = Vocab.build(["<unk>", "<unk>", "<pad>", "a"])
    assert v.tokens == ("<pad>", "<unk>", "a")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_size": 1}, "max_size"), ({"max_size": True}, "max_size"), ({"min_freq": 0}, "min_freq")],
)
def test_build_rejects_bad_limits(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Vocab.build(["a"], **kwargs)


@pytest.mark.parametrize(
    ("tokens", "match"),
    [
        (["<unk>", "<pad>", "a"], "must start with"),
        (["<pad>"], "must start with"),
        (["<pad>", "<unk>", "a", "b", "a"], "'a' appears twice \\(ids 2 and 4\\)"),
        (["<pad>", "<unk>", ""], "token 2 must be a non-empty string"),
        (["<pad>", "<unk>", 5], "token 2 must be a non-empty string"),
        (["<pad>", "<unk>", "a\ud800"], "lone surrogate"),
    ],
)
def test_constructor_rejects_malformed_vocabularies(tokens, match):
    with pytest.raises(ModelFormatError, match=match):
        Vocab(tokens)


def test_custom_special_tokens():
    v = Vocab(["[PAD]", "[UNK]", "a"], pad_token="[PAD]", unk_token="[UNK]")
    assert v.pad_token == "[PAD]" and v.id_of("zzz") == 1
    with pytest.raises(ModelFormatError):
        Vocab(["[PAD]", "[UNK]", "a"])  # the default names do not match


def test_token_of_checks_bounds():
    v = Vocab(["<pad>", "<unk>", "a"])
    assert v.token_of(2) == "a"
    with pytest.raises(IndexError, match="outside the vocabulary \\[0, 3\\)"):
        v.token_of(3)
    with pytest.raises(IndexError):
        v.token_of(-1)


def test_index_is_read_only():
    v = Vocab(["<pad>", "<unk>", "a"])
    assert dict(v.index) == {"<pad>": 0, "<unk>": 1, "a": 2}
    with pytest.raises(TypeError):
        v.index["b"] = 3  # type: ignore[index]
