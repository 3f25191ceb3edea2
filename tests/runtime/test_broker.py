"""The embedded brokers, against kafka-python: round trips, restarts, failures, and no process left behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from streamsent.runtime.broker import BrokerError, EmbeddedBroker

from .helpers import FAST_GROUP, BrokerUnderTest, require_backend


def _produce(bootstrap: str, topic: str, n: int, partitions: int, start: int = 0) -> None:
    # not idempotent: a Tansu restart leaves idempotent kafka-python producers unanswered
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=1)
    try:
        for i in range(start, start + n):
            producer.send(topic, key=f"k{i}".encode(), value=f"doc-{i}".encode(), partition=i % partitions)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


def _consume(consumer: KafkaConsumer, n: int, timeout_s: float = 30.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def _consumer(bootstrap: str, topic: str, group_id: str) -> KafkaConsumer:
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                         auto_offset_reset="earliest", **FAST_GROUP)


def _alive(pid: int) -> bool:
    """Running (a zombie counts as dead: in a container nobody may reap the orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_dead(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_round_trip_with_group_commit(broker: BrokerUnderTest, fresh_topic, fast_group) -> None:
    topic = fresh_topic(partitions=3)
    _produce(broker.bootstrap, topic, 30, partitions=3)
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", **fast_group)
    try:
        got = _consume(consumer, 30)
        assert sorted(r.value for r in got) == sorted(f"doc-{i}".encode() for i in range(30))
        assert {r.partition for r in got} == {0, 1, 2}
        consumer.commit()
        parts = [TopicPartition(topic, p) for p in range(3)]
        # highwater, not end_offsets: Tansu answers ListOffsets wrongly
        assert [consumer.committed(tp) for tp in parts] == [consumer.highwater(tp) for tp in parts] == [10, 10, 10]
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(fast_group["group_id"])[fast_group["group_id"]]
        assert {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic} == {0: 10, 1: 10, 2: 10}
    finally:
        admin.close()


def test_create_topics_is_idempotent(broker: BrokerUnderTest, fresh_topic) -> None:
    topic = fresh_topic(partitions=2)
    broker.create_topic(topic, 2)  # exists already: no error
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        consumer.close()


def test_noida_restart_keeps_messages_and_committed_offsets(tmp_path: Path) -> None:
    require_backend("noida")
    with EmbeddedBroker("noida", data_dir=tmp_path / "data") as b:
        b.create_topics({"docs": 2})
        _produce(b.bootstrap, "docs", 10, partitions=2)
        consumer = _consumer(b.bootstrap, "docs", "g")
        assert len(_consume(consumer, 10)) == 10
        consumer.commit()
        consumer.close()
        _produce(b.bootstrap, "docs", 4, partitions=2, start=10)  # after the commit: the group has not read these

        port, pid = b.port, b.pid
        b.restart()
        assert (b.port, b.bootstrap) == (port, f"127.0.0.1:{port}") and b.pid != pid
        assert (tmp_path / "data" / "kafka.json").is_file()

        consumer = _consumer(b.bootstrap, "docs", "g")  # resumes at the committed offsets
        try:
            assert sorted(r.value for r in _consume(consumer, 4)) == [f"doc-{i}".encode() for i in range(10, 14)]
            assert not _consume(consumer, 1, timeout_s=1.0)
        finally:
            consumer.close()
        consumer = _consumer(b.bootstrap, "docs", "another-group")  # and every message is still there
        try:
            assert len(_consume(consumer, 14)) == 14
        finally:
            consumer.close()
    assert (tmp_path / "data" / "kafka.json").is_file()  # a given data_dir is never deleted


def test_tansu_restart_comes_back_empty() -> None:
    require_backend("tansu")
    with EmbeddedBroker("tansu") as b:
        assert not b.persistent and b.data_dir is None
        b.create_topics("gone")
        port = b.port
        b.restart()
        assert b.port == port
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            assert "gone" not in admin.list_topics()
        finally:
            admin.close()


@pytest.mark.parametrize("backend", ["tansu", "noida"])
def test_port_in_use_is_a_clear_error(backend: str) -> None:
    require_backend(backend)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        b = EmbeddedBroker(backend, port=port, startup_timeout_s=10)
        t0 = time.monotonic()
        with pytest.raises(BrokerError) as info:
            b.start()
        assert time.monotonic() - t0 < 8  # an early exit is noticed, not waited out
    msg = str(info.value)
    assert f"embedded {backend} broker exited" in msg and str(port) in msg
    assert "in use" in msg.lower()  # the broker's own words, from its stderr
    assert "GLIBC" not in msg  # noida's harmless loader warning is left out
    assert b.pid is None and not b.running


def test_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMSENT_TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(BrokerError, match="STREAMSENT_TANSU_BIN"):
        EmbeddedBroker("tansu").start()
    with pytest.raises(BrokerError, match="unknown embedded broker 'kafka'; use one of: auto, tansu, noida"):
        EmbeddedBroker("kafka")
    with pytest.raises(BrokerError, match="data_dir is only for the noida broker"):
        EmbeddedBroker("tansu", data_dir=tmp_path)


def test_a_broker_that_never_answers_times_out_and_is_killed(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    fake = tmp_path / "fake-tansu"
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'pid'}\necho 'starting, slowly' >&2\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("STREAMSENT_TANSU_BIN", str(fake))
    with pytest.raises(BrokerError) as info:
        EmbeddedBroker("tansu", startup_timeout_s=1.0).start()
    msg = str(info.value)
    assert "did not answer Kafka requests" in msg and "within 1 s" in msg and "starting, slowly" in msg
    assert _wait_dead(int((tmp_path / "pid").read_text()))


@pytest.mark.parametrize("backend", ["tansu", "noida"])
def test_stop_leaves_nothing_behind(backend: str) -> None:
    require_backend(backend)
    b = EmbeddedBroker(backend).start()
    pid, port, work = b.pid, b.port, b._workdir
    assert pid is not None and _alive(pid) and work is not None and Path(work).is_dir()
    b.stop()
    assert not _alive(pid) and not b.running and not Path(work).exists()
    with socket.socket() as s:  # the port is free again
        assert s.connect_ex(("127.0.0.1", port)) != 0
    b.stop()  # a second stop is harmless


def test_a_broker_outlives_the_thread_that_started_it() -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits; brokers must not die with a worker thread."""
    require_backend("tansu")
    started: list[EmbeddedBroker] = []
    worker = threading.Thread(target=lambda: started.append(EmbeddedBroker("tansu").start()))
    worker.start()
    worker.join()
    b = started[0]
    try:
        time.sleep(0.3)
        assert b.running and _alive(b.pid)
    finally:
        b.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize(("backend", "how"), [("tansu", "kill -9"), ("noida", "exit without stop()")])
def test_no_orphan_when_the_owner_goes_away(backend: str, how: str) -> None:
    require_backend(backend)
    script = textwrap.dedent(f"""
        import sys, time
        from streamsent.runtime.broker import EmbeddedBroker
        b = EmbeddedBroker({backend!r}).start()
        print(b.pid, b._workdir, flush=True)
        if {how!r} == "kill -9":
            time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workdir = ""
    try:
        pid_text, workdir = owner.stdout.readline().split()
        pid = int(pid_text)
        assert _alive(pid)
        if how == "kill -9":
            owner.send_signal(signal.SIGKILL)  # no atexit, no finalizer: only the death signal is left
        owner.wait(30)
        assert _wait_dead(pid), f"broker pid {pid} outlived its owner ({how})"
        if how != "kill -9":
            assert not Path(workdir).exists()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # after kill -9 nobody else can
        if owner.poll() is None:
            owner.kill()
            owner.wait()
