"""The pipeline end to end with real parts: files and a real broker in, scores and dead letters out,
offsets committed only for what was durably written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

import streamsent
from streamsent.runtime.config import config_from_dict
from streamsent.runtime.pipeline import Pipeline
from streamsent.runtime.sinks import MemoryDeadLetterSink, MemorySink
from streamsent.runtime.sources import build_source

from .helpers import committed_offsets

SAMPLE = Path(streamsent.__file__).parent / "data" / "samples" / "imdb-sample.jsonl"

BAD = [  # (raw bytes, expected dead-letter reason)
    (b"{not json", "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"text": "no id"}', "missing_doc_id"),
    (b'{"doc_id": "", "text": "empty id"}', "missing_doc_id"),
    (b'{"doc_id": "w1", "text": 42}', "wrong_type"),
    (b'{"doc_id": "w2", "tokens": "nope"}', "wrong_type"),
    (b'{"doc_id": "u1", "text": "caf\xe9 latin-1"}', "invalid_utf8"),
    (b'{"doc_id": "e1", "text": "   "}', "empty_text"),
    (b'{"doc_id": "t1", "tokens": [[1, 2, 99999999]]}', "token_out_of_range"),
    (b'{"doc_id": "b1", "text": "x", "tokens": [[1]]}', "ambiguous_content"),
    (b'{"doc_id": "n1"}', "missing_content"),
]


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()


def _good(n: int) -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()][:n]
    for r in rows:
        r["doc_id"] = f"{r['doc_id']}-{uuid.uuid4().hex[:4]}"
    return rows


def _expected(model, rows):
    t = model.predict([r["text"] for r in rows])
    return {r["doc_id"]: p for r, p in zip(rows, t.column("probs").to_pylist(), strict=True)}


def _check_rows(sink: MemorySink, expected: dict, model) -> None:
    table = sink.table()
    ids = table.column("doc_id").to_pylist()
    assert sorted(ids) == sorted(expected), "every good document scored exactly once"
    for doc_id, probs in zip(ids, table.column("probs").to_pylist(), strict=True):
        assert np.allclose(probs, expected[doc_id], atol=1e-6)
    assert set(table.column("model").to_pylist()) == {f"{model.config.name}@{model.config.version}"}


@pytest.mark.parametrize("scorers", [1, 3])
def test_jsonl_file_to_memory_with_dead_letters(tmp_path, model, scorers):
    good = _good(30)
    lines = [json.dumps(r).encode() for r in good]
    for i, (raw, _) in enumerate(BAD):
        lines.insert(2 * i + 1, raw)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    sink, dead = MemorySink(), MemoryDeadLetterSink()
    stats = Pipeline(build_source(cfg.source), model, [sink], dead, max_docs=7, max_wait_ms=20,
                     scorers=scorers).run()
    _check_rows(sink, _expected(model, good), model)
    # batches may be scored side by side, but they are written in the order they were read
    assert sink.table().column("doc_id").to_pylist() == [r["doc_id"] for r in good]
    assert sorted(letter.reason for letter in dead.letters) == sorted(reason for _, reason in BAD)
    assert all(letter.record.file == str(path) and letter.record.row for letter in dead.letters)
    assert stats.records == len(lines) and stats.docs_scored == len(good)
    assert sum(stats.dead_letters.values()) == len(BAD)
    # the original bytes survive in the envelope, base64 when they are not UTF-8
    env = next(letter for letter in dead.letters if letter.reason == "invalid_utf8").envelope(1000)
    assert env["payload_encoding"] == "base64" and env["row"] > 0


@pytest.mark.parametrize("scorers", [1, 2])
def test_kafka_round_trip_dead_letters_and_commits(broker, fresh_topic, fast_group, model, scorers):
    topic = fresh_topic(3)
    good = _good(40)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False,
                             max_request_size=12_000_000)
    sent_per_partition = {0: 0, 1: 0, 2: 0}
    msgs = [(json.dumps(r).encode(), None) for r in good] + list(BAD)
    # a 10 MB message (noida refuses messages over 1 MB, so there it is 600 kB; the pipeline's limit is 500 kB)
    huge = 5_000_000 if broker.backend != "noida" else 300_000
    msgs.append((json.dumps({"doc_id": "huge", "text": "x " * huge}).encode(), "too_large"))
    for i, (raw, _) in enumerate(msgs):
        producer.send(topic, value=raw, partition=i % 3)
        sent_per_partition[i % 3] += 1
    producer.flush()
    producer.close()
    cfg = config_from_dict({"source": {"type": "kafka", "bootstrap": [broker.bootstrap], "topics": [topic],
                                       "group_id": fast_group["group_id"], "session_timeout_ms": 6000,
                                       "heartbeat_interval_ms": 1000, "max_partition_fetch_bytes": 12_000_000,
                                       "fetch_max_bytes": 24_000_000},
                            "sink": [{"type": "stdout"}]})
    sink, dead = MemorySink(), MemoryDeadLetterSink()
    source = build_source(cfg.source, bootstrap=broker.bootstrap)
    try:
        Pipeline(source, model, [sink], dead, max_docs=16, max_wait_ms=50, max_message_bytes=500_000,
                 scorers=scorers).run(stop_after_idle_s=3)
    finally:
        source.close()
    _check_rows(sink, _expected(model, good), model)
    assert sorted(letter.reason for letter in dead.letters) == sorted(r for _, r in BAD + [(b"", "too_large")])
    assert all(letter.record.topic == topic and letter.record.offset is not None for letter in dead.letters)
    # every message, good or bad, is committed: the group resumes after the last one
    assert committed_offsets(broker.bootstrap, fast_group["group_id"], topic, 3) == sent_per_partition


class _FailingModel:
    """The real model, until batch `fail_at`: then a crash that is not bad input (a bug, out of memory)."""

    def __init__(self, model, fail_at: int) -> None:
        self._model, self._calls, self._fail_at = model, 0, fail_at
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def predict(self, *args, **kwargs):
        with self._lock:
            self._calls += 1
            if self._calls == self._fail_at:
                raise MemoryError("scorer crashed")
        return self._model.predict(*args, **kwargs)


@pytest.mark.parametrize("scorers", [1, 2])
def test_a_scorer_crash_stops_the_pipeline_and_writes_nothing_after_it(tmp_path, model, scorers):
    """A crash in a scorer surfaces on the polling thread (no hang), and no batch read after the crashed one is
    written, so the committed position never passes a batch that was not written."""
    good = _good(40)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    sink = MemorySink()
    pipe = Pipeline(build_source(cfg.source), _FailingModel(model, 3), [sink], MemoryDeadLetterSink(), max_docs=5,
                    max_wait_ms=20, scorers=scorers)
    with pytest.raises(RuntimeError, match="scorer crashed"):
        pipe.run()
    written = sink.table().column("doc_id").to_pylist() if sink.tables else []
    assert written == [r["doc_id"] for r in good][: len(written)] and len(written) <= 10  # batches 1-2 at most


def _run_cli(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsent", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_quickstart_runs_on_the_embedded_broker_and_prints_scores(tmp_path):
    run = _run_cli(["run", "--config", "configs/quickstart.toml", "--stop-after-idle", "3"],
                   env={"STREAMSENT__EMBEDDED__REPLAY_RATE": "0",
                        "STREAMSENT__DEAD_LETTER__PATH": str(tmp_path / "dlq.jsonl")})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    n = len(SAMPLE.read_text().splitlines())
    assert len(lines) == n, run.stdout[-2000:]
    assert sum("positive" in line for line in lines) > n // 4 and sum("negative" in line for line in lines) > n // 4


def test_config_errors_exit_2_with_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\ntype = "kafka"\ntopics = ["t"]\nmax_poll_records = "many"\n[[sink]]\ntype = "stdout"\n')
    run = _run_cli(["run", "--config", str(bad)])
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "source.max_poll_records" in err[0] and str(bad) in err[0]
