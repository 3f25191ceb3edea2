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
