"""`streamsent eval` and `evaluate`: documents with no token, and files that cannot be evaluated (one-line errors)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamsent
from streamsent.cli import main
from streamsent.evaluate import evaluate

TEXTS = ["A wonderful, moving film with a superb cast.", "Dull and far too long. I hated it.",
         "Great story, great acting, a joy to watch.", "An awful mess with a boring plot."]
LABELS = ["positive", "negative", "positive", "negative"]


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()


def test_documents_with_no_token_are_counted_apart_not_scored(tmp_path, model, capsys):
    """They have no predicted label, so they are left out of accuracy, F1 and the confusion matrix and counted as
    unscored (they were scored from the zero vector before)."""
    table = pa.table({"doc_id": list("abcdef"), "text": [*TEXTS, "", "   "], "label": [*LABELS, "positive",
                                                                                       "negative"]})
    report = evaluate(model, table)
    assert report.n_docs == 4 and report.unscored == 2 and report.confusion.sum() == 4
    assert report.accuracy == 1.0 and report.probs.shape == (4, 2) and len(report.y_true) == 4
    assert report.torch_agreement in (None, 1.0)
    data = tmp_path / "labelled.parquet"
    pq.write_table(table, data)
    assert main(["eval", "--data", str(data), "--json", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["unscored"] == 2 and "not scored" in out


def _one_line_error(capsys, args: list[str]) -> str:
    """Run the CLI in-process: exit 2 and exactly one `streamsent: error:` line on stderr, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamsent: error: "), err
    return err[0]


def test_eval_says_in_one_line_what_is_wrong_with_which_file(tmp_path, capsys):
    """Was: a KeyError traceback for a file without the label column."""
    pq.write_table(pa.table({"doc_id": ["a"], "text": ["good"], "stars": [5]}), data := tmp_path / "nolabel.parquet")
    err = _one_line_error(capsys, ["eval", "--data", str(data), "--no-torch"])
    assert str(data) in err and "no label column 'label'" in err and "stars" in err
    pq.write_table(pa.table({"doc_id": ["a"], "body": ["good"], "label": ["positive"]}), data)
    assert "needs a 'text' or a 'tokens' column" in _one_line_error(capsys, ["eval", "--data", str(data)])
    (data := tmp_path / "reviews.parquet").write_text("not parquet at all")
    assert f"{data}: cannot be read as Parquet" in _one_line_error(capsys, ["eval", "--data", str(data)])
    (data := tmp_path / "bad.csv").write_bytes(b'text,label\n"unterminated,positive\n')
    assert f"{data}: cannot be read as CSV" in _one_line_error(capsys, ["eval", "--data", str(data)])
