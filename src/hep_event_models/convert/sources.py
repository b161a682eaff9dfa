"""Where each output variable comes from: ``Source`` entries, their resolution against a
tree's branches, and reading them from a chunk.

A converter's mapping tables are plain dicts ``{key: Source}``, one per collection (see
``nanoaod.py`` and ``physlite.py``). ``key`` is the schema key the values are written to
(``"pt"``, ``"LHTight"``, ...); keys starting with ``_`` are inputs of derived variables
(e.g. PHYSLITE tracks' ``_theta``), read the same way but not written as they are.

A ``Source`` lists candidate branch names (formats rename variables between versions: the
first one present in the tree wins), a unit ``scale`` applied on reading (MeV → GeV is
``1e-3``, cm → mm is ``10``), whether the variable is required, the fill value when an
optional branch is absent, and optional per-candidate transforms (e.g. a bit mask of
passed working points → the number passed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import awkward as ak
import numpy as np

MEV = 1e-3  # MeV → GeV
CM = 10.0  # cm → mm


class ConversionError(ValueError):
    """Input that cannot be converted; the message names the file and the branch."""


class ConversionWarning(UserWarning):
    """Something was filled with defaults (missing optional branches, non-finite values)."""


@dataclass(frozen=True)
class Source:
    """One output variable's origin in the input tree.

    Args:
        branches: candidate branch names, in order of preference.
        scale: factor applied to the values (unit conversion); 1 for flags and integers.
        required: a missing branch is an error (``ConversionError`` naming branch and file).
        default: value written when an optional branch is missing.
        transforms: ``{branch: transform name}`` applied after reading that candidate
            (names in ``TRANSFORMS``).
        report: list the branch among the missing ones when absent (``False`` for
            branches that only some files have by nature, e.g. simulation-only truth).
        doc: meaning and unit of the output.
    """

    branches: tuple[str, ...]
    scale: float = 1.0
    required: bool = False
    default: float = 0.0
    transforms: Mapping[str, str] = field(default_factory=dict)
    report: bool = True
    doc: str = ""

    def __post_init__(self):
        if isinstance(self.branches, str):
            object.__setattr__(self, "branches", (self.branches,))
        unknown = set(self.transforms.values()) - set(TRANSFORMS)
        if unknown:
            raise ValueError(f"unknown transforms {sorted(unknown)}; known: {sorted(TRANSFORMS)}")


def src(*branches: str, **kwargs) -> Source:
    """Shorthand: ``src("Electron_pt", required=True)``."""
    return Source(tuple(branches), **kwargs)


# --------------------------------------------------------------------------------------
# transforms: jagged (events, objects[, inner]) arrays in, (events, objects) out
# --------------------------------------------------------------------------------------
def _popcount(x: ak.Array) -> ak.Array:
    """Number of set bits (cumulative working-point bit masks → number of WPs passed)."""
    flat = ak.to_numpy(ak.flatten(x, axis=None)).astype(np.uint64)
    counts = np.zeros(flat.shape, dtype=np.int64)
    for bit in range(64):
        counts += ((flat >> np.uint64(bit)) & np.uint64(1)).astype(np.int64)
    return ak.unflatten(counts, ak.num(x, axis=1)) if x.ndim == 2 else counts


def _sum_inner(x: ak.Array) -> ak.Array:
    """Sum over an inner per-object list (e.g. ATLAS ``NumTrkPt500``, one entry per vertex);
    a plain per-object array is returned as it is."""
    return ak.sum(x, axis=2) if x.ndim == 3 else x


def _first_inner(x: ak.Array) -> ak.Array:
    """First entry of an inner per-object list (0 when empty); plain arrays unchanged."""
    if x.ndim != 3:
        return x
    return ak.fill_none(ak.firsts(x, axis=2), 0)


TRANSFORMS: dict[str, Callable[[ak.Array], ak.Array]] = {
    "popcount": _popcount,
    "sum_inner": _sum_inner,
    "first_inner": _first_inner,
}


# --------------------------------------------------------------------------------------
# resolution against a tree
# --------------------------------------------------------------------------------------
@dataclass
class Resolution:
    """Which branch feeds each variable of each table, for one input file.

    Attributes:
        chosen: ``{table: {key: branch or None}}`` (``None``: missing, default used).
        missing_required: ``[(table, key, candidates)]``.
        missing_optional: branch names (first candidate) of optional variables not found.
        info: per-file facts the converter derived from the branch list.
    """

    chosen: dict[str, dict[str, str | None]]
    missing_required: list[tuple[str, str, tuple[str, ...]]]
    missing_optional: list[str]
    info: dict = field(default_factory=dict)  # per-file facts a converter derives (e.g. is_simulation)

    def branches(self) -> list[str]:
        """Every branch to read (sorted, unique)."""
        return sorted({b for t in self.chosen.values() for b in t.values() if b is not None})

    def has(self, table: str, key: str) -> bool:
        return self.chosen.get(table, {}).get(key) is not None


def resolve(
    tables: Mapping[str, Mapping[str, Source]],
    available: set[str],
    optional_tables: Sequence[str] = (),
) -> Resolution:
    """Pick, for every variable, the first candidate branch present in ``available``.

    Tables named in ``optional_tables`` are collections that may be absent as a whole
    (e.g. NanoAOD tracks): when none of their required branches exist, their required
    variables count as optional.
    """
    chosen: dict[str, dict[str, str | None]] = {}
    miss_req: list[tuple[str, str, tuple[str, ...]]] = []
    miss_opt: list[str] = []
    for tname, table in tables.items():
        present = {k: next((b for b in s.branches if b in available), None) for k, s in table.items()}
        absent_table = tname in optional_tables and all(present[k] is None for k, s in table.items() if s.required)
        for k, s in table.items():
            if present[k] is not None:
                continue
            if s.required and not absent_table:
                miss_req.append((tname, k, s.branches))
            elif s.report:
                miss_opt.append(s.branches[0])
        chosen[tname] = present
    return Resolution(chosen, miss_req, sorted(set(miss_opt)))


def read(
    arrays: ak.Array,
    table: Mapping[str, Source],
    chosen: Mapping[str, str | None],
    keys: Sequence[str] | None = None,
) -> dict[str, ak.Array | None]:
    """Values of ``table``'s variables from one chunk (scaled and transformed).

    Missing optional variables are ``None``; the caller fills them (``like`` a present one).
    """
    out: dict[str, ak.Array | None] = {}
    for k in keys if keys is not None else table:
        s, b = table[k], chosen.get(k)
        if b is None:
            out[k] = None
            continue
        v = arrays[b]
        t = s.transforms.get(b)
        if t is not None:
            v = TRANSFORMS[t](v)
        if s.scale != 1.0:
            v = v * s.scale
        out[k] = v
    return out
