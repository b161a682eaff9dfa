"""Object helpers shared by the converters: flattening jagged branches, sorting by pT,
cuts, padding to ``max_objects``, ΔR pairs, track isolation and vector sums.

Everything works on *flat* numpy arrays (one entry per object) plus the event index of
each object (``Flat``), all vectorised: the only Python loops run over batches of object
pairs, sized so that memory stays bounded (``MAX_PAIRS``) whatever the track multiplicity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

MAX_PAIRS = 2_000_000  # (object, track) pairs evaluated at once: ~100 MB of temporaries


@dataclass
class Flat:
    """A collection of objects in a chunk of ``n_events`` events, flattened.

    Attributes:
        row: ``(N,)`` int64 event index (within the chunk) of each object, non-decreasing.
        values: ``{name: (N,) array}`` per-object values.
        n_events: events in the chunk.
        col: ``(N,)`` position of each object in its event after ``select`` (else ``None``).
    """

    row: np.ndarray
    values: dict[str, np.ndarray]
    n_events: int
    col: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def take(self, idx: np.ndarray) -> Flat:
        """Objects ``idx`` (a boolean mask or sorted integer indices)."""
        return Flat(
            self.row[idx],
            {k: v[idx] for k, v in self.values.items()},
            self.n_events,
            None if self.col is None else self.col[idx],
        )

    def counts(self) -> np.ndarray:
        """``(n_events,)`` objects per event."""
        return np.bincount(self.row, minlength=self.n_events)


def flatten(arr: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(counts per event, flat values)`` of a jagged ``(events, objects)`` array."""
    counts = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)
    return counts, np.asarray(ak.to_numpy(ak.flatten(arr, axis=1)))


def event_rows(counts: np.ndarray) -> np.ndarray:
    """Event index of every object, from objects-per-event counts."""
    return np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)


def select(flat: Flat, pt_cut: float, max_objects: int | None, pt_key: str = "pt") -> Flat:
    """Objects with ``pt >= pt_cut``, sorted by pT descending within each event (ties keep
    input order), at most ``max_objects`` per event; sets ``col`` (position in the event)."""
    pt = flat.values[pt_key]
    passing = np.flatnonzero(pt >= pt_cut)  # cut first (NaN pT never passes): less to sort
    order = passing[np.lexsort((-pt[passing], flat.row[passing]))]  # stable: by event, then pT descending
    row = flat.row[order]
    col = np.arange(order.shape[0], dtype=np.int64) - np.searchsorted(row, row, side="left")
    if max_objects is not None:
        keep = col < max_objects
        order, row, col = order[keep], row[keep], col[keep]
    return Flat(row, {k: v[order] for k, v in flat.values.items()}, flat.n_events, col)


def pad(flat: Flat, name: str, max_objects: int, dtype, fill=0) -> np.ndarray:
    """``(n_events, max_objects)`` array of one variable of a ``select``-ed collection."""
    out = np.full((flat.n_events, max_objects), fill, dtype=dtype)
    v = flat.values[name]
    if np.issubdtype(np.dtype(dtype), np.integer) and np.issubdtype(v.dtype, np.floating):
        v = np.rint(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0))  # e.g. ATLAS charge (float ±1)
    out[flat.row, flat.col] = v.astype(dtype, copy=False)
    return out


def mask_and_count(flat: Flat, max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mask (n_events, max_objects) bool, n (n_events,) int16)`` of a ``select``-ed collection."""
    n = flat.counts()
    return np.arange(max_objects)[None, :] < n[:, None], n.astype(np.int16)


def delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` wrapped into [-π, π)."""
    return (np.asarray(a, np.float64) - b + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(np.asarray(eta1, np.float64) - eta2, delta_phi(phi1, phi2))


def eta_from_theta(theta: np.ndarray) -> np.ndarray:
    """Pseudorapidity η = −ln tan(θ/2)."""
    return -np.log(np.tan(np.asarray(theta, np.float64) / 2.0))


def sin_theta_from_eta(eta: np.ndarray) -> np.ndarray:
    """sin θ = 1 / cosh η."""
    return 1.0 / np.cosh(np.asarray(eta, np.float64))


def iter_pairs(
    row_a: np.ndarray, row_b: np.ndarray, n_events: int, max_pairs: int = MAX_PAIRS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (a, b) pair of objects in the same event, as index arrays, in batches.

    Batches split between ``a`` objects (all pairs of one ``a`` object are in one batch)
    and hold about ``max_pairs`` pairs, so memory does not grow with multiplicities.
    ``row_a`` and ``row_b`` must be non-decreasing.
    """
    nb = np.bincount(row_b, minlength=n_events)
    start_b = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(np.int64)
    m = nb[row_a]
    cum = np.cumsum(m)
    i0, n_a = 0, row_a.shape[0]
    while i0 < n_a:
        base = cum[i0 - 1] if i0 else 0
        i1 = max(int(np.searchsorted(cum, base + max_pairs, side="right")), i0 + 1)
        mm = m[i0:i1]
        total = int(mm.sum())
        if total:
            ia = np.repeat(np.arange(i0, i1, dtype=np.int64), mm)
            local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(mm) - mm, mm)
            ib = np.repeat(start_b[row_a[i0:i1]], mm) + local
            yield ia, ib
        i0 = i1


def cone_sum(
    objs: Flat,
    tracks: Flat,
    cone: float,
    own_track_dr: float | None = None,
    weight: str = "pt",
    max_pairs: int = MAX_PAIRS,
) -> np.ndarray:
    """Σ ``weight`` of ``tracks`` within ΔR < ``cone`` of each object, ``(len(objs),)``.

    With ``own_track_dr``, the object's own track is left out: the one track nearest to
    the object, if it lies within ΔR < ``own_track_dr``. ``tracks`` must already pass the
    isolation's track selection.
    """
    n = len(objs)
    total = np.zeros(n, dtype=np.float64)
    if n == 0 or len(tracks) == 0:
        return total
    w = np.asarray(tracks[weight], np.float64)
    for ia, ib in iter_pairs(objs.row, tracks.row, objs.n_events, max_pairs):
        dr = delta_r(objs["eta"][ia], objs["phi"][ia], tracks["eta"][ib], tracks["phi"][ib])
        inside = dr < cone
        total += np.bincount(ia[inside], weights=w[ib[inside]], minlength=n)
        if own_track_dr:
            close = np.flatnonzero(dr < min(own_track_dr, cone))
            if close.size:
                order = close[np.lexsort((dr[close], ia[close]))]
                _, first = np.unique(ia[order], return_index=True)
                nearest = order[first]
                total -= np.bincount(ia[nearest], weights=w[ib[nearest]], minlength=n)
    return np.maximum(total, 0.0)


def min_delta_r(a: Flat, b: Flat) -> np.ndarray:
    """ΔR from each ``a`` object to the nearest ``b`` object of its event (inf if none)."""
    out = np.full(len(a), np.inf)
    if len(a) == 0 or len(b) == 0:
        return out
    for ia, ib in iter_pairs(a.row, b.row, a.n_events):
        dr = delta_r(a["eta"][ia], a["phi"][ia], b["eta"][ib], b["phi"][ib])
        np.minimum.at(out, ia, dr)
    return out


def vector_sum(flat: Flat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event Σ px, Σ py and Σ pT of a collection (pt, phi in ``values``)."""
    pt = np.asarray(flat["pt"], np.float64)
    phi = np.asarray(flat["phi"], np.float64)
    b = flat.n_events
    return (
        np.bincount(flat.row, weights=pt * np.cos(phi), minlength=b),
        np.bincount(flat.row, weights=pt * np.sin(phi), minlength=b),
        np.bincount(flat.row, weights=pt, minlength=b),
    )


def per_event(arr: ak.Array | np.ndarray, name: str, path: str) -> np.ndarray:
    """A per-event branch as a flat numpy array; a jagged one is an error naming it."""
    if isinstance(arr, ak.Array) and arr.ndim != 1:
        from .sources import ConversionError

        raise ConversionError(f"{path}: branch {name!r} has {arr.ndim} dimensions, expected one value per event")
    return np.asarray(ak.to_numpy(arr) if isinstance(arr, ak.Array) else arr)


def flat_collection(
    values: Mapping[str, ak.Array | None],
    branch_names: Mapping[str, str | None],
    defaults: Mapping[str, float],
    n_events: int,
    path: str,
    ref: str = "pt",
    required: frozenset[str] | set[str] = frozenset(),
) -> tuple[Flat, list[str]]:
    """Flatten the jagged variables of one collection into a ``Flat``.

    Every present variable must have the same number of objects per event as ``ref``.
    A required one that does not is a ``ConversionError`` naming the branch and file; an
    optional one is replaced by its default and its branch name returned (for a warning).
    Missing variables (``None``) get their default.

    Returns:
        ``(flat, mismatched branch names)``.
    """
    from .sources import ConversionError

    ref_arr = values[ref]
    if ref_arr is None:  # collection absent from this file
        counts = np.zeros(n_events, dtype=np.int64)
    else:
        if ref_arr.ndim != 2:
            raise ConversionError(
                f"{path}: branch {branch_names[ref]!r} has {ref_arr.ndim} dimensions, expected a list per event"
            )
        counts = ak.to_numpy(ak.num(ref_arr, axis=1)).astype(np.int64)
    total = int(counts.sum())
    out: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for k, v in values.items():
        if v is None:
            out[k] = np.full(total, defaults.get(k, 0.0), dtype=np.float32)
            continue
        if v.ndim != 2:
            raise ConversionError(
                f"{path}: branch {branch_names[k]!r} has {v.ndim} dimensions, expected a list per event"
            )
        c, flat = flatten(v)
        if not np.array_equal(c, counts):
            if k in required:
                raise ConversionError(
                    f"{path}: branch {branch_names[k]!r} has a different number of entries per event than "
                    f"{branch_names[ref]!r} (first differing event: {int(np.flatnonzero(c != counts)[0])})"
                )
            bad.append(str(branch_names[k]))
            out[k] = np.full(total, defaults.get(k, 0.0), dtype=np.float32)
            continue
        out[k] = flat
    return Flat(event_rows(counts), out, n_events), bad


def concat(flats: list[Flat], keys: tuple[str, ...] = ("pt", "eta", "phi")) -> Flat:
    """Objects of several collections of the same chunk in one ``Flat`` (``keys`` only),
    ordered by event."""
    row = np.concatenate([f.row for f in flats])
    order = np.argsort(row, kind="stable")
    return Flat(
        row[order],
        {k: np.concatenate([np.asarray(f[k], np.float64) for f in flats])[order] for k in keys},
        flats[0].n_events,
    )
