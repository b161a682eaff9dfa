"""Validation of event files: every problem names the file, the group and the key.

Two levels:

* structural checks (``check_structure``), cheap, run when a file is opened: groups and
  keys present, shapes ``(n_events, max_objects)`` / ``(n_events,)``, dtype classes,
  ``format_version`` and ``experiment`` known, file not empty, no feature of the other
  experiment's group selected (a CMS file has ``cms/``, not ``atlas/``);
* content checks (``check_collection_chunk``, ``check_scalars_chunk``), run on every
  chunk the reader reads: ``mask`` agrees with ``n`` and is packed at the front, no NaN
  or inf in real objects or in per-event scalars.

Functions return lists of ``Problem``; the reader raises ``EventFileError`` with them,
``hep-event-models inspect`` prints them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from .. import schema


@dataclass(frozen=True)
class Problem:
    """One validation problem in one file."""

    file: str
    key: str  # group or dataset path inside the file ("" for the file itself)
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


class EventFileError(ValueError):
    """A file does not follow the event schema. ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"... and {len(self.problems) - 20} more")
        super().__init__("\n".join(lines))


def full_selection(experiment: str = schema.DEFAULT_EXPERIMENT) -> dict[str, list[str]]:
    """Every collection with every schema field of ``experiment``'s files (what ``inspect`` checks)."""
    return {name: list(coll.fields_for(experiment)) for name, coll in schema.COLLECTIONS.items() if name != "event"}


def full_scalars(experiment: str = schema.DEFAULT_EXPERIMENT) -> list[str]:
    return [f"event/{f}" for f in schema.COLLECTIONS["event"].fields_for(experiment)]


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def file_experiment(f: h5py.File) -> str:
    """The experiment a file belongs to (``metadata`` attribute ``experiment``; ATLAS when absent)."""
    attrs = f[schema.METADATA].attrs if schema.METADATA in f else {}
    return schema.normalize_experiment(attrs.get("experiment"))


def _foreign_group_problem(path: str, key: str, experiment: str) -> Problem | None:
    """A problem when ``key`` lies in another experiment's group than the file's."""
    top = key.split("/", 1)[0]
    own = schema.EXPERIMENT_GROUPS.get(experiment)
    if own is None or top not in schema.EXPERIMENT_GROUPS.values() or top == own:
        return None
    return Problem(
        path,
        key,
        f"{top}/ feature, but this is a {experiment} file (metadata experiment): it has {own}/ instead; "
        f"select common/ features (or {own}/ ones) for {experiment} files",
    )


def read_n_events(f: h5py.File, path: str) -> tuple[int | None, list[Problem]]:
    """Number of events from ``metadata`` (checking ``format_version`` too)."""
    problems: list[Problem] = []
    if schema.METADATA not in f:
        return None, [Problem(path, schema.METADATA, "missing group (needs attributes format_version, n_events)")]
    attrs = f[schema.METADATA].attrs
    for a in schema.REQUIRED_METADATA_ATTRS:
        if a not in attrs:
            problems.append(Problem(path, schema.METADATA, f"missing attribute {a!r}"))
    if "format_version" in attrs:
        try:
            schema.check_format_version(attrs["format_version"])
        except ValueError as e:
            problems.append(Problem(path, f"{schema.METADATA}.format_version", str(e)))
    if "experiment" in attrs and schema.normalize_experiment(attrs["experiment"]) not in schema.EXPERIMENT_GROUPS:
        problems.append(
            Problem(
                path,
                f"{schema.METADATA}.experiment",
                f"unknown experiment {_attr_str(attrs['experiment'])!r}; known: {list(schema.EXPERIMENT_GROUPS)}",
            )
        )
    n = None
    if "n_events" in attrs:
        n = int(attrs["n_events"])
        if n <= 0:
            problems.append(Problem(path, f"{schema.METADATA}.n_events", "empty file (0 events)"))
    return n, problems


def _check_dataset(f, path, key, shape, dtype_class) -> list[Problem]:
    group, _, name = key.rpartition("/")
    if group not in f:
        return [Problem(path, group, "missing group")]
    if name not in f[group]:
        return [Problem(path, group, f"missing key {name!r}")]
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        return [Problem(path, key, "is a group, expected a dataset")]
    out = []
    if ds.shape != shape:
        out.append(Problem(path, key, f"shape {ds.shape}, expected {shape}"))
    if not schema.dtype_matches(ds.dtype, dtype_class):
        out.append(Problem(path, key, f"dtype {ds.dtype}, expected a {dtype_class} type"))
    return out


def collection_width(f: h5py.File, coll: str) -> int | None:
    """``max_objects`` of a per-object collection as stored in the file (from its mask)."""
    key = schema.collection(coll).path_of(schema.MASK)
    if key in f and len(f[key].shape) == 2:
        return int(f[key].shape[1])
    return None


def check_structure(
    f: h5py.File,
    path: str,
    selection: Mapping[str, Sequence[str]],
    scalars: Sequence[str] = (),
    sources: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[int | None, list[Problem]]:
    """Structural checks for the selected collections/features and per-event scalars.

    Args:
        f: open file.
        path: file name used in messages.
        selection: ``{collection: [feature, ...]}``.
        scalars: per-event scalars as ``"group/key"`` (e.g. ``"event/mu"``).
        sources: optional ``{collection: {feature: dataset path}}`` overriding the schema.

    Returns:
        ``(n_events, problems)``.
    """
    n, problems = read_n_events(f, path)
    if n is None or n <= 0:
        return n, problems
    sources = sources or {}
    experiment = file_experiment(f)
    for coll_name, feats in selection.items():
        coll = schema.collection(coll_name)
        if coll.per_object:
            mask_key, n_key = coll.path_of(schema.MASK), coll.path_of(schema.COUNT)
            width = collection_width(f, coll_name)
            mp = _check_dataset(f, path, mask_key, (n, width if width is not None else -1), schema.BOOL)
            problems += mp
            if width is None:
                continue
            problems += _check_dataset(f, path, n_key, (n,), schema.INT)
            shape = (n, width)
        else:
            shape = (n,)
        for feat in feats:
            key = sources.get(coll_name, {}).get(feat) or coll.path_of(feat)
            foreign = _foreign_group_problem(path, key, experiment)
            if foreign is not None:
                problems.append(foreign)
                continue
            field = coll.all_fields.get(feat)
            problems += _check_dataset(f, path, key, shape, field.dtype_class if field else schema.FLOAT)
    for s in scalars:
        group, _, key = s.rpartition("/")
        coll = schema.collection(group)
        foreign = _foreign_group_problem(path, coll.path_of(key), experiment)
        if foreign is not None:
            problems.append(foreign)
            continue
        field = coll.all_fields.get(key)
        problems += _check_dataset(f, path, coll.path_of(key), (n,), field.dtype_class if field else schema.FLOAT)
    if schema.LABEL_KEY in f:
        problems += _check_dataset(f, path, schema.LABEL_KEY, (n,), schema.INT)
    return n, problems


def check_collection_chunk(
    path: str,
    coll_name: str,
    start: int,
    mask: np.ndarray,
    counts: np.ndarray,
    values: Mapping[str, np.ndarray],
    full_width: bool = True,
    sources: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Content checks of one chunk of a per-object collection.

    Args:
        start: index of the chunk's first event in the file (for messages).
        mask: ``(B, M)`` bool; ``counts``: ``(B,)`` the file's ``n``.
        values: ``{feature: (B, M) array}``.
        full_width: the mask holds every column of the file (so ``mask.sum(1) == n``
            must hold exactly); with truncation only ``<=`` can be checked.
    """
    coll = schema.collection(coll_name)
    problems = []
    mask_key, n_key = coll.path_of(schema.MASK), coll.path_of(schema.COUNT)
    msum = mask.sum(axis=1)
    bad = np.flatnonzero(msum != counts) if full_width else np.flatnonzero(msum > counts)
    if bad.size:
        i = int(bad[0])
        problems.append(
            Problem(
                path,
                mask_key,
                f"mask disagrees with {n_key} in {bad.size} events (first: event {start + i}: "
                f"mask has {int(msum[i])} objects, n = {int(counts[i])})",
            )
        )
    if mask.shape[1] > 1:
        unpacked = np.flatnonzero((mask[:, 1:] & ~mask[:, :-1]).any(axis=1))
        if unpacked.size:
            problems.append(
                Problem(
                    path,
                    mask_key,
                    f"real objects not packed at the front in {unpacked.size} events "
                    f"(first: event {start + int(unpacked[0])})",
                )
            )
    for feat, arr in values.items():
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        bad_obj = ~np.isfinite(arr) & mask
        if bad_obj.any():
            ev = int(np.flatnonzero(bad_obj.any(axis=1))[0])
            key = (sources or {}).get(feat) or coll.path_of(feat)
            problems.append(
                Problem(path, key, f"NaN/inf in {int(bad_obj.sum())} real objects (first: event {start + ev})")
            )
    return problems


def check_scalars_chunk(path: str, start: int, values: Mapping[str, np.ndarray]) -> list[Problem]:
    """No NaN/inf in per-event scalars (``values`` keyed by dataset path)."""
    problems = []
    for key, arr in values.items():
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                problems.append(
                    Problem(
                        path,
                        key,
                        f"NaN/inf in {int(bad.sum())} events (first: event {start + int(np.flatnonzero(bad)[0])})",
                    )
                )
    return problems


# --------------------------------------------------------------------------------------
# sub-objects (jet constituents, track hits): common/<parent>/<name>/<key>
# --------------------------------------------------------------------------------------
def has_sub_objects(f: h5py.File, key: str) -> bool:
    """Whether the file holds the sub-object collection ``key`` (its ``mask`` dataset)."""
    return schema.sub_collection(key).path_of(schema.MASK) in f


def check_sub_structure(f: h5py.File, path: str, key: str, n: int, width: int | None) -> list[Problem]:
    """Shapes and dtypes of a sub-object collection: ``(n, width, C)`` arrays, ``n`` ``(n, width)``."""
    sub = schema.sub_collection(key)
    mask_key = sub.path_of(schema.MASK)
    if mask_key not in f:
        return [Problem(path, sub.group, f"missing key 'mask' (no {key} in this file)")]
    mask = f[mask_key]
    if not isinstance(mask, h5py.Dataset) or len(mask.shape) != 3:
        return [Problem(path, mask_key, f"expected a (n_events, max_objects, C) bool dataset, got {mask}")]
    C = int(mask.shape[2])
    shape = (n, width if width is not None else -1, C)
    problems = _check_dataset(f, path, mask_key, shape, schema.BOOL)
    problems += _check_dataset(f, path, sub.path_of(schema.COUNT), shape[:2], schema.INT)
    for name, fld in sub.fields.items():
        problems += _check_dataset(f, path, sub.path_of(name), shape, fld.dtype_class)
    return problems


def check_sub_chunk(
    path: str,
    key: str,
    start: int,
    parent_mask: np.ndarray,
    mask: np.ndarray,
    counts: np.ndarray,
    values: Mapping[str, np.ndarray],
) -> list[Problem]:
    """Content checks of one chunk of sub-objects: ``mask`` ``(B, M, C)`` agrees with ``n``
    ``(B, M)``, is packed at the front, lies inside the parent's ``(B, M)`` mask; no NaN/inf."""
    sub = schema.sub_collection(key)
    mask_key = sub.path_of(schema.MASK)
    problems = []

    def first_event(bad: np.ndarray) -> int:
        return start + int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])

    bad = mask.sum(axis=2) != counts
    if bad.any():
        problems.append(
            Problem(
                path, mask_key, f"mask disagrees with {sub.path_of(schema.COUNT)} (first: event {first_event(bad)})"
            )
        )
    orphan = mask.any(axis=2) & ~parent_mask
    if orphan.any():
        problems.append(
            Problem(
                path,
                mask_key,
                f"sub-objects of padded {sub.parent} slots (no parent object; first: event {first_event(orphan)})",
            )
        )
    if mask.shape[2] > 1:
        unpacked = mask[..., 1:] & ~mask[..., :-1]
        if unpacked.any():
            problems.append(
                Problem(path, mask_key, f"sub-objects not packed at the front (first: event {first_event(unpacked)})")
            )
    for name, arr in values.items():
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr) & mask
            if bad.any():
                problems.append(
                    Problem(
                        path,
                        sub.path_of(name),
                        f"NaN/inf in {int(bad.sum())} real sub-objects (first: event {first_event(bad)})",
                    )
                )
    return problems
