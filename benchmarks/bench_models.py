"""Benchmark section ``models``: the event models of issue 5 on generator data.

Runs the demo pipeline (``hep_event_models.demo.run_demo``) at ``--models-scale`` in
``benchmarks/_work/models`` (resumable: finished stages are reused) and reports, on held-out
test events:

- the headline task (hzz4l vs zz4l, four leptons, 115 < m_4ℓ < 135 GeV): token model
  fine-tuned from the pretrained backbone and from scratch, against a gradient-boosted
  classifier on continuous features and a counts-only classifier trained on the same
  number of labelled events;
- the inclusive task (hzz4l vs zz4l, ttbar and dy, every event) tested against each background
  (seed 003's generalisation protocol);
- the label-efficiency curve (at least three label budgets);
- training throughput in tokens/s.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def bench_models(
    quick: bool, opts=None, config: str = "event", object_pooling: str | None = None, max_length: int = 128
) -> tuple[dict, str]:
    """The demo pipeline; ``config``, ``object_pooling`` and ``max_length`` select the variant
    (section ``models``: flat tokens and BERT; ``models_groups``: feature-group tokens and the
    hierarchical model)."""
    from hep_event_models.demo import run_demo

    scale = 0.1 if quick else float(getattr(opts, "models_scale", 1.0) or 1.0)
    device = getattr(opts, "device", None) or "cpu"
    embedding = getattr(opts, "models_token_embedding", None) or "code"
    ft_steps = getattr(opts, "models_finetune_steps", None)
    variant = "" if config == "event" and object_pooling is None else f"-{config}-{object_pooling or 'flat'}"
    pt_steps = getattr(opts, "models_pretrain_steps", None)
    variant += f"-{embedding}" + (f"-ft{ft_steps}" if ft_steps else "") + (f"-pt{pt_steps}" if pt_steps else "")
    mass_readout = not getattr(opts, "models_no_mass_readout", False)
    pair_bias = bool(getattr(opts, "models_pair_bias", False))
    kin_embedding = bool(getattr(opts, "models_kinematics_embedding", False))
    code_logits = bool(getattr(opts, "models_mlm_code_logits", False))
    variant += ("-mass" if mass_readout else "") + ("-pair" if pair_bias else "") + ("-kin" if kin_embedding else "")
    variant += "-codelogits" if code_logits else ""
    pooling = getattr(opts, "models_classifier_pooling", None) or "cls"
    variant += "" if pooling == "cls" else f"-{pooling}pool"
    label_seeds = 1 if quick else int(getattr(opts, "models_label_seeds", 1) or 1)
    work = HERE / "_work" / f"models{variant}-scale{scale:g}-{device.replace(':', '')}"
    r = run_demo(
        work,
        scale=scale,
        seed=0,
        device=device,
        config=config,
        progress=True,
        object_pooling=object_pooling,
        max_length=max_length,
        token_embedding=embedding,
        mass_readout=mass_readout,
        pair_bias=pair_bias,
        kinematics_embedding=kin_embedding,
        mlm_code_logits=code_logits,
        classifier_pooling=pooling,
        label_seeds=label_seeds,
        # the recorded results ran the inclusive task with the same steps as the headline's
        **({"finetune_steps": ft_steps, "inclusive_steps": ft_steps} if ft_steps else {}),
        **({"pretrain_steps": pt_steps} if pt_steps else {}),
    )
    s = r["settings"]
    head = r["headline"]
    inc = r["inclusive"]["evaluation"]
    curve = r["label_efficiency"]
    pre = r["pretrain"]
    best = curve[-1]
    res = {
        "scale": scale,
        "device": device,
        "config": config,
        "object_pooling": object_pooling,
        "settings": s,
        "headline": {
            "labelled_events": best["labelled_events"],
            "pretrained_auc": best["pretrained_auc"],
            "scratch_auc": best["scratch_auc"],
            "gbdt_auc": best["gbdt_auc"],
            "gbdt_decoded_auc": best["gbdt_decoded_auc"],
            "counts_auc": best["counts_auc"],
            "n_test_signal": head["n_test_signal"],
            "rejection_at_50": head["rejection_at_50"],
        },
        "inclusive": {
            b: {k: e[k]["auc"] for k in ("model", "gbdt", "gbdt_decoded", "counts")}
            for b, e in inc["per_background"].items()
        },
        "label_efficiency": [
            {
                k: c[k]
                for k in (
                    "labelled_events",
                    "scratch_auc",
                    "pretrained_auc",
                    "gbdt_auc",
                    "gbdt_decoded_auc",
                    "counts_auc",
                    "seeds",
                    "scratch_aucs",
                    "pretrained_aucs",
                    "gain",
                    "gain_se",
                )
                if k in c
            }
            for c in curve
        ],
        "pretrain_tokens_per_s": pre["tokens_per_second"],
        "pretrain_events_per_s": pre["events_per_second"],
        "pretrain_loss": [pre["loss_first"], pre["loss_last"]],
        "pretrain_context": pre["metrics"].get("masked_token_context"),
        "parameters": pre["metrics"].get("parameters"),
        "wall_seconds": r["wall_seconds"],
    }
    gap = best["pretrained_auc"] - best["gbdt_auc"]
    n_seeds = len(best.get("seeds", [0]))
    mean_of = f", means over {n_seeds} seeds" if n_seeds > 1 else ""
    smallest = curve[0]
    extra = (
        ""
        if config == "event" and object_pooling is None
        else (f" --config {config} --object-pooling {object_pooling} --max-length {max_length}")
    )
    extra += f" --token-embedding {embedding}" + (f" --finetune-steps {ft_steps}" if ft_steps else "")
    extra += f" --pretrain-steps {pt_steps}" if pt_steps else ""
    extra += ("" if mass_readout else " --no-mass-readout") + (" --pair-bias" if pair_bias else "")
    extra += (" --kinematics-embedding" if kin_embedding else "") + (" --mlm-code-logits" if code_logits else "")
    extra += ("" if pooling == "cls" else f" --classifier-pooling {pooling}") + (
        f" --label-seeds {label_seeds}" if label_seeds > 1 else ""
    )
    readout = ""
    if mass_readout:
        pairs = s.get("mass_readout_pairs")
        readout = (
            ", classifier with the type-set mass readout (`HepEventConfig.mass_readout`"
            + (f"; pair masses of the {pairs} leading objects per type" if pairs else "")
            + f"; {s.get('mass_readout_init', 'normal')} table init)"
        )
    md = [
        f"`hep-event-models demo --scale {scale:g} --device {device}{extra}` pipeline: "
        f"{s['train_events']:,} training and "
        f"{s['test_events']:,} test events per process and file, tokenizers "
        f"{(s['tokenizer_settings'] or {}).get('quantizer', 'rvq')} {s['tokenizer_steps']} steps, "
        f"BERT {s['num_hidden_layers']} layers × {s['hidden_size']} ({res['parameters']:,} parameters with the "
        f"MLM head), pretraining {s['pretrain_steps']} steps, fine-tuning {s['finetune_steps']} steps"
        + (
            f" (the best of ten checkpoints by AUC on a stratified {s['validation_fraction']:.0%} validation split "
            "of the labelled events)"
            if s.get("validation_fraction")
            else ""
        )
        + ", "
        f"batch {s['batch_size']}, object tokens embedded by {s.get('token_embedding', 'id')} "
        f"(`HepEventConfig.token_embedding`)"
        + readout
        + (", pair-bias attention (`HepEventConfig.pair_bias`)" if pair_bias else "")
        + (", masked-token logits from the codes' vectors (`HepEventConfig.mlm_code_logits`)" if code_logits else "")
        + (
            ", objects' decoded kinematics in their embeddings (`HepEventConfig.kinematics_embedding`)"
            if kin_embedding
            else ""
        )
        + f". Total {r['wall_seconds'] / 60:.0f} min.",
        "",
        f"**Headline** (hzz4l vs zz4l, four leptons, 115 < m_4ℓ < 135 GeV; {head['n_test_signal']:,} test "
        f"signal events), {best['labelled_events']:,} labelled training events{mean_of}:",
        "",
        "| classifier | test AUC |",
        "|---|---:|",
        f"| token model, fine-tuned from pretrained | {best['pretrained_auc']:.4f} |",
        f"| token model, from scratch | {best['scratch_auc']:.4f} |",
        f"| GBDT on continuous features (same number of labelled events) | {best['gbdt_auc']:.4f} |",
        "| GBDT on features decoded from the tokens (same number of labelled events) | "
        f"{best['gbdt_decoded_auc']:.4f} |",
        f"| counts only | {best['counts_auc']:.4f} |",
        "",
        f"Token model − GBDT: {gap:+.4f} (target: within 0.01).",
        "",
        f"**Label efficiency** (headline task, test AUC{mean_of}; pretrained − scratch is the mean of the "
        "paired differences, same labelled events and seed, ± its standard error):",
        "",
        "| labelled events | from scratch | from pretrained | pretrained − scratch | GBDT | GBDT, decoded tokens "
        "| counts only |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {c['labelled_events']:,} | {_auc_cell(c, 'scratch')} | {_auc_cell(c, 'pretrained')} | {_gain_cell(c)} | "
        f"{c['gbdt_auc']:.4f} | {c['gbdt_decoded_auc']:.4f} | {c['counts_auc']:.4f} |"
        for c in curve
    ]
    md += [
        "",
        f"At the smallest budget ({smallest['labelled_events']:,}) pretrained − scratch = {_gain_cell(smallest)}.",
        "",
        "**Inclusive task** (fine-tuned from pretrained on hzz4l vs zz4l, every event, baselines trained the same "
        "way; tested per background, seed 003's generalisation protocol):",
        "",
        "| background | token model | GBDT | GBDT, decoded tokens | counts only |",
        "|---|---:|---:|---:|---:|",
    ]
    md += [
        f"| {b} | {v['model']:.4f} | {v['gbdt']:.4f} | {v['gbdt_decoded']:.4f} | {v['counts']:.4f} |"
        for b, v in res["inclusive"].items()
    ]
    md += [
        "",
        f"**Training throughput** ({device}): pretraining {pre['tokens_per_second']:,.0f} tokens/s "
        f"({pre['events_per_second']:,.0f} events/s, {pre['mean_tokens_per_event']:.0f} tokens/event, "
        f"loss {pre['loss_first']:.3f} → {pre['loss_last']:.3f}).",
    ]
    ctx = res["pretrain_context"]
    if ctx:  # work directories pretrained before 2026-11-30 lack it
        per_level = ", ".join(f"{k} {v['context_gain_nats']:+.3f}" for k, v in ctx["per_level"].items())
        md += [
            "",
            f"**Masked-token context** (`training.models.masked_token_context`, {ctx['events']:,} events): "
            f"pretrained loss {ctx['model_nats']:.3f} nats per masked token against {ctx['unigram_nats']:.3f} "
            f"for the code frequencies of each token's block, a gain of {ctx['context_gain_nats']:+.3f} "
            f"(per level: {per_level}).",
        ]
    return res, "\n".join(md)


def _auc_cell(row: dict, kind: str) -> str:
    """Mean AUC, with the per-seed values when there are several."""
    aucs = row.get(f"{kind}_aucs") or [row[f"{kind}_auc"]]
    return f"{row[f'{kind}_auc']:.4f}" + (f" ({', '.join(f'{a:.3f}' for a in aucs)})" if len(aucs) > 1 else "")


def _gain_cell(row: dict) -> str:
    from hep_event_models.demo_report import format_gain

    return format_gain(row, digits=4)
