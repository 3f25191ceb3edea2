"""`streamsent run`: build the pipeline a config describes (broker, source, model, sinks) and run it."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, StreamsentError
from ..models.model import load_model
from .config import (
    SAMPLES_DIR,
    FileSourceConfig,
    KafkaDeadLetterConfig,
    KafkaSinkConfig,
    KafkaSourceConfig,
    PipelineConfig,
)
from .jsonlines import iter_lines
from .metrics import Metrics
from .pipeline import Pipeline, PipelineStats
from .records import DocFields

__all__ = ["ReplayError", "check_config", "check_model_path", "check_state_model", "replay_into", "replay_message",
           "run_pipeline", "sample_file"]

if TYPE_CHECKING:
    from rich.console import Console

    from ..models.config import ModelConfig
    from ..models.model import Model
    from .state.live import LiveState
    from .transactions import Transactions

log = logging.getLogger(__name__)


def sample_file(name_or_path: str) -> Path:
    """A JSON-lines file: the path if it exists, else the bundled sample of that name (`imdb-sample`)."""
    given = Path(name_or_path).expanduser()
    if given.is_file():
        return given
    bundled = SAMPLES_DIR / f"{name_or_path}.jsonl"
    if "/" not in name_or_path and bundled.is_file():
        return bundled
    known = sorted(p.stem for p in SAMPLES_DIR.glob("*.jsonl")) if SAMPLES_DIR.is_dir() else []
    raise ConfigError(f"{name_or_path!r} is neither a file nor a bundled sample (bundled: {', '.join(known)})")


REPLAY_BOOTSTRAP_TIMEOUT_S = 5.0  # a broker that does not answer within this is not there


class ReplayError(StreamsentError):
    """A JSON-lines file could not be produced into its topic: no broker, or messages the broker did not take."""


def replay_message(line: bytes, id_suffix: str = "") -> tuple[bytes, bytes | None]:
    """(value, key) to produce for one JSON-lines line.

    A JSON object is keyed by its `key` field (a conversation; moved from the value to the message key) or else by
    its `doc_id` (a string or an integer); `id_suffix` is appended to both. Anything else (invalid UTF-8 or JSON,
    an array, a bare string or number, JSON nested too deep to parse) is sent as it is, with no key: the
    pipeline dead-letters it with its reason, so a replay shows what a real producer could send."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return line, None
    if not isinstance(obj, dict):
        return line, None
    conversation = obj.pop("key", None)
    doc_id = obj.get("doc_id")
    has_id = isinstance(doc_id, str | int) and not isinstance(doc_id, bool) and doc_id != ""
    key = str(conversation) if conversation is not None else str(doc_id) if has_id else None
    if id_suffix:
        if has_id:
            obj["doc_id"] = f"{doc_id}{id_suffix}"
        if key is not None:
            key += id_suffix
    if (id_suffix and (has_id or key is not None)) or conversation is not None:
        line = json.dumps(obj, ensure_ascii=False).encode()
    return line, None if not key else key.encode()


def replay_into(bootstrap: str, topic: str, path: Path, rate: float, stop: threading.Event,
                id_suffix: str = "") -> int:
    """Produce a JSON-lines file into a topic, one message a non-blank line (`replay_message`), at `rate` lines/s
    (0 = as fast as possible); returns the number of messages sent (all acknowledged: flush() waits for them).

    A UTF-8 BOM at the start of the file and CRLF line endings are dropped as the JSON-lines source drops them. A
    broker that does not answer within REPLAY_BOOTSTRAP_TIMEOUT_S, or messages it refuses, raise ReplayError
    (naming the address, or the first refused line) after every other line was sent."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        f = open(path, "rb")  # before connecting: a file that is not there needs no broker to say so
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
    sent = 0
    failed: list[str] = []  # "line N: why", in the order the failures were seen

    def refused(number: int) -> Callable[[BaseException], None]:
        return lambda exc: failed.append(f"line {number}: {exc}")

    with f:
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5,
                                     bootstrap_timeout_ms=int(REPLAY_BOOTSTRAP_TIMEOUT_S * 1000),
                                     max_block_ms=int(2 * REPLAY_BOOTSTRAP_TIMEOUT_S * 1000))
        except KafkaError as exc:
            raise ReplayError(f"no Kafka broker answered at {bootstrap} within {REPLAY_BOOTSTRAP_TIMEOUT_S:g} s "
                              f"({type(exc).__name__})") from None
        try:
            for number, line in iter_lines(f):
                if stop.is_set():
                    break
                value, key = replay_message(line, id_suffix)
                try:
                    producer.send(topic, value=value, key=key).add_errback(refused(number))
                except KafkaError as exc:  # too large, or no metadata within max_block_ms
                    failed.append(f"line {number}: {exc}")
                else:
                    sent += 1
                if rate > 0:
                    stop.wait(1.0 / rate)
            producer.flush()
        except OSError as exc:
            raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
        finally:
            producer.close()
    if failed:
        raise ReplayError(f"{len(failed)} line(s) of {path} were not accepted by {bootstrap} (topic {topic}); "
                          f"first: {failed[0]}")
    log.info("replayed %d documents from %s into %s", sent, path, topic)
    return sent


def run_pipeline(cfg: PipelineConfig, *, stop_after_idle_s: float | None = None,
                 install_signal_handlers: bool = True, on_batch=None, dashboard: Console | None = None,
                 metrics: Metrics | None = None, stop: threading.Event | None = None) -> PipelineStats:
    """Run the pipeline `cfg` describes until it stops; `dashboard`: a terminal Console to show the live dashboard
    on; `metrics`: a recorder to feed (one is made when the dashboard or `[metrics] port` needs it); `stop`: an
    event another thread sets to end the run as SIGTERM does (drain, commit, return)."""
    from .sinks import build_dead_letter_sink, build_sink
    from .sources import build_source

    check_config(cfg)  # what can be checked without a broker fails before one starts, as in check-config
    with ExitStack() as stack:
        bootstrap = None
        replay: _Replay | None = None
        if cfg.embedded is not None:
            from .broker import EmbeddedBroker

            emb = cfg.embedded
            broker = EmbeddedBroker(emb.broker, port=emb.port, data_dir=emb.data_dir).start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
            topics = {emb.topic: emb.partitions}
            topics |= {s.topic: 1 for s in cfg.sinks if isinstance(s, KafkaSinkConfig)}
            if isinstance(cfg.dead_letter, KafkaDeadLetterConfig):
                topics[cfg.dead_letter.topic] = 1
            broker.create_topics(topics)
            log.info("topics %s created on the embedded broker", topics)
            replay_path = emb.replay_file()
            if replay_path is not None:
                replay = _Replay(bootstrap, emb.topic, replay_path, emb.replay_rate)
                stack.callback(replay.stop.set)
        # Idle OpenMP workers spin by default; in a pipeline the cores are also busy with Kafka I/O and JSON, and
        # spinning Numba threads made the model 3-12x slower there (bench/pipeline.py). Must precede the first
        # parallel kernel of the process; an explicit OMP_WAIT_POLICY wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        model = load_model(cfg.model.path, device=cfg.model.device)
        state = _live_state(cfg, model, bootstrap)  # before the source: a model that cannot carry state stops here
        if state is not None and state.changelog is not None:
            stack.callback(state.changelog.close)  # (closed already after a clean drain)
        src = cfg.source
        source = build_source(src, bootstrap=bootstrap)
        stack.callback(source.close)
        transactions = _transactions(cfg, bootstrap)  # exactly-once: every Kafka output goes through it
        if transactions is not None:
            stack.callback(transactions.close)  # after the sinks (callbacks run last-in first-out)
        sinks = []
        for s in cfg.sinks:
            sink = build_sink(s, bootstrap=bootstrap, labels=model.labels, transactions=transactions)
            stack.callback(sink.close)
            sinks.append(sink)
        dead = build_dead_letter_sink(cfg.dead_letter, bootstrap=bootstrap, transactions=transactions)
        stack.callback(dead.close)
        fields = DocFields(src.doc_id_field, src.text_field, src.tokens_field,
                           src.key_field if isinstance(src, FileSourceConfig) else "key")
        if metrics is None and (dashboard is not None or cfg.metrics.port):
            metrics = Metrics.for_model(model, max_docs=cfg.batch.max_docs, max_tokens=cfg.batch.max_tokens)
        if cfg.metrics.port:
            from .prometheus import serve

            stack.enter_context(serve(metrics, cfg.metrics.host, cfg.metrics.port))
        pipeline = Pipeline(source, model, sinks, dead, max_docs=cfg.batch.max_docs, max_tokens=cfg.batch.max_tokens,
                            max_wait_ms=cfg.batch.max_wait_ms, queue_size=cfg.batch.queue_size, fields=fields,
                            on_batch=on_batch, metrics=metrics, threads=cfg.model.threads,
                            scorers=cfg.model.scorers, state=state, transactions=transactions, stop=stop,
                            # with a checkpoint dir, offsets are committed with each checkpoint
                            commit_interval_s=cfg.state.checkpoint_interval_s if state is not None
                            and cfg.state.dir is not None else 0.5)
        if dashboard is not None:
            from .dashboard import Dashboard

            stack.enter_context(Dashboard(metrics, console=dashboard))
        if install_signal_handlers:
            pipeline.install_signal_handlers()
        if replay is not None:
            replay.on_failure(pipeline.stop)
        t0 = time.time()
        stats = pipeline.run(stop_after_idle_s=stop_after_idle_s)
        if replay is not None:
            replay.raise_if_failed()  # after the drain: what was scored is written and committed
        log.info("stopped after %.1f s: %d records, %d scored, dead letters %s, %d commits", time.time() - t0,
                 stats.records, stats.docs_scored, stats.dead_letters or "none", stats.commits)
        return stats


class _Replay:
    """The `[embedded] replay` thread. It must not die unseen: a failure is logged at once, stops the pipeline
    (which drains and commits what it has), and `run_pipeline` then raises it, so the run exits 2."""

    def __init__(self, bootstrap: str, topic: str, path: Path, rate: float) -> None:
        self.stop = threading.Event()
        self._args = (bootstrap, topic, path, rate, self.stop)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._on_failure: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="streamsent-replay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            replay_into(*self._args)
        except Exception as exc:  # any failure must reach the run, not vanish with the thread
            log.error("replay of %s into topic %s failed: %s; stopping the run", self._args[2], self._args[1], exc)
            with self._lock:
                self._error, callback = exc, self._on_failure
            if callback is not None:
                callback()

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the replay fails (at once if it has already)."""
        with self._lock:
            self._on_failure, failed = callback, self._error is not None
        if failed:
            callback()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            path, topic = self._args[2], self._args[1]
            raise ReplayError(f"the replay of {path} into topic {topic} failed, so the run stopped: "
                              f"{self._error}") from self._error


def _transactions(cfg: PipelineConfig, bootstrap: str | None) -> Transactions | None:
    """`[delivery] guarantee = "exactly-once"`: the transactional producer every Kafka output writes through (the
    config check has made sure that every output is a Kafka topic of the source's cluster)."""
    if cfg.delivery.guarantee != "exactly-once":
        return None
    from .transactions import Transactions, claim_transactional_id

    assert isinstance(cfg.source, KafkaSourceConfig)
    outputs = [*cfg.sinks, cfg.dead_letter]
    confs = [o.confluent_producer_conf(bootstrap if o.embedded else None) for o in outputs]  # type: ignore[union-attr]
    conf = {**confs[0], "message.max.bytes": max(int(c["message.max.bytes"]) for c in confs)}
    tid, lock = cfg.delivery.transactional_id, None
    if tid is None:
        tid, lock = claim_transactional_id(cfg.source.group_id)
    txn = Transactions(conf, tid, cfg.delivery.transaction_timeout_ms)
    txn.lock = lock  # held while the producer lives: a restarted worker on this host gets the same id back
    return txn


def _live_state(cfg: PipelineConfig, model: Model, bootstrap: str | None) -> LiveState | None:
    """The `[state]` section made real: the keyed scorer (refusing a model that cannot carry state), the checkpoint
    restored from `dir`, and the changelog for a kafka source."""
    st = cfg.state
    if not st.enabled:
        return None
    from .state import KeyedScorer
    from .state.live import LiveState

    try:
        scorer = KeyedScorer.from_config(model, st)
    except ConfigError as exc:
        raise ConfigError(_in_file(cfg, str(exc))) from None
    changelog = None
    if st.uses_changelog(cfg.source):
        from .state.changelog import Changelog

        assert isinstance(cfg.source, KafkaSourceConfig)
        kwargs = cfg.source.client_kwargs(bootstrap)
        servers = kwargs.pop("bootstrap_servers")
        kwargs.pop("client_id", None)  # the changelog's clients name themselves after the group
        changelog = Changelog(servers, cfg.source.group_id, kwargs, restore_timeout_s=st.restore_timeout_s)
    live = LiveState(scorer, st.dir, changelog)
    live.load_checkpoint()
    return live


def check_config(cfg: PipelineConfig) -> ModelConfig:
    """Every check `run` makes before it touches a broker, in the order it makes them; `check-config` runs exactly
    these. Returns the model's config. Each failure is a ConfigError naming the config file and the key:

    - `model.path`: a model directory or built-in name whose config.json reads (the weights load when `run` does);
    - `[state]`: with `enabled`, a model that can score conversations (`check_state_model`);
    - `source.path`: for a file source, a file, directory or glob that holds input (the source's own expansion);
    - `embedded.replay`: the file, or bundled sample, to replay.
    """
    model_cfg = check_model_path(cfg)
    check_state_model(cfg, model_cfg)
    if isinstance(cfg.source, FileSourceConfig):
        from .sources import build_source

        try:
            build_source(cfg.source).close()  # expands the path as the run will; reads no row
        except StreamsentError as exc:
            raise ConfigError(_in_file(cfg, f"source.path = {cfg.source.path!r}: {exc}")) from None
    if cfg.embedded is not None:
        try:
            cfg.embedded.replay_file()
        except ConfigError as exc:
            raise ConfigError(_in_file(cfg, str(exc))) from None
    return model_cfg


def check_model_path(cfg: PipelineConfig) -> ModelConfig:
    """The config.json of the model `[model] path` names (a directory or a built-in name), or a ConfigError naming
    `model.path`."""
    from ..errors import ModelFormatError
    from ..models.config import ModelConfig
    from ..models.model import _resolve

    try:
        path = _resolve(cfg.model.path) / "config.json"
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    except (ModelFormatError, OSError, ValueError) as exc:
        raise ConfigError(_in_file(cfg, f"model.path = {cfg.model.path!r}: {exc}")) from None


def check_state_model(cfg: PipelineConfig, model_cfg: ModelConfig) -> None:
    """With `[state] enabled`, refuse (ConfigError naming [state]) a model that cannot carry state; the same
    check (`state.check_model`) that `run` makes on the loaded model."""
    if not cfg.state.enabled:
        return
    from .state import check_model

    try:
        check_model(model_cfg, cfg.state.window)
    except ConfigError as exc:
        raise ConfigError(_in_file(cfg, str(exc))) from None


def _in_file(cfg: PipelineConfig, message: str) -> str:
    """`message` prefixed with the config file it is about, as the config loader's errors are."""
    return f"{cfg.path}: {message}" if cfg.path is not None else message
