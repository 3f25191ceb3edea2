"""Where scored rows and dead letters go: Kafka, rolling Parquet, JSON lines, the terminal, memory (tests).

Every sink follows `Sink` / `DeadLetterSink` (base.py): `write` may buffer, `flush` returns only once everything
written is durable and raises `SinkError` otherwise (sticky), `close` flushes. The pipeline commits source offsets
only after all its sinks flushed. Build them from the config with `build_sink` / `build_dead_letter_sink`.
"""

from .base import DeadLetterSink, Sink, SinkError
from .factory import build_dead_letter_sink, build_sink
from .jsonl import JsonlDeadLetterSink, JsonlSink, StdoutSink
from .kafka import KafkaDeadLetterSink, KafkaSink
from .memory import MemoryDeadLetterSink, MemorySink
from .parquet import ParquetSink, recover_journals
from .rows import encode_json, row_objects, text_lines

__all__ = [
    "DeadLetterSink", "JsonlDeadLetterSink", "JsonlSink", "KafkaDeadLetterSink", "KafkaSink", "MemoryDeadLetterSink",
    "MemorySink", "ParquetSink", "Sink", "SinkError", "StdoutSink", "build_dead_letter_sink", "build_sink",
    "encode_json", "recover_journals", "row_objects", "text_lines",
]
