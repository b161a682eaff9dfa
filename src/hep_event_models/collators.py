"""Data collators for event token sequences (padding, whole-object masking, labels).

``EventMLMCollator`` masks whole objects: a chosen object loses all its quantizer-level
tokens at once (context tokens count as one-token units), special tokens are never chosen,
and of the chosen units 80% become ``[MASK]``, 10% random tokens drawn from the *same*
(object type, level) block, 10% stay unchanged (``transformers``' own collator draws from
the whole vocabulary, special and other-object tokens included). Every sequence gets at
least one masked unit, so no batch has an empty loss.

Both collators also pad sub-object columns (jet constituents, track hits; ``subobjects``)
for the constituent-enriched model when they are given the keys (``sub_objects``, from
``HepEventConfig.sub_objects``) and the rows hold them (``pad_sub_objects``); rows without
them give batches without them, and the model falls back to objects only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import schema
from .subobjects import num_inputs

SEQ_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def pad_examples(examples: Sequence[dict], pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad the sequence columns of dataset rows into ``(B, L)`` int64 tensors."""
    lengths = [len(e["input_ids"]) for e in examples]
    width = max(lengths)
    if pad_to_multiple_of and width % pad_to_multiple_of:
        width += pad_to_multiple_of - width % pad_to_multiple_of
    out = {}
    for k in SEQ_KEYS:
        if k == "attention_mask" or k in examples[0]:
            arr = np.zeros((len(examples), width), dtype=np.int64)
            for i, e in enumerate(examples):
                row = np.ones(lengths[i], dtype=np.int64) if k == "attention_mask" and k not in e else np.asarray(e[k])
                arr[i, : lengths[i]] = row
            out[k] = torch.from_numpy(arr)
    return out


def pad_sub_objects(examples: Sequence[dict], keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Pad the sub-object columns of dataset rows, grouped by their object.

    Args:
        examples: rows with ``<key>`` (one input row per sub-object) and ``<key>_owner`` (the
            sequence position of its object's first token) columns.
        keys: sub-collections, in the model's order (``HepEventConfig.sub_objects``).

    Returns:
        ``{}`` when no row holds any of ``keys``; else ``sub_features (B, K, C, F)`` float32
        (F: the widest key's inputs, zero-filled), ``sub_mask (B, K, C)`` bool,
        ``sub_owner (B, K)`` int64 (-1 for padding), ``sub_kind (B, K)`` int64 (index into
        ``keys``), with K the most objects with sub-objects in one row and C the most
        sub-objects of one object.
    """
    groups: list[list[tuple[int, int, np.ndarray]]] = []
    seen = False
    for e in examples:
        items = []
        for kind, key in enumerate(keys):
            if e.get(key) is None:
                continue
            seen = True
            own = np.asarray(e[f"{key}_owner"], dtype=np.int64)
            rows = np.asarray(e[key], dtype=np.float32).reshape(len(own), num_inputs(key))
            if len(own):
                cuts = np.flatnonzero(np.diff(own)) + 1
                items += [(kind, int(o[0]), r) for o, r in zip(np.split(own, cuts), np.split(rows, cuts), strict=True)]
        groups.append(items)
    if not seen:
        return {}
    K = max((len(g) for g in groups), default=0)
    C = max((len(r) for g in groups for _k, _o, r in g), default=0)
    F = max(num_inputs(k) for k in keys)
    feats = np.zeros((len(examples), K, C, F), dtype=np.float32)
    mask = np.zeros((len(examples), K, C), dtype=bool)
    owner = np.full((len(examples), K), -1, dtype=np.int64)
    kinds = np.zeros((len(examples), K), dtype=np.int64)
    for b, g in enumerate(groups):
        for k, (kind, o, rows) in enumerate(g):
            feats[b, k, : len(rows), : rows.shape[1]] = rows
            mask[b, k, : len(rows)] = True
            owner[b, k], kinds[b, k] = o, kind
    return {
        "sub_features": torch.from_numpy(feats),
        "sub_mask": torch.from_numpy(mask),
        "sub_owner": torch.from_numpy(owner),
        "sub_kind": torch.from_numpy(kinds),
    }


def _block_tables(token_blocks: Sequence[Sequence[int]], vocab_size: int):
    block_of = torch.full((vocab_size,), -1, dtype=torch.long)
    starts, sizes, levels = [], [], []
    for i, (start, size, _type, level) in enumerate(token_blocks):
        block_of[start : start + size] = i
        starts.append(start)
        sizes.append(size)
        levels.append(level)
    return block_of, torch.tensor(starts), torch.tensor(sizes), torch.tensor(levels)


class EventMLMCollator:
    """Pad rows and mask whole objects for masked-token pretraining.

    Args:
        token_blocks: the layout's ``[start, size, type_id, level]`` blocks (``HepEventConfig.token_blocks``;
            level -1 for context blocks).
        vocab_size: vocabulary size.
        mlm_probability: fraction of units (objects and context tokens) masked.
        mask_fraction, random_fraction: of the masked units, replaced by ``[MASK]`` and by
            random same-block tokens (the rest stay unchanged).
        seed: seeds the collator's own generator (``None``: torch's global RNG).
        sub_objects: sub-object keys to pad (``pad_sub_objects``); sub-objects stay visible
            when their object is masked, as the model's input next to the masked tokens.
    """

    def __init__(
        self,
        token_blocks: Sequence[Sequence[int]],
        vocab_size: int,
        mlm_probability: float = 0.3,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
        sub_objects: Sequence[str] = (),
    ):
        if not token_blocks:
            raise ValueError("EventMLMCollator needs the layout's token blocks (HepEventConfig.token_blocks)")
        if not 0 < mlm_probability <= 1 or mask_fraction + random_fraction > 1:
            raise ValueError("need 0 < mlm_probability <= 1 and mask_fraction + random_fraction <= 1")
        self.block_of, self.starts, self.sizes, self.levels = _block_tables(token_blocks, vocab_size)
        self.vocab_size = vocab_size
        self.mlm_probability = mlm_probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.sub_objects = list(sub_objects)

    @classmethod
    def from_config(cls, config, **kwargs) -> EventMLMCollator:
        kwargs.setdefault("sub_objects", getattr(config, "sub_objects", None) or ())
        return cls(config.token_blocks, config.vocab_size, **kwargs)

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = pad_examples(examples, self.pad_to_multiple_of)
        ids = batch["input_ids"]
        if ids.max() >= self.vocab_size:
            raise ValueError(f"token id {int(ids.max())} outside the model's vocabulary ({self.vocab_size})")
        blk = self.block_of[ids]
        real = blk >= 0
        lvl = torch.where(real, self.levels[blk.clamp(min=0)], torch.full_like(ids, -2))
        starts_unit = real & (lvl <= 0)  # object level-0 tokens and context tokens
        unit = torch.cumsum(starts_unit.long(), dim=1) * real  # 0 for special tokens
        n_units = int(unit.max()) + 1
        counts = unit.max(dim=1).values  # units per sequence
        exists = torch.arange(n_units)[None, :] <= counts[:, None]
        chosen = (self._rand(ids.shape[0], n_units) < self.mlm_probability) & exists
        chosen[:, 0] = False
        # at least one unit per sequence that has any
        none = (chosen.sum(dim=1) == 0) & (counts > 0)
        if none.any():
            pick = (self._rand(int(none.sum())) * counts[none]).long() + 1
            chosen[none.nonzero()[:, 0], pick] = True
        masked = chosen.gather(1, unit) & real
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        r = self._rand(ids.shape[0], n_units).gather(1, unit)
        to_mask = masked & (r < self.mask_fraction)
        to_rand = masked & (r >= self.mask_fraction) & (r < self.mask_fraction + self.random_fraction)
        b = blk.clamp(min=0)
        rand_ids = self.starts[b] + (self._rand(ids.shape) * self.sizes[b]).long().clamp(max=self.sizes[b] - 1)
        new = torch.where(to_mask, torch.full_like(ids, schema.MASK_ID), ids)
        new = torch.where(to_rand, rand_ids, new)
        batch["input_ids"] = new
        batch["labels"] = labels
        batch.update(pad_sub_objects(examples, self.sub_objects))
        return batch


class EventClassificationCollator:
    """Pad rows and turn the ``label`` column into ``labels`` (through ``label_map`` if given).

    Args:
        label_map: ``{process id: class id}``; rows whose label is not in it raise.
        sub_objects: sub-object keys to pad (``pad_sub_objects``).
    """

    def __init__(
        self,
        label_map: dict[int, int] | None = None,
        pad_to_multiple_of: int | None = None,
        sub_objects: Sequence[str] = (),
    ):
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        self.pad_to_multiple_of = pad_to_multiple_of
        self.sub_objects = list(sub_objects)

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = pad_examples(examples, self.pad_to_multiple_of)
        raw = [int(e["label"] if "label" in e else e["labels"]) for e in examples]
        if self.label_map:
            missing = sorted({x for x in raw if x not in self.label_map})
            if missing:
                raise ValueError(f"labels {missing} are not in the label map {self.label_map}")
            raw = [self.label_map[x] for x in raw]
        batch["labels"] = torch.tensor(raw, dtype=torch.long)
        batch.update(pad_sub_objects(examples, self.sub_objects))
        return batch
