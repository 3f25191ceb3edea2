"""One bad record never wedges the pipeline: a row a sink cannot take is dead-lettered (`sink_rejected`) and the
rest of its batch goes on; an outage (a `SinkError`) is what gets retried. Regression tests for issue 14's
cases, through the entry point where each was seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import streamsent
from streamsent.runtime.config import KafkaSinkConfig, config_from_dict
from streamsent.runtime.pipeline import Pipeline
from streamsent.runtime.sinks import MemoryDeadLetterSink, MemorySink
from streamsent.runtime.sinks.kafka import KafkaSink
from streamsent.runtime.sources import build_source

from .test_sinks import consume

SAMPLE = Path(streamsent.__file__).parent / "data" / "samples" / "imdb-sample.jsonl"
TEXTS = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_non_finite_pass_through_fields_are_written_as_null_by_streamsent_run(tmp_path: Path) -> None:
    """Issue 14 case 1: NaN in a pass-through field made the JSON-lines sink retry its batch forever."""
    src, out, dlq = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    odd = [b'{"doc_id":"nan","text":"ok","x":NaN}', b'{"doc_id":"inf","text":"fine","x":Infinity,"y":[-Infinity]}',
           b'{"doc_id":"big","text":"good film","x":1e999}']
    good = [json.dumps({"doc_id": f"g{i}", "text": TEXTS[i], "n": i}).encode() for i in range(12)]
    src.write_bytes(b"\n".join(good[:4] + odd + good[4:]) + b"\n")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[source]\ntype = "jsonl"\npath = "{src}"\n[batch]\nmax_docs = 4\n'
                   f'[[sink]]\ntype = "jsonl"\npath = "{out}"\n[dead_letter]\ntype = "jsonl"\npath = "{dlq}"\n')
    run = subprocess.run([sys.executable, "-m", "streamsent", "run", "--config", str(cfg), "--no-dashboard"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["doc_id"]: r for r in _lines(out)}
    assert sorted(rows) == sorted([f"g{i}" for i in range(12)] + ["nan", "inf", "big"])
    assert rows["nan"]["x"] is None and rows["inf"]["x"] is None and rows["inf"]["y"] == [None]
    assert rows["big"]["x"] is None and rows["g3"]["n"] == 3
    assert _lines(dlq) == []
    assert "retrying" not in run.stderr


class _PickySink(MemorySink):
    """A sink with a bug that one row sets off (an error that is no `SinkError`, naming no row)."""

    def __init__(self, poison: set[str]) -> None:
        super().__init__()
        self.poison = poison

    def write(self, rows: pa.Table) -> None:
        if self.poison & set(rows.column("doc_id").to_pylist()):
            raise ValueError("cannot take this row")
        super().write(rows)


@pytest.mark.parametrize("scorers", [1, 2])
def test_an_error_one_row_reproduces_dead_letters_that_row_only(tmp_path: Path, model, scorers: int) -> None:
    ids = [f"d{i}" for i in range(30)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"doc_id": d, "text": TEXTS[i]}) + "\n" for i, d in enumerate(ids)))
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    picky, plain, dead = _PickySink({"d5", "d17"}), MemorySink(), MemoryDeadLetterSink()
    stats = Pipeline(build_source(cfg.source), model, [plain, picky], dead, max_docs=8, max_wait_ms=20,
                     scorers=scorers).run()
    assert picky.table().column("doc_id").to_pylist() == [d for d in ids if d not in ("d5", "d17")]  # once each
    assert plain.table().column("doc_id").to_pylist() == ids  # the other sink could take every row
    assert [(x.reason, x.record.row) for x in dead.letters] == [("sink_rejected", 6), ("sink_rejected", 18)]
    assert all("cannot take this row" in x.detail for x in dead.letters)
    assert stats.write_retries == 0 and stats.docs_scored == 28
    assert stats.dead_letters == {"sink_rejected": 2}


def test_a_message_over_the_topics_limit_is_dead_lettered_not_retried(broker, fresh_topic, kafka_client: str,
                                                                      tmp_path: Path, model) -> None:
    """A scored row whose JSON outgrows the producer's message size limit (a large pass-through field) is the
    row's fault, not an outage: before, the sink raised a SinkError and the batch was retried forever."""
    topic = fresh_topic(1)
    path = tmp_path / "in.jsonl"
    docs = [{"doc_id": f"k{i}", "text": TEXTS[i], **({"blob": "x" * 5000} if i == 3 else {})} for i in range(10)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    sink = KafkaSink(KafkaSinkConfig(bootstrap=(broker.bootstrap,), topic=topic, linger_ms=0, client=kafka_client,
                                     max_request_size=4096), labels=model.labels, flush_timeout_s=30)
    dead = MemoryDeadLetterSink()
    try:
        stats = Pipeline(build_source(cfg.source), model, [sink], dead, max_docs=4, max_wait_ms=20).run()
    finally:
        sink.close()
    got = consume(broker.bootstrap, topic, 1, 9)
    assert sorted(json.loads(m.value)["doc_id"] for m in got) == sorted(f"k{i}" for i in range(10) if i != 3)
    assert [(x.reason, x.record.row) for x in dead.letters] == [("sink_rejected", 4)]
    assert "max" in dead.letters[0].detail and stats.write_retries == 0


def test_a_sink_outage_is_still_retried_and_shown(tmp_path: Path, model) -> None:
    """The other side of the rule: a `SinkError` is an outage, retried with back-off and counted in the metrics
    (shown on the dashboard and /metrics) until the sink recovers; nothing is dead-lettered for it."""
    from streamsent.runtime.metrics import Metrics
    from streamsent.runtime.sinks.base import SinkError

    class Flaky(MemorySink):
        failures = 2

        def flush(self) -> None:
            self.fail_flush = SinkError("broker away") if self.failures else None
            self.failures = max(0, self.failures - 1)
            super().flush()

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"doc_id": f"f{i}", "text": TEXTS[i]}) + "\n" for i in range(6)))
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    sink, dead = Flaky(), MemoryDeadLetterSink()
    metrics = Metrics.for_model(model)
    seen: list[str | None] = []
    metrics_retry = metrics.record_write_retry

    def spy(error: str) -> None:
        metrics_retry(error)
        seen.append(metrics.snapshot(latest=False).write_error)

    metrics.record_write_retry = spy  # type: ignore[method-assign]
    stats = Pipeline(build_source(cfg.source), model, [sink], dead, max_docs=16, max_wait_ms=20,
                     metrics=metrics).run()
    assert stats.write_retries == 2 and dead.letters == []
    assert sink.table().column("doc_id").to_pylist() == [f"f{i}" for i in range(6)]
    assert seen and all("broker away" in (e or "") for e in seen)
    snap = metrics.snapshot(latest=False)
    assert snap.write_retries == 2 and snap.write_error is None  # recovered



class _Allergic:
    """The real model, except that it raises (an error that is no StreamsentError) on one document's text."""

    def __init__(self, model, poison: str) -> None:
        self._model, self._poison = model, poison

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def predict(self, docs, **kwargs):
        if self._poison in docs.column("text").to_pylist():
            raise IndexError("a bug this one document sets off")
        return self._model.predict(docs, **kwargs)


def test_a_document_the_model_fails_on_is_dead_lettered_and_its_batch_goes_on(tmp_path: Path, model) -> None:
    """Any error one document reproduces alone is that document's: `scoring_failed`, the others are scored; an
    error that every document of a batch reproduces is the model's, and stops the pipeline (tested with a broken
    model in test_pipeline)."""
    texts = ["a fine film", "poison pill", "dull and long", "", "\u200b\u200b", "!!!"]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"doc_id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    sink, dead = MemorySink(), MemoryDeadLetterSink()
    Pipeline(build_source(cfg.source), _Allergic(model, "poison pill"), [sink], dead, max_docs=16).run()
    assert sink.table().column("doc_id").to_pylist() == ["p0", "p2"]
    reasons = {x.record.row: x.reason for x in dead.letters}
    assert reasons[2] == "scoring_failed" and "IndexError" in next(x.detail for x in dead.letters
                                                                   if x.record.row == 2)
    # no word to score, whichever way it is empty: the same empty_text as Model.predict's null label
    assert [reasons[r] for r in (4, 5, 6)] == ["empty_text"] * 3
