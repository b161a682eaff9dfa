"""Streaming event reader: chunks of events from one file, a list or a glob.

The reader never loads a whole file: it opens one file at a time and reads slabs of
``chunk_size`` events with h5py slicing, so memory is bounded by the chunk (and the
optional shuffle buffer), whatever the size of the data set. Every file is checked when
it is opened (``validate.check_structure``) and every chunk when it is read
(``validate.check_collection_chunk``): problems raise ``EventFileError`` naming file,
group and key.

Batches are ``EventBatch`` objects: per collection a ``(B, M, F)`` float32 array in
physical units plus a ``(B, M)`` mask, per-event scalars, labels, and where each event
came from (file and row), which later stages write next to the tokens.
"""

from __future__ import annotations

import glob as _glob
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from .. import schema
from ..config import ObjectConfig
from .validate import (
    EventFileError,
    Problem,
    check_collection_chunk,
    check_scalars_chunk,
    check_structure,
    check_sub_chunk,
    check_sub_structure,
    collection_width,
    file_experiment,
    has_sub_objects,
)


def expand_files(files: str | Path | Iterable[str | Path]) -> list[str]:
    """Expand a path, a glob or a list of either into a sorted, de-duplicated file list.

    Raises ``FileNotFoundError`` naming any path or pattern that matches nothing.
    """
    specs = [files] if isinstance(files, (str, Path)) else list(files)
    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        if any(c in spec for c in "*?["):
            matches = sorted(_glob.glob(spec, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match {spec!r}")
            out += matches
        else:
            if not Path(spec).exists():
                raise FileNotFoundError(f"no such file: {spec!r}")
            out.append(spec)
    seen: set[str] = set()
    return [f for f in out if not (f in seen or seen.add(f))]


@dataclass
class CollectionBatch:
    """Objects of one collection for a batch of events.

    Attributes:
        values: ``(B, M, F)`` float32, physical units; padding is 0.
        mask: ``(B, M)`` bool, True for real objects (packed at the front).
        features: the ``F`` feature names.
    """

    values: np.ndarray
    mask: np.ndarray
    features: tuple[str, ...]

    def feature(self, name: str) -> np.ndarray:
        """``(B, M)`` values of one feature."""
        return self.values[..., self.features.index(name)]

    def take(self, idx: np.ndarray) -> CollectionBatch:
        return CollectionBatch(self.values[idx], self.mask[idx], self.features)


@dataclass
class SubObjectBatch:
    """Sub-objects (jet constituents, track hits) of one collection's objects.

    Attributes:
        values: ``(B, M, C, F)`` float32, physical units; padding is 0. ``M`` slots are
            the parent collection's, in the file's order (pT descending).
        mask: ``(B, M, C)`` bool, True for real sub-objects (packed at the front).
        features: the ``F`` feature names (the schema's fields).
    """

    values: np.ndarray
    mask: np.ndarray
    features: tuple[str, ...]

    def feature(self, name: str) -> np.ndarray:
        """``(B, M, C)`` values of one feature."""
        return self.values[..., self.features.index(name)]

    def take(self, idx: np.ndarray) -> SubObjectBatch:
        return SubObjectBatch(self.values[idx], self.mask[idx], self.features)


@dataclass
class EventBatch:
    """A batch of ``B`` events.

    Attributes:
        collections: ``{name: CollectionBatch}`` (MET is a collection of one object).
        scalars: ``{"group/key": (B,) array}`` per-event scalars, e.g. ``"event/mu"``.
        labels: ``(B,)`` int64 process ids (``schema.PROCESS_IDS``), -1 when unlabelled.
        event_index: ``(B,)`` int64 row of each event in its file.
        file_index: ``(B,)`` int32 index into ``files``.
        files: source file names.
        sub_objects: ``{key: SubObjectBatch}`` (``schema.SUB_COLLECTIONS`` keys such as
            ``"jets_constituents"``), when read (``EventReader(sub_objects=...)``).
    """

    collections: dict[str, CollectionBatch]
    scalars: dict[str, np.ndarray]
    labels: np.ndarray
    event_index: np.ndarray
    file_index: np.ndarray
    files: list[str] = field(default_factory=list)
    sub_objects: dict[str, SubObjectBatch] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def source_file(self) -> np.ndarray:
        """``(B,)`` file name of each event."""
        return np.asarray(self.files, dtype=object)[self.file_index]

    def take(self, idx: np.ndarray) -> EventBatch:
        """The events at ``idx`` (a new batch)."""
        return EventBatch(
            {k: c.take(idx) for k, c in self.collections.items()},
            {k: v[idx] for k, v in self.scalars.items()},
            self.labels[idx],
            self.event_index[idx],
            self.file_index[idx],
            self.files,
            {k: c.take(idx) for k, c in self.sub_objects.items()},
        )

    @staticmethod
    def concat(batches: Sequence[EventBatch]) -> EventBatch:
        """Concatenate batches that share the same collections and file list."""
        b0 = batches[0]
        if len(batches) == 1:
            return b0
        return EventBatch(
            {
                k: CollectionBatch(
                    np.concatenate([b.collections[k].values for b in batches]),
                    np.concatenate([b.collections[k].mask for b in batches]),
                    c.features,
                )
                for k, c in b0.collections.items()
            },
            {k: np.concatenate([b.scalars[k] for b in batches]) for k in b0.scalars},
            np.concatenate([b.labels for b in batches]),
            np.concatenate([b.event_index for b in batches]),
            np.concatenate([b.file_index for b in batches]),
            b0.files,
            {
                k: SubObjectBatch(
                    _concat_padded([b.sub_objects[k].values for b in batches]),
                    _concat_padded([b.sub_objects[k].mask for b in batches]),
                    c.features,
                )
                for k, c in b0.sub_objects.items()
            },
        )


def _concat_padded(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate along axis 0, zero-padding axis 2 (sub-object width) to the widest."""
    width = max(a.shape[2] for a in arrays)
    pad = [(0, 0)] * arrays[0].ndim
    out = []
    for a in arrays:
        pad[2] = (0, width - a.shape[2])
        out.append(np.pad(a, pad) if a.shape[2] < width else a)
    return np.concatenate(out)


def _experiments_of(files: Sequence[str]) -> set[str]:
    """The experiments (metadata ``experiment``) of ``files``; unreadable files are skipped
    here (they fail with a clear error when read)."""
    out = set()
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                exp = file_experiment(f)
        except OSError:
            continue
        out.add(exp if exp in schema.EXPERIMENT_GROUPS else schema.DEFAULT_EXPERIMENT)  # unknown: fails when read
    return out or {schema.DEFAULT_EXPERIMENT}


def _label_of_file(f: h5py.File) -> int | None:
    proc = f[schema.METADATA].attrs.get("process") if schema.METADATA in f else None
    if proc is None:
        return None
    proc = proc.decode() if isinstance(proc, bytes) else str(proc)
    return schema.PROCESS_IDS.get(proc, schema.UNLABELLED)


class EventReader:
    """Iterate over events of HDF5 files in chunks.

    Args:
        files: a path, a glob, or a list of paths/globs.
        selection: which collections and features to read: ``{collection: [feature, ...]}``
            or a list of ``ObjectConfig``. ``None`` reads every collection with its
            ``common/`` fields plus, when all files belong to one experiment, that
            experiment's fields (``atlas/`` or ``cms/``).
        scalars: per-event scalars as ``"group/key"`` (default ``["event/mu"]``).
        chunk_size: events per batch.
        max_objects: per-collection truncation ``{collection: M}`` (objects are sorted by
            pT, so this keeps the leading ``M``). Default: the file's width.
        shard_index, num_shards: read only files ``shard_index::num_shards`` (file-level
            sharding for parallel jobs).
        shuffle_buffer: if > 0, shuffle file order, chunk order and events within a buffer
            of this many events (deterministic given ``seed`` and ``set_epoch``).
        seed: shuffling seed.
        validate: run the per-chunk content checks (structure is always checked).
        max_events: stop after this many events in total.
        rows: ``(start, stop)``: read only these rows of every file (``stop`` is clipped to
            the file's length), e.g. one output shard of a large file.
        sub_objects: sub-object collections to read (``schema.SUB_COLLECTIONS`` keys, e.g.
            ``["jets_constituents"]``; their parent collection must be selected), required
            in every file; or ``"auto"``: those of the selected collections that every file
            holds (a warning names collections only some files hold, which are then not
            read); ``None``: none.
        max_sub_objects: per sub-collection truncation ``{key: C}`` (keeps the leading ``C``).
    """

    def __init__(
        self,
        files: str | Path | Iterable[str | Path],
        selection: Mapping[str, Sequence[str]] | Sequence[ObjectConfig] | None = None,
        scalars: Sequence[str] = ("event/mu",),
        chunk_size: int = 8192,
        max_objects: Mapping[str, int] | None = None,
        shard_index: int = 0,
        num_shards: int = 1,
        shuffle_buffer: int = 0,
        seed: int = 0,
        validate: bool = True,
        max_events: int | None = None,
        rows: tuple[int, int] | None = None,
        sub_objects: str | Sequence[str] | None = None,
        max_sub_objects: Mapping[str, int] | None = None,
    ):
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
        all_files = expand_files(files)
        self.files = all_files[shard_index::num_shards]
        self.sources: dict[str, dict[str, str]] = {}
        if selection is None:
            experiments = _experiments_of(self.files)
            if len(experiments) == 1:
                (exp,) = experiments
                selection = {n: list(c.fields_for(exp)) for n, c in schema.COLLECTIONS.items() if n != "event"}
            else:  # mixed experiments: only what they share
                selection = {n: [f.name for f in c.common] for n, c in schema.COLLECTIONS.items() if n != "event"}
        elif not isinstance(selection, Mapping):
            configs = list(selection)
            selection = {c.object: c.feature_names for c in configs}
            self.sources = {c.object: {f.name: f.source for f in c.features} for c in configs}
        for coll in selection:
            schema.collection(coll)
        self.selection = {k: list(v) for k, v in selection.items()}
        self.scalars = list(scalars)
        self.chunk_size = int(chunk_size)
        self.max_objects = dict(max_objects or {})
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.epoch = 0
        self.validate = validate
        self.max_events = max_events
        if rows is not None and not (0 <= int(rows[0]) <= int(rows[1])):
            raise ValueError(f"rows must be (start, stop) with 0 <= start <= stop, got {rows}")
        self.rows = None if rows is None else (int(rows[0]), int(rows[1]))
        self._n_events: list[int] | None = None
        self.max_sub_objects = dict(max_sub_objects or {})
        self._auto_sub = sub_objects == "auto"
        if sub_objects is None or self._auto_sub:
            requested = []
        elif isinstance(sub_objects, str):
            raise ValueError(f"sub_objects must be 'auto', None or a list of keys, got {sub_objects!r}")
        else:
            requested = list(sub_objects)
        for key in requested:
            parent = schema.sub_collection(key).parent
            if parent not in self.selection:
                raise ValueError(f"sub_objects {key!r} need their parent collection {parent!r} in the selection")
        self._sub_objects: list[str] | None = None if self._auto_sub else requested

    @property
    def sub_objects(self) -> list[str]:
        """The sub-object collections this reader reads (``"auto"`` resolved on the files)."""
        if self._sub_objects is None:
            candidates = [k for k, s in schema.SUB_COLLECTIONS.items() if s.parent in self.selection]
            present = {k: 0 for k in candidates}
            for p in self.files:
                try:
                    f = h5py.File(p, "r")
                except OSError as e:
                    raise EventFileError([Problem(p, "", f"cannot open as HDF5 ({e})")]) from None
                with f:
                    for k in candidates:
                        present[k] += has_sub_objects(f, k)
            partial = [k for k, c in present.items() if 0 < c < len(self.files)]
            if partial:
                warnings.warn(
                    f"sub-objects {partial} are in only some of the files; reading objects only for them",
                    stacklevel=2,
                )
            self._sub_objects = [k for k, c in present.items() if self.files and c == len(self.files)]
        return self._sub_objects

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffling order (same seed and epoch give the same order)."""
        self.epoch = int(epoch)

    # -- metadata -------------------------------------------------------------------------
    def _open_checked(self, path: str) -> tuple[h5py.File, int]:
        try:
            # a chunk cache that holds whole chunks of the (n, M, C) sub-object arrays (MBs
            # each), so reading a chunk in slabs does not inflate it once per slab
            f = h5py.File(path, "r", rdcc_nbytes=64 * 1024**2)
        except OSError as e:
            raise EventFileError([Problem(path, "", f"cannot open as HDF5 ({e})")]) from None
        n, problems = check_structure(f, path, self.selection, self.scalars, self.sources)
        if not problems:
            for key in self.sub_objects:
                problems += check_sub_structure(f, path, key, n, collection_width(f, schema.sub_collection(key).parent))
        if problems:
            f.close()
            raise EventFileError(problems)
        return f, int(n)

    def events_per_file(self) -> list[int]:
        """Events in each file (from ``metadata/n_events``), after structural checks."""
        if self._n_events is None:
            counts = []
            for p in self.files:
                f, n = self._open_checked(p)
                f.close()
                counts.append(n)
            self._n_events = counts
        return self._n_events

    def __len__(self) -> int:
        """Total number of events (within ``rows``, capped by ``max_events``)."""
        counts = self.events_per_file()
        if self.rows is not None:
            counts = [max(0, min(self.rows[1], n) - min(self.rows[0], n)) for n in counts]
        total = sum(counts)
        return total if self.max_events is None else min(total, self.max_events)

    # -- iteration -------------------------------------------------------------------------
    def progress(self, desc: str, enabled: bool = True) -> Iterator[EventBatch]:
        """Iterate like ``iter(self)`` with a tqdm bar counting events (total ``len(self)``)."""
        with tqdm(total=len(self), desc=desc, unit="ev", unit_scale=True, disable=not enabled) as bar:
            for batch in self:
                yield batch
                bar.update(len(batch))

    def __iter__(self) -> Iterator[EventBatch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.arange(len(self.files))
        if self.shuffle_buffer > 0:
            rng.shuffle(order)
        stream = self._iter_chunks(order, rng)
        if self.shuffle_buffer > 0:
            stream = _shuffled(stream, self.shuffle_buffer, self.chunk_size, rng)
        remaining = self.max_events
        for batch in stream:
            if remaining is not None:
                if remaining <= 0:
                    return
                if len(batch) > remaining:
                    batch = batch.take(np.arange(remaining))
                remaining -= len(batch)
            yield batch

    def _iter_chunks(self, order: np.ndarray, rng: np.random.Generator) -> Iterator[EventBatch]:
        for fi in order:
            path = self.files[fi]
            f, n = self._open_checked(path)
            with f:
                widths = {c: collection_width(f, c) for c in self.selection if schema.COLLECTIONS[c].per_object}
                file_label = _label_of_file(f)
                lo, hi = (0, n) if self.rows is None else (min(self.rows[0], n), min(self.rows[1], n))
                starts = np.arange(lo, hi, self.chunk_size)
                if self.shuffle_buffer > 0:
                    rng.shuffle(starts)
                for s in starts:
                    yield self._read_chunk(
                        f, path, int(fi), int(s), min(int(s) + self.chunk_size, hi), widths, file_label
                    )

    def _read_chunk(self, f, path, fi, s, e, widths, file_label) -> EventBatch:
        colls: dict[str, CollectionBatch] = {}
        problems = []
        for cname, feats in self.selection.items():
            coll = schema.COLLECTIONS[cname]
            srcs = self.sources.get(cname, {})
            if coll.per_object:
                width = widths[cname]
                m = min(self.max_objects.get(cname, width), width)
                mask = f[coll.path_of(schema.MASK)][s:e, :m]
                values = np.zeros((e - s, m, len(feats)), dtype=np.float32)
                raw = {}
                for j, feat in enumerate(feats):
                    arr = f[srcs.get(feat) or coll.path_of(feat)][s:e, :m]
                    raw[feat] = arr
                    values[..., j] = arr
                if self.validate:
                    counts = f[coll.path_of(schema.COUNT)][s:e]
                    problems += check_collection_chunk(path, cname, s, mask, counts, raw, m == width, srcs)
                values[~mask] = 0.0
            else:
                values = np.zeros((e - s, 1, len(feats)), dtype=np.float32)
                raw = {}
                for j, feat in enumerate(feats):
                    key = srcs.get(feat) or coll.path_of(feat)
                    raw[key] = f[key][s:e]
                    values[:, 0, j] = raw[key]
                mask = np.ones((e - s, 1), dtype=bool)
                if self.validate:
                    problems += check_scalars_chunk(path, s, raw)
            colls[cname] = CollectionBatch(values, mask, tuple(feats))
        subs = {}
        for key in self.sub_objects:
            sub = schema.sub_collection(key)
            parent_mask = colls[sub.parent].mask
            m = parent_mask.shape[1]
            smask = f[sub.path_of(schema.MASK)]
            c = min(self.max_sub_objects.get(key, smask.shape[2]), smask.shape[2])
            smask = smask[s:e, :m, :c]
            raw = {name: f[sub.path_of(name)][s:e, :m, :c] for name in sub.fields}
            if self.validate:
                counts = f[sub.path_of(schema.COUNT)][s:e, :m]
                if c < f[sub.path_of(schema.MASK)].shape[2]:
                    counts = np.minimum(counts, c)
                problems += check_sub_chunk(path, key, s, parent_mask, smask, counts, raw)
            values = np.stack([raw[name].astype(np.float32) for name in sub.fields], axis=-1)
            values[~smask] = 0.0
            subs[key] = SubObjectBatch(values, smask & parent_mask[..., None], tuple(sub.fields))
        scalars, by_path = {}, {}
        for sname in self.scalars:
            group, _, key = sname.rpartition("/")
            dpath = schema.collection(group).path_of(key)
            scalars[sname] = by_path[dpath] = f[dpath][s:e]
        if self.validate:
            problems += check_scalars_chunk(path, s, by_path)
        if problems:
            raise EventFileError(problems)
        if schema.LABEL_KEY in f:
            labels = f[schema.LABEL_KEY][s:e].astype(np.int64)
        else:
            labels = np.full(e - s, schema.UNLABELLED if file_label is None else file_label, dtype=np.int64)
        return EventBatch(
            colls,
            scalars,
            labels,
            np.arange(s, e, dtype=np.int64),
            np.full(e - s, fi, dtype=np.int32),
            self.files,
            subs,
        )


def _shuffled(
    stream: Iterator[EventBatch], buffer_size: int, batch_size: int, rng: np.random.Generator
) -> Iterator[EventBatch]:
    """Shuffle events through a buffer of ``buffer_size`` events, emitting ``batch_size`` batches."""
    pending: list[EventBatch] = []
    held = 0
    for batch in stream:
        pending.append(batch)
        held += len(batch)
        if held >= buffer_size + batch_size:
            buf = EventBatch.concat(pending)
            perm = rng.permutation(len(buf))
            out, keep = (
                perm[: batch_size * ((held - buffer_size) // batch_size)],
                perm[batch_size * ((held - buffer_size) // batch_size) :],
            )
            for i in range(0, len(out), batch_size):
                yield buf.take(out[i : i + batch_size])
            pending, held = [buf.take(keep)], len(keep)
    if held:
        buf = EventBatch.concat(pending)
        perm = rng.permutation(len(buf))
        for i in range(0, len(perm), batch_size):
            yield buf.take(perm[i : i + batch_size])


def read_metadata(path: str | Path) -> dict:
    """The ``metadata`` attributes of a file, JSON strings decoded."""
    with h5py.File(path, "r") as f:
        if schema.METADATA not in f:
            raise EventFileError([Problem(str(path), "metadata", "missing group")])
        out = {}
        for k, v in f[schema.METADATA].attrs.items():
            v = v.decode() if isinstance(v, bytes) else v
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    pass
            elif isinstance(v, np.generic):
                v = v.item()
            out[k] = v
        return out
