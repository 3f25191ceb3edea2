"""`streamsent state inspect KEY`: one key's state summary from a checkpoint directory."""

from __future__ import annotations

import json

import pytest

from streamsent import Model
from streamsent.cli import main
from streamsent.errors import StateError
from streamsent.models.init import random_weights
from streamsent.runtime.state import KeyedScorer, save_checkpoint
from streamsent.runtime.state.inspect import inspect_key

from ..helpers import make_config
from .test_state_scorer import _word, doc


@pytest.fixture
def ckpt_dir(tmp_path):
    cfg = make_config(_word("lstm", False, "attention"), {"type": "paragraph"})
    model = Model(cfg, random_weights(cfg))
    scorer = KeyedScorer(model)
    for i in range(3):
        last = scorer.score([doc(f"m{i}", "chat-7", [[1 + i, 2, 3]], offset=40 + i)]).rows.to_pylist()[0]
    save_checkpoint(tmp_path, scorer.store, {("chats", 0): 43}, model="test@0", labels=cfg.labels)
    return tmp_path, last


def test_inspect_key_summary(ckpt_dir) -> None:
    directory, last = ckpt_dir
    s = inspect_key("chat-7", directory)
    assert s["messages"] == 3 and s["label"] == last["label"]
    labels = ("negative", "positive", "neutral")
    assert s["probs"] == {k: round(v, 6) for k, v in zip(labels, last["probs"], strict=True)}
    assert s["last_coordinate"] == {"topic": "chats", "partition": 0, "offset": 42}
    assert s["state"]["hidden"] == 6 and s["state"]["h_norm"] > 0 and "c_norm" in s["state"]
    with pytest.raises(StateError, match=r"'nope' is not in the checkpoint .* \(1 keys"):
        inspect_key("nope", directory)
    with pytest.raises(StateError, match="no state checkpoint"):
        inspect_key("chat-7", directory / "empty")


def test_cli_state_inspect(ckpt_dir, capsys) -> None:
    directory, last = ckpt_dir
    assert main(["state", "inspect", "chat-7", "--dir", str(directory), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 3
    assert main(["state", "inspect", "chat-7", "--dir", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "messages" in out and last["label"] in out
    assert main(["state", "inspect", "other", "--dir", str(directory)]) == 2
    assert "is not in the checkpoint" in capsys.readouterr().err


def test_inspect_a_window_mode_key(tmp_path) -> None:
    cfg = make_config(_word("gru", True, "attention"), {"type": "hierarchical", "encoder": _word("gru", True, "max")})
    scorer = KeyedScorer(Model(cfg, random_weights(cfg)), window=3)
    for i in range(3):
        scorer.score([doc(f"m{i}", "chat-8", [[1 + i], [2, 3]], offset=i)])
    save_checkpoint(tmp_path, scorer.store, {("chats", 0): 3}, model="test@0", labels=cfg.labels)
    s = inspect_key("chat-8", tmp_path)
    assert s["messages"] == 3 and s["state"]["window"] == 3 and s["state"]["sentences_in_window"] == 3
    assert s["state"]["sentence_dim"] == cfg.word_dim and s["state"]["last_sentence_norm"] > 0
