"""`streamsent check-config` runs every check `streamsent run` makes before it starts a broker (one copy of them,
`run.check_config`): a config that run would refuse at once is refused by both, with the same one line naming the
file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamsent.cli import main

ROOT = Path(__file__).resolve().parents[2]

EMBEDDED = ('[embedded]\nbroker = "tansu"\ntopic = "in"\n[source]\ntype = "kafka"\nbootstrap = "embedded"\n'
            'topics = ["in"]\n')


def _write(tmp_path: Path, source: str, model: str = "default", extra: str = "") -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(f'{source}\n[model]\npath = "{model}"\n[[sink]]\ntype = "stdout"\n{extra}')
    return path


def _check(capsys, path: Path) -> str:
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"streamsent: error: {path}: "), err
    return err[0]


def _run(path: Path) -> list[str]:
    """`streamsent run` in a subprocess: it must exit 2 before starting anything, so stderr is the one line."""
    run = subprocess.run([sys.executable, "-m", "streamsent", "run", "--config", str(path), "--no-dashboard"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ})
    assert run.returncode == 2, run.stderr[-2000:]
    return run.stderr.strip().splitlines()


def test_a_model_that_does_not_exist(tmp_path, capsys):
    """Was: check-config "ok"; run started the embedded broker, then failed loading the model."""
    path = _write(tmp_path, EMBEDDED, model="no-such-model")
    err = _check(capsys, path)
    assert "model.path = 'no-such-model'" in err and "no built-in model of that name (built-in: " in err
    assert _run(path) == [err]  # the same line, and no broker log before it


def test_a_model_directory_whose_config_does_not_read(tmp_path, capsys):
    (model := tmp_path / "model").mkdir()
    (model / "config.json").write_text("{not json")
    err = _check(capsys, _write(tmp_path, EMBEDDED, model=str(model)))
    assert f"model.path = '{model}'" in err


@pytest.mark.parametrize(("kind", "where", "why"), [
    ("jsonl", "in/*.jsonl", "the pattern matches no file"),
    ("jsonl", "in", "the directory holds no JSON-lines file"),
    ("arrow", "missing.arrow", "no such file or directory"),
    ("parquet", "in/*.parquet", "the pattern matches no file"),
    ("parquet", "in", "the directory holds no Parquet file"),
])
def test_a_file_source_with_no_input(tmp_path, capsys, kind, where, why):
    """Was: check-config "ok" for an input glob that matches nothing."""
    (tmp_path / "in").mkdir()
    path = _write(tmp_path, f'[source]\ntype = "{kind}"\npath = "{tmp_path / where}"\n')
    err = _check(capsys, path)
    assert f"source.path = '{tmp_path / where}'" in err and why in err, err
    if kind == "jsonl" and "*" in where:
        assert _run(path) == [err]


def test_a_replay_file_that_is_not_there(tmp_path, capsys):
    path = _write(tmp_path, EMBEDDED.replace("[source]", 'replay = "nope.jsonl"\n[source]'))
    assert "embedded.replay = 'nope.jsonl' is neither a file nor a bundled sample" in _check(capsys, path)


def test_a_good_config_is_ok(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"doc_id": "a", "text": "x"}\n')
    path = _write(tmp_path, f'[source]\ntype = "jsonl"\npath = "{tmp_path / "in"}/*.jsonl"\n')
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok (jsonl source, 1 sink(s), model default (imdb-han))"
