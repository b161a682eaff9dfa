"""Feature-group tokenization (seed 004): one object as several semantic sub-tokens.

An object config may split its features into groups (``tokenizer_configs/jets.yaml``)::

    groups:
      kinematics: {features: [pt, eta, phi, mass]}
      counts: {features: [n_trk, QG_nTracks], tokenizer: {quantizer: lookup}}
      shape: {features: [QG_tracksWidth, QG_tracksC1], tokenizer: {num_quantizers: 1}}
      btag: {features: [DL1d_pb, DL1d_pc, DL1d_pu, GN2_pb, GN2_pc, GN2_pu], tokenizer: {num_quantizers: 2}}

Every feature belongs to exactly one group. Each group gets its own ``ObjectTokenizer``
(its own preprocessing, encoder, codebooks and decoder) over its features, with the
object's ``tokenizer:`` settings updated by the group's. A ``GroupedObjectTokenizer``
bundles them and looks like one ``ObjectTokenizer`` to the ``EventTokenizer``: an object's
tokens are the groups' level tokens in group order (kinematics q0..q3, counts q0, shape q0,
btag q0..q1: 8 sub-tokens per jet), each (group, level) pair owns its own id block, and
``decode`` merges the groups' features back into the config's feature order.

Besides the semantic split the hierarchical model reads (``HepEventConfig.object_pooling``),
groups share the bits differently: the kinematics tokenizer spends its whole Q × 12 bits on
pT, η, φ (and mass) instead of sharing them with flags and scores.

Saved as ``groups.json`` plus one ``ObjectTokenizer`` directory per group;
``load_object_tokenizer(dir)`` loads either kind. A group of discrete features only may be a
``LookupTokenizer`` (``tokenizer: {quantizer: lookup}``: one exact token per value tuple).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import ObjectConfig
from .lookup_tokenizer import LOOKUP, LookupTokenizer
from .object_tokenizer import ObjectTokenizer

GROUPS_FILE = "groups.json"
GROUPED_FORMAT_VERSION = 1


def feature_groups(config: ObjectConfig, origin: str | None = None) -> dict[str, ObjectConfig]:
    """The groups of an object config as one ``ObjectConfig`` each (``{}`` without ``groups``).

    A group's config holds its features (specs as in the object's config, in the object's
    order) and a ``tokenizer:`` section: the object's, updated by the group's own.
    """
    spec = config.extra.get("groups")
    where = origin or f"{config.object} config"
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: 'groups' must map group name → {{features: [...], tokenizer: {{...}}}}")
    by_name = {f.name: f for f in config.features}
    seen: dict[str, str] = {}
    base = dict(config.extra.get("tokenizer") or {})
    out = {}
    for gname, g in spec.items():
        g = {"features": g} if isinstance(g, list) else dict(g or {})
        names = g.get("features") or []
        if not names:
            raise ValueError(f"{where}: group {gname!r} has no features")
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"{where}: group {gname!r} names {unknown}, not features of {config.object}")
        for n in names:
            if n in seen:
                raise ValueError(f"{where}: feature {n!r} is in groups {seen[n]!r} and {gname!r}")
            seen[n] = gname
        unknown_keys = set(g) - {"features", "tokenizer"}
        if unknown_keys:
            raise ValueError(f"{where}: group {gname!r} has unknown keys {sorted(unknown_keys)}")
        feats = [by_name[n].to_dict() for n in config.feature_names if n in names]
        out[str(gname)] = ObjectConfig.from_dict(
            {"object": config.object, "features": feats, "tokenizer": {**base, **dict(g.get("tokenizer") or {})}},
            origin=f"{where}: group {gname}",
        )
    missing = [n for n in config.feature_names if n not in seen]
    if missing:
        raise ValueError(f"{where}: features {missing} are in no group; every feature needs one")
    return out


class _GroupedPreprocessing:
    """The groups' preprocessors seen as one: ``transforms`` in group order, ``to_dict``."""

    def __init__(self, groups: Mapping[str, ObjectTokenizer]):
        self._groups = groups

    @property
    def transforms(self) -> list:
        return [t for g in self._groups.values() for t in g.preprocessor.transforms]

    def to_dict(self) -> dict:
        return {name: g.preprocessor.to_dict() for name, g in self._groups.items()}


class GroupedObjectTokenizer(nn.Module):
    """One object type tokenized as feature groups, one ``ObjectTokenizer`` per group.

    Args:
        object_config: the whole object's config (every feature, in the order ``decode`` returns).
        groups: ``{group name: ObjectTokenizer}`` in token order; together they cover every
            feature of ``object_config`` exactly once.

    Codes are ``(..., Q_total)`` with ``Q_total`` the sum of the groups' levels, group after
    group; ``codebook_sizes`` lists every sub-token's codebook in that order.
    """

    def __init__(self, object_config: ObjectConfig, groups: Mapping[str, ObjectTokenizer]):
        super().__init__()
        if not groups:
            raise ValueError("a GroupedObjectTokenizer needs at least one group")
        self.object_config = object_config
        names = object_config.feature_names
        covered: list[str] = []
        for gname, g in groups.items():
            if g.object != object_config.object:
                raise ValueError(f"group {gname!r} tokenizes {g.object!r}, not {object_config.object!r}")
            covered += g.feature_names
        if sorted(covered) != sorted(names) or len(covered) != len(set(covered)):
            raise ValueError(
                f"{object_config.object}: groups cover features {covered}, the config has {names} "
                "(each feature must be in exactly one group)"
            )
        self.groups = nn.ModuleDict(dict(groups))
        self._columns = {gname: [names.index(f) for f in g.feature_names] for gname, g in groups.items()}
        self.preprocessor = _GroupedPreprocessing(self.groups)

    # -- the ObjectTokenizer surface the EventTokenizer uses ---------------------------------
    @property
    def object(self) -> str:
        return self.object_config.object

    @property
    def feature_names(self) -> list[str]:
        return self.object_config.feature_names

    @property
    def group_names(self) -> list[str]:
        return list(self.groups)

    @property
    def group_levels(self) -> dict[str, int]:
        """Sub-tokens (quantizer levels) per group, in token order."""
        return {n: g.num_quantizers for n, g in self.groups.items()}

    @property
    def num_quantizers(self) -> int:
        """Sub-tokens per object: the sum of the groups' levels."""
        return sum(self.group_levels.values())

    @property
    def codebook_sizes(self) -> list[int]:
        return [s for g in self.groups.values() for s in g.codebook_sizes]

    @property
    def level_labels(self) -> list[str]:
        """Readable name of every sub-token: ``"<group>_q<level>"``."""
        return [f"{n}_q{q}" for n, g in self.groups.items() for q in range(g.num_quantizers)]

    @property
    def settings(self):
        """The first group's settings (codebook dimension etc. for cards); see ``groups`` for each."""
        return next(iter(self.groups.values())).settings

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, values: np.ndarray, mask: np.ndarray | None = None, backend: str = "auto", **kwargs):
        """Codes of real objects: ``(N, Q_total)`` from ``(N, F)``, or ``(B, M, Q_total)`` with -1
        on padding from ``(B, M, F)`` and ``mask`` (``ObjectTokenizer.encode`` per group)."""
        parts = [
            g.encode(values[..., self._columns[n]], mask, backend=backend, **kwargs) for n, g in self.groups.items()
        ]
        return np.concatenate(parts, axis=-1)

    def code_vectors(self) -> list[np.ndarray]:
        """Per sub-token (group after group, levels in order), its codes' vectors ``(K, d_group)``
        (``ObjectTokenizer.code_vectors``); groups may differ in ``d``."""
        return [v for g in self.groups.values() for v in g.code_vectors()]

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Physical features ``(..., F)`` in the config's order from codes ``(..., Q_total)``
        (rows with any code -1 decode to 0)."""
        codes = np.asarray(codes)
        if codes.shape[-1] != self.num_quantizers:
            raise ValueError(
                f"{self.object}: codes have {codes.shape[-1]} levels, the groups make {self.num_quantizers}"
            )
        out = np.zeros((*codes.shape[:-1], len(self.feature_names)), dtype=np.float64)
        valid = (codes >= 0).all(axis=-1)
        start = 0
        for n, g in self.groups.items():
            part = codes[..., start : start + g.num_quantizers]
            part = np.where(valid[..., None], part, -1)
            out[..., self._columns[n]] = g.decode(part)
            start += g.num_quantizers
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "groups": {n: g.describe() for n, g in self.groups.items()},
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    # -- persistence -----------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> Path:
        """``groups.json`` (object config, group order) plus ``<group>/`` per group."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        for n, g in self.groups.items():
            g.save_pretrained(out / n)
        manifest = {
            "tokenizer_class": "GroupedObjectTokenizer",
            "format_version": GROUPED_FORMAT_VERSION,
            "object_config": self.object_config.to_dict(),
            "groups": self.group_names,
        }
        tmp = out / f".{GROUPS_FILE}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(out / GROUPS_FILE)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> GroupedObjectTokenizer:
        path = Path(path)
        f = path / GROUPS_FILE
        if not f.exists():
            raise FileNotFoundError(f"{path}: no {GROUPS_FILE} (not a grouped object tokenizer)")
        m = json.loads(f.read_text())
        if m.get("format_version") != GROUPED_FORMAT_VERSION:
            raise ValueError(
                f"{f}: grouped tokenizer format_version {m.get('format_version')!r} is not supported "
                f"(this package reads {GROUPED_FORMAT_VERSION})"
            )
        cfg = ObjectConfig.from_dict(m["object_config"], origin=str(f))
        return cls(cfg, {n: load_single_tokenizer(path / n) for n in m["groups"]})


def is_grouped_dir(path: str | Path) -> bool:
    return (Path(path) / GROUPS_FILE).exists()


def load_single_tokenizer(path: str | Path) -> ObjectTokenizer | LookupTokenizer:
    """An ``ObjectTokenizer`` or, where its ``config.json`` says ``quantizer: lookup``, a
    ``LookupTokenizer`` from its directory."""
    f = Path(path) / "config.json"
    quantizer = json.loads(f.read_text()).get("settings", {}).get("quantizer") if f.exists() else None
    return (LookupTokenizer if quantizer == LOOKUP else ObjectTokenizer).from_pretrained(path)


def load_object_tokenizer(path: str | Path) -> ObjectTokenizer | LookupTokenizer | GroupedObjectTokenizer:
    """An ``ObjectTokenizer``, ``LookupTokenizer`` or ``GroupedObjectTokenizer`` from its directory."""
    return GroupedObjectTokenizer.from_pretrained(path) if is_grouped_dir(path) else load_single_tokenizer(path)


__all__ = [
    "GroupedObjectTokenizer",
    "feature_groups",
    "is_grouped_dir",
    "load_object_tokenizer",
    "load_single_tokenizer",
]
