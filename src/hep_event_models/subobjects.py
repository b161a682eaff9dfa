"""Sub-object inputs (jet constituents, track hits) for the constituent-enriched model (seed 004).

Sub-objects are not tokenized: they reach the model as features next to the tokens of
their object, where a small transformer summarises them (``HepEventSubObjectEncoder``).
This module turns the raw ``SubObjectBatch`` of the reader into those model inputs and
attaches each sub-object to its object's place in the token sequence.

Model inputs, fixed transforms of the raw features (physical units in, O(1) numbers out),
relative to the parent object so that they describe the object's inside:

``jets_constituents`` (6)
    ``log(pT / pT_jet)``, ``(η − η_jet) / 0.2``, ``wrap(φ − φ_jet) / 0.2``, ``charge``,
    ``asinh(d0 / 0.05 mm)``, ``asinh(z0 / 0.5 mm)`` (the asinh keeps the resolution-scale
    core linear and compresses displaced tails logarithmically).
``tracks_hits`` (5)
    ``asinh((η − η_track) / 0.01)`` (pile-up tracks' hits, seen from the primary vertex, sit
    far off), ``wrap(φ − φ_track) / 0.05`` (the bending), ``log10(E / 1 keV)``,
    ``layer / 29``, ``time / 3 ns``.

Per event, a sub-collection becomes two ragged columns (``sub_object_columns``):
``<key>`` (one row of inputs per sub-object) and ``<key>_owner`` (the sequence position
of the first token of the sub-object's object). Sub-objects of objects that the sequence
does not hold (truncated) are dropped. Collators pad them into
``sub_features (B, K, C, F)``, ``sub_mask (B, K, C)``, ``sub_owner (B, K)`` and
``sub_kind (B, K)`` (``collators.pad_sub_objects``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from . import schema
from .configuration_hep_event import SUB_OBJECT_INPUTS
from .io.reader import EventBatch


def num_inputs(key: str) -> int:
    """Input features per sub-object of ``key``."""
    try:
        return len(SUB_OBJECT_INPUTS[key])
    except KeyError:
        raise KeyError(f"unknown sub-object collection {key!r}; known: {list(SUB_OBJECT_INPUTS)}") from None


def _wrap(x: np.ndarray) -> np.ndarray:
    return (x + np.pi) % (2 * np.pi) - np.pi


def sub_object_inputs(events: EventBatch, key: str) -> np.ndarray:
    """``(B, M, C, F)`` float32 model inputs of sub-collection ``key`` (module doc); 0 on padding."""
    if key not in events.sub_objects:
        raise KeyError(f"events hold no {key!r} (have {sorted(events.sub_objects)}); read them with sub_objects=")
    sub, parent_name = events.sub_objects[key], schema.sub_collection(key).parent
    parent = events.collections.get(parent_name)
    need = ("pt", "eta", "phi") if key == "jets_constituents" else ("eta", "phi")
    if parent is None or any(f not in parent.features for f in need):
        raise KeyError(f"{key} inputs are relative to the {parent_name} {list(need)}: read those features too")
    p = {f: parent.feature(f)[..., None] for f in need}
    x = {f: sub.feature(f) for f in sub.features}
    if key == "jets_constituents":
        cols = [
            np.log(np.maximum(x["pt"], 1e-3) / np.maximum(p["pt"], 1e-3)),
            (x["eta"] - p["eta"]) / 0.2,
            _wrap(x["phi"] - p["phi"]) / 0.2,
            x["charge"],
            np.arcsinh(x["d0"] / 0.05),
            np.arcsinh(x["z0"] / 0.5),
        ]
    else:
        cols = [
            np.arcsinh((x["eta"] - p["eta"]) / 0.01),
            _wrap(x["phi"] - p["phi"]) / 0.05,
            np.log10(np.maximum(x["energy"], 1e-9) / 1e-6),
            x["layer"] / 29.0,
            x["time"] / 3.0,
        ]
    out = np.stack(cols, axis=-1).astype(np.float32)
    out[~sub.mask] = 0.0
    return out


def sub_object_columns(
    tokenizer, events: EventBatch, keys: Sequence[str], truncation: bool = False, max_length: int | None = None
) -> dict[str, pa.Array]:
    """Ragged Arrow columns ``{key: list<fixed_size_list<float32, F>>, key_owner: list<int32>}``,
    one row per event, aligned with ``tokenizer(events, truncation=..., max_length=...)``."""
    if not keys:
        return {}
    positions = tokenizer.object_positions(events, truncation=truncation, max_length=max_length)
    out = {}
    for key in keys:
        parent = schema.sub_collection(key).parent
        if parent not in positions:
            raise ValueError(f"{key}: the tokenizer has no {parent!r} objects to attach them to")
        order, start = positions[parent]
        x = np.take_along_axis(sub_object_inputs(events, key), order[..., None, None], axis=1)
        mask = np.take_along_axis(events.sub_objects[key].mask, order[..., None], axis=1)
        keep = mask & (start >= 0)[..., None]  # (B, M, C)
        rows = x[keep]  # (N, F), events in order, objects in sequence order
        owner = np.broadcast_to(start[..., None], keep.shape)[keep].astype(np.int32)
        offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=(1, 2)))]).astype(np.int32))
        flat = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1] if rows.ndim == 2 else 0)
        out[key] = pa.ListArray.from_arrays(offsets, flat)
        out[f"{key}_owner"] = pa.ListArray.from_arrays(offsets, pa.array(owner))
    return out


def arrow_fields(keys: Sequence[str]) -> list[tuple[str, pa.DataType]]:
    """Arrow fields of the sub-object columns of ``keys``."""
    fields = []
    for key in keys:
        fields.append((key, pa.list_(pa.list_(pa.float32(), num_inputs(key)))))
        fields.append((f"{key}_owner", pa.list_(pa.int32())))
    return fields


__all__ = ["SUB_OBJECT_INPUTS", "arrow_fields", "num_inputs", "sub_object_columns", "sub_object_inputs"]
