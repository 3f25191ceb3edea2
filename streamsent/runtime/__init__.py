"""The streaming runtime: configuration, the embedded broker (and, next, sources, batcher, sinks, pipeline)."""

from .broker import BrokerError, EmbeddedBroker
from .config import PipelineConfig, load_config

__all__ = ["BrokerError", "EmbeddedBroker", "PipelineConfig", "load_config"]
