"""`streamsent produce` and the replay thread of `streamsent run`: a JSON-lines file (or bundled sample) into a real
topic, keyed by doc_id, every line sent whatever it holds."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from kafka import KafkaConsumer

from streamsent.cli import main
from streamsent.runtime.broker import free_port
from streamsent.runtime.config import config_from_dict
from streamsent.runtime.run import ReplayError, replay_into, run_pipeline

from .helpers import FAST_GROUP, require_backend


def test_produce_sends_each_line_keyed_by_doc_id_and_suffixes_later_passes(broker, fresh_topic, tmp_path):
    topic = fresh_topic(1)
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"doc_id": f"d{i}", "text": f"review {i}"}) for i in range(3)) + "\n{bad\n")
    assert main(["produce", str(src), "--bootstrap", broker.bootstrap, "--topic", topic, "--repeat", "2"]) == 0
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, **{k: v for k, v in FAST_GROUP.items() if "poll" not in k})
    got = [(m.key, m.value) for _, m in zip(range(8), consumer, strict=False)]
    consumer.close()
    ids = [json.loads(v)["doc_id"] if v != b"{bad" else None for _, v in got]
    assert ids == ["d0", "d1", "d2", None, "d0~2", "d1~2", "d2~2", None]
    assert [k for k, _ in got] == [b"d0", b"d1", b"d2", None, b"d0~2", b"d1~2", b"d2~2", None]


# Lines a real producer could send that are not one JSON object, or are one in an odd way; each is
# (line bytes, the value produce must send, its key). None as the value: the line itself, unchanged.
ODD_LINES = [
    (b'\xef\xbb\xbf{"doc_id": "bom", "text": "a fine film"}', b'{"doc_id": "bom", "text": "a fine film"}', b"bom"),
    (b"[1, 2, 3]", None, None),
    (b'"just a string"', None, None),
    (b"42", None, None),
    (b"{not json", None, None),
    (b'{"doc_id": "u1", "text": "caf\xe9 latin-1"}', None, None),
    (b"[" * 100_000 + b"]" * 100_000, None, None),  # json.loads: RecursionError
    (b'{"doc_id": 7, "text": "a numeric id"}', None, b"7"),
    (b'{"doc_id": null, "text": "a null id"}', None, None),
    (b'{"doc_id": "crlf", "text": "a windows line"}\r', b'{"doc_id": "crlf", "text": "a windows line"}', b"crlf"),
]


def _consume(bootstrap: str, topic: str, n: int) -> list[tuple[bytes | None, bytes]]:
    """Every message of a one-partition topic (expecting `n`, waiting 5 s for more), in order."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, fetch_max_bytes=8 << 20,
                             **{k: v for k, v in FAST_GROUP.items() if "poll" not in k})
    try:
        return [(m.key, m.value) for _, m in zip(range(n + 1), consumer, strict=False)]
    finally:
        consumer.close()


def test_produce_sends_every_line_that_is_not_an_object_as_it_is_and_drops_a_bom(broker, fresh_topic, tmp_path):
    """Arrays, bare strings and numbers, invalid JSON or UTF-8 and JSON nested too deep to parse are sent unchanged
    with no key (the pipeline dead-letters them); a BOM before the first line and CRLF endings are dropped, blank
    lines skipped: the same reading as the JSON-lines source. Was: a TypeError at the array line, and the BOM line
    sent with its BOM (invalid_json downstream)."""
    topic = fresh_topic(1)
    src = tmp_path / "odd.jsonl"
    src.write_bytes(b"\n".join([line for line, _, _ in ODD_LINES[:5]] + [b"   "] +
                               [line for line, _, _ in ODD_LINES[5:]]) + b"\n")
    assert main(["produce", str(src), "--bootstrap", broker.bootstrap, "--topic", topic]) == 0
    got = _consume(broker.bootstrap, topic, len(ODD_LINES))
    assert got == [(key, line if value is None else value) for line, value, key in ODD_LINES]


def test_produce_keys_a_conversation_line_and_suffixes_only_what_exists(broker, fresh_topic, tmp_path):
    """A `key` field moves to the message key; on a later pass a line without doc_id gets no doc_id (was a
    KeyError), and non-objects are sent unchanged on every pass."""
    topic = fresh_topic(1)
    src = tmp_path / "conv.jsonl"
    src.write_bytes(b'{"key": "chat-1", "text": "no id"}\n[1]\n{"doc_id": "d", "key": "chat-1", "text": "hi"}\n')
    assert main(["produce", str(src), "--bootstrap", broker.bootstrap, "--topic", topic, "--repeat", "2"]) == 0
    got = [(k, json.loads(v)) for k, v in _consume(broker.bootstrap, topic, 6)]
    assert got == [(b"chat-1", {"text": "no id"}), (None, [1]), (b"chat-1", {"doc_id": "d", "text": "hi"}),
                   (b"chat-1~2", {"text": "no id"}), (None, [1]), (b"chat-1~2", {"doc_id": "d~2", "text": "hi"})]


def test_produce_to_no_broker_fails_fast_with_one_line_naming_the_address(tmp_path):
    """Was: 30 s of kafka-python errors, then a KafkaTimeoutError traceback."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"doc_id": "d0", "text": "x"}\n')
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "streamsent", "produce", str(src), "--bootstrap", address,
                          "--topic", "t"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamsent: error: ") and address in err[0], err
    assert "Traceback" not in run.stderr
    assert time.monotonic() - t0 < 15  # the interpreter and imports take ~2 s, the bootstrap timeout 5 s


def test_a_replay_file_that_cannot_be_read_is_named_before_any_broker_is_asked(tmp_path):
    gone = tmp_path / "gone.jsonl"  # e.g. removed between the config check and the replay
    t0 = time.monotonic()
    with pytest.raises(ReplayError, match=f"cannot read {gone}: No such file or directory"):
        replay_into(f"127.0.0.1:{free_port()}", "t", gone, 0.0, threading.Event())
    assert time.monotonic() - t0 < 2  # not the bootstrap timeout


def test_produce_reports_a_line_the_broker_refuses_and_sends_the_rest(broker, fresh_topic, tmp_path, capsys):
    """A line over the producer's max request size (1 MB) cannot be sent: the others are, then exit 2 naming it."""
    topic = fresh_topic(1)
    src = tmp_path / "big.jsonl"
    big = json.dumps({"doc_id": "big", "text": "word " * 400_000})
    src.write_text(f'{{"doc_id": "a", "text": "x"}}\n{big}\n{{"doc_id": "b", "text": "y"}}\n')
    assert main(["produce", str(src), "--bootstrap", broker.bootstrap, "--topic", topic]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0] and str(src) in err[0], err
    assert [k for k, _ in _consume(broker.bootstrap, topic, 2)] == [b"a", b"b"]


# -- the replay thread of `streamsent run` ([embedded] replay) --------------------------------------------------------
def _replay_config(tmp_path, replay) -> dict:
    require_backend("tansu")
    return {"embedded": {"broker": "tansu", "topic": "in", "partitions": 1, "replay": str(replay)},
            "source": {"type": "kafka", "bootstrap": "embedded", "topics": ["in"], **FAST_GROUP},
            "sink": [{"type": "jsonl", "path": str(tmp_path / "scores.jsonl")}],
            "dead_letter": {"type": "jsonl", "path": str(tmp_path / "dead.jsonl")},
            "batch": {"max_docs": 8, "max_wait_ms": 50}, "metrics": {"dashboard": False}}


def test_run_replays_odd_lines_and_every_message_arrives(tmp_path):
    """Under `run` the replay thread died at the array line (2 of 35 lines sent, exit 0); now every line arrives
    and is scored or dead-lettered, and the BOM line is scored."""
    replay = tmp_path / "odd.jsonl"
    lines = [line for line, _, _ in ODD_LINES if not line.startswith(b"[[")]  # deep nesting: issue 14 case 9
    replay.write_bytes(b"\n".join(lines) + b"\n")
    stats = run_pipeline(config_from_dict(_replay_config(tmp_path, replay)), stop_after_idle_s=3,
                         install_signal_handlers=False)
    scored = [json.loads(line)["doc_id"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    dead = [json.loads(line)["reason"] for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(map(str, scored)) == ["7", "bom", "crlf"]
    assert len(dead) == len(lines) - 3 == 6 and set(dead) == {"not_an_object", "invalid_json", "invalid_utf8",
                                                              "missing_doc_id"}, dead
    assert stats.records == len(lines)


def test_run_whose_replay_fails_says_so_and_exits_2(tmp_path):
    """A replay line the broker cannot take (over 1 MB): the error is logged, the run drains, stops and exits 2 with
    a one-line error naming the replay and the line (it exited 0 before, having sent a fraction of the file)."""
    replay = tmp_path / "big.jsonl"
    big = json.dumps({"doc_id": "big", "text": "word " * 400_000})
    replay.write_text(f'{{"doc_id": "a", "text": "good"}}\n{big}\n{{"doc_id": "b", "text": "bad"}}\n')
    config = tmp_path / "replay.toml"
    cfg = _replay_config(tmp_path, replay)
    config.write_text("\n".join(
        [f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg[name].items())
         for name in ("embedded", "source", "dead_letter", "batch", "metrics")]
        + ["[[sink]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg["sink"][0].items())]))
    run = subprocess.run([sys.executable, "-m", "streamsent", "run", "--config", str(config), "--no-dashboard",
                          "--stop-after-idle", "5"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("streamsent: error: the replay of ") and "line 2" in last, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert any("replay of" in line and "failed" in line and '"level": "ERROR"' in line
               for line in run.stderr.splitlines()[:-1]), run.stderr[-3000:]  # logged when it happened
