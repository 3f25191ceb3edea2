"""Where input comes from: a Kafka consumer group, or Parquet / Arrow IPC / JSON-lines files.

Kafka is read with confluent-kafka (`ConfluentSource`, the default `client`) or kafka-python (`KafkaSource`).
Every source follows the `Source` protocol (`poll`, `exhausted`, `commit`, rebalance handlers, `lag`,
`assignment`, `close`) and hands over `Record`s; `build_source` picks one from the `[source]` config.
"""

from __future__ import annotations

from ..config import FileSourceConfig, KafkaSourceConfig, SourceConfig
from .base import CommitError, OffsetOrderError, Partition, RebalanceHandler, Source, SourceError
from .files import ArrowSource, JsonlSource, ParquetSource
from .kafka import KafkaSource

__all__ = ["ArrowSource", "CommitError", "JsonlSource", "KafkaSource", "OffsetOrderError", "ParquetSource",
           "Partition", "RebalanceHandler", "Source", "SourceError", "build_source"]

_FILE_SOURCES = {"parquet": ParquetSource, "arrow": ArrowSource, "jsonl": JsonlSource}


def build_source(cfg: SourceConfig, *, bootstrap: str | None = None) -> Source:
    """The source for a `[source]` section; `bootstrap` replaces `"embedded"` with the started broker's address."""
    if isinstance(cfg, KafkaSourceConfig):
        if cfg.client == "confluent":
            from .confluent import ConfluentSource

            return ConfluentSource(cfg, bootstrap)
        return KafkaSource(cfg, bootstrap)
    if isinstance(cfg, FileSourceConfig):
        return _FILE_SOURCES[cfg.type](cfg)
    raise TypeError(f"not a source config: {type(cfg).__name__}; expected KafkaSourceConfig or FileSourceConfig")
