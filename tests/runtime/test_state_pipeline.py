"""Conversations through the real pipeline and a real broker: keyed messages sent one by one end with exactly the
score of the whole conversation; a worker killed with SIGKILL and restarted, or a second worker joining mid-stream,
changes no final score and counts no message twice; a changelog that cannot be written holds the commit back.

Models are small and random (as in test_state_scorer.py), written to a model directory so that `streamsent run`
can load them. Messages carry token ids, except in the example-config test, which scores the bundled text sample
with a random model that borrows the default model's tokenizer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from streamsent import DocBatch, Model, load_model
from streamsent.errors import ConfigError
from streamsent.models.init import random_weights
from streamsent.models.io import write_model_dir
from streamsent.models.model import BUILTIN_DIR
from streamsent.runtime.config import config_from_dict, load_config
from streamsent.runtime.pipeline import Pipeline
from streamsent.runtime.run import run_pipeline
from streamsent.runtime.sinks import MemoryDeadLetterSink, MemorySink
from streamsent.runtime.sources import build_source
from streamsent.runtime.state import KeyedScorer, load_checkpoint
from streamsent.runtime.state.changelog import Changelog
from streamsent.runtime.state.live import LiveState

from ..helpers import TOL, make_config
from .helpers import BrokerUnderTest, committed_offsets, require_backend
from .test_state_scorer import _word, conversations

ROOT = Path(__file__).resolve().parents[2]
N_KEYS, N_MSGS = 8, 10


def _model_config(vocab: int = 60):
    return make_config(_word("gru", True, "attention"),
                       {"type": "hierarchical", "encoder": _word("lstm", False, "attention")}, vocab=vocab)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unidirectional hierarchical model with attention at both levels (LSTM document encoder: h and c carry)."""
    cfg = _model_config()
    return write_model_dir(tmp_path_factory.mktemp("model") / "hier", cfg, random_weights(cfg, seed=4))


@pytest.fixture(scope="module")
def convs() -> dict[str, list]:
    return conversations(np.random.default_rng(11), N_KEYS, N_MSGS, 60)


def _expected(model: Model, convs: dict[str, list]) -> dict[str, np.ndarray]:
    keys = list(convs)
    whole, _ = model.predict_batch(DocBatch.from_lists([[s for msg in convs[k] for s in msg] for k in keys]))
    return dict(zip(keys, whole.probs, strict=True))


def _produce(bootstrap: str, topic: str, convs: dict[str, list], rounds: range) -> int:
    """Message m of every conversation, for m in `rounds`, keys interleaved; the Kafka key is the conversation."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    n = 0
    for m in rounds:
        for k, msgs in convs.items():
            producer.send(topic, key=k.encode(), value=json.dumps({"doc_id": f"{k}-{m}", "tokens": msgs[m]}).encode())
            n += 1
    producer.flush()
    producer.close()
    return n


def _rows(*paths: Path) -> list[dict]:
    """The JSON lines of sink files; a fragment a killed worker left half-written (on a line of its own) is skipped."""
    out = []
    for p in paths:
        for line in p.read_text().splitlines() if p.exists() else []:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _finals(rows: list[dict]) -> dict[str, dict]:
    """Per key, a row of its latest message (by offset in its partition: a key lives in one partition)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["key"] not in out or r["offset"] >= out[r["key"]]["offset"]:
            out[r["key"]] = r
    return out


def _check_finals(rows: list[dict], model: Model, convs: dict[str, list]) -> None:
    finals = _finals(rows)
    assert sorted(finals) == sorted(convs)
    labels = model.config.labels
    for k, want in _expected(model, convs).items():
        got = np.array([finals[k]["probs"][name] for name in labels])
        assert finals[k]["messages_seen"] == N_MSGS, (k, finals[k])
        assert np.abs(got - want).max() <= TOL, k  # JSON rounds to 6 decimals


def _pipeline_config(tmp: Path, name: str, bootstrap: str, topic: str, group: str, model_dir: Path,
                     state: dict | None = None, client: str = "confluent") -> dict:
    return {
        "source": {"type": "kafka", "bootstrap": [bootstrap], "topics": [topic], "group_id": group,
                   "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_records": 20,
                   "client": client},
        "model": {"path": str(model_dir), "device": "cpu", "threads": 1},
        "batch": {"max_docs": 8, "max_wait_ms": 30},
        "state": {"enabled": True, "ttl_s": 0, **(state or {})},
        "sink": [{"type": "jsonl", "path": str(tmp / f"{name}.jsonl")}],
        "dead_letter": {"type": "jsonl", "path": str(tmp / f"{name}-dlq.jsonl")},
        "metrics": {"dashboard": False},
    }


def _toml(cfg: dict) -> str:
    lines = []
    for section, body in cfg.items():
        for table in body if isinstance(body, list) else [body]:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -- (a) message by message == the whole conversation ----------------------------------------------------------------
def test_conversations_through_the_pipeline_end_with_the_whole_conversations_score(
        broker: BrokerUnderTest, fresh_topic: Callable[..., str], fast_group: dict, kafka_client: str,
        model_dir: Path, convs: dict[str, list], tmp_path: Path) -> None:
    topic = fresh_topic(3)
    _produce(broker.bootstrap, topic, convs, range(N_MSGS))
    cfg = config_from_dict(_pipeline_config(tmp_path, "out", broker.bootstrap, topic, fast_group["group_id"],
                                            model_dir, client=kafka_client))
    stats = run_pipeline(cfg, stop_after_idle_s=2, install_signal_handlers=False)
    rows = _rows(tmp_path / "out.jsonl")
    assert stats.docs_scored == len(rows) == N_KEYS * N_MSGS and not _rows(tmp_path / "out-dlq.jsonl")
    _check_finals(rows, load_model(model_dir), convs)
    for k in convs:  # every message counted once, in order, none re-delivered in a clean run
        mine = sorted((r for r in rows if r["key"] == k), key=lambda r: r["offset"])
        assert [r["messages_seen"] for r in mine] == list(range(1, N_MSGS + 1))
        assert not any(r["redelivered"] for r in mine) and all(len(r["probs_delta"]) == 3 for r in mine)


def test_a_file_replayed_with_its_checkpoint_counts_nothing_twice(model_dir: Path, convs: dict[str, list],
                                                                   tmp_path: Path) -> None:
    """A JSON-lines file with a `key` field: the conversations come out right, the checkpoint is written when the
    file is done, and scoring the same file again with that checkpoint applies nothing twice (every row is a
    re-delivery, re-emitting the stored running score)."""
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"doc_id": f"{k}-{m}", "key": k, "tokens": msgs[m]}) + "\n"
                            for m in range(N_MSGS) for k, msgs in convs.items()))
    raw = _pipeline_config(tmp_path, "files", "unused:9092", "unused", "unused", model_dir,
                           state={"dir": str(tmp_path / "state")})
    raw["source"] = {"type": "jsonl", "path": str(path)}
    cfg = config_from_dict(raw)
    run_pipeline(cfg, install_signal_handlers=False)
    first = _rows(tmp_path / "files.jsonl")
    model = load_model(model_dir)
    assert len(first) == N_KEYS * N_MSGS and not any(r["redelivered"] for r in first)
    _check_finals([{**r, "offset": r["row"]} for r in first], model, convs)
    ckpt = load_checkpoint(tmp_path / "state")
    assert ckpt is not None and set(ckpt.entries.messages.tolist()) == {N_MSGS}
    run_pipeline(cfg, install_signal_handlers=False)
    again = _rows(tmp_path / "files.jsonl")[len(first):]
    assert len(again) == len(first) and all(r["redelivered"] for r in again)
    _check_finals([{**r, "offset": r["row"]} for r in again], model, convs)
    inspect = _cli(["state", "inspect", "k3", "--dir", str(tmp_path / "state"), "--json"])
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["messages"] == N_MSGS


# -- the model check -------------------------------------------------------------------------------------------------
def _cli(args: list[str], env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsent", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_a_model_that_cannot_carry_state_is_refused_naming_state(tmp_path: Path) -> None:
    """The default model (HAN) has a bidirectional sentence encoder: with `window = 0` (no window mode) check-config
    and run both exit 2, one line; with the default window check-config accepts it."""
    path = tmp_path / "han.toml"
    text = '[source]\ntype = "jsonl"\npath = "-"\n[[sink]]\ntype = "stdout"\n[state]\nenabled = true\n'
    path.write_text(text)
    windowed = _cli(["check-config", str(path)])
    assert windowed.returncode == 0 and "conversation state" in windowed.stdout, windowed.stderr
    path.write_text(text + "window = 0\n")
    with pytest.raises(ConfigError, match=r"han\.toml: \[state\]: model 'imdb-han' cannot score conversations"):
        run_pipeline(load_config(path, environ={}), install_signal_handlers=False)
    for args in (["check-config", str(path)], ["run", "--config", str(path)]):
        run = _cli(args)
        assert run.returncode == 2, run.stderr
        err = run.stderr.strip().splitlines()
        assert len(err) == 1 and "[state]" in err[0] and "bidirectional" in err[0] and str(path) in err[0], err
    ok = _cli(["check-config", str(ROOT / "configs" / "conversations.toml")])
    assert ok.returncode == 0 and "conversation state" in ok.stdout, ok.stderr


def test_state_config_rules(tmp_path: Path) -> None:
    base = {"source": {"type": "jsonl", "path": "in.jsonl"}, "sink": [{"type": "stdout"}]}
    cfg = config_from_dict(base)
    st = cfg.state
    assert (st.enabled, st.changelog, st.dir, st.checkpoint_interval_s) == (False, "auto", None, 1.0)
    assert not st.uses_changelog(cfg.source)
    with pytest.raises(ConfigError, match=r"state.changelog = True .* with a jsonl source"):
        config_from_dict({**base, "state": {"enabled": True, "changelog": True}})
    with pytest.raises(ConfigError, match=r"state.dir = 'ckpt' .* embedded broker that keeps no data"):
        config_from_dict({"source": {"type": "kafka", "topics": ["t"]}, "embedded": {"broker": "tansu"},
                          "sink": [{"type": "stdout"}], "state": {"enabled": True, "dir": "ckpt"}})
    with pytest.raises(ConfigError, match=r"state.changelog = 'yes'"):
        config_from_dict({**base, "state": {"changelog": "yes"}})
    kafka = config_from_dict({"source": {"type": "kafka", "topics": ["t"]}, "sink": [{"type": "stdout"}],
                              "state": {"enabled": True}})
    assert kafka.state.uses_changelog(kafka.source)


# -- (b) kill -9 mid-conversation, restart ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tansu():
    """Worker-kill tests run on Tansu: noida-db never expires a killed member's session (test_faults.py)."""
    require_backend("tansu")
    from streamsent.runtime.broker import EmbeddedBroker

    with EmbeddedBroker("tansu") as b:
        yield BrokerUnderTest("tansu", b.bootstrap, b)


def _start(config: Path, idle: float, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamsent", "run", "--config", str(config), "--stop-after-idle",
                             str(idle)], stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=ROOT)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker did not stop by itself: {log.read_text()[-2000:]}")
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_sigkill_mid_conversation_then_restart_counts_nothing_twice(tansu: BrokerUnderTest, model_dir: Path,
                                                                     convs: dict[str, list], tmp_path: Path) -> None:
    topic = tansu.create_topic(f"kill-state-{uuid.uuid4().hex[:8]}", 2)
    cfg = _pipeline_config(tmp_path, "w", tansu.bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}", model_dir,
                           state={"dir": str(tmp_path / "state"), "checkpoint_interval_s": 0.3})
    cfg["batch"]["max_docs"] = 2  # many small batches and commits: the kill lands between them
    path = tmp_path / "w.toml"
    path.write_text(_toml(cfg))
    worker = _start(path, idle=30, log=tmp_path / "w1.log")
    _wait_for(lambda: "assigned" in (tmp_path / "w1.log").read_text(), 30, "the worker to join")

    def trickle() -> None:  # the first half, a round at a time, so that the kill lands mid-stream
        for m in range(N_MSGS // 2):
            _produce(tansu.bootstrap, topic, convs, range(m, m + 1))
            time.sleep(0.25)

    producer = threading.Thread(target=trickle)
    producer.start()
    try:
        _wait_for(lambda: load_checkpoint(tmp_path / "state") is not None and len(_rows(tmp_path / "w.jsonl")) >= 12,
                  30, "the first checkpoint and scores")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        producer.join()
    before = len(_rows(tmp_path / "w.jsonl"))
    assert before < N_KEYS * N_MSGS // 2, "the kill came after the first half was scored: the test proves less"
    _produce(tansu.bootstrap, topic, convs, range(N_MSGS // 2, N_MSGS))
    again = _start(path, idle=3, log=tmp_path / "w2.log")
    _finish(again, tmp_path / "w2.log")
    rows = _rows(tmp_path / "w.jsonl")
    _check_finals(rows, load_model(model_dir), convs)
    assert {r["doc_id"] for r in rows} == {f"{k}-{m}" for k in convs for m in range(N_MSGS)}  # nothing lost
    ckpt = load_checkpoint(tmp_path / "state")
    assert ckpt is not None and sorted(ckpt.entries.keys) == sorted(convs)
    assert set(ckpt.entries.messages.tolist()) == {N_MSGS}
    assert sum(ckpt.offsets.values()) == N_KEYS * N_MSGS  # the checkpoint went with the final commit


# -- (c) a second worker joins mid-stream ----------------------------------------------------------------------------
def test_second_worker_joins_mid_conversation_and_state_follows_the_partitions(
        tansu: BrokerUnderTest, model_dir: Path, convs: dict[str, list], tmp_path: Path) -> None:
    topic = tansu.create_topic(f"two-state-{uuid.uuid4().hex[:8]}", 2)  # k0..k7 hash to both
    group = f"g-{uuid.uuid4().hex[:8]}"
    paths = {}
    for name in ("a", "b"):
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(_toml(_pipeline_config(tmp_path, name, tansu.bootstrap, topic, group, model_dir)))
    _produce(tansu.bootstrap, topic, convs, range(N_MSGS // 2))
    a = _start(paths["a"], idle=60, log=tmp_path / "a.log")  # stopped with SIGTERM (a graceful drain) at the end
    b = None
    try:
        _wait_for(lambda: len(_rows(tmp_path / "a.jsonl")) >= N_KEYS * N_MSGS // 2, 40, "A to score the first half")
        b = _start(paths["b"], idle=3, log=tmp_path / "b.log")
        _wait_for(lambda: "assigned" in (tmp_path / "b.log").read_text(), 30, "B to be assigned partitions")
        _produce(tansu.bootstrap, topic, convs, range(N_MSGS // 2, N_MSGS))
        _finish(b, tmp_path / "b.log")
        every = {f"{k}-{m}" for k in convs for m in range(N_MSGS)}
        _wait_for(lambda: {r["doc_id"] for r in _rows(tmp_path / "a.jsonl", tmp_path / "b.jsonl")} >= every, 20,
                  "every message scored")
        a.send_signal(signal.SIGTERM)
        _finish(a, tmp_path / "a.log")
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    rows_a, rows_b = _rows(tmp_path / "a.jsonl"), _rows(tmp_path / "b.jsonl")
    assert rows_b, "B got no partitions: the test proves nothing"
    _check_finals(rows_a + rows_b, load_model(model_dir), convs)
    # B continued conversations A had started: their state came from the changelog
    first_b = {}
    for r in sorted(rows_b, key=lambda r: r["offset"]):
        first_b.setdefault(r["key"], r)
    assert any(r["messages_seen"] > 1 for r in first_b.values())


# -- (d) a changelog that cannot be written holds the commit back ----------------------------------------------------
class _Future:
    def __init__(self, ok: bool) -> None:
        self.ok, self.is_done = ok, True
        self.exception = None if ok else RuntimeError("changelog broker away")

    def succeeded(self) -> bool:
        return self.ok


class _FlakyProducer:
    """A changelog producer that acknowledges nothing while `fail` is set (a broker outage on the changelog only)."""

    def __init__(self) -> None:
        self.fail = True
        self.sent = 0

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int) -> _Future:
        self.sent += 1
        return _Future(not self.fail)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


def test_a_changelog_failure_holds_the_commit_and_the_pipeline_recovers(
        broker: BrokerUnderTest, fresh_topic: Callable[..., str], fast_group: dict, model_dir: Path,
        convs: dict[str, list], tmp_path: Path) -> None:
    """The source and the changelog topics are real; only the changelog producer fails, then recovers. (A real
    broker stop would also stop the source, and kafka-python's producer rides a short outage out by itself.)"""
    topic = fresh_topic(2)
    group = fast_group["group_id"]
    sent = _produce(broker.bootstrap, topic, convs, range(N_MSGS))
    cfg = config_from_dict(_pipeline_config(tmp_path, "d", broker.bootstrap, topic, group, model_dir))
    model = load_model(model_dir)
    producer = _FlakyProducer()
    changelog = Changelog(broker.bootstrap, group, producer=producer)
    state = LiveState(KeyedScorer(model, ttl_s=0), tmp_path / "state", changelog)
    sink = MemorySink()
    source = build_source(cfg.source)
    pipeline = Pipeline(source, model, [sink], MemoryDeadLetterSink(), max_docs=8, max_wait_ms=20, state=state,
                        commit_interval_s=0.2)
    runner = threading.Thread(target=pipeline.run, name="test-pipeline", daemon=True)
    try:
        runner.start()
        _wait_for(lambda: sink.flushed_rows == sent and pipeline.stats.state_failures >= 2, 30,
                  "every message scored and the commit refused twice")
        assert set(committed_offsets(broker.bootstrap, group, topic, 2).values()) == {None}, \
            "committed past the changelog"
        assert load_checkpoint(tmp_path / "state") is None  # the checkpoint never runs ahead of the changelog
        producer.fail = False
        _wait_for(lambda: pipeline.stats.commits > 0, 10, "the commit once the changelog is back")
        ckpt = load_checkpoint(tmp_path / "state")
        assert ckpt is not None and sum(ckpt.offsets.values()) == sent
        assert sum(o or 0 for o in committed_offsets(broker.bootstrap, group, topic, 2).values()) == sent
    finally:
        pipeline.stop()
        runner.join(30)
        source.close()
    rows = sink.table().to_pylist()
    finals = _finals(rows)
    want = _expected(model, convs)
    for k in convs:
        assert finals[k]["messages_seen"] == N_MSGS
        assert np.abs(np.array(finals[k]["probs"]) - want[k]).max() <= TOL


def test_broker_restart_mid_conversation_the_state_and_the_commits_recover(model_dir: Path, convs: dict[str, list],
                                                                          tmp_path: Path) -> None:
    """noida (the broker that keeps its data) restarted mid-conversation: the source, the changelog and the commits
    all lose the broker for a while; the worker rides it out and the conversations end right."""
    require_backend("noida")
    from streamsent.runtime.broker import EmbeddedBroker

    with EmbeddedBroker("noida", data_dir=tmp_path / "noida") as broker:
        topic = "restart-state"
        broker.create_topics({topic: 2})
        _produce(broker.bootstrap, topic, convs, range(N_MSGS // 2))
        cfg = config_from_dict(_pipeline_config(tmp_path, "r", broker.bootstrap, topic, "g-restart-state", model_dir,
                                                state={"dir": str(tmp_path / "state")}))
        out: dict = {}

        def work() -> None:
            try:
                out["stats"] = run_pipeline(cfg, stop_after_idle_s=6, install_signal_handlers=False)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                out["error"] = exc

        worker = threading.Thread(target=work, name="test-worker", daemon=True)
        worker.start()
        _wait_for(lambda: len(_rows(tmp_path / "r.jsonl")) >= N_KEYS * N_MSGS // 2, 30, "the first half scored")
        broker.restart()
        _produce(broker.bootstrap, topic, convs, range(N_MSGS // 2, N_MSGS))
        worker.join(60)
        assert not worker.is_alive() and "stats" in out, out.get("error")
        committed = committed_offsets(broker.bootstrap, "g-restart-state", topic, 2)
    _check_finals(_rows(tmp_path / "r.jsonl"), load_model(model_dir), convs)
    assert sum(o or 0 for o in committed.values()) == N_KEYS * N_MSGS
    ckpt = load_checkpoint(tmp_path / "state")
    assert ckpt is not None and set(ckpt.entries.messages.tolist()) == {N_MSGS}


# -- the example config ----------------------------------------------------------------------------------------------
def test_conversations_example_runs_with_a_model_that_carries_state(tmp_path: Path) -> None:
    """configs/conversations.toml on its embedded broker and bundled sample, with a random unidirectional
    hierarchical model using the default model's tokenizer (the example's trained model is not in the repo)."""
    default = load_model("default")
    cfg = _model_config(vocab=default.config.vocab_size)
    path = write_model_dir(tmp_path / "model", cfg, random_weights(cfg, seed=9))
    shutil.copy(BUILTIN_DIR / "default" / "tokenizer.json", path / "tokenizer.json")
    run = _cli(["run", "--config", "configs/conversations.toml", "--stop-after-idle", "3"],
               env={"STREAMSENT__MODEL__PATH": str(path), "STREAMSENT__EMBEDDED__REPLAY_RATE": "0",
                    "STREAMSENT__DEAD_LETTER__PATH": str(tmp_path / "dlq.jsonl")}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    sample = [json.loads(line) for line in (ROOT / "streamsent" / "data" / "samples" / "imdb-conversations.jsonl")
              .read_text().splitlines()]
    assert len(rows) == len(sample)
    texts: dict[str, list[str]] = {}
    for s in sample:
        texts.setdefault(s["key"], []).append(s["text"])
    model = load_model(path)
    finals = _finals(rows)
    assert sorted(finals) == sorted(texts)
    keys = list(texts)
    whole = []
    for k in keys:  # each message tokenised on its own, as it arrived; the conversation is their sentences in order
        whole.append([s for msg in model.tokenizer.encode_batch(texts[k]).batch.to_lists() for s in msg])
    want, _ = model.predict_batch(DocBatch.from_lists(whole))
    for k, p in zip(keys, want.probs, strict=True):
        assert finals[k]["messages_seen"] == len(texts[k])
        got = np.array([finals[k]["probs"][name] for name in model.config.labels])
        assert np.abs(got - p).max() <= TOL, k
