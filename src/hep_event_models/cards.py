"""Model cards from the templates in ``model_cards/`` (``huggingface_hub.ModelCard``)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from . import __version__, schema


def template_dir() -> Path:
    """Directory of the shipped card templates (``model_cards/``)."""
    return Path(__file__).resolve().parent / "model_cards"


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def event_tokenizer_card(tok, repo_id: str | None = None, revision: str | None = None) -> ModelCard:
    """Card of an ``EventTokenizer``: features, codebooks, diagnostics summary, version."""
    rows = []
    for name, t in tok.object_tokenizers.items():
        feats = ", ".join(f"{f.name} ({f.kind})" for f in t.object_config.features)
        sizes = t.codebook_sizes
        cb = f"{t.num_quantizers} levels × {sizes[0]} codes" if len(set(sizes)) == 1 else f"levels {sizes}"
        if getattr(t, "group_levels", None):  # feature groups: one tokenizer per group
            feats = "; ".join(
                f"{g}: " + ", ".join(f"{f.name} ({f.kind})" for f in sub.object_config.features)
                for g, sub in t.groups.items()
            )
            cb = "feature groups " + ", ".join(
                f"{g} 1 lookup level × {sub.codebook_sizes[0]} rows"
                if sub.settings.quantizer == "lookup"
                else f"{g} {sub.num_quantizers} levels × {sub.codebook_sizes[0]} codes"
                for g, sub in t.groups.items()
            )
        rows.append(f"| {name} | {feats} | {cb}, dim {t.settings.codebook_dim} | {schema.TYPE_IDS[name]} |")
    diags = tok.metadata.get("diagnostics") or {}
    if diags:
        lines = [
            "| object | used codes per level | pT res (rel) | η res | φ res | worst discrete exact | worst score KS |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, d in diags.items():
            usage = " / ".join(f"{u:.0%}" for u in d.get("usage", []))
            lines.append(
                f"| {name} | {usage} | {_fmt(d.get('pt_resolution'), '.4f')} | {_fmt(d.get('eta_resolution'), '.4f')} "
                f"| {_fmt(d.get('phi_resolution'), '.4f')} | {_fmt(d.get('discrete_exact_min'), '.4f')} "
                f"| {_fmt(d.get('score_ks_max'), '.4f')} |"
            )
        diagnostics_text = "\n".join(lines)
    else:
        diagnostics_text = "No diagnostics recorded (run `hep-event-models diagnose` on each object tokenizer)."
    data = tok.metadata.get("training_data")
    data_text = f"Fitted on: {data}." if data else "Not recorded."
    levels = sorted(set(tok.num_quantizers.values()))
    card_data = ModelCardData(
        library_name="hep_event_models",
        license="apache-2.0",
        tags=["hep", "particle-physics", "tokenizer", "vq-vae", "event-tokenizer"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_dir() / "event_tokenizer.md"),
        title=f"Event tokenizer {tok.fingerprint}",
        repo_id=repo_id or "path/to/tokenizer",
        revision_arg=f', revision="{revision}"' if revision else "",
        levels_text=" or ".join(str(q) for q in levels),
        vocab_size=tok.vocab_size,
        num_reserved=schema.NUM_RESERVED_IDS,
        context_text=", ".join(f"{c.name}: {c.bins} bins over {list(c.range)}" for c in tok.context) or "none",
        order_text=", ".join(tok.objects),
        layout_fingerprint=tok.layout_fingerprint,
        tokenizer_fingerprint=tok.fingerprint,
        format_version=tok.to_config()["format_version"],
        package_version=__version__,
        objects_table="\n".join(rows),
        diagnostics_text=diagnostics_text,
        data_text=data_text,
    )


def event_model_card(
    model,
    training: dict | None = None,
    evaluation: dict | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """Card of a HepEvent model: architecture, tokenizer fingerprints, training and evaluation.

    ``evaluation``: the ``metrics.json`` of ``evaluate`` (its numbers also go into the card's
    ``model-index`` as ``EvalResult`` entries).
    """
    from huggingface_hub import EvalResult

    cfg = model.config
    arch = type(model).__name__
    auto = {
        "HepEventForMaskedLM": "AutoModelForMaskedLM",
        "HepEventForSequenceClassification": "AutoModelForSequenceClassification",
    }.get(arch, "AutoModel")
    task = (
        "masked-token pretraining (whole-object masking)"
        if arch == "HepEventForMaskedLM"
        else f"event classification ({', '.join(str(v) for v in cfg.id2label.values())})"
        if arch == "HepEventForSequenceClassification"
        else "event encoder"
    )
    training = dict(training or {})
    keys = ("train_loss", "eval_loss", "eval_auc", "eval_accuracy", "train_runtime", "world_size")
    lines = [
        f"- {k}: {training[k]:.4g}" if isinstance(training[k], float) else f"- {k}: {training[k]}"
        for k in keys
        if k in training
    ]
    if training.get("data"):
        lines.append(f"- data: {training['data']}")
    ctx = training.get("masked_token_context")
    if ctx:
        lines.append(
            f"- masked-token context gain: {ctx['context_gain_nats']:+.3f} nats per masked token (loss "
            f"{ctx['model_nats']:.3f} against {ctx['unigram_nats']:.3f} for the code frequencies of each token's "
            f"block, {ctx['events']:,} events; near 0: the model has learnt little beyond the code frequencies)"
        )
    embedding = {
        "id": "id (a free vector per id)",
        "code": "code vector (a learned map of the tokenizer's codebook entry)",
        "id+code": "id + code vector",
    }
    lines.append(f"- object tokens embedded by: {embedding.get(getattr(cfg, 'token_embedding', 'id'))}")
    if getattr(cfg, "sub_objects", None):
        gates = training.get("sub_object_gates") or {}
        lines.append(
            f"- sub-objects read next to the tokens: {', '.join(cfg.sub_objects)}"
            + (f" (mean gate {', '.join(f'{k} {v:.3f}' for k, v in gates.items())})" if gates else "")
        )
    eval_results, ev_lines = [], []
    if evaluation:
        name = f"{evaluation['signal']} vs {', '.join(evaluation['backgrounds'])}"
        if evaluation.get("m4l_window"):
            name += f", {evaluation['m4l_window'][0]} < m4l < {evaluation['m4l_window'][1]} GeV"
        ev_lines = [
            f"Task: {name} (held-out events).",
            "",
            "| classifier | ROC AUC | accuracy | rejection at 50% signal eff. |",
            "|---|---:|---:|---:|",
        ]
        allb = evaluation["per_background"]["all"]
        for key, label in (("model", "this model"), ("gbdt", "GBDT on continuous features"), ("counts", "counts only")):
            r = allb[key]
            ev_lines.append(f"| {label} | {r['auc']:.4f} | {r['accuracy']:.4f} | {r['rejection_at_50']:.1f} |")
        for metric in ("auc", "accuracy", "rejection_at_50"):
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type="hep_event_models/generator",
                    dataset_name=name,
                    metric_type=metric,
                    metric_value=float(evaluation[metric]),
                )
            )
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["hep", "particle-physics", "hep_event_models", "bert"],
        model_name=repo_id or "hep-event-model",
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_dir() / "event_model.md"),
        title=f"{arch} ({cfg.tokenizer_fingerprint or 'no tokenizer'})",
        architecture=arch,
        auto_class=auto,
        repo_id=repo_id or "path/to/model",
        task=task,
        num_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        num_heads=cfg.num_attention_heads,
        parameters=f"{sum(p.numel() for p in model.parameters()):,}",
        vocab_size=cfg.vocab_size,
        type_vocab_size=cfg.type_vocab_size,
        num_quantizers=cfg.num_quantizers,
        tokenizer_fingerprint=cfg.tokenizer_fingerprint,
        layout_fingerprint=cfg.layout_fingerprint,
        package_version=__version__,
        training_text="\n".join(lines) or "Not recorded.",
        evaluation_text="\n".join(ev_lines) or "Not evaluated yet (`hep-event-models evaluate`).",
    )
