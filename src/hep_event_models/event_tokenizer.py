"""EventTokenizer: whole events to token sequences, the Hugging Face way (DESIGN §4, §5).

An ``EventTokenizer`` bundles one ``ObjectTokenizer`` per object type with binned
event-context scalars and a ``TokenLayout``. Called on an ``EventBatch`` it returns a
``transformers.BatchEncoding``::

    tok = EventTokenizer.from_pretrained("my-tokenizer")
    for events in tok.reader("data/*.h5", chunk_size=4096):
        enc = tok(events, padding=True, return_tensors="pt")
        back = tok.decode(enc["input_ids"])          # EventBatch in GeV / radians

Sequence (``mode="combined"``): ``[CLS]``, one token per context scalar, then each
collection in the configured order: its objects by pT descending, each object as its Q
quantizer-level tokens in level order, then ``[SEP]`` (also for an empty collection, so
every event has one ``[SEP]`` per collection). ``mode="object"`` gives the same for one
collection (``[CLS]``, context, objects, ``[SEP]``); ``mode="separate"`` returns one such
encoding per collection.

Truncation (``truncation=True`` with ``max_length``) is deterministic and keeps the
structure: whole objects are dropped, softest first, from the last collection in the
order backwards, until the sequence fits; ``[CLS]``, context tokens and every ``[SEP]``
stay. The default order puts tracks last, so tracks are the first to go.

``token_type_ids``: special tokens 0, context tokens 10 (event), object tokens their
collection's type id (``schema.TYPE_IDS``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchEncoding

from . import __version__, schema
from .config import ObjectConfig, resolve_config_path
from .grouped_tokenizer import GroupedObjectTokenizer, load_object_tokenizer
from .io.reader import CollectionBatch, EventBatch, EventReader
from .layout import ContextSpec, TokenLayout, fingerprint
from .object_tokenizer import ObjectTokenizer

EVENT_TOKENIZER_FORMAT_VERSION = 1
CONFIG_NAME = "tokenizer_config.json"
VOCAB_NAME = "tokenizer.json"
OBJECTS_DIR = "objects"
MODES = ("combined", "object", "separate")


class EventTokenizer:
    """Tokenizer of whole events built from per-object tokenizers.

    Args:
        object_tokenizers: ``{object name: ObjectTokenizer or GroupedObjectTokenizer}`` in
            sequence order (a grouped object's tokens are its groups' levels, group after group).
        context: binned event-context scalars (``ContextSpec``), in sequence order.
        model_max_length: default ``max_length`` for truncation and ``padding="max_length"``.
        metadata: free-form provenance (training data, diagnostics) kept in the config
            and shown in the model card.
    """

    model_input_names: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask")
    padding_side = "right"

    def __init__(
        self,
        object_tokenizers: Mapping[str, ObjectTokenizer | GroupedObjectTokenizer],
        context: Sequence[ContextSpec] = (),
        model_max_length: int | None = None,
        metadata: dict | None = None,
    ):
        if not object_tokenizers:
            raise ValueError("an EventTokenizer needs at least one object tokenizer")
        for name, t in object_tokenizers.items():
            if t.object != name:
                raise ValueError(f"object tokenizer for {t.object!r} given under the name {name!r}")
            t.eval()
        self.object_tokenizers = dict(object_tokenizers)
        self.context = list(context)
        self.layout = TokenLayout(
            self.context,
            [(n, t.codebook_sizes) for n, t in self.object_tokenizers.items()],
            {n: t.level_labels for n, t in self.object_tokenizers.items() if getattr(t, "level_labels", None)},
        )
        self.model_max_length = model_max_length
        self.metadata = dict(metadata or {})
        self._tokens: list[str] | None = None
        self._token_index: dict[str, int] | None = None
        self._fingerprint: str | None = None

    # -- Hugging Face tokenizer surface ---------------------------------------------------------
    pad_token, cls_token, sep_token, mask_token, unk_token = (
        schema.PAD_TOKEN,
        schema.CLS_TOKEN,
        schema.SEP_TOKEN,
        schema.MASK_TOKEN,
        schema.UNK_TOKEN,
    )
    pad_token_id, cls_token_id, sep_token_id, mask_token_id, unk_token_id = (
        schema.PAD_ID,
        schema.CLS_ID,
        schema.SEP_ID,
        schema.MASK_ID,
        schema.UNK_ID,
    )
    pad_token_type_id = 0

    @property
    def all_special_ids(self) -> list[int]:
        return list(schema.SPECIAL_TOKENS.values())

    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    def __len__(self) -> int:
        return self.layout.vocab_size

    @property
    def objects(self) -> list[str]:
        """Object (collection) names in sequence order."""
        return list(self.object_tokenizers)

    @property
    def num_quantizers(self) -> dict[str, int]:
        return {n: t.num_quantizers for n, t in self.object_tokenizers.items()}

    @property
    def layout_fingerprint(self) -> str:
        return self.layout.fingerprint

    @property
    def fingerprint(self) -> str:
        """Fingerprint of layout, preprocessing and weights: equal fingerprints, equal tokens."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.layout_fingerprint.encode())
            for name, t in self.object_tokenizers.items():
                h.update(name.encode())
                h.update(json.dumps(t.preprocessor.to_dict(), sort_keys=True).encode())
                for k, v in sorted(t.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def get_vocab(self) -> dict[str, int]:
        self._ensure_tokens()
        return dict(self._token_index)

    def _ensure_tokens(self) -> None:
        if self._tokens is None:
            self._tokens = self.layout.token_strings()
            self._token_index = {t: i for i, t in enumerate(self._tokens)}

    def convert_ids_to_tokens(self, ids: int | Iterable[int]) -> str | list[str]:
        self._ensure_tokens()
        if isinstance(ids, (int, np.integer)):
            return self._tokens[int(ids)]
        return [self._tokens[int(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        self._ensure_tokens()
        if isinstance(tokens, str):
            return self._token_index.get(tokens, self.unk_token_id)
        return [self._token_index.get(t, self.unk_token_id) for t in tokens]

    def get_special_tokens_mask(
        self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = True
    ) -> list[int]:
        """1 for reserved ids (special tokens and padding), 0 for object and context tokens."""
        if not already_has_special_tokens or token_ids_1 is not None:
            raise ValueError("event sequences always contain their special tokens: use already_has_special_tokens=True")
        return [int(int(i) < schema.NUM_RESERVED_IDS) for i in token_ids_0]

    # -- reading -------------------------------------------------------------------------------
    def code_vectors(self) -> np.ndarray:
        """``(vocab_size, D)`` float32: every object token's code vector in its quantizer's
        space (``ObjectTokenizer.code_vectors``; ``D`` the largest dimension, zero-padded),
        zeros for special and context tokens. The levels of one object (of one feature group)
        share a space: their vectors sum to the quantized latent the decoder reads. What
        ``HepEventConfig(token_embedding="code")`` models embed instead of a free vector per
        id, so that neighbouring codes get neighbouring embeddings."""
        per_object = {n: t.code_vectors() for n, t in self.object_tokenizers.items()}
        dim = max(v.shape[1] for vs in per_object.values() for v in vs)
        table = np.zeros((self.vocab_size, dim), dtype=np.float32)
        for name, vectors in per_object.items():
            for block, v in zip(self.layout.object_blocks(name), vectors, strict=True):
                if len(v) != block.size:
                    raise ValueError(f"{name} level {block.level}: {len(v)} code vectors for {block.size} ids")
                table[block.start : block.stop, : v.shape[1]] = v
        return table

    def code_spaces(self) -> list[int]:
        """For every object id block (``layout.blocks`` order), the index of its code space:
        one per object tokenizer, one per feature group of a grouped tokenizer."""
        spaces: dict[str, int] = {}
        out = []
        for b in self.layout.blocks:
            if b.kind != "object":
                continue
            t = self.object_tokenizers[b.name]
            key = b.name
            if hasattr(t, "group_levels"):
                ends = np.cumsum(list(t.group_levels.values()))
                key = f"{b.name}/{t.group_names[int(np.searchsorted(ends, b.level, side='right'))]}"
            out.append(spaces.setdefault(key, len(spaces)))
        return out

    def kinematics_sources(self) -> list[tuple[dict, Any]]:
        """What a model needs to decode each object's four-momentum from its tokens
        (``HepEventConfig.kinematics``; ``pair_bias`` and ``mass_readout`` models).

        For every object type whose tokenizer (with feature groups: the group holding ``pt``)
        decodes ``pt`` and ``phi``, a JSON-able spec and the ``ObjectTokenizer`` whose
        quantizer output projection and decoder the model copies (frozen):

        ``{"object", "type_id", "blocks"`` (indices into ``layout.blocks`` of the object's
        id blocks in that code space, in level order), ``"code_dim"`` (the code vectors'
        width), ``"latent_dim", "project_out"`` (whether the quantizer projects its output),
        ``"decoder": {"hidden", "layers", "skip", "out"}``, ``"features": {name: {"col",
        "width", "kind", "stats"}}`` for ``pt``, ``phi`` and, where present, ``eta`` and
        ``mass`` (GeV and radians after the inverse preprocessing)}``. Objects without
        ``eta`` (MET) get η = 0, objects without ``mass`` m = 0.
        """
        from .preprocessing import ANGLE_SCALE

        supported = {
            "pt": (schema.LOG_STANDARD, schema.STANDARD),
            "eta": (schema.STANDARD,),
            "phi": (schema.ANGLE,),
            "mass": (schema.LOG_STANDARD, schema.STANDARD),
        }
        block_index = {(b.name, b.level): i for i, b in enumerate(self.layout.blocks)}
        out = []
        for name, t in self.object_tokenizers.items():
            source, first_level = t, 0
            if hasattr(t, "group_levels"):  # the feature group that holds pt
                for g, levels in t.group_levels.items():
                    if "pt" in t.groups[g].feature_names:
                        source = t.groups[g]
                        break
                    first_level += levels
            names = source.feature_names
            if "pt" not in names or "phi" not in names or not hasattr(source, "decoder"):
                continue
            s = source.settings
            widths = source.out_widths
            cols = np.concatenate([[0], np.cumsum(widths)]).astype(int)
            feats = {}
            for i, tr in enumerate(source.preprocessor.transforms):
                if tr.name not in supported:
                    continue
                if tr.kind not in supported[tr.name]:
                    raise ValueError(
                        f"{name}: feature {tr.name!r} of kind {tr.kind!r} cannot be decoded inside a model "
                        f"(supported: {supported[tr.name]})"
                    )
                st = {k: tr.stats[k] for k in ("mean", "std", "offset") if k in tr.stats}
                if tr.kind == schema.ANGLE:
                    st["scale"] = ANGLE_SCALE
                feats[tr.name] = {"col": int(cols[i]), "width": int(widths[i]), "kind": tr.kind, "stats": st}
            vectors = source.code_vectors()
            out.append(
                (
                    {
                        "object": name,
                        "type_id": int(schema.TYPE_IDS[name]),
                        "blocks": [block_index[(name, first_level + q)] for q in range(source.num_quantizers)],
                        "code_dim": int(vectors[0].shape[1]),
                        "latent_dim": int(source.decoder_input_dim),
                        "project_out": isinstance(source.quantizer.project_out, torch.nn.Linear),
                        "decoder": {
                            "hidden": int(s.decoder_hidden_dim),
                            "layers": int(s.decoder_layers),
                            "skip": bool(s.linear_skip),
                            "out": int(sum(widths)),
                        },
                        "features": feats,
                    },
                    source,
                )
            )
        return out

    def object_configs(self) -> list[ObjectConfig]:
        return [t.object_config for t in self.object_tokenizers.values()]

    def reader(self, data, **kwargs) -> EventReader:
        """An ``EventReader`` over ``data`` reading exactly what this tokenizer needs."""
        kwargs.setdefault("scalars", [c.key for c in self.context])
        return EventReader(data, selection=self.object_configs(), **kwargs)

    # -- encoding ------------------------------------------------------------------------------
    def encode_objects(self, events: EventBatch, backend: str = "auto") -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Codes of every collection: ``{name: (codes (B, M, Q) with -1 on padding, mask (B, M))}``,
        objects sorted by pT descending."""
        out = {}
        for name, t in self.object_tokenizers.items():
            values, mask = _collection_values(events, name, t.feature_names)
            order = _pt_order(values, mask, t.feature_names)
            if order is not None:
                values = np.take_along_axis(values, order[..., None], axis=1)
                mask = np.take_along_axis(mask, order, axis=1)
            out[name] = (t.encode(values, mask, backend=backend), mask)
        return out

    def object_positions(
        self, events: EventBatch, truncation: bool = False, max_length: int | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Where each object lands in the ``mode="combined"`` sequence, without encoding.

        Returns ``{collection: (order, start)}``, both ``(B, M)``: ``order[b, k]`` is the slot
        (in ``events``) of the event's k-th object in sequence order (pT descending);
        ``start[b, k]`` the position of that object's first token, -1 for padding and for
        objects dropped by truncation. Used to attach per-object data (jet constituents,
        track hits) to the tokens of its object.
        """
        max_length = max_length if max_length is not None else self.model_max_length
        if truncation and max_length is None:
            raise ValueError("truncation=True needs max_length (or model_max_length)")
        orders, n_obj = {}, {}
        for name, t in self.object_tokenizers.items():
            values, mask = _collection_values(events, name, t.feature_names)
            order = _pt_order(values, mask, t.feature_names)
            orders[name] = np.broadcast_to(np.arange(mask.shape[1]), mask.shape) if order is None else order
            n_obj[name] = mask.sum(axis=1).astype(np.int64)
        if truncation:
            n_obj = self._truncate(n_obj, len(self.context), max_length)
        out = {}
        offset = np.full(len(events), 1 + len(self.context), dtype=np.int64)  # after [CLS] and context
        for name in self.objects:
            q = len(self.layout.object_blocks(name))
            k = np.arange(orders[name].shape[1])[None, :]
            inside = k < n_obj[name][:, None]
            out[name] = (orders[name], np.where(inside, offset[:, None] + k * q, -1))
            offset = offset + n_obj[name] * q + 1  # the objects, then [SEP]
        return out

    def context_ids(self, events: EventBatch) -> np.ndarray:
        """``(B, n_context)`` ids of the binned context scalars."""
        cols = []
        for c in self.context:
            if c.key not in events.scalars:
                raise KeyError(
                    f"events lack the context scalar {c.key!r}; read them with tokenizer.reader(...) "
                    f"or EventReader(..., scalars={[x.key for x in self.context]})"
                )
            x = np.asarray(events.scalars[c.key])
            if not np.isfinite(x).all():
                raise ValueError(f"context scalar {c.key!r} has NaN/inf values")
            cols.append(c.bin(x) + self.layout.context_block(c.name).start)
        return np.stack(cols, axis=1) if cols else np.zeros((len(events), 0), dtype=np.int64)

    def __call__(
        self,
        events: EventBatch,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = True,
        return_special_tokens_mask: bool = False,
        mode: str = "combined",
        collection: str | None = None,
        backend: str = "auto",
    ) -> BatchEncoding | dict[str, BatchEncoding]:
        """Tokenize a batch of events.

        Args:
            events: an ``EventBatch`` holding this tokenizer's collections and context scalars.
            padding: ``False`` (ragged lists), ``True``/``"longest"``, or ``"max_length"``.
            truncation: drop whole objects to fit ``max_length`` (module doc).
            max_length: defaults to ``model_max_length``.
            return_tensors: ``"pt"``, ``"np"`` or ``None`` (Python lists).
            mode: ``"combined"``, ``"object"`` (needs ``collection``) or ``"separate"``
                (returns ``{collection: BatchEncoding}``).

        Returns:
            ``BatchEncoding`` with ``input_ids``, ``token_type_ids``, ``attention_mask``
            (and ``special_tokens_mask`` if asked), each ``(B, L)``.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "object" and collection not in self.object_tokenizers:
            raise ValueError(f"mode='object' needs collection= one of {self.objects}, got {collection!r}")
        if not isinstance(events, EventBatch):
            raise TypeError(f"EventTokenizer takes an EventBatch (from EventReader), got {type(events).__name__}")
        max_length = max_length if max_length is not None else self.model_max_length
        if truncation and max_length is None:
            raise ValueError("truncation=True needs max_length (or model_max_length)")
        codes = self.encode_objects(events, backend=backend)
        ctx = self.context_ids(events)
        opts = dict(
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors=return_tensors,
            return_attention_mask=return_attention_mask,
            return_token_type_ids=return_token_type_ids,
            return_special_tokens_mask=return_special_tokens_mask,
        )
        if mode == "separate":
            return {n: self._assemble({n: codes[n]}, ctx, **opts) for n in self.objects}
        if mode == "object":
            return self._assemble({collection: codes[collection]}, ctx, **opts)
        return self._assemble(codes, ctx, **opts)

    def _assemble(
        self,
        codes: dict[str, tuple[np.ndarray, np.ndarray]],
        ctx: np.ndarray,
        padding,
        truncation,
        max_length,
        pad_to_multiple_of,
        return_tensors,
        return_attention_mask,
        return_token_type_ids,
        return_special_tokens_mask,
    ) -> BatchEncoding:
        """Vectorised sequence building.

        Every collection's padded ``(B, M·Q)`` id block is written at its per-event offset; the
        padding codes it carries past the event's real objects are overwritten by the [SEP] and
        the next collection, and whatever is left past the sequence's end becomes [PAD]. Type ids
        are looked up from the ids (``layout.type_of``).
        """
        B, n_ctx = ctx.shape
        names = list(codes)
        n_obj = {n: codes[n][1].sum(axis=1).astype(np.int64) for n in names}
        if truncation:
            n_obj = self._truncate(n_obj, n_ctx, max_length)
        q = {n: len(self.layout.object_blocks(n)) for n in names}
        lengths = np.full(B, 1 + n_ctx + len(names), dtype=np.int64)
        for n in names:
            lengths += n_obj[n] * q[n]
        width = int(lengths.max()) if B else 0
        if padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length (or model_max_length)")
            width = max(width, max_length) if not truncation else max_length
        elif padding not in (True, False, "longest", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if pad_to_multiple_of and width % pad_to_multiple_of:
            width += pad_to_multiple_of - width % pad_to_multiple_of
        # objects are packed at the front: only the batch's largest count of each collection is written
        kept = {n: codes[n][0][:, : int(n_obj[n].max()) if B else 0] for n in names}
        longest = 1 + n_ctx + sum(kept[n].shape[1] * q[n] + 1 for n in names)  # every slot filled
        out_ids = np.empty((B, max(width, longest)), dtype=np.int64)
        out_ids[:, 0] = self.cls_token_id
        out_ids[:, 1 : 1 + n_ctx] = ctx
        rows = np.arange(B)
        offset = np.full(B, 1 + n_ctx, dtype=np.int64)
        for n in names:
            c = kept[n]
            if c.shape[1]:
                starts = np.array([b.start for b in self.layout.object_blocks(n)], dtype=np.int64)
                block = (np.maximum(c, 0) + starts).reshape(B, -1)
                out_ids[rows[:, None], offset[:, None] + np.arange(block.shape[1])] = block
            offset += n_obj[n] * q[n]
            out_ids[rows, offset] = self.sep_token_id
            offset += 1
        out_ids = np.ascontiguousarray(out_ids[:, :width])
        out_ids[np.arange(width)[None, :] >= lengths[:, None]] = self.pad_token_id
        out_types = self.layout.type_of[out_ids].astype(np.int64)
        att = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        data: dict[str, Any] = {"input_ids": out_ids}
        if return_token_type_ids:
            data["token_type_ids"] = out_types
        if return_attention_mask:
            data["attention_mask"] = att
        if return_special_tokens_mask:
            data["special_tokens_mask"] = (out_ids < schema.NUM_RESERVED_IDS).astype(np.int64)
        if padding in (False, "do_not_pad"):
            if return_tensors is not None and len(set(lengths.tolist())) > 1:
                raise ValueError(
                    "sequences have different lengths: use padding=True to return tensors, "
                    "or return_tensors=None for lists"
                )
            data = {k: [row[:n].tolist() for row, n in zip(v, lengths, strict=True)] for k, v in data.items()}
        elif return_tensors is None:
            data = {k: v.tolist() for k, v in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors)

    def _truncate(self, n_obj: dict[str, np.ndarray], n_ctx: int, max_length: int) -> dict[str, np.ndarray]:
        fixed = 1 + n_ctx + len(n_obj)  # [CLS], context, one [SEP] per collection
        if fixed > max_length:
            raise ValueError(
                f"max_length={max_length} is shorter than the fixed tokens of a sequence "
                f"([CLS], {n_ctx} context, {len(n_obj)} [SEP]) = {fixed}"
            )
        q = {n: len(self.layout.object_blocks(n)) for n in n_obj}
        total = fixed + sum(n_obj[n] * q[n] for n in n_obj)
        excess = np.maximum(total - max_length, 0)
        out = dict(n_obj)
        for n in reversed(list(n_obj)):
            drop = np.minimum(out[n], -(-excess // q[n]))
            out[n] = out[n] - drop
            excess = np.maximum(excess - drop * q[n], 0)
        return out

    # -- padding (for collators) ----------------------------------------------------------------
    def pad(
        self,
        encoded_inputs,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **_: Any,
    ) -> BatchEncoding:
        """Pad a list of examples (dicts) or a dict of lists, like ``PreTrainedTokenizerBase.pad``.

        Sequence keys (``input_ids``, ``token_type_ids``, ``attention_mask``,
        ``special_tokens_mask``) are padded on the right; other keys (labels) are stacked.
        """
        if isinstance(encoded_inputs, Mapping):
            keys = list(encoded_inputs)
            n = len(encoded_inputs["input_ids"])
            examples = [{k: encoded_inputs[k][i] for k in keys} for i in range(n)]
        else:
            examples = list(encoded_inputs)
        if not examples:
            raise ValueError("pad() got no examples")
        seq_keys = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")
        pad_values = {
            "input_ids": self.pad_token_id,
            "token_type_ids": 0,
            "attention_mask": 0,
            "special_tokens_mask": 1,
        }
        lengths = [len(_as_list(e["input_ids"])) for e in examples]
        width = max(lengths)
        if padding == "max_length" and max_length is not None:
            width = max_length
        elif padding in (False, "do_not_pad"):
            width = max(lengths)
        if pad_to_multiple_of and width % pad_to_multiple_of:
            width += pad_to_multiple_of - width % pad_to_multiple_of
        out: dict[str, Any] = {}
        for k in examples[0]:
            if k in seq_keys:
                arr = np.full((len(examples), width), pad_values[k], dtype=np.int64)
                for i, e in enumerate(examples):
                    row = np.asarray(_as_list(e[k]), dtype=np.int64)[:width]
                    arr[i, : len(row)] = row
                out[k] = arr
            else:
                out[k] = np.asarray([_as_scalar(e[k]) for e in examples])
        if return_attention_mask is not False and "attention_mask" not in out:
            out["attention_mask"] = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        if return_tensors is None:
            out = {k: v.tolist() for k, v in out.items()}
        return BatchEncoding(out, tensor_type=return_tensors)

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, input_ids, attention_mask=None) -> EventBatch:
        """Physical objects from token ids.

        Args:
            input_ids: ``(B, L)`` ids (tensor, array or list of lists; ragged lists allowed).
            attention_mask: optional ``(B, L)``; positions with 0 are ignored.

        Returns:
            ``EventBatch`` with one ``CollectionBatch`` per object type present in the layout
            (features in physical units, objects in sequence order) and the context scalars
            at their bin centres (NaN where an event has no context token). An object needs all
            its levels in order after its level-0 token; incomplete objects are skipped with a
            warning.
        """
        ids = _to_2d_array(input_ids)
        if attention_mask is not None:
            ids = np.where(_to_2d_array(attention_mask, fill=0).astype(bool), ids, self.pad_token_id)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids outside [0, {self.vocab_size}) for this tokenizer")
        B, L = ids.shape
        block = self.layout.block_of[ids] if ids.size else np.zeros(ids.shape, np.int32)
        local = self.layout.local[ids] if ids.size else np.zeros(ids.shape, np.int64)
        block_index = {(b.name, b.level, b.kind): i for i, b in enumerate(self.layout.blocks)}
        collections, malformed = {}, 0
        for name, t in self.object_tokenizers.items():
            Q = t.num_quantizers
            b0 = block_index[(name, 0, "object")]
            rows, cols = np.nonzero(block == b0)
            ok = np.ones(len(rows), dtype=bool)
            obj_codes = np.zeros((len(rows), Q), dtype=np.int64)
            for q in range(Q):
                c = cols + q
                inside = c < L
                cc = np.minimum(c, L - 1)
                ok &= inside & (block[rows, cc] == block_index[(name, q, "object")])
                obj_codes[:, q] = local[rows, cc]
            malformed += int((~ok).sum())
            rows, obj_codes = rows[ok], obj_codes[ok]
            counts = np.bincount(rows, minlength=B)
            width = max(1, int(counts.max()) if counts.size else 1)
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])
            slot = np.arange(len(rows)) - first[rows]
            grid = np.full((B, width, Q), -1, dtype=np.int64)
            grid[rows, slot] = obj_codes
            values = t.decode(grid).astype(np.float32)
            mask = (grid >= 0).all(axis=-1)
            collections[name] = CollectionBatch(values, mask, tuple(t.feature_names))
        if malformed:
            warnings.warn(f"decode skipped {malformed} incomplete object(s) (missing quantizer levels)", stacklevel=2)
        scalars = {}
        for c in self.context:
            bi = block_index[(c.name, 0, "context")]
            hit = block == bi
            first_pos = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
            vals = np.full(B, np.nan)
            has = first_pos >= 0
            vals[has] = c.centre(local[np.arange(B)[has], first_pos[has]])
            scalars[c.key] = vals
        return EventBatch(
            collections,
            scalars,
            np.full(B, schema.UNLABELLED, dtype=np.int64),
            np.arange(B, dtype=np.int64),
            np.zeros(B, dtype=np.int32),
            ["<decoded>"],
        )

    def batch_decode(self, sequences, **kwargs) -> EventBatch:
        return self.decode(sequences, **kwargs)

    # -- persistence ---------------------------------------------------------------------------
    def to_config(self) -> dict:
        return {
            "tokenizer_class": "EventTokenizer",
            "library_name": "hep_event_models",
            "format_version": EVENT_TOKENIZER_FORMAT_VERSION,
            "package_version": __version__,
            "objects": self.objects,
            "context": [c.to_dict() for c in self.context],
            "layout": self.layout.to_dict(),
            "layout_fingerprint": self.layout_fingerprint,
            "tokenizer_fingerprint": self.fingerprint,
            "vocab_size": self.vocab_size,
            "type_vocab_size": schema.TYPE_VOCAB_SIZE,
            "num_quantizers": self.num_quantizers,
            "special_tokens": dict(schema.SPECIAL_TOKENS),
            "model_max_length": self.model_max_length,
            "metadata": self.metadata,
        }

    def save_pretrained(self, save_directory: str | Path, repo_id: str | None = None, revision: str | None = None):
        """Write ``tokenizer_config.json``, ``tokenizer.json`` (WordLevel vocabulary),
        ``objects/<name>/`` (safetensors + JSON per object tokenizer) and ``README.md``.

        Files are written in a temporary directory and moved into place, so a crash never
        leaves a half-written tokenizer; other files in ``save_directory`` are kept.
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=out))
        try:
            for name, t in self.object_tokenizers.items():
                t.save_pretrained(tmp / OBJECTS_DIR / name)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.to_config(), indent=2) + "\n")
            self._word_level().save(str(tmp / VOCAB_NAME))
            from .cards import event_tokenizer_card

            event_tokenizer_card(self, repo_id=repo_id, revision=revision).save(tmp / "README.md")
            for item in tmp.iterdir():
                dest = out / item.name
                if dest.is_dir():
                    old = out / f".{item.name}.old"
                    shutil.rmtree(old, ignore_errors=True)
                    dest.rename(old)
                    item.rename(dest)
                    shutil.rmtree(old)
                else:
                    item.replace(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def _word_level(self):
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import WhitespaceSplit

        wl = Tokenizer(WordLevel(vocab=self.get_vocab(), unk_token=self.unk_token))
        wl.pre_tokenizer = WhitespaceSplit()
        return wl

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | Path,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: str | torch.device = "cpu",
        subfolder: str | None = None,
    ) -> EventTokenizer:
        """Load from a directory or a Hub repository id (``revision`` = branch, tag or commit).

        Hub repositories go through ``huggingface_hub.snapshot_download`` (so an offline
        machine loads from the Hub cache with ``local_files_only=True`` or ``HF_HUB_OFFLINE=1``).
        ``subfolder``: the tokenizer lives in a subdirectory (e.g. ``"tokenizer"`` of a model).
        """
        path = Path(pretrained)
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            path = Path(
                snapshot_download(
                    str(pretrained),
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                    token=token,
                )
            )
        if subfolder:
            path = path / subfolder
        cfg_path = path / CONFIG_NAME
        if not cfg_path.exists():
            raise FileNotFoundError(f"{path}: no {CONFIG_NAME} (not an EventTokenizer directory)")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("tokenizer_class") != "EventTokenizer":
            raise ValueError(f"{cfg_path}: tokenizer_class is {cfg.get('tokenizer_class')!r}, not 'EventTokenizer'")
        ver = cfg.get("format_version")
        if ver != EVENT_TOKENIZER_FORMAT_VERSION:
            raise ValueError(
                f"{cfg_path}: EventTokenizer format_version {ver!r} is not supported by hep_event_models "
                f"{__version__} (reads version {EVENT_TOKENIZER_FORMAT_VERSION}); use the package version "
                f"that wrote it ({cfg.get('package_version')!r}) or re-save the tokenizer"
            )
        objects = {}
        for name in cfg["objects"]:
            objects[name] = load_object_tokenizer(path / OBJECTS_DIR / name).to(device)
        tok = cls(
            objects,
            [ContextSpec.from_dict(c) for c in cfg["context"]],
            model_max_length=cfg.get("model_max_length"),
            metadata=cfg.get("metadata"),
        )
        if tok.layout.to_dict() != TokenLayout.from_dict(cfg["layout"]).to_dict():
            raise ValueError(f"{cfg_path}: the saved layout does not match the one its object tokenizers give")
        if cfg.get("tokenizer_fingerprint") and cfg["tokenizer_fingerprint"] != tok.fingerprint:
            raise ValueError(
                f"{cfg_path}: tokenizer fingerprint {cfg['tokenizer_fingerprint']} does not match the loaded "
                f"weights ({tok.fingerprint}): the directory was modified or is incomplete"
            )
        return tok

    def push_to_hub(
        self,
        repo_id: str,
        revision: str | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        tag: str | None = None,
    ):
        """Upload to the Hub with ``huggingface_hub``: creates the repository, the branch
        ``revision`` (when not ``main`` and missing) and the ``tag`` if given.

        Returns the ``CommitInfo`` of the upload.
        """
        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, repo_id=repo_id, revision=revision)
            return push_folder(
                tmp,
                repo_id,
                revision=revision,
                commit_message=commit_message or f"Upload EventTokenizer {self.fingerprint}",
                private=private,
                tag=tag,
                token=token,
            )

    def to(self, device: str | torch.device) -> EventTokenizer:
        for t in self.object_tokenizers.values():
            t.to(device)
        return self

    def __repr__(self) -> str:
        objs = ", ".join(f"{n}×{t.num_quantizers}" for n, t in self.object_tokenizers.items())
        ctx = ", ".join(c.name for c in self.context)
        return (
            f"EventTokenizer(vocab_size={self.vocab_size}, objects=[{objs}], context=[{ctx}], "
            f"fingerprint={self.fingerprint})"
        )


def load_event_config(path: str | Path) -> dict:
    """Read an event config (``tokenizer_configs/event.yaml``): ``{"objects": {name: ObjectConfig},
    "context": [dict], "model_max_length": int | None, "feature_groups": bool}``; object config
    paths are relative to it. ``feature_groups: true`` fits objects whose config has a
    ``groups:`` section as feature groups (``grouped_tokenizer``)."""
    import yaml

    p = resolve_config_path(path)
    d = yaml.safe_load(p.read_text())
    if not isinstance(d, dict) or "objects" not in d:
        raise ValueError(f"{p}: an event config needs an 'objects' map (object name → object config)")
    objects = {}
    for name, ref in d["objects"].items():
        if isinstance(ref, dict):
            oc = ObjectConfig.from_dict(ref, origin=f"{p}:objects.{name}")
        else:
            rp = Path(ref)
            oc = ObjectConfig.from_yaml(rp if rp.is_absolute() else p.parent / rp)
        if oc.object != name:
            raise ValueError(f"{p}: objects.{name} points at a config for {oc.object!r}")
        objects[name] = oc
    ctx = list(d.get("context") or [])
    for c in ctx:
        if "name" not in c:
            raise ValueError(f"{p}: context entries need a 'name'")
    fg = d.get("feature_groups", False)
    if not isinstance(fg, bool):
        raise ValueError(f"{p}: feature_groups must be true or false, got {fg!r}")
    return {"objects": objects, "context": ctx, "model_max_length": d.get("model_max_length"), "feature_groups": fg}


def is_event_config(path: str | Path) -> bool:
    import yaml

    try:
        d = yaml.safe_load(resolve_config_path(path).read_text())
    except FileNotFoundError:
        return False
    return isinstance(d, dict) and "objects" in d


def _pt_order(values: np.ndarray, mask: np.ndarray, features: Sequence[str]) -> np.ndarray | None:
    """``(B, M)`` slot order putting real objects by pT descending first; ``None`` when the
    slots are in that order already (or there is no ``pt`` feature)."""
    if "pt" not in features:
        return None
    pt = values[..., list(features).index("pt")]
    order = np.argsort(-np.where(mask, pt, -np.inf), axis=1, kind="stable")
    return None if (order == np.arange(order.shape[1])).all() else order


def _collection_values(events: EventBatch, name: str, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if name not in events.collections:
        raise KeyError(
            f"events have no {name!r} collection (have {sorted(events.collections)}); "
            "read them with tokenizer.reader(...)"
        )
    c = events.collections[name]
    if list(c.features) == features:
        return c.values, c.mask
    missing = [f for f in features if f not in c.features]
    if missing:
        raise KeyError(f"{name}: events lack features {missing} the tokenizer needs (have {list(c.features)})")
    idx = [c.features.index(f) for f in features]
    return c.values[..., idx], c.mask


def _as_list(x) -> list:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return list(x)


def _as_scalar(x):
    if isinstance(x, torch.Tensor):
        return x.item() if x.ndim == 0 else x.tolist()
    return x


def _to_2d_array(x, fill: int = schema.PAD_ID) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.reshape(1, -1).astype(np.int64) if x.ndim == 1 else x.astype(np.int64)
    x = list(x)
    if x and isinstance(x[0], (int, np.integer)):
        x = [x]  # one sequence
    rows = [_as_list(r) for r in x]
    width = max((len(r) for r in rows), default=0)
    arr = np.full((len(rows), width), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
    return arr


__all__ = ["EventTokenizer", "fingerprint", "is_event_config", "load_event_config"]
