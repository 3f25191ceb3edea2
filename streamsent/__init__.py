"""streamsent: sentiment of text as it streams, with Numba-JIT RNN/LSTM/GRU/CNN/HAN encoders."""

from .backends.base import CarryState, Scores
from .batch import DocBatch
from .errors import BatchError, ConfigError, DataError, DeviceError, ModelFormatError, StateError, StreamsentError
from .models.config import EncoderConfig, ModelConfig
from .models.model import Model, load_model

__version__ = "0.1.0"

__all__ = [
    "BatchError", "CarryState", "ConfigError", "DataError", "DeviceError", "DocBatch", "EncoderConfig", "Model",
    "ModelConfig", "ModelFormatError", "Scores", "StateError", "StreamsentError", "load_model", "__version__",
]
