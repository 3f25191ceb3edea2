"""Faults with real processes and a real broker: a worker killed with SIGKILL and restarted, two workers in one
group (one killed), a broker restart. Every input doc_id must reach the output at least once.

The worker-kill tests run on Tansu: noida-db 0.2.3 never expires the session of a member that died without
leaving the group (seen: a new member still had no partitions 40 s after the old one was SIGKILLed, with
session_timeout_ms=6000), so no consumer group can take over from a killed worker there. The broker-restart
test needs noida, the broker that keeps its data across a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer

import streamsent
from streamsent.runtime.broker import EmbeddedBroker

from .helpers import BrokerUnderTest, require_backend

SAMPLE = Path(streamsent.__file__).parent / "data" / "samples" / "imdb-sample.jsonl"
TEXTS = [json.loads(line)["text"] for line in SAMPLE.read_text().split("\n") if line]


@pytest.fixture(scope="module")
def tansu():
    require_backend("tansu")
    with EmbeddedBroker("tansu") as b:
        yield BrokerUnderTest("tansu", b.bootstrap, b)


def _config(tmp: Path, name: str, bootstrap: str, topic: str, group: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f"""
[source]
type = "kafka"
bootstrap = ["{bootstrap}"]
topics = ["{topic}"]
group_id = "{group}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
max_poll_records = 50

[batch]
max_docs = 16
max_wait_ms = 50

[[sink]]
type = "jsonl"
path = "{tmp / (name + '.jsonl')}"

[dead_letter]
type = "jsonl"
path = "{tmp / (name + '-dlq.jsonl')}"
""")
    return path


def _start(config: Path, idle: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamsent", "run", "--config", str(config),
                             "--stop-after-idle", str(idle)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _produce(bootstrap: str, topic: str, n: int, tag: str) -> list[str]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    ids = [f"{tag}-{i}" for i in range(n)]
    for i, doc_id in enumerate(ids):
        producer.send(topic, json.dumps({"doc_id": doc_id, "text": TEXTS[i % len(TEXTS)]}).encode())
    producer.flush()
    producer.close()
    return ids


def _ids(path: Path) -> Counter:
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["doc_id"] for line in path.read_text().splitlines() if line.strip())


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen, timeout: float = 90) -> None:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"worker did not stop by itself: {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]


def test_sigkill_mid_stream_then_restart_loses_nothing(tansu, tmp_path):
    broker = tansu
    topic = broker.create_topic(f"kill-{uuid.uuid4().hex[:8]}", 3)
    sent = _produce(broker.bootstrap, topic, 600, "k")
    cfg = _config(tmp_path, "w", broker.bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}")
    worker = _start(cfg, idle=30)
    _wait_for(lambda: sum(_ids(tmp_path / "w.jsonl").values()) >= 40, 90, "the first scores")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = sum(_ids(tmp_path / "w.jsonl").values())
    assert before < len(sent), "the kill came after the end: the test proves nothing"
    _finish(_start(cfg, idle=4))
    seen = _ids(tmp_path / "w.jsonl")
    assert set(sent) <= set(seen), f"lost: {sorted(set(sent) - set(seen))[:10]}"
    dupes = sum(c - 1 for c in seen.values())
    print(f"[{broker.backend}] killed after {before} rows; {dupes} duplicates after restart (at-least-once)")


def test_two_workers_share_partitions_and_one_takes_over(tansu, tmp_path):
    broker = tansu
    topic = broker.create_topic(f"two-{uuid.uuid4().hex[:8]}", 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = _start(_config(tmp_path, "a", broker.bootstrap, topic, group), idle=60)
    b = _start(_config(tmp_path, "b", broker.bootstrap, topic, group), idle=12)
    try:
        time.sleep(6)  # both join the group
        sent = _produce(broker.bootstrap, topic, 400, "first")
        _wait_for(lambda: sum(_ids(tmp_path / "a.jsonl").values()) + sum(_ids(tmp_path / "b.jsonl").values())
                  >= 400, 90, "the first 400 scores")
        assert _ids(tmp_path / "a.jsonl") and _ids(tmp_path / "b.jsonl"), "the partitions were not shared"
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        sent += _produce(broker.bootstrap, topic, 200, "second")
        _finish(b, timeout=120)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    seen = _ids(tmp_path / "a.jsonl") + _ids(tmp_path / "b.jsonl")
    assert set(sent) <= set(seen), f"lost: {sorted(set(sent) - set(seen))[:10]}"
    assert {d for d in _ids(tmp_path / "b.jsonl") if d.startswith("second")} == {d for d in sent
                                                                                 if d.startswith("second")}


def test_broker_restart_mid_stream_the_worker_recovers(tmp_path):
    require_backend("noida")  # the broker that keeps its data across a restart
    with EmbeddedBroker("noida", data_dir=tmp_path / "noida") as broker:
        topic = "restart-me"
        broker.create_topics({topic: 2})
        sent = _produce(broker.bootstrap, topic, 200, "before")
        worker = _start(_config(tmp_path, "w", broker.bootstrap, topic, "g-restart"), idle=15)
        try:
            _wait_for(lambda: sum(_ids(tmp_path / "w.jsonl").values()) >= 200, 90, "the first scores")
            broker.restart()
            sent += _produce(broker.bootstrap, topic, 200, "after")
            _finish(worker, timeout=150)
        finally:
            if worker.poll() is None:
                worker.kill()
    seen = _ids(tmp_path / "w.jsonl")
    assert set(sent) <= set(seen), f"lost: {sorted(set(sent) - set(seen))[:10]}"
