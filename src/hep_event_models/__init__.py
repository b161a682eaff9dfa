"""hep_event_models: collider events as token sequences, and foundation models on them.

Stages (see the README): HDF5 events (``io``) from the built-in ``generator`` or real
files, per-object tokenizers, event tokenization, and masked-token pretraining.
"""

__version__ = "0.1.0"

from . import schema
from .config import ObjectConfig, load_object_config
from .io import EventBatch, EventFileError, EventReader, EventWriter

# torch-based classes load on first use, so `import hep_event_models` (and the generator/reader
# CLI) stays light
_LAZY = {
    "ObjectTokenizer": "object_tokenizer",
    "ObjectTokenizerSettings": "object_tokenizer",
    "ObjectPreprocessor": "preprocessing",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EventBatch",
    "EventFileError",
    "EventReader",
    "EventWriter",
    "ObjectConfig",
    "ObjectPreprocessor",
    "ObjectTokenizer",
    "ObjectTokenizerSettings",
    "__version__",
    "load_object_config",
    "schema",
]
