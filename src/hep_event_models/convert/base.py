"""The part every format converter shares: reading a chunk's tables into flat objects,
and writing selected objects and per-event scalars as schema arrays.

A format converter (``NanoAODConverter``, ``PhysliteConverter``) declares its mapping
tables and implements ``convert(arrays, resolution, path)``, which turns one chunk of
the input tree (an awkward record array with one field per branch) into
``{dataset path: numpy array}`` for ``EventWriter``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import ClassVar

import awkward as ak
import numpy as np

from .. import schema
from .objects import Flat, flat_collection, mask_and_count, pad, per_event
from .sources import ConversionWarning, Resolution, Source, read, resolve

OWN_TRACK_DR = 0.01  # the object's own track: the nearest track within this ΔR


def default_max_objects() -> dict[str, int]:
    return {n: c.max_objects for n, c in schema.COLLECTIONS.items() if c.per_object}


def default_pt_cuts() -> dict[str, float]:
    return {n: float(c.pt_cut) for n, c in schema.COLLECTIONS.items() if c.per_object}


class Converter:
    """Base class of the ROOT → schema converters.

    Args:
        max_objects: ``{collection: M}`` padding per collection (default: the schema's).
        pt_cuts: ``{collection: GeV}``; objects need ``pt >= cut`` (default: the schema's).
        is_simulation: force ``common/event/is_simulation`` (default: detected per file).
        own_track_dr: isolation leaves out the nearest track within this ΔR of the object
            (its own track); ``0`` keeps it.
    """

    format: ClassVar[str] = ""
    experiment: ClassVar[str] = ""
    default_tree: ClassVar[str] = ""
    tables: ClassVar[dict[str, dict[str, Source]]] = {}
    optional_tables: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        max_objects: Mapping[str, int] | None = None,
        pt_cuts: Mapping[str, float] | None = None,
        is_simulation: bool | None = None,
        own_track_dr: float = OWN_TRACK_DR,
    ):
        self.max_objects = default_max_objects()
        self.pt_cuts = default_pt_cuts()
        for name, table in (("max_objects", max_objects or {}), ("pt_cuts", pt_cuts or {})):
            unknown = set(table) - set(self.max_objects)
            if unknown:
                raise ValueError(f"{name}: unknown collections {sorted(unknown)}; known: {list(self.max_objects)}")
        self.max_objects.update({k: int(v) for k, v in (max_objects or {}).items()})
        self.pt_cuts.update({k: float(v) for k, v in (pt_cuts or {}).items()})
        bad = {k: v for k, v in self.max_objects.items() if v < 1}
        if bad:
            raise ValueError(f"max_objects must be >= 1, got {bad}")
        self.is_simulation = is_simulation
        self.own_track_dr = float(own_track_dr)
        self.write_truth = False  # set by the driver when any input file has truth branches
        self.nonfinite: dict[str, int] = {}
        self._warned: set[str] = set()

    # -- to implement ------------------------------------------------------------------------
    def resolve(self, available: set[str]) -> Resolution:
        """Which branch feeds each variable for a file with branches ``available``."""
        return resolve(self.tables, available, self.optional_tables)

    def has_truth(self, res: Resolution) -> bool:
        """Whether a file has the branches of the optional ``truth/`` datasets."""
        return False

    def convert(self, arrays: ak.Array, res: Resolution, path: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """Extra ``metadata`` attributes documenting derived quantities (isolation, MET, ...)."""
        return {}

    # -- helpers ------------------------------------------------------------------------------
    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, ConversionWarning, stacklevel=3)

    def read_objects(self, arrays: ak.Array, res: Resolution, table: str, path: str, ref: str = "pt") -> Flat:
        """One collection's variables of a chunk, flattened (missing ones filled with defaults)."""
        tab = self.tables[table]
        chosen = res.chosen[table]
        flat, bad = flat_collection(
            read(arrays, tab, chosen),
            chosen,
            {k: s.default for k, s in tab.items()},
            len(arrays),
            path,
            ref=ref,
            required={k for k, s in tab.items() if s.required},
        )
        for b in bad:
            self.warn_once(
                f"count:{b}",
                f"{path}: branch {b!r} has a different number of entries per event than its collection; "
                "its variable is filled with defaults in such steps (reported once)",
            )
        return flat

    def read_event(self, arrays: ak.Array, res: Resolution, table: str, path: str) -> dict[str, np.ndarray]:
        """One value per event for each variable of a per-event table (defaults when missing)."""
        tab = self.tables[table]
        chosen = res.chosen[table]
        n = len(arrays)
        out = {}
        for k, v in read(arrays, tab, chosen).items():
            out[k] = np.full(n, tab[k].default) if v is None else per_event(v, chosen[k], path)
        return out

    def _finite(self, key: str, arr: np.ndarray, real: np.ndarray | None = None) -> np.ndarray:
        """Replace NaN/inf (in real objects) by 0, counting them for the summary."""
        if not np.issubdtype(arr.dtype, np.floating):
            return arr
        bad = ~np.isfinite(arr)
        if real is not None:
            bad &= real
        nbad = int(bad.sum())
        if nbad:
            arr = np.where(bad, 0, arr).astype(arr.dtype)
            self.nonfinite[key] = self.nonfinite.get(key, 0) + nbad
            self.warn_once(f"nonfinite:{key}", f"{key}: NaN/inf in the input replaced by 0 (counted in the summary)")
        return arr

    def write_objects(self, out: dict[str, np.ndarray], name: str, sel: Flat) -> None:
        """Pad a ``select``-ed collection into every schema key of this experiment."""
        coll = schema.COLLECTIONS[name]
        m = self.max_objects[name]
        mask, n = mask_and_count(sel, m)
        for key, field in coll.fields_for(self.experiment).items():
            path = coll.path_of(key)
            out[path] = self._finite(path, pad(sel, key, m, field.dtype), mask)
        out[coll.path_of(schema.MASK)] = mask
        out[coll.path_of(schema.COUNT)] = n

    def write_scalars(self, out: dict[str, np.ndarray], name: str, values: Mapping[str, np.ndarray]) -> None:
        """Per-event arrays of every schema key of a per-event group (``met``, ``event``)."""
        coll = schema.COLLECTIONS[name]
        for key, field in coll.fields_for(self.experiment).items():
            v = np.asarray(values[key])
            if np.issubdtype(np.dtype(field.dtype), np.integer) and np.issubdtype(v.dtype, np.floating):
                v = np.rint(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0))
            path = coll.path_of(key)
            out[path] = self._finite(path, v.astype(field.dtype, copy=False))

    def write_truth_flavour(self, out: dict[str, np.ndarray], sel: Flat, key: str = "truth_flavour") -> None:
        """``truth/jets/HadronConeExclTruthLabelID`` (int8, -1 padding) from a jets ``Flat``."""
        m = self.max_objects["jets"]
        out[f"{schema.TRUTH}/jets/{schema.TRUTH_JET_FLAVOUR_KEY}"] = pad(sel, key, m, np.int8, fill=-1)
