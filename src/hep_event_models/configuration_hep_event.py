"""HepEventConfig: BERT hyperparameters plus what the event tokenizer fixes (DESIGN §5)."""

from __future__ import annotations

from transformers import BertConfig

# the model inputs of each sub-object collection (``subobjects`` computes them); here, not
# there, so that this file imports nothing of the package (``trust_remote_code`` copies)
SUB_OBJECT_INPUTS: dict[str, tuple[str, ...]] = {
    "jets_constituents": ("log_pt_fraction", "deta", "dphi", "charge", "asinh_d0", "asinh_z0"),
    "tracks_hits": ("deta", "dphi", "log10_energy_kev", "layer", "time"),
}


class HepEventConfig(BertConfig):
    """Configuration of the HepEvent models (a BERT encoder over event token sequences).

    Args:
        vocab_size: the EventTokenizer's vocabulary size.
        type_vocab_size: token type ids (DESIGN §4: 12).
        num_quantizers: quantizer levels per object (largest over object types); the
            level embedding has ``num_quantizers + 1`` rows (row 0: special and context tokens).
        token_blocks: the tokenizer layout's id blocks as ``[start, size, type_id, level]``
            (level of context blocks: -1); used for level ids and by the masking collator.
        layout_fingerprint, tokenizer_fingerprint: of the tokenizer the model was built for.
        use_level_embeddings: add a learned embedding of each token's quantizer level.
        classifier_hidden_size: width of the classification head's hidden layer.
        mlm_softmax: ``"block"`` (default): the masked-token loss is the cross-entropy of a
            softmax over the id block of the true token's object type and level (the 4,096
            codes it can be; position, type and level ids tell the model which block it is),
            not over the whole vocabulary (≈115k ids for 7 objects × 4 levels × 4,096 codes),
            ~30× less work for the same prediction task. ``"full"``: BERT's softmax over
            every id.
        mlm_code_logits: add to every masked-token logit a smooth function of the candidate
            code's vector (``HepEventCodeLogits``): BERT's free output vector per id learns only
            from the masked tokens that are that id (a few per code and epoch at 4,096 codes per
            block), where the smooth term is trained by every masked token of the block and
            shared between neighbouring codes. Needs ``token_embedding`` "code" or "id+code".
        mlm_code_bins: Gaussian bumps per code coordinate of ``mlm_code_logits``.
        object_pooling: ``None`` (default): the flat model, one sequence position per token.
            ``"mean"`` or ``"attention"``: the hierarchical model of seed 004: an object's
            sub-tokens (its quantizer levels, or its feature groups' levels with a
            grouped tokenizer) go through an inner transformer and are pooled (mean, or
            attention with a learned query) to one vector per object; the outer BERT
            encoder runs over ``[CLS]``, context tokens, objects and ``[SEP]`` s.
        inner_layers: layers of the inner (per-object) transformer.
        sub_objects: ``None`` (default), or sub-object collections the model reads next to
            the tokens (``["jets_constituents", "tracks_hits"]``; ``subobjects``): the
            constituent-enriched model of seed 004. Each object's sub-objects go through
            ``sub_object_layers`` transformer layers and attention pooling to a vector
            ``c``, added to the object's embedding through a gate:
            ``x + sigmoid(W [x ‖ c]) · c``. Batches without sub-objects use objects only.
        sub_object_layers: layers of the sub-object transformer.
        token_embedding: how object tokens are embedded. ``"id"`` (default): BERT's free vector
            per id. ``"code"``: from the token's code vector ``v`` (the tokenizer's codebook
            entry, ``EventTokenizer.code_vectors``, kept frozen in the weights) as
            ``W_space (s_block ⊙ v) + b_block``, with one learned ``(code_dim, hidden_size)``
            map per code space (object type, or feature group) and a learned scale and bias
            per id block (type and level); neighbouring codes get neighbouring embeddings, and
            rare fine-level ids cannot become per-event labels (a free vector per id lets a
            classifier memorise small training sets). ``"id+code"``: the sum of both.
            Special and context tokens keep free vectors in every mode.
        code_dim, code_spaces: the code vectors' dimension and the code space of every object
            id block (``EventTokenizer.code_spaces``); set by ``from_tokenizer``.
        pair_bias: physics-aware attention (the interaction bias of ParT, arXiv:2202.03772):
            every object's four-momentum is decoded from its tokens inside the model (frozen
            copies of the tokenizer's code vectors, output projection and decoder,
            ``kinematics``), and for every pair of objects ``(ln ΔR, ln kT, ln z, ln m²)``
            goes through an MLP (``pair_bias_hidden`` wide) to one attention bias per head,
            added to the attention logits of every layer (between the tokens of the two
            objects in the flat model). Objects whose tokens are masked or missing get none.
        mass_readout: give the classifier the invariant masses of the event's object types
            (``HepEventMassReadout``): the mass of the summed four-momenta of every type, every
            pair of types and all of them (m(e + μ) is m_4ℓ of a four-lepton event), each
            embedded by a learned table over ``mass_bins`` bins of ln m (GeV, 0.5 to 5,000),
            interpolated linearly, and added to the ``[CLS]`` state before the head. Attention
            over per-object tokens finds such masses hard to compute from few labels.
        mass_readout_pairs: with ``mass_readout``, also the mass of every pair among the
            ``mass_readout_pairs`` leading (highest-pT) objects of each type, ``T·K(K-1)/2``
            more sets (0: none). For 4e and 4μ events the type sets hold no Z candidate;
            these pairs do (m12 and m34 are among the six pairs of four electrons).
        mass_readout_init: how the readout's mass tables start. ``"normal"``: independent
            random rows (``initializer_range``), so each 1.8% bin is learnt on its own;
            ``"fourier"``: rows ``sin/cos(2π·2^k·u)``, ``k = 0..7``, of the bin's position
            ``u`` in [0, 1] on the ln m axis (periods from the whole range down to 7% in m),
            a smooth embedding in which nearby masses start alike.
        kinematics_embedding: add every object's decoded kinematics to its input embedding
            (``HepEventKinematicsEmbedding``): ``(ln pT, η, cos φ, sin φ, ln(1 + m), px, py, pz,
            E)`` of the object, decoded from its own tokens as for ``mass_readout``, through an
            MLP (``kinematics_embedding_hidden`` wide) to the hidden size, added to each of its
            tokens (flat model) or its pooled vector (hierarchical). Masked objects get none.
            The encoder can then sum momenta linearly in attention (momentum balance predicts
            a masked object), where from code embeddings it must learn the trigonometry first.
        classifier_pooling: the event state the classification head reads: ``"cls"``, the
            ``[CLS]`` state (BERT's); ``"mean"``, the mean of the final states of every valid
            token (unit, for the hierarchical model) but ``[CLS]``: the states masked-object
            pretraining trains, so a pretrained backbone's features reach the head directly.
        kinematics: ``{"code_dim", "objects": [EventTokenizer.kinematics_sources specs]}``;
            set by ``from_tokenizer`` when ``pair_bias``, ``mass_readout`` or
            ``kinematics_embedding`` is on.
        Other arguments: as ``transformers.BertConfig`` (smaller defaults).
    """

    model_type = "hep_event"

    def __init__(
        self,
        vocab_size: int = 16,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        intermediate_size: int = 1024,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 12,
        num_quantizers: int = 4,
        token_blocks: list | None = None,
        layout_fingerprint: str | None = None,
        tokenizer_fingerprint: str | None = None,
        use_level_embeddings: bool = True,
        classifier_hidden_size: int | None = None,
        mlm_softmax: str = "block",
        mlm_code_logits: bool = False,
        mlm_code_bins: int = 8,
        object_pooling: str | None = None,
        inner_layers: int = 1,
        sub_objects: list[str] | None = None,
        sub_object_layers: int = 1,
        token_embedding: str = "id",
        code_dim: int = 0,
        code_spaces: list[int] | None = None,
        pair_bias: bool = False,
        pair_bias_hidden: int = 64,
        mass_readout: bool = False,
        mass_bins: int = 512,
        mass_readout_pairs: int = 0,
        mass_readout_init: str = "normal",
        kinematics_embedding: bool = False,
        kinematics_embedding_hidden: int = 64,
        classifier_pooling: str = "cls",
        kinematics: dict | None = None,
        **kwargs,
    ):
        self.pair_bias = bool(pair_bias)
        self.pair_bias_hidden = int(pair_bias_hidden)
        self.mass_readout = bool(mass_readout)
        self.mass_bins = int(mass_bins)
        if self.mass_bins < 2:
            raise ValueError(f"mass_bins must be >= 2, got {mass_bins}")
        self.mass_readout_pairs = int(mass_readout_pairs)
        if self.mass_readout_pairs < 0 or self.mass_readout_pairs == 1:
            raise ValueError(f"mass_readout_pairs must be 0 or >= 2 (objects per type), got {mass_readout_pairs}")
        if mass_readout_init not in ("normal", "fourier"):
            raise ValueError(f"mass_readout_init must be 'normal' or 'fourier', got {mass_readout_init!r}")
        self.mass_readout_init = mass_readout_init
        self.kinematics_embedding = bool(kinematics_embedding)
        self.kinematics_embedding_hidden = int(kinematics_embedding_hidden)
        if self.kinematics_embedding_hidden < 1:
            raise ValueError(f"kinematics_embedding_hidden must be >= 1, got {kinematics_embedding_hidden}")
        if classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {classifier_pooling!r}")
        self.classifier_pooling = classifier_pooling
        self.kinematics = kinematics
        if self.decodes_kinematics and not (kinematics and kinematics.get("objects")):
            raise ValueError(
                "pair_bias, mass_readout and kinematics_embedding decode four-momenta from the tokens: they need "
                "the tokenizer's kinematics (HepEventConfig.from_tokenizer sets it), and at least one object with "
                "pt and phi"
            )
        if token_embedding not in ("id", "code", "id+code"):
            raise ValueError(f"token_embedding must be 'id', 'code' or 'id+code', got {token_embedding!r}")
        self.token_embedding = token_embedding
        self.code_dim = int(code_dim)
        self.code_spaces = [int(c) for c in code_spaces] if code_spaces is not None else None
        if mlm_softmax not in ("block", "full"):
            raise ValueError(f"mlm_softmax must be 'block' or 'full', got {mlm_softmax!r}")
        if object_pooling not in (None, "mean", "attention"):
            raise ValueError(f"object_pooling must be None, 'mean' or 'attention', got {object_pooling!r}")
        if int(inner_layers) < 1:
            raise ValueError(f"inner_layers must be >= 1, got {inner_layers}")
        self.object_pooling = object_pooling
        self.inner_layers = int(inner_layers)
        unknown = [k for k in sub_objects or () if k not in SUB_OBJECT_INPUTS]
        if unknown:
            raise KeyError(f"unknown sub-object collection {unknown}; known: {list(SUB_OBJECT_INPUTS)}")
        self.sub_object_inputs = [len(SUB_OBJECT_INPUTS[k]) for k in sub_objects or ()]
        self.sub_objects = list(sub_objects) if sub_objects else None
        if int(sub_object_layers) < 1:
            raise ValueError(f"sub_object_layers must be >= 1, got {sub_object_layers}")
        self.sub_object_layers = int(sub_object_layers)
        self.num_quantizers = num_quantizers
        self.token_blocks = [list(map(int, b)) for b in (token_blocks or [])]
        self.layout_fingerprint = layout_fingerprint
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.use_level_embeddings = use_level_embeddings
        self.classifier_hidden_size = classifier_hidden_size
        self.mlm_softmax = mlm_softmax
        self.mlm_code_logits = bool(mlm_code_logits)
        self.mlm_code_bins = int(mlm_code_bins)
        if self.mlm_code_bins < 2:
            raise ValueError(f"mlm_code_bins must be >= 2, got {mlm_code_bins}")
        if self.mlm_code_logits and token_embedding == "id":
            raise ValueError(
                "mlm_code_logits scores codes by their code vectors: it needs token_embedding 'code' or 'id+code'"
            )
        if token_embedding != "id":
            n_object_blocks = sum(1 for b in self.token_blocks if b[3] >= 0)
            if self.code_dim < 1 or self.code_spaces is None or len(self.code_spaces) != n_object_blocks:
                raise ValueError(
                    f"token_embedding={token_embedding!r} needs code_dim >= 1 and one code space per object id "
                    f"block ({n_object_blocks}); got code_dim={self.code_dim}, code_spaces={self.code_spaces} "
                    "(HepEventConfig.from_tokenizer sets them)"
                )
        super().__init__(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            type_vocab_size=type_vocab_size,
            **kwargs,
        )

    @property
    def decodes_kinematics(self) -> bool:
        """The model decodes four-momenta from its tokens (``pair_bias``, ``mass_readout`` or
        ``kinematics_embedding``) and holds the tokenizer's decoders for it."""
        return self.pair_bias or self.mass_readout or self.kinematics_embedding

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> HepEventConfig:
        """A config matching an ``EventTokenizer`` (vocabulary, types, levels, fingerprints)."""
        blocks = [[b.start, b.size, b.type_id, b.level if b.kind == "object" else -1] for b in tokenizer.layout.blocks]
        if kwargs.get("token_embedding", "id") != "id":
            kwargs.setdefault("code_dim", int(tokenizer.code_vectors().shape[1]))
            kwargs.setdefault("code_spaces", tokenizer.code_spaces())
        if kwargs.get("pair_bias") or kwargs.get("mass_readout") or kwargs.get("kinematics_embedding"):
            specs = [spec for spec, _source in tokenizer.kinematics_sources()]
            code_dim = max((s["code_dim"] for s in specs), default=0)
            kwargs.setdefault("kinematics", {"code_dim": code_dim, "objects": specs})
        return cls(
            vocab_size=tokenizer.vocab_size,
            type_vocab_size=tokenizer.to_config()["type_vocab_size"],
            num_quantizers=max(tokenizer.num_quantizers.values()),
            token_blocks=blocks,
            layout_fingerprint=tokenizer.layout_fingerprint,
            tokenizer_fingerprint=tokenizer.fingerprint,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
