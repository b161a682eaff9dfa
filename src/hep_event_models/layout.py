"""Token layout of event sequences (DESIGN §4): id blocks, token strings, fingerprint.

Ids ``[0, NUM_RESERVED_IDS)`` are reserved (``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2,
``[MASK]`` 3, ``[UNK]`` 4, the rest unused). Then every event-context scalar owns a block
of ``bins`` ids, in config order, and every (object type, quantizer level) pair owns a
block of ``codebook_size`` ids, objects in sequence order, levels in order::

    [0 .. 15]  reserved | event_mu_0 .. event_mu_99 | electrons_q0_* | electrons_q1_* | ... | met_q3_*

The layout is plain data (``to_dict``/``from_dict``); its fingerprint (SHA-256 of the
canonical JSON, 16 hex digits) is written into every dataset and model config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import schema


def fingerprint(obj: Any) -> str:
    """16-hex-digit SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ContextSpec:
    """A binned event-context scalar (e.g. pile-up μ).

    Args:
        name: scalar name (the HDF5 key), e.g. ``"mu"``.
        group: its group (``"event"`` → ``event/mu``).
        bins: number of equal-width bins; values outside ``range`` go to the edge bins.
        range: ``(low, high)`` in the scalar's unit.
    """

    name: str
    group: str
    bins: int
    range: tuple[float, float]

    @property
    def key(self) -> str:
        """Reader scalar key, ``"group/name"``."""
        return f"{self.group}/{self.name}"

    def bin(self, x: np.ndarray) -> np.ndarray:
        """Bin index ``[0, bins)`` of values ``x`` (clipped at the edges)."""
        lo, hi = self.range
        idx = np.floor((np.asarray(x, dtype=np.float64) - lo) / (hi - lo) * self.bins)
        return np.clip(idx, 0, self.bins - 1).astype(np.int64)

    def centre(self, idx: np.ndarray) -> np.ndarray:
        """Bin centres of bin indices ``idx``."""
        lo, hi = self.range
        return lo + (np.asarray(idx, dtype=np.float64) + 0.5) * (hi - lo) / self.bins

    def to_dict(self) -> dict:
        return {"name": self.name, "group": self.group, "bins": self.bins, "range": list(self.range)}

    @classmethod
    def from_dict(cls, d: dict) -> ContextSpec:
        rng = d.get("range")
        if rng is None or len(rng) != 2 or not float(rng[1]) > float(rng[0]):
            raise ValueError(f"context scalar {d.get('name')!r} needs range [low, high] with high > low, got {rng}")
        if int(d.get("bins", 0)) < 1:
            raise ValueError(f"context scalar {d.get('name')!r} needs bins >= 1, got {d.get('bins')}")
        return cls(str(d["name"]), str(d.get("group", "event")), int(d["bins"]), (float(rng[0]), float(rng[1])))


@dataclass(frozen=True)
class Block:
    """A contiguous id range ``[start, start + size)``."""

    kind: str  # "context" or "object"
    name: str  # context scalar or object (collection) name
    level: int  # quantizer level (0 for context)
    start: int
    size: int
    type_id: int

    @property
    def stop(self) -> int:
        return self.start + self.size


class TokenLayout:
    """The id blocks of an event tokenizer.

    Args:
        context: binned event-context scalars, in sequence order.
        objects: ``[(object name, [codebook size per level]), ...]`` in sequence order.
        level_labels: ``{object name: [label per level]}`` for objects whose sub-tokens have
            names (feature groups: ``"kinematics_q0"``); their token strings read
            ``jets_kinematics_q0_17`` instead of ``jets_q0_17``.
    """

    def __init__(
        self,
        context: list[ContextSpec],
        objects: list[tuple[str, list[int]]],
        level_labels: dict[str, list[str]] | None = None,
    ):
        self.context = list(context)
        self.objects = [(name, [int(s) for s in sizes]) for name, sizes in objects]
        self.level_labels = {k: [str(x) for x in v] for k, v in (level_labels or {}).items()}
        for name, sizes in self.objects:
            labels = self.level_labels.get(name)
            if labels is not None and len(labels) != len(sizes):
                raise ValueError(f"{name}: {len(labels)} level labels for {len(sizes)} levels")
        names = [n for n, _ in self.objects]
        if len(set(names)) != len(names):
            raise ValueError(f"object names repeat in the layout: {names}")
        blocks, start = [], schema.NUM_RESERVED_IDS
        for c in self.context:
            blocks.append(Block("context", c.name, 0, start, c.bins, schema.TYPE_IDS["event"]))
            start += c.bins
        for name, sizes in self.objects:
            for level, size in enumerate(sizes):
                blocks.append(Block("object", name, level, start, size, schema.TYPE_IDS[name]))
                start += size
        self.blocks = blocks
        self.vocab_size = start
        # id → block index (-1 for reserved ids), and id → index inside its block
        self.block_of = np.full(self.vocab_size, -1, dtype=np.int32)
        for i, b in enumerate(blocks):
            self.block_of[b.start : b.stop] = i
        self.local = np.arange(self.vocab_size, dtype=np.int64)
        for b in blocks:
            self.local[b.start : b.stop] -= b.start
        self.type_of = np.zeros(self.vocab_size, dtype=np.int8)
        for b in blocks:
            self.type_of[b.start : b.stop] = b.type_id

    # -- lookups -------------------------------------------------------------------------
    def object_blocks(self, name: str) -> list[Block]:
        """The level blocks of one object, in level order."""
        out = [b for b in self.blocks if b.kind == "object" and b.name == name]
        if not out:
            raise KeyError(f"no object {name!r} in the layout (objects: {[n for n, _ in self.objects]})")
        return out

    def context_block(self, name: str) -> Block:
        for b in self.blocks:
            if b.kind == "context" and b.name == name:
                return b
        raise KeyError(f"no context scalar {name!r} in the layout")

    def token_strings(self) -> list[str]:
        """Readable form of every id (``[CLS]``, ``event_mu_17``, ``jets_q0_1234``)."""
        toks = [f"[unused{i}]" for i in range(schema.NUM_RESERVED_IDS)]
        for tok, i in schema.SPECIAL_TOKENS.items():
            toks[i] = tok
        for b in self.blocks:
            if b.kind == "context":
                prefix = f"event_{b.name}_"
            elif b.name in self.level_labels:
                prefix = f"{b.name}_{self.level_labels[b.name][b.level]}_"
            else:
                prefix = f"{b.name}_q{b.level}_"
            toks += [f"{prefix}{i}" for i in range(b.size)]
        return toks

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "num_reserved_ids": schema.NUM_RESERVED_IDS,
            "special_tokens": dict(schema.SPECIAL_TOKENS),
            "type_ids": dict(schema.TYPE_IDS),
            "type_vocab_size": schema.TYPE_VOCAB_SIZE,
            "context": [c.to_dict() for c in self.context],
            "objects": [
                {
                    "name": n,
                    "codebook_sizes": s,
                    **({"level_labels": self.level_labels[n]} if n in self.level_labels else {}),
                }
                for n, s in self.objects
            ],
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TokenLayout:
        if int(d.get("num_reserved_ids", -1)) != schema.NUM_RESERVED_IDS:
            raise ValueError(
                f"layout reserves {d.get('num_reserved_ids')} ids; this package reserves {schema.NUM_RESERVED_IDS}"
            )
        lay = cls(
            [ContextSpec.from_dict(c) for c in d["context"]],
            [(o["name"], o["codebook_sizes"]) for o in d["objects"]],
            {o["name"]: o["level_labels"] for o in d["objects"] if "level_labels" in o},
        )
        if "vocab_size" in d and int(d["vocab_size"]) != lay.vocab_size:
            raise ValueError(f"layout says vocab_size {d['vocab_size']} but its blocks give {lay.vocab_size}")
        return lay

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())
