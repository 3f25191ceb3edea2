"""Exceptions that streamsent raises on purpose: each says what was wrong and what to do instead."""

from __future__ import annotations


class StreamsentError(Exception):
    """Base class of every error streamsent raises on purpose."""


class BatchError(StreamsentError, ValueError):
    """Malformed input documents (bad offsets, token ids outside the vocabulary, wrong Arrow type)."""


class ModelFormatError(StreamsentError, ValueError):
    """A model directory that does not follow `streamsent-model/1`: names the key or tensor, expected and actual."""


class ConfigError(StreamsentError, ValueError):
    """A configuration value that is missing or not allowed: names the file and the dotted key."""


class DeviceError(StreamsentError, RuntimeError):
    """A backend that cannot run here (e.g. CUDA without a GPU)."""


class StateError(StreamsentError, ValueError):
    """Carried state that does not fit the model or the batch it is used with."""


class PipelineError(StreamsentError, RuntimeError):
    """The streaming pipeline stopped on a failure it cannot ride out (its cause is chained and logged)."""


class DataError(StreamsentError, ValueError):
    """A data file that cannot be used as given: not the format it should be, unreadable, a column missing or of
    another type than in the files before it, or an output that cannot be written. Names the file."""
