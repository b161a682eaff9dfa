"""HepEvent models: a BERT encoder over event token sequences (DESIGN §5).

Built on ``transformers``' BERT modules. What events add:

- a learned embedding of each token's quantizer level (0 for special and context tokens,
  ``level + 1`` for object tokens), from the token's place in its object (found from the
  type ids; from the id when there are none), so the model knows coarse from fine tokens of
  the same object, also where they are masked;
- token type ids carry the object type (DESIGN §4);
- the classification head reads the ``[CLS]`` state: Linear → ReLU → Dropout → Linear;
- optionally (``config.object_pooling``) the hierarchical model of seed 004: each object's
  sub-tokens (quantizer levels, or feature groups × levels with a grouped tokenizer) pass
  through an inner BERT layer and are pooled to one vector per object
  (``HepEventObjectPooler``); the outer encoder sees one position per object. Objects are
  found from ``token_type_ids`` (runs of one object type cut every S tokens, S the type's
  sub-tokens per object), so ``[MASK]`` and random replacements do not hide them.
- optionally (``config.kinematics_embedding``) every object's four-momentum, decoded from
  its own tokens by frozen copies of the tokenizer's decoders, embedded and added to its
  input (``HepEventKinematicsEmbedding``), so attention can sum momenta.

``HepEventModel``, ``HepEventForMaskedLM`` and ``HepEventForSequenceClassification`` are
registered with the ``transformers`` Auto classes when ``hep_event_models`` is imported,
and ``register_for_auto_class`` writes ``auto_map`` for ``trust_remote_code`` users.
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import NamedTuple

import torch
from torch import nn
from transformers import BertForMaskedLM, BertModel, BertPreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput, SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer

from .configuration_hep_event import HepEventConfig

# BertEmbeddings.forward's position offset of cached tokens: ``past_key_values_length`` in
# earlier transformers 5 releases, ``cache_length`` in 5.24 (BertModel passes its own name)
_CACHE_OFFSET_ARG = (
    "cache_length"
    if "cache_length" in inspect.signature(BertEmbeddings.forward).parameters
    else "past_key_values_length"
)


def level_table(config: HepEventConfig) -> torch.Tensor:
    """``(vocab_size,)`` level id of every token: 0 special/context, ``level + 1`` for objects."""
    table = torch.zeros(config.vocab_size, dtype=torch.long)
    for start, size, _type_id, level in config.token_blocks:
        if level >= 0:
            table[start : start + size] = level + 1
    return table


def subtokens_per_type(config: HepEventConfig) -> torch.Tensor:
    """``(type_vocab_size,)`` tokens per object of each token type (0: not an object type)."""
    table = torch.zeros(config.type_vocab_size, dtype=torch.long)
    for _start, _size, type_id, level in config.token_blocks:
        if level >= 0:
            table[type_id] += 1
    return table


class ObjectStructure(NamedTuple):
    """Where each token of a ``(B, L)`` batch sits: its unit (object, or a one-token unit for
    special and context tokens) and its place in the unit.

    Attributes:
        unit: ``(B, L)`` unit index of each token (units numbered from 0 per sequence).
        sub: ``(B, L)`` index of the token within its unit (sub-token / level).
        in_object: ``(B, L)`` bool, the token belongs to an object.
        unit_types: ``(B, U)`` token type of each unit.
        unit_mask: ``(B, U)`` 1 for units of real tokens, 0 for padding and beyond.
        unit_is_object: ``(B, U)`` bool.
    """

    unit: torch.Tensor
    sub: torch.Tensor
    in_object: torch.Tensor
    unit_types: torch.Tensor
    unit_mask: torch.Tensor
    unit_is_object: torch.Tensor


def token_places(
    token_type_ids: torch.Tensor, real: torch.Tensor, subtokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sub, in_object)``, both ``(B, L)``: each token's place in its object (0 for special,
    context and padding tokens) and whether it belongs to an object; ``real`` is the bool
    attention mask. Runs of one object type are cut every S tokens (S = ``subtokens[type]``)."""
    B, L = token_type_ids.shape
    per = subtokens[token_type_ids]
    in_object = (per > 0) & real
    prev = torch.nn.functional.pad(token_type_ids[:, :-1], (1, 0), value=-1)
    new_run = (token_type_ids != prev) | ~in_object
    idx = torch.arange(L, device=token_type_ids.device).expand(B, L)
    run_start = torch.cummax(torch.where(new_run, idx, torch.zeros_like(idx)), dim=1).values
    sub = torch.where(real, (idx - run_start) % per.clamp(min=1), torch.zeros_like(idx))
    return sub, in_object


def object_structure(
    token_type_ids: torch.Tensor, attention_mask: torch.Tensor | None, subtokens: torch.Tensor
) -> ObjectStructure:
    """Units of event sequences from their type ids (module doc).

    Args:
        token_type_ids: ``(B, L)``.
        attention_mask: ``(B, L)`` or ``None`` (all real).
        subtokens: ``subtokens_per_type(config)``.
    """
    B, L = token_type_ids.shape
    dev = token_type_ids.device
    real = torch.ones_like(token_type_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    sub, in_object = token_places(token_type_ids, real, subtokens)
    starts = (sub == 0) & real
    unit = torch.cumsum(starts.long(), dim=1) - 1
    n_units = starts.sum(dim=1)
    # padding: one shared unit after a row's real units (masked out of attention)
    unit = torch.where(real, unit, n_units[:, None].expand(B, L))
    U = int(unit.max()) + 1 if L else 0
    rows = torch.arange(B, device=dev)[:, None].expand(B, L)
    unit_types = torch.zeros((B, U), dtype=torch.long, device=dev)
    unit_types[rows[starts], unit[starts]] = token_type_ids[starts]
    unit_mask = torch.zeros((B, U), dtype=torch.long, device=dev)
    unit_mask[rows[starts], unit[starts]] = 1
    unit_is_object = torch.zeros((B, U), dtype=torch.bool, device=dev)
    unit_is_object[rows[starts], unit[starts]] = in_object[starts]
    return ObjectStructure(unit, sub, in_object, unit_types, unit_mask, unit_is_object)


class HepEventObjectPooler(nn.Module):
    """Inner transformer and pooling: token embeddings ``(B, L, H)`` → unit embeddings ``(B, U, H)``.

    An object's sub-tokens get a sub-token embedding (their place in the object), attend to
    each other through ``config.inner_layers`` BERT layers, and are pooled: ``"mean"`` over
    the sub-tokens, or ``"attention"``: softmax over ``key(x) · query`` with a learned query.
    Special and context tokens are units of their own and pass through unchanged.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__()
        self.pooling = config.object_pooling
        self.sub_embeddings = nn.Embedding(max(1, config.num_quantizers), config.hidden_size)
        self.layers = nn.ModuleList([BertLayer(config) for _ in range(config.inner_layers)])
        if self.pooling == "attention":
            self.key = nn.Linear(config.hidden_size, config.hidden_size)
            self.query = nn.Embedding(1, config.hidden_size)  # a learned query (an Embedding: BERT's init)
        self.subtokens = nn.Buffer(subtokens_per_type(config), persistent=False)

    def forward(self, token_embeds: torch.Tensor, structure: ObjectStructure) -> torch.Tensor:
        B, L, H = token_embeds.shape
        U = structure.unit_mask.shape[1]
        S = max(1, int(self.subtokens.max()))
        x = (
            token_embeds
            + self.sub_embeddings(structure.sub.clamp(max=self.sub_embeddings.num_embeddings - 1))
            * (structure.in_object[..., None])
        )
        rows = torch.arange(B, device=x.device)[:, None].expand(B, L)
        grid = x.new_zeros((B, U, S, H))
        grid[rows, structure.unit, structure.sub] = x
        present = torch.zeros((B, U, S), dtype=torch.bool, device=x.device)
        present[rows, structure.unit, structure.sub] = True
        units = grid[:, :, 0].clone()  # one-token units: the token itself
        sel = structure.unit_is_object & structure.unit_mask.bool()
        if bool(sel.any()):
            obj, keep = grid[sel], present[sel]  # (N, S, H), (N, S)
            mask = (~keep)[:, None, None, :].to(obj.dtype) * torch.finfo(obj.dtype).min
            for layer in self.layers:
                obj = layer(obj, attention_mask=mask)
            if self.pooling == "attention":
                score = (self.key(obj) @ self.query.weight[0]) / H**0.5
                w = score.masked_fill(~keep, float("-inf")).softmax(dim=-1)
            else:
                w = keep.to(obj.dtype) / keep.sum(dim=-1, keepdim=True)
            units[sel] = (w[..., None] * obj).sum(dim=1)
        return units


class HepEventSubObjectEncoder(nn.Module):
    """Constituent / hit encoder and gated injection (seed 004).

    Each object's sub-objects ``(C, F_kind)`` are projected to the hidden size (one
    ``Linear`` per sub-collection), pass through ``config.sub_object_layers`` BERT layers
    and are pooled by attention with a learned query per sub-collection into ``c`` ``(H,)``
    (layer-normed). ``inject`` adds ``c`` to the object's embedding ``x`` through a gate,
    ``x + g · c`` with ``g = sigmoid(W [x ‖ c])`` ``(H,)`` per object (per token of the object in
    the flat model), so the model learns how much constituent information to take.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__()
        H = config.hidden_size
        self.inputs = nn.ModuleList([nn.Linear(f, H) for f in config.sub_object_inputs])
        self.layers = nn.ModuleList([BertLayer(config) for _ in range(config.sub_object_layers)])
        self.key = nn.Linear(H, H)
        self.query = nn.Embedding(len(config.sub_object_inputs), H)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.gate = nn.Linear(2 * H, H)

    def forward(self, sub_features: torch.Tensor, sub_mask: torch.Tensor, sub_kind: torch.Tensor) -> torch.Tensor:
        """``(B, K, C, F)``, ``(B, K, C)``, ``(B, K)`` → ``c`` ``(B, K, H)`` (0 where an object
        slot has no sub-objects)."""
        B, K, C, _F = sub_features.shape
        H = self.key.in_features
        out = sub_features.new_zeros((B, K, H))
        sel = sub_mask.any(dim=-1)
        if not bool(sel.any()):
            return out
        x, keep, kind = sub_features[sel], sub_mask[sel], sub_kind[sel]  # (N, C, F), (N, C), (N,)
        h = x.new_zeros((x.shape[0], C, H))
        for k, proj in enumerate(self.inputs):
            rows = kind == k
            if bool(rows.any()):
                h[rows] = proj(x[rows][..., : proj.in_features])
        att = (~keep)[:, None, None, :].to(h.dtype) * torch.finfo(h.dtype).min
        for layer in self.layers:
            h = layer(h, attention_mask=att)
        score = (self.key(h) * self.query(kind)[:, None, :]).sum(-1) / H**0.5
        w = score.masked_fill(~keep, float("-inf")).softmax(dim=-1)
        out[sel] = self.norm((w[..., None] * h).sum(dim=1))
        return out

    def inject(self, x: torch.Tensor, c: torch.Tensor, has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x + sigmoid(W [x ‖ c]) · c`` where ``has`` ``(...)`` is True; returns the new ``x``
        ``(..., H)`` and the gates ``(..., H)`` (0 where ``has`` is False)."""
        g = torch.sigmoid(self.gate(torch.cat([x, c], dim=-1))) * has[..., None]
        return x + g * c, g


class Kinematics(NamedTuple):
    """Objects' decoded kinematics, per unit of a ``(B, U)`` batch (``ObjectStructure`` units).

    Attributes:
        pt, eta, phi, mass: ``(B, U)`` in GeV and radians (0 where not ``valid``).
        p4: ``(B, U, 4)`` four-momenta ``(E, px, py, pz)`` in GeV.
        valid: ``(B, U)`` bool: an object whose every kinematics token is present (not
            masked, not padding).
    """

    pt: torch.Tensor
    eta: torch.Tensor
    phi: torch.Tensor
    mass: torch.Tensor
    p4: torch.Tensor
    valid: torch.Tensor


def _wrap_angle(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + torch.pi, 2 * torch.pi) - torch.pi


class SkipMLP(nn.Module):
    """``mlp(x) + linear(x)``: a linear path beside the MLP.

    Mapping a feature onto one latent axis and back (η → axis → η) is then a linear
    function the optimizer finds in a few hundred steps and reproduces exactly; the MLP
    only learns the nonlinear packing of the remaining features. (Here, not in
    ``object_tokenizer``, so that the tokenizer's decoders can be rebuilt in a model that
    imports nothing of the package.)
    """

    def __init__(self, mlp: nn.Sequential, d_in: int, d_out: int):
        super().__init__()
        self.mlp = mlp
        self.linear = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.linear(x)


def mlp(d_in: int, hidden: int, d_out: int, layers: int, skip: bool = False) -> nn.Module:
    """An MLP with ``layers`` hidden layers of width ``hidden`` (GELU); ``layers=0`` is one
    ``nn.Linear``; ``skip``: a ``SkipMLP``. The object tokenizers' encoders and decoders."""
    if layers == 0:
        return nn.Linear(d_in, d_out)
    mods: list[nn.Module] = [nn.Linear(d_in, hidden), nn.GELU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), nn.GELU()]
    mods.append(nn.Linear(hidden, d_out))
    return SkipMLP(nn.Sequential(*mods), d_in, d_out) if skip else nn.Sequential(*mods)


def kinematics_id_table(config: HepEventConfig) -> torch.Tensor:
    """``(vocab_size,)`` for every id in a kinematics code space, its object's index in
    ``config.kinematics["objects"]`` + 1; 0 for other ids."""
    table = torch.zeros(config.vocab_size, dtype=torch.long)
    for k, spec in enumerate((config.kinematics or {}).get("objects", [])):
        for b in spec["blocks"]:
            start, size = config.token_blocks[b][:2]
            table[start : start + size] = k + 1
    return table


def _inverse_feature(out: torch.Tensor, f: dict) -> torch.Tensor:
    """Physical values ``(N,)`` of one feature from decoder outputs ``(N, out)`` (the torch
    twin of ``FeatureTransform.inverse`` for the kinds ``kinematics_sources`` allows)."""
    x, st = out[:, f["col"] : f["col"] + f["width"]], f["stats"]
    if f["kind"] == "angle":
        return _wrap_angle(x[:, 0] * st["scale"]) if f["width"] == 1 else torch.atan2(x[:, 1], x[:, 0])
    z = x[:, 0] * st["std"] + st["mean"]
    if f["kind"] == "log_standard":
        return torch.exp(z.clamp(-30.0, 30.0)) - st["offset"]
    return z


class HepEventKinematics(nn.Module):
    """Four-momenta of the objects of a batch, decoded from their tokens inside the model.

    Holds frozen copies of the tokenizer's code vectors (``code_table`` ``(vocab_size, D)``),
    output projections and decoders for the object types of ``config.kinematics``
    (``EventTokenizer.kinematics_sources``): an object's quantized latent is the sum of its
    kinematics tokens' code vectors; decoded and inverse-preprocessed it gives pT, η, φ, m.
    ``set_kinematics`` copies the weights in (``from_pretrained`` loads them).

    Always float32: the module refuses casts (``model.to(torch.bfloat16)``, ``.half()``), is
    loaded in float32 whatever ``dtype`` ``from_pretrained`` gets, and runs outside autocast
    (bf16 would cost ≈0.4% on every decoded mass). Its outputs are float32.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__()
        self.specs = config.kinematics["objects"]
        self.code_table = nn.Buffer(torch.zeros(config.vocab_size, max(1, int(config.kinematics["code_dim"]))))
        self.spec_of_id = nn.Buffer(kinematics_id_table(config), persistent=False)
        self._block_starts = [b[0] for b in config.token_blocks]
        self.ready = nn.Buffer(torch.zeros(()))
        self.project_out = nn.ModuleList(
            nn.Linear(s["code_dim"], s["latent_dim"]) if s["project_out"] else nn.Identity() for s in self.specs
        )
        self.decoders = nn.ModuleList(
            mlp(s["latent_dim"], d["hidden"], d["out"], d["layers"], d["skip"])
            for s, d in ((s, s["decoder"]) for s in self.specs)
        )
        self.requires_grad_(False)

    def _apply(self, fn, recurse=True):
        """Device moves apply, dtype casts do not: a floating tensor keeps its dtype (and its
        float32 values, never rounded through the requested dtype)."""

        def keep_dtype(t):
            out = fn(t)
            if not t.is_floating_point() or out.dtype == t.dtype:
                return out
            return out.to(t.dtype) if t.is_meta or out.is_meta else t.to(out.device)

        return super()._apply(keep_dtype, recurse)

    @torch.no_grad()
    def set_from(self, sources: list) -> None:
        """Copy code vectors, projections and decoders from ``EventTokenizer.kinematics_sources()``."""
        if [s for s, _ in sources] != self.specs:
            raise ValueError("the tokenizer's kinematics specs differ from the model's config (another tokenizer?)")
        table = torch.zeros_like(self.code_table)
        for k, (spec, src) in enumerate(sources):
            for b, vectors in zip(spec["blocks"], src.code_vectors(), strict=True):
                start = self._block_starts[b]
                v = torch.as_tensor(vectors, dtype=table.dtype)
                table[start : start + len(v), : v.shape[1]] = v
            if spec["project_out"]:
                self.project_out[k].load_state_dict(src.quantizer.project_out.state_dict())
            self.decoders[k].load_state_dict(src.decoder.state_dict())
        self.code_table.copy_(table)
        self.ready.fill_(1.0)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, st: ObjectStructure) -> Kinematics:
        """``(B, L)`` ids and their ``object_structure`` → ``Kinematics`` per unit (a fixed
        function of the ids: no gradients, the copied weights never train)."""
        if not bool(self.ready):
            raise ValueError(
                "the model decodes kinematics from its tokens but holds no tokenizer weights: call "
                "model.set_kinematics(tokenizer) after building it from a config"
            )
        with torch.autocast(input_ids.device.type, enabled=False):
            return self._decode(input_ids, st)

    def _decode(self, input_ids: torch.Tensor, st: ObjectStructure) -> Kinematics:
        B, L = input_ids.shape
        U = st.unit_mask.shape[1]
        dev, dt = input_ids.device, self.code_table.dtype
        k_id = self.spec_of_id[input_ids] * st.in_object
        has = k_id > 0
        rows = torch.arange(B, device=dev)[:, None].expand(B, L)
        latent = torch.zeros((B, U, self.code_table.shape[1]), dtype=dt, device=dev)
        latent.index_put_((rows[has], st.unit[has]), self.code_table[input_ids[has]], accumulate=True)
        count = torch.zeros((B, U), dtype=torch.long, device=dev)
        count.index_put_((rows[has], st.unit[has]), torch.ones_like(k_id[has]), accumulate=True)
        kind = torch.zeros((B, U), dtype=torch.long, device=dev)
        kind[rows[has], st.unit[has]] = k_id[has]
        pt, eta, phi, mass = (torch.zeros((B, U), dtype=dt, device=dev) for _ in range(4))
        valid = torch.zeros((B, U), dtype=torch.bool, device=dev)
        for k, spec in enumerate(self.specs):
            sel = (kind == k + 1) & (count == len(spec["blocks"])) & st.unit_is_object
            if not bool(sel.any()):
                continue
            out = self.decoders[k](self.project_out[k](latent[sel][:, : spec["code_dim"]]))
            f = spec["features"]
            pt[sel] = _inverse_feature(out, f["pt"]).clamp(min=0.0)
            phi[sel] = _inverse_feature(out, f["phi"])
            if "eta" in f:
                eta[sel] = _inverse_feature(out, f["eta"])
            if "mass" in f:
                mass[sel] = _inverse_feature(out, f["mass"]).clamp(min=0.0)
            valid |= sel
        px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta.clamp(-10.0, 10.0))
        e = torch.sqrt(px**2 + py**2 + pz**2 + mass**2)
        p4 = torch.stack([e, px, py, pz], dim=-1) * valid[..., None]
        return Kinematics(pt, eta, phi, mass, p4, valid)


def pair_features(kin: Kinematics, eps: float = 1e-4) -> torch.Tensor:
    """``(B, U, U, 4)`` interaction features of every pair of units (ParT):
    ``ln ΔR, ln kT = ln(min(pT_a, pT_b) ΔR), ln z = ln(min(pT) / (pT_a + pT_b)), ln m²`` (GeV)."""
    deta = kin.eta[:, :, None] - kin.eta[:, None, :]
    dphi = _wrap_angle(kin.phi[:, :, None] - kin.phi[:, None, :])
    dr = torch.sqrt(deta**2 + dphi**2)
    ptmin = torch.minimum(kin.pt[:, :, None], kin.pt[:, None, :])
    ptsum = kin.pt[:, :, None] + kin.pt[:, None, :]
    p = kin.p4[:, :, None, :] + kin.p4[:, None, :, :]
    m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    feats = [dr, ptmin * dr, ptmin / ptsum.clamp(min=eps), m2]
    return torch.stack([torch.log(f.clamp(min=eps)) for f in feats], dim=-1)


class HepEventPairBias(nn.Module):
    """Per-head attention bias ``(B, heads, U, U)`` from the pair features of decoded objects
    (``config.pair_bias``): an MLP ``4 → pair_bias_hidden → pair_bias_hidden → heads`` on
    ``pair_features``; 0 for pairs without two valid objects and on the diagonal."""

    def __init__(self, config: HepEventConfig):
        super().__init__()
        h = config.pair_bias_hidden
        self.mlp = nn.Sequential(
            nn.Linear(4, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, config.num_attention_heads)
        )

    def forward(self, kin: Kinematics) -> torch.Tensor:
        U = kin.valid.shape[1]
        ok = kin.valid[:, :, None] & kin.valid[:, None, :]
        ok = ok & ~torch.eye(U, dtype=torch.bool, device=ok.device)
        bias = self.mlp(pair_features(kin).to(self.mlp[0].weight.dtype)) * ok[..., None]
        return bias.permute(0, 3, 1, 2)


class HepEventKinematicsEmbedding(nn.Module):
    """Every object's decoded kinematics as an input embedding ``(B, U, H)``
    (``config.kinematics_embedding``).

    An object's pT, η, φ and mass, decoded from its own tokens (``HepEventKinematics``), give
    ``(ln pT, η, cos φ, sin φ, ln(1 + m), px, py, pz, E)`` (GeV, momenta in units of 100 GeV,
    clamped to ±50), and an MLP ``9 → kinematics_embedding_hidden → hidden_size`` embeds them.
    The encoder adds the result to the object's input: to each of its tokens (flat model) or
    to its pooled vector (hierarchical model). Objects that are not ``valid`` (a token masked,
    or no kinematics) get 0, so masked-object pretraining never sees what it predicts.

    Why: attention sums its values linearly, so with ``(px, py, pz, E)`` among its inputs one
    layer can form the momentum sum of the other objects (momentum balance, the four-lepton
    system) that predicts a masked object; from code embeddings alone the encoder has to
    learn trigonometry and four-vector sums first, which it did not at CPU scale.
    """

    FEATURES = 9
    MOMENTUM_SCALE = 100.0  # GeV

    def __init__(self, config: HepEventConfig):
        super().__init__()
        h = config.kinematics_embedding_hidden
        self.mlp = nn.Sequential(nn.Linear(self.FEATURES, h), nn.GELU(), nn.Linear(h, config.hidden_size))

    @classmethod
    def features(cls, kin: Kinematics) -> torch.Tensor:
        """``(B, U, 9)`` float32 inputs of the embedding (0 where ``kin.valid`` is False)."""
        p = (kin.p4[..., [1, 2, 3, 0]] / cls.MOMENTUM_SCALE).clamp(-50.0, 50.0)
        f = torch.cat(
            [
                torch.stack(
                    [
                        torch.log(kin.pt.clamp(min=1e-3)),
                        kin.eta,
                        torch.cos(kin.phi),
                        torch.sin(kin.phi),
                        torch.log1p(kin.mass),
                    ],
                    dim=-1,
                ),
                p,
            ],
            dim=-1,
        )
        return f * kin.valid[..., None]

    def forward(self, kin: Kinematics) -> torch.Tensor:
        f = self.features(kin).to(self.mlp[0].weight.dtype)
        return self.mlp(f) * kin.valid[..., None].to(f.dtype)


def mass_sets(config: HepEventConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The object-type sets of ``HepEventMassReadout``: ``(S, T)`` membership (every type,
    every pair of types, all types) and the ``(T,)`` type ids of ``config.kinematics``."""
    types = [int(spec["type_id"]) for spec in config.kinematics["objects"]]
    T = len(types)
    sets = [[i] for i in range(T)] + [list(p) for p in itertools.combinations(range(T), 2)] + [list(range(T))]
    member = torch.zeros(len(sets), T)
    for k, members in enumerate(sets):
        member[k, members] = 1.0
    return member, torch.tensor(types, dtype=torch.long)


class HepEventMassReadout(nn.Module):
    """Invariant masses of the event's object types, embedded ``(B, H)`` (``config.mass_readout``).

    For every object type ``t`` with kinematics the four-momenta of its valid objects are
    summed, ``P_t``; the readout takes the mass (GeV) of every type, of every pair of types
    and of all of them, ``S = T + T(T-1)/2 + 1`` sets (``m(e + μ)`` is the four-lepton mass
    of a four-lepton event, ``m(jets)`` the hadronic mass). Each ``ln m`` is placed on
    ``mass_bins`` bins from ln 0.5 to ln 5,000 (≈1.8% wide at 512 bins: finer than a Higgs
    peak) and embedded by linear interpolation between the two nearest rows of the set's
    learned table ``(mass_bins, 16)``; a set without objects gets 0. The ``S × 16`` values
    go through one linear map to the hidden size and are added to the ``[CLS]`` state.

    With ``config.mass_readout_pairs = K`` the sets also include every pair of the ``K``
    leading (highest decoded pT) objects of each type, ``T·K(K-1)/2`` more, embedded the
    same way: the Z candidates of 4e and 4μ events, which no type set separates.
    """

    LOG_RANGE = (math.log(0.5), math.log(5000.0))
    DIM = 16

    def __init__(self, config: HepEventConfig):
        super().__init__()
        member, types = mass_sets(config)
        self.member = nn.Buffer(member, persistent=False)
        self.type_ids = nn.Buffer(types, persistent=False)
        self.bins = config.mass_bins
        self.k_pairs = int(getattr(config, "mass_readout_pairs", 0) or 0)
        self.pairs = list(itertools.combinations(range(self.k_pairs), 2))
        n_sets = len(member) + len(types) * len(self.pairs)
        self.table = nn.Embedding(n_sets * self.bins, self.DIM)
        self.out = nn.Linear(n_sets * self.DIM, config.hidden_size)

    def fourier_table(self) -> torch.Tensor:
        """``(n_sets · bins, 16)`` rows ``(sin 2π2^k u, cos 2π2^k u)``, ``k = 0..7``, of each
        bin's position ``u`` in [0, 1] on the ln m axis, the same for every set."""
        u = torch.linspace(0.0, 1.0, self.bins, dtype=torch.float64)[:, None]
        w = 2 * math.pi * 2.0 ** torch.arange(self.DIM // 2, dtype=torch.float64)
        rows = torch.cat([torch.sin(u * w), torch.cos(u * w)], 1)  # (bins, 16)
        n_sets = self.table.num_embeddings // self.bins
        return rows.repeat(n_sets, 1).to(self.table.weight.dtype)

    def masses(self, unit_types: torch.Tensor, kin: Kinematics) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` masses (GeV) of the type sets and ``(B, S)`` bool, the set has objects."""
        of_type = (unit_types[..., None] == self.type_ids) & kin.valid[..., None]  # (B, U, T)
        p_type = torch.einsum("but,buc->btc", of_type.to(kin.p4.dtype), kin.p4)
        p = torch.einsum("st,btc->bsc", self.member.to(p_type.dtype), p_type)
        has = torch.einsum("st,bt->bs", self.member, of_type.any(1).to(self.member.dtype)) > 0
        if self.pairs:
            pm, phas = self.pair_masses(of_type, kin)
            p, has = torch.cat([p, pm], 1), torch.cat([has, phas], 1)
        m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
        return torch.sqrt(m2.clamp(min=0.0)), has

    def pair_masses(self, of_type: torch.Tensor, kin: Kinematics) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T·P, 4)`` summed four-momenta of every pair of the ``K`` leading objects of
        each type (``P = K(K-1)/2``, types in ``config.kinematics`` order) and ``(B, T·P)`` bool,
        both objects exist. ``of_type``: ``(B, U, T)`` valid units of each type."""
        B, U, T = of_type.shape
        k = self.k_pairs
        pt = kin.pt[..., None].expand(B, U, T).to(kin.p4.dtype)
        score = torch.where(of_type, pt, torch.full_like(pt, -1.0))  # (B, U, T)
        pad = max(0, k - U)  # fewer units than K: pad with absent objects
        score = nn.functional.pad(score, (0, 0, 0, pad), value=-1.0)
        p4 = nn.functional.pad(kin.p4, (0, 0, 0, pad))  # (B, max(U, K), 4)
        top, idx = score.topk(k, dim=1)  # (B, K, T), by decoded pT
        present = top >= 0
        lead = torch.gather(p4[:, :, None, :].expand(-1, -1, T, -1), 1, idx[..., None].expand(-1, -1, -1, 4))
        i, j = (torch.tensor(x, device=p4.device) for x in zip(*self.pairs, strict=True))
        pair = (lead[:, i] + lead[:, j]).transpose(1, 2).reshape(B, T * len(self.pairs), 4)  # (B, T·P, 4)
        has = (present[:, i] & present[:, j]).transpose(1, 2).reshape(B, T * len(self.pairs))
        return pair, has

    def forward(self, unit_types: torch.Tensor, kin: Kinematics) -> torch.Tensor:
        m, has = self.masses(unit_types, kin)
        lo, hi = self.LOG_RANGE
        x = ((torch.log(m.clamp(min=1e-6)) - lo) / (hi - lo) * (self.bins - 1)).clamp(0, self.bins - 1)
        x = torch.nan_to_num(x, nan=0.0)  # (decoded kinematics are finite; bins must be valid indices)
        i = x.floor().long().clamp(max=self.bins - 2)
        t = (x - i)[..., None]
        base = torch.arange(m.shape[1], device=m.device) * self.bins
        emb = ((1 - t) * self.table(base + i) + t * self.table(base + i + 1)) * has[..., None]
        return self.out(emb.flatten(1).to(self.out.weight.dtype))


def check_vocabulary(config: HepEventConfig, tokenizer=None, dataset_info: dict | None = None) -> None:
    """Raise ``ValueError`` when a tokenizer or dataset does not match the model's vocabulary."""
    if tokenizer is not None:
        if tokenizer.vocab_size != config.vocab_size:
            raise ValueError(
                f"tokenizer vocabulary ({tokenizer.vocab_size}) differs from the model's ({config.vocab_size})"
            )
        if config.layout_fingerprint and tokenizer.layout_fingerprint != config.layout_fingerprint:
            raise ValueError(
                f"tokenizer layout {tokenizer.layout_fingerprint} differs from the model's "
                f"({config.layout_fingerprint}): token ids would mean different things"
            )
        if config.tokenizer_fingerprint and tokenizer.fingerprint != config.tokenizer_fingerprint:
            raise ValueError(
                f"tokenizer {tokenizer.fingerprint} is not the one the model was built for "
                f"({config.tokenizer_fingerprint}): same layout, different codebooks"
            )
    if dataset_info is not None:
        fp = dataset_info.get("layout_fingerprint")
        if config.layout_fingerprint and fp != config.layout_fingerprint:
            raise ValueError(
                f"dataset layout {fp} differs from the model's ({config.layout_fingerprint}): "
                "it was tokenized for another vocabulary"
            )
        tfp = dataset_info.get("tokenizer_fingerprint")
        if config.tokenizer_fingerprint and tfp != config.tokenizer_fingerprint:
            raise ValueError(
                f"dataset was tokenized by {tfp}, not by the model's tokenizer ({config.tokenizer_fingerprint})"
            )


def code_block_table(config: HepEventConfig) -> torch.Tensor:
    """``(vocab_size,)`` index of every id's object block + 1 (0: special and context ids)."""
    table = torch.zeros(config.vocab_size, dtype=torch.long)
    k = 0
    for start, size, _type_id, level in config.token_blocks:
        if level >= 0:
            k += 1
            table[start : start + size] = k
    return table


class HepEventCodeEmbedding(nn.Module):
    """Object tokens embedded from their code vectors (``config.token_embedding`` "code").

    ``e(id) = W_space (s_block ⊙ v(id)) + b_block`` for an object id of block (type, level)
    ``block`` in code space ``space``; ``v`` ``(vocab_size, code_dim)`` holds the
    tokenizer's code vectors (``EventTokenizer.code_vectors``), a frozen buffer saved with the
    weights; ``W`` ``(spaces, code_dim, hidden)``, ``s`` and ``b`` are learned. Levels of one
    object share ``W``, so the sum of an object's level embeddings starts as a linear map of
    its quantized latent. Special and context ids get 0 (they keep their free vectors).
    """

    def __init__(self, config: HepEventConfig):
        super().__init__()
        n_blocks = len(config.code_spaces)
        self.code_table = nn.Buffer(torch.zeros(config.vocab_size, config.code_dim))
        self.block_of = nn.Buffer(code_block_table(config), persistent=False)
        self.space_of_block = nn.Buffer(torch.tensor(list(config.code_spaces), dtype=torch.long), persistent=False)
        n_spaces = max(config.code_spaces) + 1 if n_blocks else 0
        self.weight = nn.Parameter(torch.empty(n_spaces, config.code_dim, config.hidden_size))
        self.scale = nn.Parameter(torch.ones(n_blocks + 1, config.code_dim))
        self.bias = nn.Parameter(torch.zeros(n_blocks + 1, config.hidden_size))
        self._checked = False

    @torch.no_grad()
    def set_code_vectors(self, vectors) -> None:
        """Copy the tokenizer's ``(vocab_size, code_dim)`` code vectors in and set each block's
        scale to 1 / (its vectors' RMS), so every level starts at unit size."""
        v = torch.as_tensor(vectors, dtype=self.code_table.dtype, device=self.code_table.device)
        if tuple(v.shape) != tuple(self.code_table.shape):
            raise ValueError(
                f"code vectors of shape {tuple(v.shape)}; the model expects {tuple(self.code_table.shape)}"
            )
        self.code_table.copy_(v)
        for k in range(1, self.scale.shape[0]):
            rows = v[self.block_of == k]
            rms = rows.pow(2).mean(dim=0).sqrt()
            self.scale[k] = torch.where(rms > 0, 1.0 / rms.clamp(min=1e-12), torch.ones_like(rms))
        self._checked = True

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` ids → ``(B, L, hidden)`` (zeros for special and context ids)."""
        if not self._checked:
            if not bool(self.code_table.any()):
                raise ValueError(
                    "the model embeds tokens from code vectors but holds none: call "
                    "model.set_code_vectors(tokenizer) after building it from a config"
                )
            self._checked = True
        block = self.block_of[input_ids]
        v = self.code_table[input_ids] * self.scale[block]
        out = self.bias[block]
        space = self.space_of_block[(block - 1).clamp(min=0)]
        obj = block > 0
        for k in range(self.weight.shape[0]):
            sel = obj & (space == k)
            if bool(sel.any()):
                out = out.index_put((sel,), out[sel] + v[sel] @ self.weight[k])
        return out * obj[..., None]


class HepEventCodeLogits(nn.Module):
    """Masked-token logits from the candidate codes' vectors (``config.mlm_code_logits``).

    BERT's output layer gives every id a free vector, learned only from the masked tokens that
    are that id: 4,096 codes per (object, level) block and a few masked examples of each per
    epoch, so a model cannot learn that a masked muon's φ lies opposite its partner's before
    it has seen every φ code many times. This head adds to the logit of every candidate code
    ``c`` of block ``b`` a smooth function of its code vector ``v_c`` (the tokenizer's, frozen):

        logit_c += q_b(h) · φ_b(v_c),

    where ``φ_b`` expands each of the ``code_dim`` coordinates, standardised over the block's
    codes, on ``mlm_code_bins`` Gaussian bumps between -2 and 2 (``(code_dim · bins,)``
    features), and ``q_b`` is a learned linear map of the head's transformed state per block.
    The added term is a sum over code coordinates of 1-D functions that every masked token of
    the block trains, shared by neighbouring codes; the free vectors keep what it cannot say
    (for FSQ codes, whose coordinates take a few values each, it is a factorised softmax over
    the coordinates).
    """

    def __init__(self, config: HepEventConfig):
        super().__init__()
        self.bins = config.mlm_code_bins
        n_blocks = len(config.code_spaces or ())
        features = config.code_dim * self.bins
        self.weight = nn.Parameter(torch.zeros(n_blocks, config.hidden_size, features))
        self.centres = nn.Buffer(torch.linspace(-2.0, 2.0, self.bins), persistent=False)

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """``(S, code_dim)`` code vectors of one block → ``(S, code_dim · bins)`` features."""
        v = codes.float()
        z = (v - v.mean(0)) / v.std(0).clamp(min=1e-12)
        width = 4.0 / max(1, self.bins - 1)
        return torch.exp(-0.5 * ((z[..., None] - self.centres) / width) ** 2).flatten(1)

    def forward(self, h: torch.Tensor, block: int, codes: torch.Tensor) -> torch.Tensor:
        """``(N, H)`` transformed states, object block number ``block`` (order of the object
        blocks in ``config.token_blocks``), its ``(S, code_dim)`` code vectors → ``(N, S)``."""
        q = h @ self.weight[block].to(h.dtype)
        return q @ self.features(codes).to(h.dtype).T


class HepEventEmbeddings(BertEmbeddings):
    """BERT embeddings (word + position + type) plus a quantizer-level embedding.

    A token's level comes from its place in its object, found from ``token_type_ids``
    (``object_structure``), so ``[MASK]`` tokens keep theirs: a masked object's tokens say
    "level 0, 1, 2, 3 of a jet" instead of four identical ``[MASK]`` s that only absolute
    positions tell apart. Without type ids, levels are looked up from the ids.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__(config)
        # the hierarchical model embeds a token's place in its object in the pooler instead
        self.use_level_embeddings = config.use_level_embeddings and not config.object_pooling
        if self.use_level_embeddings:
            self.level_embeddings = nn.Embedding(config.num_quantizers + 1, config.hidden_size)
        self.token_level = nn.Buffer(level_table(config), persistent=False)
        self.subtokens = nn.Buffer(subtokens_per_type(config), persistent=False)
        self.token_embedding = config.token_embedding
        self.code_embeddings = HepEventCodeEmbedding(config) if config.token_embedding != "id" else None

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L, hidden)`` embedding of each id (``config.token_embedding``), before the
        level, position and type embeddings."""
        x = self.word_embeddings(input_ids)
        if self.code_embeddings is None:
            return x
        code = self.code_embeddings(input_ids)
        if self.token_embedding == "code":
            x = torch.where((self.code_embeddings.block_of[input_ids] > 0)[..., None], code, x)
        else:
            x = x + code
        return x

    def levels(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """``(B, L)`` level ids: ``level + 1`` for object tokens, 0 for special and context tokens."""
        from_ids = self.token_level[input_ids]
        if token_type_ids is None:
            return from_ids
        sub, in_object = token_places(token_type_ids, torch.ones_like(token_type_ids, dtype=torch.bool), self.subtokens)
        return torch.where(in_object, sub + 1, from_ids).clamp(max=self.level_embeddings.num_embeddings - 1)

    def forward(
        self,
        input_ids=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        past_key_values_length: int = 0,
        cache_length: int = 0,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.token_embeddings(input_ids)
            if self.use_level_embeddings:
                inputs_embeds = inputs_embeds + self.level_embeddings(self.levels(input_ids, token_type_ids))
        return super().forward(
            input_ids=None,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **{_CACHE_OFFSET_ARG: cache_length or past_key_values_length},
        )


class _HepEventInit:
    """Shared weight init: BERT's, plus the (non-persistent) level and sub-token tables."""

    config_class = HepEventConfig
    base_model_prefix = "bert"
    # the tokenizer copies decode physics: float32 whatever dtype the model is loaded in
    _keep_in_fp32_modules_strict = ("kinematics",)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, HepEventEmbeddings):
            module.token_level.copy_(level_table(self.config).to(module.token_level.device))
            module.subtokens.copy_(subtokens_per_type(self.config).to(module.subtokens.device))
        if isinstance(module, HepEventObjectPooler):
            module.subtokens.copy_(subtokens_per_type(self.config).to(module.subtokens.device))
        if isinstance(module, HepEventMassReadout):
            member, types = mass_sets(self.config)
            module.member.copy_(member.to(module.member.device))
            module.type_ids.copy_(types.to(module.type_ids.device))
            if getattr(self.config, "mass_readout_init", "normal") == "fourier":
                init.copy_(module.table.weight, module.fourier_table().to(module.table.weight.device))
        if isinstance(module, HepEventKinematics):
            module.spec_of_id.copy_(kinematics_id_table(self.config).to(module.spec_of_id.device))
            init.zeros_(module.code_table)
            init.zeros_(module.ready)
        if isinstance(module, HepEventCodeLogits):
            init.zeros_(module.weight)  # starts as BERT's head
            module.centres.copy_(torch.linspace(-2.0, 2.0, module.bins, device=module.centres.device))
        if isinstance(module, HepEventCodeEmbedding):
            module.block_of.copy_(code_block_table(self.config).to(module.block_of.device))
            module.space_of_block.copy_(torch.tensor(self.config.code_spaces, device=module.space_of_block.device))
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.ones_(module.scale)
            init.zeros_(module.bias)

    def set_code_vectors(self, tokenizer_or_vectors) -> None:
        """Give a model with ``config.token_embedding`` "code" or "id+code" its tokenizer's code
        vectors (an ``EventTokenizer``, checked against the config, or a ``(vocab_size,
        code_dim)`` array); needed once after building it from a config (``from_pretrained``
        loads them with the weights)."""
        emb = self.base_model.embeddings.code_embeddings
        if emb is None:
            raise ValueError("this model embeds tokens by id (config.token_embedding='id'): it has no code vectors")
        vectors = tokenizer_or_vectors
        if hasattr(tokenizer_or_vectors, "code_vectors"):
            check_vocabulary(self.config, tokenizer_or_vectors)
            vectors = tokenizer_or_vectors.code_vectors()
        emb.set_code_vectors(vectors)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As ``PreTrainedModel.from_pretrained``; the tokenizer copies (``HepEventKinematics``)
        stay frozen (loading makes every parameter trainable)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        kin = getattr(model.base_model, "kinematics", None)
        if kin is not None:
            kin.requires_grad_(False)
        return loaded

    def set_kinematics(self, tokenizer) -> None:
        """Give a model with ``config.pair_bias``, ``mass_readout`` or ``kinematics_embedding`` its tokenizer's
        code vectors, output projections and decoders (``EventTokenizer.kinematics_sources``,
        checked against the config); needed once after building it from a config
        (``from_pretrained`` loads them with the weights)."""
        kin = self.base_model.kinematics
        if kin is None:
            raise ValueError(
                "this model does not decode kinematics (config.pair_bias, mass_readout and kinematics_embedding "
                "are off)"
            )
        check_vocabulary(self.config, tokenizer)
        kin.set_from(tokenizer.kinematics_sources())

    def set_tokenizer_weights(self, tokenizer) -> None:
        """``set_code_vectors`` and ``set_kinematics``, for what the config uses (building a
        model from a config); a no-op for what ``from_pretrained`` already loaded."""
        emb = self.base_model.embeddings.code_embeddings
        if emb is not None and not bool(emb.code_table.any()):
            self.set_code_vectors(tokenizer)
        kin = self.base_model.kinematics
        if kin is not None and not bool(kin.ready):
            self.set_kinematics(tokenizer)


class HepEventModel(_HepEventInit, BertModel):
    """The bare encoder: ``(B, L)`` ids → ``(B, L, hidden_size)`` states (+ pooled [CLS]).

    With ``config.object_pooling`` (hierarchical model) the states are per unit,
    ``(B, U, hidden_size)``: ``[CLS]``, context tokens, one per object, ``[SEP]`` s, in
    sequence order (``structure(...)`` maps tokens to units); ``token_type_ids`` are required.
    """

    def __init__(self, config: HepEventConfig, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.embeddings = HepEventEmbeddings(config)
        self.object_pooler = HepEventObjectPooler(config) if config.object_pooling else None
        self.sub_object_encoder = HepEventSubObjectEncoder(config) if config.sub_objects else None
        self.kinematics = HepEventKinematics(config) if config.decodes_kinematics else None
        self.pair_bias = HepEventPairBias(config) if config.pair_bias else None
        self.kinematics_embedding = HepEventKinematicsEmbedding(config) if config.kinematics_embedding else None
        self.post_init()

    def structure(self, token_type_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ObjectStructure:
        """Units of a batch (``object_structure``), for the hierarchical model."""
        if token_type_ids is None:
            raise ValueError(
                "the hierarchical and sub-object models need token_type_ids: they tell them where objects are"
            )
        return object_structure(token_type_ids, attention_mask, self.embeddings.subtokens)

    def attention_bias(
        self,
        input_ids: torch.Tensor,
        st: ObjectStructure,
        mask: torch.Tensor | None,
        kinematics: Kinematics | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The 4D additive attention mask of ``config.pair_bias``: ``(B, heads, N, N)`` with
        the pair bias between the positions the encoder sees (tokens, or units for the
        hierarchical model) and ``finfo.min`` at padded keys; ``mask``: their ``(B, N)``
        attention mask."""
        kin = kinematics if kinematics is not None else self.kinematics(input_ids, st)
        bias = self.pair_bias(kin)  # (B, heads, U, U)
        if self.object_pooler is None:  # unit pairs → token pairs
            B, Hd, U, _ = bias.shape
            L = st.unit.shape[1]
            bias = bias.gather(2, st.unit[:, None, :, None].expand(B, Hd, L, U))
            bias = bias.gather(3, st.unit[:, None, None, :].expand(B, Hd, L, L))
        bias = bias.to(dtype)
        if mask is not None:
            bias = bias.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(dtype).min)
        return bias

    def _uses_sub_objects(self, sub_features) -> bool:
        return self.sub_object_encoder is not None and sub_features is not None and sub_features.shape[1] > 0

    def embed(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        structure: ObjectStructure | None = None,
        sub_features: torch.Tensor | None = None,
        sub_mask: torch.Tensor | None = None,
        sub_owner: torch.Tensor | None = None,
        sub_kind: torch.Tensor | None = None,
        kinematics: Kinematics | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """What the outer encoder reads, before position and type embeddings.

        Returns ``(embeds, attention_mask, token_type_ids, gates)``: per token (flat model)
        or per unit (hierarchical), with the objects' kinematics embedding added
        (``config.kinematics_embedding``; ``kinematics``: the batch's decoded kinematics when
        the caller has them) and the sub-object information injected where given;
        ``gates`` ``(B, K)``: each sub-object owner's mean gate (``None`` without sub-objects).
        """
        use_sub = self._uses_sub_objects(sub_features)
        kin_emb = self.kinematics_embedding
        st = structure
        if st is None and (self.object_pooler is not None or use_sub or kin_emb is not None):
            st = self.structure(token_type_ids, attention_mask)
        if self.object_pooler is not None:
            x = self.object_pooler(self.embeddings.token_embeddings(input_ids), st)
            mask, types = st.unit_mask, st.unit_types
        else:
            x = self.embeddings.token_embeddings(input_ids)
            if self.embeddings.use_level_embeddings:
                x = x + self.embeddings.level_embeddings(self.embeddings.levels(input_ids, token_type_ids))
            mask, types = attention_mask, token_type_ids
        if kin_emb is not None:
            kin = kinematics if kinematics is not None else self.kinematics(input_ids, st)
            e = kin_emb(kin).to(x.dtype)  # (B, U, H)
            if self.object_pooler is None:  # every token of an object gets the object's embedding
                e = e.gather(1, st.unit[..., None].expand(-1, -1, e.shape[-1])) * st.in_object[..., None]
            x = x + e
        if not use_sub:
            return x, mask, types, None
        if sub_mask is None or sub_owner is None or sub_kind is None:
            raise ValueError("sub_features need sub_mask, sub_owner and sub_kind (collators.pad_sub_objects)")
        B, L = input_ids.shape
        real = sub_owner >= 0
        if bool((sub_owner >= L).any()):
            raise ValueError(f"sub_owner points past the sequence (length {L}): were the sub-objects truncated too?")
        c = self.sub_object_encoder(sub_features, sub_mask & real[..., None], sub_kind)  # (B, K, H)
        owner_unit = st.unit.gather(1, sub_owner.clamp(min=0))  # (B, K)
        if not bool((st.in_object.gather(1, sub_owner.clamp(min=0)) | ~real).all()):
            raise ValueError("sub_owner points at a token that is not an object's (tokenizer/data mismatch)")
        U = st.unit_mask.shape[1]
        has = real & sub_mask.any(dim=-1)
        per_unit = c.new_zeros((B, U, c.shape[-1]))
        unit_has = torch.zeros((B, U), dtype=torch.bool, device=c.device)
        rows = torch.arange(B, device=c.device)[:, None].expand_as(owner_unit)
        per_unit.index_put_((rows[has], owner_unit[has]), c[has], accumulate=True)
        unit_has[rows[has], owner_unit[has]] = True
        if self.object_pooler is not None:
            x, g = self.sub_object_encoder.inject(x, per_unit, unit_has)
            gates = g.mean(-1).gather(1, owner_unit)
        else:  # every token of the object gets the object's c
            idx = st.unit[..., None].expand(-1, -1, per_unit.shape[-1])
            x, g = self.sub_object_encoder.inject(x, per_unit.gather(1, idx), unit_has.gather(1, st.unit))
            gates = g.mean(-1).gather(1, sub_owner.clamp(min=0))  # at the object's first token
        return x, mask, types, torch.where(has, gates, torch.zeros_like(gates))

    def sub_object_gates(self, **batch) -> dict[str, float]:
        """Mean gate value per sub-collection over the objects of a collated batch: how much
        constituent/hit information the model lets into its object embeddings (0: none)."""
        if self.sub_object_encoder is None or batch.get("sub_features") is None:
            return {}
        keys = ("input_ids", "token_type_ids", "attention_mask", "sub_features", "sub_mask", "sub_owner", "sub_kind")
        with torch.no_grad():
            *_rest, gates = self.embed(**{k: batch[k] for k in keys if k in batch})
        has = (batch["sub_owner"] >= 0) & batch["sub_mask"].any(-1)
        out = {}
        for k, name in enumerate(self.config.sub_objects):
            sel = has & (batch["sub_kind"] == k)
            if bool(sel.any()):
                out[name] = float(gates[sel].mean())
        return out

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        structure: ObjectStructure | None = None,
        sub_features: torch.Tensor | None = None,
        sub_mask: torch.Tensor | None = None,
        sub_owner: torch.Tensor | None = None,
        sub_kind: torch.Tensor | None = None,
        kinematics: Kinematics | None = None,
        **kwargs,
    ):
        """As ``BertModel.forward``; ``structure``: the batch's ``structure(...)`` when the
        caller has it already. ``sub_features (B, K, C, F)``, ``sub_mask (B, K, C)``,
        ``sub_owner (B, K)`` (position of the owning object's first token, -1 padding),
        ``sub_kind (B, K)``: sub-objects (``collators.pad_sub_objects``), read when
        ``config.sub_objects`` is set; without them the model uses objects only.
        ``kinematics``: the batch's ``self.kinematics(...)`` when the caller has it
        (``config.pair_bias``, ``config.kinematics_embedding``)."""
        use_sub = self._uses_sub_objects(sub_features)
        own_embeddings = self.object_pooler is not None or use_sub or self.kinematics_embedding is not None
        if not own_embeddings and self.pair_bias is None:
            return super().forward(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        if input_ids is None:
            raise ValueError(
                "the hierarchical, sub-object, pair-bias and kinematics-embedding models take input_ids, not "
                "inputs_embeds"
            )
        if structure is None and (self.pair_bias is not None or self.kinematics_embedding is not None):
            structure = self.structure(token_type_ids, attention_mask)
        if (self.pair_bias is not None or self.kinematics_embedding is not None) and kinematics is None:
            kinematics = self.kinematics(input_ids, structure)  # decoded once for both
        if not own_embeddings:  # flat model with pair bias
            x, mask, types = None, attention_mask, token_type_ids
        else:
            x, mask, types, _gates = self.embed(
                input_ids,
                token_type_ids,
                attention_mask,
                structure,
                sub_features,
                sub_mask,
                sub_owner,
                sub_kind,
                kinematics=kinematics,
            )
        if self.pair_bias is not None:
            dtype = self.embeddings.word_embeddings.weight.dtype
            mask = self.attention_bias(input_ids, structure, mask, kinematics, dtype)
        if x is None:
            return super().forward(
                input_ids,
                attention_mask=mask,
                token_type_ids=types,
                position_ids=position_ids,
                **kwargs,
            )
        return super().forward(
            None,
            attention_mask=mask,
            token_type_ids=types,
            position_ids=position_ids if self.object_pooler is None else None,
            inputs_embeds=x,
            **kwargs,
        )


class HepEventForMaskedLM(_HepEventInit, BertForMaskedLM):
    """Masked-token pretraining head (tied to the input embeddings, as in BERT).

    Event vocabularies are large (objects × levels × codes: 4096 × 4 × 7 ≈ 115k ids), so with
    ``labels`` the projection runs only on the masked positions, and by default
    (``config.mlm_softmax == "block"``) only onto the id block of each masked token's object
    type and level: the loss is the mean over masked positions of the cross-entropy of the
    softmax within that block, and ``logits`` is ``None``. With ``mlm_softmax="full"`` the
    softmax is over every id (BERT's loss) and ``logits`` is ``(N_masked, vocab_size)``, in the
    order of ``labels[labels != -100]``. Without ``labels``, or with ``return_all_logits=True``,
    ``logits`` is ``(B, L, vocab_size)`` as in ``BertForMaskedLM`` (and the loss is the full one).

    Hierarchical model (``config.object_pooling``): the encoder's states are per object; a
    token is predicted from its object's state plus a learned query for its place in the
    object (``sub_queries``), so every sub-token of a masked object gets its own prediction
    and logits stay per token, ``(B, L, ·)``.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__(config)
        self.bert = HepEventModel(config, add_pooling_layer=False)
        # the vocabulary cut into segments: each id block of the layout, and the ids between
        # blocks (special tokens); a label's segment is its softmax range if it is a block
        # (labels between blocks use every id)
        bounds, in_block = [0], []
        for start, size, _type, _level in sorted(config.token_blocks):
            if start > bounds[-1]:
                bounds.append(start)
                in_block.append(False)
            bounds.append(start + size)
            in_block.append(True)
        if bounds[-1] < config.vocab_size:
            bounds.append(config.vocab_size)
            in_block.append(False)
        self._segment_sizes = [b - a for a, b in itertools.pairwise(bounds)]
        self._segment_starts = bounds[:-1]
        self._segment_in_block = in_block
        # object blocks, numbered in config.token_blocks order (code_block_table): start → number
        object_blocks = [(start, size) for start, size, _type, level in config.token_blocks if level >= 0]
        number_of = {start: k for k, (start, _size) in enumerate(object_blocks)}
        self._object_blocks = object_blocks
        self._segment_object_block = [
            number_of.get(a, -1) if ib else -1 for a, ib in zip(bounds[:-1], in_block, strict=True)
        ]
        self.code_logits = HepEventCodeLogits(config) if config.mlm_code_logits else None
        if config.object_pooling:  # which sub-token of a unit to predict
            self.sub_queries = nn.Embedding(max(1, config.num_quantizers), config.hidden_size)
        self.post_init()

    def _token_states(self, seq: torch.Tensor, st: ObjectStructure | None, sel: torch.Tensor | None = None):
        """Per-token states: ``seq`` itself (flat model), or, for the hierarchical model, each
        token's unit state plus the query of its place in the unit; ``(N, H)`` at the ``True``
        positions of ``sel`` ``(B, L)``, else ``(B, L, H)``."""
        if st is None:
            return seq if sel is None else seq[sel]
        sub = st.sub.clamp(max=self.sub_queries.num_embeddings - 1)
        if sel is None:
            return seq.gather(1, st.unit[..., None].expand(-1, -1, seq.shape[-1])) + self.sub_queries(sub)
        b, _p = sel.nonzero(as_tuple=True)
        return seq[b, st.unit[sel]] + self.sub_queries(sub[sel])

    def _encode(self, input_ids, attention_mask, token_type_ids, **kwargs):
        """The encoder's output and the batch's ``ObjectStructure`` (hierarchical model; else
        ``None``), computed once for the encoder and the head."""
        st = self.bert.structure(token_type_ids, attention_mask) if self.config.object_pooling else None
        if st is not None:
            kwargs["structure"] = st
        out = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True, **kwargs
        )
        return out, st

    def _block_softmax_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``labels`` ``(N,)`` given masked states ``hidden`` ``(N, H)``,
        each with a softmax over its own label's id block (labels in no block: every id)."""
        return -self._block_log_probs(hidden, labels).sum() / labels.numel()

    def _block_log_probs(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(N,)`` float32 log-probability of each label under the softmax over its id block."""
        pred = self.cls.predictions
        h = pred.transform(hidden)
        weight, bias = pred.decoder.weight, pred.decoder.bias
        # one split of the (tied) weight into segments: its backward writes the full-size
        # gradient once, where slicing per block would allocate and fill one per block
        w_parts = torch.split(weight, self._segment_sizes)
        b_parts = torch.split(bias, self._segment_sizes)
        starts = torch.tensor(self._segment_starts, device=labels.device)
        segments = torch.bucketize(labels, starts, right=True) - 1  # starts[k] <= label < starts[k + 1]
        out = h.new_zeros(labels.shape, dtype=torch.float32)
        for k in torch.unique(segments).tolist():
            rows = segments == k
            if self._segment_in_block[k]:
                logits, target = h[rows] @ w_parts[k].T + b_parts[k], labels[rows] - self._segment_starts[k]
                block = self._segment_object_block[k]
                if self.code_logits is not None and block >= 0:
                    start, size = self._object_blocks[block]
                    logits = logits + self.code_logits(h[rows], block, self._code_table()[start : start + size])
            else:  # a label outside every block: softmax over every id
                logits, target = self._full_logits(h[rows]), labels[rows]
            lp = torch.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
            out = out.index_put((rows,), lp)
        return out

    def _code_table(self) -> torch.Tensor:
        return self.bert.embeddings.code_embeddings.code_table

    def _full_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., vocab_size)`` logits of transformed states ``h`` ``(..., H)``: the decoder's,
        plus the code logits of every object block (``config.mlm_code_logits``)."""
        logits = self.cls.predictions.decoder(h)
        if self.code_logits is None:
            return logits
        flat = h.reshape(-1, h.shape[-1])
        parts, end = [], 0
        table = self._code_table()
        pieces = logits.reshape(-1, logits.shape[-1])
        for block, (start, size) in sorted(enumerate(self._object_blocks), key=lambda x: x[1][0]):
            parts += [
                pieces[:, end:start],
                pieces[:, start : start + size] + self.code_logits(flat, block, table[start : start + size]),
            ]
            end = start + size
        parts.append(pieces[:, end:])
        return torch.cat(parts, dim=-1).reshape(logits.shape)

    def _logits(self, states: torch.Tensor) -> torch.Tensor:
        """``self.cls(states)`` with the code logits (``config.mlm_code_logits``)."""
        if self.code_logits is None:
            return self.cls(states)
        return self._full_logits(self.cls.predictions.transform(states))

    @torch.no_grad()
    def masked_token_log_probs(
        self, input_ids, labels, attention_mask=None, token_type_ids=None, **kwargs
    ) -> torch.Tensor:
        """``(N,)`` natural-log probability the model gives the true id of every masked token
        (``labels != -100``, in row-major order), under the softmax its loss uses: the token's
        id block (``config.mlm_softmax`` "block") or every id ("full"). ``-mean`` of it is the
        masked-token loss of ``forward``."""
        out, st = self._encode(input_ids, attention_mask, token_type_ids, **kwargs)
        sel = labels != -100
        states = self._token_states(out.last_hidden_state, st, sel)
        if self.config.mlm_softmax == "block":
            return self._block_log_probs(states, labels[sel])
        logits = self._logits(states).float()
        return torch.log_softmax(logits, dim=-1).gather(1, labels[sel][:, None]).squeeze(1)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        return_all_logits: bool = False,
        **kwargs,
    ) -> MaskedLMOutput:
        out, st = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds, **kwargs
        )
        seq = out.last_hidden_state
        loss = None
        if labels is not None and not return_all_logits:
            sel = labels != -100
            if not bool(sel.any()):
                logits, loss = None, seq.sum() * 0.0
            elif self.config.mlm_softmax == "block":
                logits, loss = None, self._block_softmax_loss(self._token_states(seq, st, sel), labels[sel])
            else:
                logits = self._logits(self._token_states(seq, st, sel))
                loss = nn.functional.cross_entropy(logits.float(), labels[sel])
        else:
            logits = self._logits(self._token_states(seq, st))
            if labels is not None:
                loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class HepEventForSequenceClassification(_HepEventInit, BertPreTrainedModel):
    """Event classification from the ``[CLS]`` state: Linear → ReLU → Dropout → Linear.

    ``labels``: ``(B,)`` class ids; cross-entropy, with optional ``config.class_weights``.
    """

    def __init__(self, config: HepEventConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = HepEventModel(config, add_pooling_layer=False)
        hidden = config.classifier_hidden_size or config.hidden_size
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.classifier = nn.Sequential(
            nn.Linear(config.hidden_size, hidden), nn.ReLU(), nn.Dropout(drop), nn.Linear(hidden, config.num_labels)
        )
        self.mass_readout = HepEventMassReadout(config) if config.mass_readout else None
        self.post_init()

    def event_state(
        self, states: torch.Tensor, attention_mask: torch.Tensor | None, st: ObjectStructure | None
    ) -> torch.Tensor:
        """``(B, H)`` the head's input from the encoder's ``(B, N, H)`` final states
        (``config.classifier_pooling``)."""
        if self.config.classifier_pooling == "cls":
            return states[:, 0]
        if self.config.object_pooling:
            valid = st.unit_mask.bool()
        elif attention_mask is not None:
            valid = attention_mask.bool()
        else:
            valid = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        valid = valid.clone()
        valid[:, 0] = False  # [CLS]
        w = valid.to(states.dtype)[..., None]
        return (states * w).sum(1) / w.sum(1).clamp(min=1.0)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        st = kin = None
        if input_ids is not None and (self.bert.kinematics is not None or self.config.object_pooling):
            st = self.bert.structure(token_type_ids, attention_mask)
            kwargs["structure"] = st
            if self.bert.kinematics is not None:
                kin = kwargs["kinematics"] = self.bert.kinematics(input_ids, st)
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        cls = self.event_state(out.last_hidden_state, attention_mask, st)
        if self.mass_readout is not None:
            if kin is None:
                raise ValueError("the mass readout decodes kinematics from input_ids; pass them, not inputs_embeds")
            cls = cls + self.mass_readout(st.unit_types, kin)
        logits = self.classifier(cls)
        loss = None
        if labels is not None:
            weights = getattr(self.config, "class_weights", None)
            w = torch.tensor(weights, dtype=logits.dtype, device=logits.device) if weights else None
            loss = nn.functional.cross_entropy(logits, labels.view(-1).long(), weight=w)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


def register_auto_classes() -> None:
    """Register the config and models with the ``transformers`` Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    try:
        AutoConfig.register(HepEventConfig.model_type, HepEventConfig)
    except ValueError:  # already registered
        return
    AutoModel.register(HepEventConfig, HepEventModel)
    AutoModelForMaskedLM.register(HepEventConfig, HepEventForMaskedLM)
    AutoModelForSequenceClassification.register(HepEventConfig, HepEventForSequenceClassification)
    HepEventConfig.register_for_auto_class()
    HepEventModel.register_for_auto_class("AutoModel")
    HepEventForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
    HepEventForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
