"""`streamsent score`: Parquet/Arrow files in (file, directory, glob), one Parquet file out, batch by batch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import streamsent
from streamsent import BatchError, ConfigError
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
        assert np.allclose(got[doc_id], probs, atol=1e-6)
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
    assert "scored 5 documents" in run.stderr and pq.read_table(tmp_path / "out.parquet").num_rows == 5
    run = subprocess.run([sys.executable, "-m", "streamsent", "score", str(tmp_path / "missing.parquet"), "-o",
                          str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert run.returncode == 2 and "no such file or directory" in run.stderr
