"""`streamsent produce`: a JSON-lines file (or bundled sample) into a real topic, keyed by doc_id."""

from __future__ import annotations

import json

from kafka import KafkaConsumer

from streamsent.cli import main

from .helpers import FAST_GROUP


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
