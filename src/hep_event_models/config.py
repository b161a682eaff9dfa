"""Feature-set configurations (``tokenizer_configs/*.yaml``).

An object config names one collection of the schema and the features a tokenizer uses,
each with its kind (which decides preprocessing and loss)::

    object: jets
    features:
      - {name: pt, kind: log_standard}
      - {name: DL1d_pb, kind: score}

A feature's HDF5 location comes from the schema (``common/jets/pt``,
``atlas/jets/DL1d_pb``); ``source: group/key`` overrides it for files with extra keys.
Other top-level sections (tokenizer hyperparameters, added by later stages) are kept in
``ObjectConfig.extra`` untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import schema


def config_dir() -> Path:
    """Directory of the configs shipped with the package (``tokenizer_configs/``)."""
    return Path(__file__).resolve().parent / "tokenizer_configs"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given if it exists, else a shipped config by name (``"jets"`` or ``"jets.yaml"``)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml"
    shipped = config_dir() / name
    if shipped.exists():
        return shipped
    raise FileNotFoundError(
        f"no config {str(name_or_path)!r}: not a file, and not one of the shipped configs "
        f"{sorted(q.stem for q in config_dir().glob('*.yaml'))}"
    )


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature of an object tokenizer.

    Args:
        name: feature name (the HDF5 key).
        kind: one of ``schema.FEATURE_KINDS``.
        source: HDF5 dataset path, e.g. ``"atlas/jets/DL1d_pb"``.
        unit: physical unit from the schema ("" when unknown).
        goal: reconstruction goal that sets the feature's loss weight (``None``: the
            tokenizer's default for the kind): relative resolution for ``log_standard``
            (0.01 = 1%), absolute resolution in the feature's unit for ``standard`` and
            ``angle`` (radians), probit units for ``quantile``/``score``; ignored for
            discrete kinds (see ``ObjectTokenizerSettings.discrete_weight``).
    """

    name: str
    kind: str
    source: str
    unit: str = ""
    goal: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "source": self.source}
        if self.goal is not None:
            d["goal"] = self.goal
        return d


@dataclass(frozen=True)
class ObjectConfig:
    """Features of one object type (a collection of the schema)."""

    object: str
    features: tuple[FeatureSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def type_id(self) -> int:
        return schema.TYPE_IDS[self.object]

    def selection(self) -> dict[str, list[str]]:
        """Reader selection ``{collection: [features]}`` for this config."""
        return {self.object: self.feature_names}

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "<dict>") -> ObjectConfig:
        if not isinstance(d, dict) or "object" not in d or "features" not in d:
            raise ValueError(f"{origin}: an object config needs the keys 'object' and 'features'")
        coll_name = d["object"]
        if coll_name not in schema.COLLECTIONS:
            raise ValueError(f"{origin}: unknown object {coll_name!r}; known: {list(schema.COLLECTIONS)}")
        coll = schema.COLLECTIONS[coll_name]
        feats = []
        for i, entry in enumerate(d["features"]):
            if isinstance(entry, str):
                entry = {"name": entry}
            name = entry.get("name")
            if name is None:
                raise ValueError(f"{origin}: features[{i}] has no 'name'")
            field_ = coll.all_fields.get(name)
            source = entry.get("source")
            if source is None:
                if field_ is None:
                    raise ValueError(
                        f"{origin}: feature {name!r} is not in the schema of {coll_name!r} "
                        f"(known: {sorted(coll.all_fields)}); give its HDF5 path as 'source'"
                    )
                source = coll.path_of(name)
            kind = entry.get("kind", field_.kind if field_ else None)
            if kind not in schema.FEATURE_KINDS:
                raise ValueError(f"{origin}: feature {name!r} has kind {kind!r}; known: {schema.FEATURE_KINDS}")
            goal = entry.get("goal")
            if goal is not None and not (isinstance(goal, (int, float)) and goal > 0):
                raise ValueError(f"{origin}: feature {name!r} has goal {goal!r}; it must be a positive number")
            feats.append(
                FeatureSpec(
                    name=name,
                    kind=kind,
                    source=source,
                    unit=field_.unit if field_ else "",
                    goal=None if goal is None else float(goal),
                )
            )
        names = [f.name for f in feats]
        if len(set(names)) != len(names):
            raise ValueError(f"{origin}: duplicate feature names in {names}")
        extra = {k: v for k, v in d.items() if k not in ("object", "features")}
        return cls(object=coll_name, features=tuple(feats), extra=extra)

    @classmethod
    def from_yaml(cls, name_or_path: str | Path) -> ObjectConfig:
        path = resolve_config_path(name_or_path)
        with open(path) as fh:
            return cls.from_dict(yaml.safe_load(fh), origin=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "features": [f.to_dict() for f in self.features], **self.extra}


def load_object_config(name_or_path: str | Path) -> ObjectConfig:
    """Load an object config from a YAML path or a shipped config name (``"jets"``)."""
    return ObjectConfig.from_yaml(name_or_path)
