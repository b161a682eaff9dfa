"""hep_event_models: collider events as token sequences, and foundation models on them.

Stages (see the README): HDF5 events (``io``) from the built-in ``generator`` or real
files, per-object tokenizers, event tokenization, and masked-token pretraining.
"""

__version__ = "0.1.0"

from . import schema
from .config import ObjectConfig, load_object_config
from .io import EventBatch, EventFileError, EventReader, EventWriter

__all__ = [
    "EventBatch",
    "EventFileError",
    "EventReader",
    "EventWriter",
    "ObjectConfig",
    "__version__",
    "load_object_config",
    "schema",
]
