"""hep_event_models: collider events as token sequences, and foundation models on them.

Stages (see the README): HDF5 events (``io``) from the built-in ``generator`` or real
files, per-object tokenizers, event tokenization, and masked-token pretraining.
"""

__version__ = "0.1.0"

from . import schema
from .config import ObjectConfig, load_object_config
from .io import EventBatch, EventFileError, EventReader, EventWriter

# classes load on first use (the Auto-class registration below imports transformers and torch)
_LAZY = {
    "EventTokenizer": "event_tokenizer",
    "HepEventConfig": "configuration_hep_event",
    "HepEventModel": "modeling_hep_event",
    "HepEventForMaskedLM": "modeling_hep_event",
    "HepEventForSequenceClassification": "modeling_hep_event",
    "ObjectTokenizer": "object_tokenizer",
    "ObjectTokenizerSettings": "object_tokenizer",
    "ObjectPreprocessor": "preprocessing",
}


def _register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel*.from_pretrained`` know the HepEvent models after
    ``import hep_event_models`` (no ``trust_remote_code`` needed)."""
    from .modeling_hep_event import register_auto_classes

    register_auto_classes()


_register_auto_classes()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EventBatch",
    "EventFileError",
    "EventReader",
    "EventTokenizer",
    "EventWriter",
    "HepEventConfig",
    "HepEventForMaskedLM",
    "HepEventForSequenceClassification",
    "HepEventModel",
    "ObjectConfig",
    "ObjectPreprocessor",
    "ObjectTokenizer",
    "ObjectTokenizerSettings",
    "__version__",
    "load_object_config",
    "schema",
]
