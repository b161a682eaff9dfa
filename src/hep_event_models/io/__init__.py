"""HDF5 event I/O: streaming reader, atomic writer, validation."""

from .reader import CollectionBatch, EventBatch, EventReader, SubObjectBatch, expand_files, read_metadata
from .validate import EventFileError, Problem
from .writer import EventWriter, write_events

__all__ = [
    "CollectionBatch",
    "EventBatch",
    "EventFileError",
    "EventReader",
    "EventWriter",
    "Problem",
    "SubObjectBatch",
    "expand_files",
    "read_metadata",
    "write_events",
]
