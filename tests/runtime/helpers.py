"""Kafka helpers shared by the runtime tests (fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streamsent.runtime.broker import BrokerError, EmbeddedBroker, create_topics, find_broker_binary

# Consumer-group settings that keep tests fast: noida rejects session timeouts below 6000 ms, and a Tansu join
# takes half the session timeout (3 s here).
FAST_GROUP: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                              "max_poll_interval_ms": 10000}


@dataclass
class BrokerUnderTest:
    """What a test may rely on: a backend name and a bootstrap address (`embedded` is None for an external one)."""

    backend: str
    bootstrap: str
    embedded: EmbeddedBroker | None = None

    def create_topic(self, name: str, partitions: int = 1) -> str:
        create_topics(self.bootstrap, {name: partitions})
        return name


def require_backend(backend: str) -> None:
    """Skip (with the fix in the reason) when a backend's binary is not installed."""
    try:
        find_broker_binary(backend)
    except BrokerError as exc:
        pytest.skip(str(exc))


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offset per partition of `topic` (None: nothing committed)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **FAST_GROUP)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        c.close()
