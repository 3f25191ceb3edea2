"""Config -> sink: the one place that knows which class serves which `[[sink]]` / `[dead_letter]` type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import (
    DeadLetterConfig,
    JsonlDeadLetterConfig,
    JsonlSinkConfig,
    KafkaDeadLetterConfig,
    KafkaSinkConfig,
    ParquetSinkConfig,
    SinkConfig,
    StdoutSinkConfig,
)
from .base import DeadLetterSink, Sink
from .jsonl import JsonlDeadLetterSink, JsonlSink, StdoutSink
from .kafka import KafkaDeadLetterSink, KafkaSink
from .parquet import ParquetSink

__all__ = ["build_dead_letter_sink", "build_sink"]


def build_sink(cfg: SinkConfig, *, bootstrap: str | None, labels: tuple[str, ...],
               producer_overrides: Mapping[str, Any] | None = None, transactions=None) -> Sink:
    """The sink for one `[[sink]]` table. `bootstrap` is the embedded broker's address; it is used only by a Kafka
    sink whose config says bootstrap = "embedded" (an explicit address in the config always wins). `labels` names
    the model's probabilities in JSON output; `transactions` (exactly-once) the producer Kafka sinks write through."""
    if isinstance(cfg, KafkaSinkConfig):
        return KafkaSink(cfg, bootstrap=bootstrap if cfg.embedded else None, labels=labels,
                         producer_overrides=producer_overrides, transactions=transactions)
    if isinstance(cfg, ParquetSinkConfig):
        return ParquetSink.from_config(cfg)
    if isinstance(cfg, JsonlSinkConfig):
        return JsonlSink(cfg.path, labels)
    if isinstance(cfg, StdoutSinkConfig):
        return StdoutSink(cfg.format, labels)
    raise TypeError(f"no sink for {type(cfg).__name__}")


def build_dead_letter_sink(cfg: DeadLetterConfig, *, bootstrap: str | None,
                           producer_overrides: Mapping[str, Any] | None = None,
                           transactions=None) -> DeadLetterSink:
    """The sink for `[dead_letter]`; `bootstrap` and `transactions` as for `build_sink`."""
    if isinstance(cfg, KafkaDeadLetterConfig):
        return KafkaDeadLetterSink(cfg, bootstrap=bootstrap if cfg.embedded else None,
                                   producer_overrides=producer_overrides, transactions=transactions)
    if isinstance(cfg, JsonlDeadLetterConfig):
        return JsonlDeadLetterSink(cfg.path, cfg.max_payload_bytes)
    raise TypeError(f"no dead-letter sink for {type(cfg).__name__}")
