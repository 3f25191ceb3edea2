"""Prometheus `/metrics` for a running pipeline, served by prometheus-client from `Metrics` snapshots.

A custom collector turns one snapshot per scrape into metric families, so the hot path never touches
prometheus-client (no per-document `observe()` calls and no second set of counters to keep in step): the
recorder already keeps the counters and histogram buckets, and a scrape only reads them.

    streamsent_docs_total{outcome="scored"|"dead_lettered"}   counter
    streamsent_batches_total                                   counter
    streamsent_tokens_total                                    counter (tokens as the batcher counts them)
    streamsent_labels_total{label}                             counter
    streamsent_dead_letters_total{reason}                      counter
    streamsent_write_retries_total                             counter
    streamsent_sinks_failing                                   gauge
    streamsent_batch_seconds                                   histogram (score + write time of a batch)
    streamsent_end_to_end_seconds                              histogram (produced or polled -> written)
    streamsent_consumer_lag{topic,partition}                   gauge
    streamsent_model_info{name,version,device}                 info
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from .metrics import Histogram, Metrics, MetricsSnapshot

__all__ = ["MetricsServer", "collect", "registry_for", "serve"]

log = logging.getLogger(__name__)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [("+Inf" if le == float("inf") else repr(le), n) for le, n in h.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.total)


def collect(s: MetricsSnapshot) -> Iterator[Metric]:
    """The metric families of one snapshot."""
    yield InfoMetricFamily("streamsent_model", "The model scoring the stream",
                           value={"name": s.model_name, "version": s.model_version, "device": s.device})
    docs = CounterMetricFamily("streamsent_docs", "Documents processed, by outcome", labels=["outcome"])
    for outcome, n in s.docs.items():
        docs.add_metric([outcome], n)
    yield docs
    yield CounterMetricFamily("streamsent_batches", "Micro-batches written to every sink", value=s.batches)
    yield CounterMetricFamily("streamsent_tokens", "Tokens scored (words, as the batcher counts them)",
                              value=s.tokens)
    labels = CounterMetricFamily("streamsent_labels", "Scored documents by predicted label", labels=["label"])
    for label, n in s.label_counts.items():
        labels.add_metric([label], n)
    yield labels
    dead = CounterMetricFamily("streamsent_dead_letters", "Input sent to the dead-letter sink, by reason",
                               labels=["reason"])
    for reason, n in sorted(s.dead_letters.items()):
        dead.add_metric([reason], n)
    yield dead
    yield CounterMetricFamily("streamsent_write_retries", "Failed attempts to write a batch to the sinks (retried "
                              "with back-off; nothing is committed meanwhile)", value=s.write_retries)
    yield GaugeMetricFamily("streamsent_sinks_failing", "1 while the sinks refuse writes (since the last "
                            "batch that got through), else 0", value=int(s.write_error is not None))
    yield _histogram("streamsent_batch_seconds", "Time to score a micro-batch and write it to every sink",
                     s.batch_seconds)
    yield _histogram("streamsent_end_to_end_seconds",
                     "From when a message was produced (Kafka timestamp) or polled (files) until it was written",
                     s.end_to_end_seconds)
    lag = GaugeMetricFamily("streamsent_consumer_lag", "Messages not yet read (high-water mark - position)",
                            labels=["topic", "partition"])
    for (topic, partition), n in sorted(s.lag.items()):
        lag.add_metric([topic, str(partition)], n)
    yield lag


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return collect(self.metrics.snapshot(latest=False))


def registry_for(metrics: Metrics) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one), holding only this pipeline's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return registry


class MetricsServer:
    """The HTTP server behind /metrics; `close()` stops it."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry_for(metrics))
        self.host, self.port = host, self._server.server_port
        log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve /metrics on host:port (0 = a free port; `MetricsServer.port` says which)."""
    return MetricsServer(metrics, host, port)
