"""The metrics recorder (fed by a real pipeline, and by hand with a controlled clock) and /metrics during a real run."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaProducer

import streamsent
from streamsent.runtime.batcher import MicroBatch
from streamsent.runtime.config import config_from_dict
from streamsent.runtime.metrics import LATENCY_BUCKETS, Metrics, top_words
from streamsent.runtime.pipeline import Pipeline
from streamsent.runtime.records import DeadLetter, Doc, Record
from streamsent.runtime.run import run_pipeline
from streamsent.runtime.scoring import score_docs
from streamsent.runtime.sinks import MemoryDeadLetterSink, MemorySink
from streamsent.runtime.sources import build_source

SAMPLE = Path(streamsent.__file__).parent / "data" / "samples" / "imdb-sample.jsonl"
BAD = [b"{not json", b"[1, 2]", b'{"doc_id": "e", "text": "  "}']


@pytest.fixture(scope="module")
def model():
    return streamsent.load_model()


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _doc(i: int, text: str, ts: float | None, received: float) -> Doc:
    rec = Record(value=b"", topic="t", partition=0, offset=i, received=received, timestamp=ts)
    return Doc(f"d{i}", None, text, None, {}, rec)


def test_recorder_counts_rates_latency_and_latest(model):
    clock = Clock()
    m = Metrics.for_model(model, max_docs=4, max_tokens=100, window_s=10, history_s=20, latest=3, clock=clock)
    texts = ["a wonderful, moving film", "dull and far too long", "superb acting. awful plot.", "I loved it"]
    for second in range(5):  # one batch of 4 docs a second; Kafka timestamps 0.2 s and 0.4 s before writing
        clock.t += 1
        docs = [_doc(4 * second + i, t, clock.t - (0.2 if i % 2 else 0.4), clock.t - 0.05) for i, t in enumerate(texts)]
        batch = MicroBatch(second, docs=docs, tokens=10)
        if second == 4:
            batch.letters.append(DeadLetter(Record(value=b"{x"), "invalid_json", "bad"))
        rows, _ = score_docs(model, docs, attention=True)
        m.record_batch(batch, rows, 0.003)
    m.set_lag({("t", 0): 7, ("t", 1): 0})
    clock.t += 0.5
    s = m.snapshot()
    assert s.docs == {"scored": 20, "dead_lettered": 1} and s.docs_total == 21
    assert s.dead_letters == {"invalid_json": 1}
    assert s.batches == 5 and s.tokens == 50
    assert s.docs_per_s == pytest.approx(21 / 5.5)  # the run is younger than the window: rate over its age
    assert s.tokens_per_s == pytest.approx(50 / 5.5)
    assert s.docs_per_s_history == (4.0, 4.0, 4.0, 4.0)  # whole seconds only; the running one is left out
    assert s.latency_p50_s == pytest.approx(0.3) and s.latency_p99_s == pytest.approx(0.4)
    assert s.batch_docs_mean == pytest.approx(21 / 5) and s.batch_tokens_mean == 10
    assert s.end_to_end_seconds.count == 20 and s.end_to_end_seconds.total == pytest.approx(20 * 0.3)
    assert dict(s.end_to_end_seconds.cumulative())[0.25] == 10  # the 0.2 s half
    assert s.batch_seconds.count == 5 and dict(s.batch_seconds.cumulative())[0.005] == 5
    assert s.lag == {("t", 0): 7, ("t", 1): 0}
    labels = model.predict(texts).column("label").to_pylist() * 5
    assert s.label_counts == {lab: labels.count(lab) for lab in model.labels}
    assert [d.doc_id for d in s.latest] == ["d19", "d18", "d17"]  # newest first
    assert s.latest[0].text == "I loved it" and s.latest[0].words[0] == "loved"
    assert s.model_name == model.config.name and s.model_version == model.config.version
    # ten seconds later the window is empty: rates and percentiles fall to zero / unknown, totals stay
    clock.t += 20
    later = m.snapshot()
    assert later.docs_per_s == 0 and later.latency_p50_s is None and later.docs_total == 21


def test_top_words_weigh_words_by_their_sentence():
    words = ["good", "film", "awful", "plot"]
    # "good" wins inside its sentence, but the second sentence carries the document
    assert top_words(words, [[0.9, 0.1], [0.7, 0.3]], [0.1, 0.9], k=2) == ("awful", "plot")
    assert top_words(words, [[0.9, 0.1], [0.7, 0.3]], None, k=2) == ("good", "awful")
    assert top_words(words, [[1.0]], None) == ()  # misaligned: nothing rather than wrong words
    assert top_words(["a", "gem", "i", "😍"], [[0.4, 0.2, 0.3, 0.1]], k=2) == ("gem", "😍")


def test_latency_buckets_follow_prometheus_le():
    m = Metrics(model_name="m", model_version="1", labels=["a", "b"], clock=Clock(0.0))
    docs = [_doc(i, "x", -b, 0.0) for i, b in enumerate(LATENCY_BUCKETS[:3])]  # now - ts == b exactly
    m.record_batch(MicroBatch(0, docs=docs, tokens=3), None, 0.0)
    counts = m.snapshot().end_to_end_seconds.counts
    assert counts[:3] == (1, 1, 1)  # an observation equal to a bound is in that bound's bucket (le)


def test_pipeline_feeds_the_recorder(tmp_path, model):
    lines = SAMPLE.read_bytes().splitlines()[:40] + BAD
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    cfg = config_from_dict({"source": {"type": "jsonl", "path": str(path)}, "sink": [{"type": "stdout"}]})
    m = Metrics.for_model(model, max_docs=8)
    sink = MemorySink()
    stats = Pipeline(build_source(cfg.source), model, [sink], MemoryDeadLetterSink(), max_docs=8, metrics=m).run()
    s = m.snapshot()
    assert s.docs == {"scored": 40, "dead_lettered": 3} == {"scored": stats.docs_scored,
                                                            "dead_lettered": sum(stats.dead_letters.values())}
    assert s.batches == stats.batches and s.end_to_end_seconds.count == 40
    assert sum(s.label_counts.values()) == 40
    assert sink.table().column_names[-1] == "extra"  # the attention the recorder asked for never reaches a sink
    last = json.loads(lines[39])
    assert s.latest[0].doc_id == last["doc_id"] and s.latest[0].words  # attended words of the newest document
    assert all(w.lower() in " ".join(last["text"].lower().split()) for w in s.latest[0].words)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_prometheus_counts_equal_the_documents_of_a_real_run(broker, fresh_topic, fast_group, tmp_path):
    topic = fresh_topic(2)
    good = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:30]]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    for i, raw in enumerate([json.dumps(r).encode() for r in good] + BAD):
        producer.send(topic, value=raw, partition=i % 2)
    producer.flush()
    producer.close()
    time.sleep(1.0)  # every message is over a second old when it is written, counted from its Kafka timestamp
    port = _free_port()
    out, dead = tmp_path / "scores.jsonl", tmp_path / "dead.jsonl"
    cfg = config_from_dict({
        "source": {"type": "kafka", "bootstrap": [broker.bootstrap], "topics": [topic], **fast_group},
        "sink": [{"type": "jsonl", "path": str(out)}], "dead_letter": {"type": "jsonl", "path": str(dead)},
        "batch": {"max_docs": 8, "max_wait_ms": 50}, "metrics": {"port": port, "dashboard": False}})
    runner = threading.Thread(target=run_pipeline, args=(cfg,),
                              kwargs={"stop_after_idle_s": 4.0, "install_signal_handlers": False})
    runner.start()
    scraped, deadline = None, time.monotonic() + 60
    while runner.is_alive() and time.monotonic() < deadline:
        try:
            scraped = _scrape(port)  # the last scrape before the run ends: everything is processed by then
        except OSError:
            pass
        time.sleep(0.25)
    runner.join(timeout=30)
    assert scraped is not None, "/metrics never answered"
    written = len(out.read_text().splitlines())
    dead_lettered = len(dead.read_text().splitlines())
    assert written == len(good) and dead_lettered == len(BAD)
    assert scraped['streamsent_docs_total{outcome="scored"}'] == written
    assert scraped['streamsent_docs_total{outcome="dead_lettered"}'] == dead_lettered
    assert scraped['streamsent_dead_letters_total{reason="invalid_json"}'] == 1
    assert scraped['streamsent_dead_letters_total{reason="not_an_object"}'] == 1
    assert scraped['streamsent_dead_letters_total{reason="empty_text"}'] == 1
    assert scraped["streamsent_end_to_end_seconds_count"] == written
    assert scraped["streamsent_batch_seconds_count"] == scraped["streamsent_batches_total"] >= len(good) / 8
    assert sum(v for k, v in scraped.items() if k.startswith("streamsent_labels_total")) == written
    lags = {k: v for k, v in scraped.items() if k.startswith("streamsent_consumer_lag")}
    assert lags == {f'streamsent_consumer_lag{{partition="{p}",topic="{topic}"}}': 0.0 for p in (0, 1)}
    model = next(k for k in scraped if k.startswith("streamsent_model_info"))
    assert re.search(r'name="imdb-han".*version="\d', model)
    # end to end counts from the messages' Kafka timestamps (not from when they were polled): all over a second
    assert scraped['streamsent_end_to_end_seconds_bucket{le="1.0"}'] == 0
