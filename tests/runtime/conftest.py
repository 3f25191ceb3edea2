"""Fixtures for the runtime tests: a real Kafka-protocol broker per backend, and unique topics on it.

- `STREAMSENT_TEST_BROKERS` — comma-separated embedded backends to run against (default "tansu,noida").
- `STREAMSENT_TEST_BOOTSTRAP` — "host:port" of an external broker; adds an "external" parameter.
- `STREAMSENT_TEST_CLIENTS` — comma-separated Kafka clients to run the client tests with (default
  "confluent,kafka-python").
A backend whose wheel is not installed is skipped with the pip command that fixes it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streamsent.runtime.broker import EmbeddedBroker

from .helpers import FAST_GROUP, BrokerUnderTest, require_backend


def _params() -> list[str]:
    names = [n.strip() for n in os.environ.get("STREAMSENT_TEST_BROKERS", "tansu,noida").split(",") if n.strip()]
    if os.environ.get("STREAMSENT_TEST_BOOTSTRAP"):
        names.append("external")
    return names


@pytest.fixture(scope="session", params=_params())
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerUnderTest]:
    """A running broker for the whole session, once per backend."""
    if request.param == "external":
        yield BrokerUnderTest("external", os.environ["STREAMSENT_TEST_BOOTSTRAP"])
        return
    require_backend(request.param)
    with EmbeddedBroker(request.param) as embedded:
        yield BrokerUnderTest(request.param, embedded.bootstrap, embedded)


@pytest.fixture
def fresh_topic(broker: BrokerUnderTest, request: pytest.FixtureRequest) -> Callable[..., str]:
    """`fresh_topic(partitions=1)` creates a topic no other test uses (named after the test) and returns its name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")

    def make(partitions: int = 1) -> str:
        return broker.create_topic(f"{slug}-{uuid.uuid4().hex[:8]}", partitions)

    return make


@pytest.fixture
def fast_group() -> dict[str, Any]:
    """Consumer kwargs for quick group joins, plus a unique group id."""
    return {**FAST_GROUP, "group_id": f"g-{uuid.uuid4().hex[:8]}"}


def _clients() -> list[str]:
    return [n.strip() for n in os.environ.get("STREAMSENT_TEST_CLIENTS", "confluent,kafka-python").split(",")
            if n.strip()]


@pytest.fixture(params=_clients())
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The `client` setting of the Kafka source and sinks under test: each client test runs once per client."""
    return request.param
