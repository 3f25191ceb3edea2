"""`streamsent score`: Parquet/Arrow files in (file, directory, glob), one Parquet file out, batch by batch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import streamsent
from streamsent import BatchError, ConfigError
from streamsent.cli import main
from streamsent.runtime.score import score_files

TEXTS = ["A wonderful, moving film with a superb cast.", "Dull and far too long. I hated it.", "",
         "Not bad at all <br /><br />The ending is great!", "Awful. Boring. A mess."]


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()  # the built-in default


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table({"doc_id": [f"r{offset + i}" for i in range(n)],
                     "text": [TEXTS[(offset + i) % len(TEXTS)] for i in range(n)],
                     "label": ["positive", "negative", "negative", "positive", "negative"][: 1] * n,
                     "stars": pa.array(np.arange(offset, offset + n), pa.int16())})


def test_scores_a_directory_in_small_batches_like_predict(tmp_path, model):
    (tmp_path / "in").mkdir()
    pq.write_table(_table(7), tmp_path / "in" / "a.parquet")
    pq.write_table(_table(6, offset=7), tmp_path / "in" / "b.parquet")
    s = score_files(model, tmp_path / "in", tmp_path / "out" / "scores.parquet", batch_rows=4, progress=False)
    out = pq.read_table(s.output)
    assert s.rows == out.num_rows == 13
    assert out.column_names == ["doc_id", "label", "score", "probs", "word_attention", "sentence_attention",
                                "input_label", "stars"]
    assert sorted(out.column("doc_id").to_pylist()) == sorted(f"r{i}" for i in range(13))
    direct = model.predict(pa.concat_tables([_table(7), _table(6, offset=7)]))
    got = dict(zip(out.column("doc_id").to_pylist(), out.column("probs").to_pylist(), strict=True))
    for doc_id, probs in zip(direct.column("doc_id").to_pylist(), direct.column("probs").to_pylist(), strict=True):
        assert (got[doc_id] is None) == (probs is None) == (doc_id in ("r2", "r7", "r12"))  # the empty text ""
        assert probs is None or np.allclose(got[doc_id], probs, atol=1e-6)
    assert s.unscored == 3 and out.column("label").null_count == out.column("score").null_count == 3
    assert out.column("stars").type == pa.int16()
    assert not list((tmp_path / "out").glob(".*partial"))


def test_glob_and_arrow_ipc_inputs(tmp_path, model):
    feather.write_feather(_table(3), tmp_path / "x1.arrow")
    feather.write_feather(_table(2, offset=3), tmp_path / "x2.arrow")
    s = score_files(model, str(tmp_path / "x*.arrow"), tmp_path / "o.parquet", progress=False)
    assert s.rows == 5 and pq.read_table(tmp_path / "o.parquet").num_rows == 5


def test_bad_inputs_are_clear_and_leave_no_output(tmp_path, model):
    pq.write_table(pa.table({"text": ["no ids"]}), tmp_path / "noid.parquet")
    with pytest.raises(BatchError, match="need 'doc_id' and 'text' or 'tokens'"):
        score_files(model, tmp_path / "noid.parquet", tmp_path / "o.parquet", progress=False)
    with pytest.raises(ConfigError, match="matches no file"):
        score_files(model, str(tmp_path / "nothing-*.parquet"), tmp_path / "o.parquet", progress=False)
    assert not (tmp_path / "o.parquet").exists()


def test_cli_score_and_predict(tmp_path):
    pq.write_table(_table(5), tmp_path / "in.parquet")
    run = subprocess.run([sys.executable, "-m", "streamsent", "score", str(tmp_path / "in.parquet"), "-o",
                          str(tmp_path / "out.parquet"), "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "scored 4 of 5 documents" in run.stderr and "1 not scored (no token" in run.stderr
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 5
    run = subprocess.run([sys.executable, "-m", "streamsent", "score", str(tmp_path / "missing.parquet"), "-o",
                          str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert run.returncode == 2 and "no such file or directory" in run.stderr


# Texts that hold no token the model could score: null, empty, whitespace, zero-width spaces, only punctuation.
NO_TOKEN = [None, "", "   \n\t", "\u200b\u200b", "?! ... --", "<br /><br />"]


def test_a_text_with_no_token_is_not_scored_by_predict_score_or_the_cli(tmp_path, model):
    """One rule (was: such text got a label, "positive 0.511", from the zero vector): null label, score and probs,
    the row kept in its place; `score` counts them in its summary line."""
    texts = [NO_TOKEN[0], "a wonderful film", *NO_TOKEN[1:], "\u200bdull\u200b"]
    table = model.predict(texts)
    labels = table.column("label").to_pylist()
    assert labels[1] in model.labels and labels[-1] in model.labels
    assert labels[0] is None and labels[2:-1] == [None] * (len(NO_TOKEN) - 1)
    for name in ("score", "probs", "word_attention", "sentence_attention"):
        assert table.column(name).null_count == len(NO_TOKEN), name
    assert table.column("doc_id").to_pylist() == list(range(len(texts)))
    pq.write_table(pa.table({"doc_id": [f"t{i}" for i in range(len(texts))], "text": texts}), tmp_path / "in.parquet")
    summary = score_files(model, tmp_path / "in.parquet", tmp_path / "out.parquet", batch_rows=3, progress=False)
    out = pq.read_table(tmp_path / "out.parquet")
    assert summary.rows == len(texts) and summary.unscored == len(NO_TOKEN)
    assert out.column("doc_id").to_pylist() == [f"t{i}" for i in range(len(texts))]
    assert out.column("label").to_pylist() == labels
    run = subprocess.run([sys.executable, "-m", "streamsent", "predict", "", "a wonderful film", "   "],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["label"] for r in rows] == [None, labels[1], None] and rows[0]["probs"] is rows[0]["score"] is None


def test_one_string_is_one_document(tmp_path, model):
    """Was: one row per character."""
    one = model.predict("a wonderful, moving film")
    assert one.num_rows == 1
    assert one.column("probs").to_pylist() == model.predict(["a wonderful, moving film"]).column("probs").to_pylist()
    assert model.encode("dull").n_docs == 1
    with pytest.raises(BatchError, match="got bytes: decode them first"):
        model.predict(b"a wonderful film")
    with pytest.raises(BatchError, match="document 1 is bytes"):
        model.predict(["fine", b"bytes"])
    mixed = model.predict(["fine", None])  # a None text (an Arrow null) beside strings: an empty document
    assert mixed.column("label").to_pylist()[1] is None
    run = subprocess.run([sys.executable, "-m", "streamsent", "predict", "one string"], capture_output=True, text=True)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 1, run.stderr


def _one_line_error(capsys, args: list[str]) -> str:
    """Run the CLI in-process: exit 2 and exactly one `streamsent: error:` line on stderr, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamsent: error: "), err
    return err[0]


def test_score_says_in_one_line_what_is_wrong_with_which_file(tmp_path, capsys):
    """Was: ArrowInvalid tracebacks for a file that is not Parquet or files whose columns disagree."""
    pq.write_table(_table(2), good := tmp_path / "good.parquet")
    out = ["-o", str(tmp_path / "o.parquet"), "--no-progress"]
    (not_parquet := tmp_path / "reviews.parquet").write_text("doc_id,text\nr1,a csv file\n")
    err = _one_line_error(capsys, ["score", str(not_parquet), *out])
    assert str(not_parquet) in err and "cannot be read as Parquet" in err
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pq.write_table(pa.table({"doc_id": [1, 2], "text": ["good", "bad"]}), mixed / "a.parquet")
    pq.write_table(pa.table({"doc_id": ["x"], "text": ["fine"]}), mixed / "b.parquet")  # doc_id: string, not int
    err = _one_line_error(capsys, ["score", str(mixed), *out])
    assert f"{mixed / 'b.parquet'}: cannot be read with the columns of {mixed / 'a.parquet'}" in err
    pq.write_table(pa.table({"doc_id": ["y"], "body": ["no text"]}), mixed / "c.parquet")  # checked before scoring
    err = _one_line_error(capsys, ["score", str(mixed), *out])
    assert f"{mixed / 'c.parquet'}: input rows need 'doc_id' and 'text'" in err
    (empty := tmp_path / "empty").mkdir()
    assert "the directory holds no Parquet file" in _one_line_error(capsys, ["score", str(empty), *out])
    (truncated := tmp_path / "cut.parquet").write_bytes(good.read_bytes()[:-20] + b"PAR1")
    assert str(truncated) in _one_line_error(capsys, ["score", str(truncated), *out])
    for bad_output in (good / "x.parquet", tmp_path):  # under a file; a directory
        err = _one_line_error(capsys, ["score", str(good), "-o", str(bad_output), "--no-progress"])
        assert f"output {str(bad_output)!r}" in err
    assert not (tmp_path / "o.parquet").exists() and not list(tmp_path.glob(".*partial"))

