"""The ``hep-event-models`` command line: one entry point, one subcommand per job.

Every subcommand is a thin layer over a library function, prints progress, and writes
machine-readable JSON next to its human-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, schema


def _write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _mass_window(text: str | None):
    if not text:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mass-window takes LO,HI in GeV, got {text!r}") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"--mass-window needs LO < HI, got {text!r}")
    return (lo, hi)


# ---------------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from .generator import generate

    summary = generate(
        args.process,
        args.events,
        args.out,
        seed=args.seed,
        chunk_size=args.chunk_size,
        mass_window=args.mass_window,
        workers=args.workers,
        progress=not args.quiet,
        sub_objects=args.sub_objects,
    )
    print(
        f"wrote {summary['n_events']:,} {args.process} events to {args.out} "
        f"in {summary['seconds']:.1f} s ({summary['events_per_second']:,.0f} events/s)"
    )
    if args.json:
        _write_json(args.json, summary)
    return 0


def cmd_inspect(args) -> int:
    from .io.inspect import format_report, inspect_files

    try:
        report = inspect_files(args.files, chunk_size=args.chunk_size)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        _write_json(args.json, report)
    return 1 if report["problems"] else 0


def _parse_settings(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _parse_object_dirs(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --object-tokenizer takes NAME=DIR, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def cmd_fit_tokenizer(args) -> int:
    from .config import resolve_config_path
    from .event_tokenizer import is_event_config

    cfg_path = resolve_config_path(args.config)
    if is_event_config(cfg_path):
        from .training.event_tokenizer import fit_event_tokenizer

        tok = fit_event_tokenizer(
            cfg_path,
            args.data,
            args.out,
            object_dirs=_parse_object_dirs(args.object_tokenizer),
            num_proc=args.num_proc,
            refit=args.refit,
            settings=_parse_settings(args.set),
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            val_every=args.val_every,
            feature_groups=args.feature_groups,
            progress=not args.quiet,
        )
        print(f"wrote {tok!r} to {args.out}")
        return 0
    if args.object_tokenizer:
        print("error: --object-tokenizer is for event configs", file=sys.stderr)
        return 2
    from .training.tokenizer import fit_object_tokenizer

    kwargs = dict(
        settings=_parse_settings(args.set),
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        val_every=args.val_every,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    if args.feature_groups:
        from .training.event_tokenizer import fit_grouped_object_tokenizer

        summary = fit_grouped_object_tokenizer(cfg_path, args.data, args.out, **kwargs)
        parts = ", ".join(
            f"{g} ({len(s['final']['val_usage'])} levels, validation loss {s['final']['val_loss']:.4f})"
            for g, s in summary["groups"].items()
        )
        print(f"wrote grouped {summary['object']} tokenizer to {args.out} ({summary['seconds']:.0f} s): {parts}")
        return 0
    summary = fit_object_tokenizer(cfg_path, args.data, args.out, **kwargs)
    fin = summary["final"]
    usage = ", ".join(f"q{i} {u:.0%}" for i, u in enumerate(fin["val_usage"]))
    print(
        f"wrote {summary['object']} tokenizer to {args.out} after {summary['steps']} steps "
        f"({summary['seconds']:.0f} s): validation loss {fin['val_loss']:.4f}, code usage {usage}"
    )
    return 0


def cmd_tokenize(args) -> int:
    from .tokenized import tokenize_dataset

    summary = tokenize_dataset(
        args.tokenizer,
        args.data,
        args.out,
        fmt=args.format,
        num_proc=args.num_proc,
        shard_index=args.shard_index,
        num_shards=args.num_shards,
        rows_per_shard=args.rows_per_shard,
        chunk_size=args.chunk_size,
        max_length=args.max_length,
        truncation=args.max_length is not None,
        progress=not args.quiet,
        device=args.device,
        m4l_window=args.m4l_window,
        sub_objects=None if args.no_sub_objects else "auto",
    )
    rate = (
        f" ({summary['events_per_s']:,.0f} events/s, {summary['objects_per_s']:,.0f} objects/s)"
        if summary["events"]
        else ""
    )
    print(
        f"tokenized {summary['events']:,} events into {len(summary['shards_written'])} new shard(s) in {args.out}"
        f"{rate}; {len(summary['shards_skipped'])} finished shard(s) skipped"
        + (f"; sub-object columns: {', '.join(summary['sub_objects'])}" if summary["sub_objects"] else "")
    )
    job = f"{args.shard_index}-of-{args.num_shards}"
    _write_json(Path(args.out) / f"tokenize_summary-{job}.json", summary)
    return 0


def cmd_push(args) -> int:
    from .event_tokenizer import CONFIG_NAME, EventTokenizer

    path = Path(args.path)
    if (path / CONFIG_NAME).exists():
        obj = EventTokenizer.from_pretrained(path)
        info = obj.push_to_hub(
            args.repo_id, revision=args.revision, commit_message=args.message, private=args.private, tag=args.tag
        )
    else:
        from .hub import push_folder

        info = push_folder(
            path, args.repo_id, revision=args.revision, commit_message=args.message, private=args.private, tag=args.tag
        )
    print(f"pushed {path} to {args.repo_id}@{args.revision or 'main'}: {getattr(info, 'commit_url', info)}")
    return 0


def _hf_args(args):
    from .training.models import parse_args

    argv = ([args.config] if args.config else []) + list(args.overrides)
    return parse_args(argv)


def cmd_pretrain(args) -> int:
    from .training.models import pretrain

    model_args, data_args, training_args = _hf_args(args)
    metrics = pretrain(model_args, data_args, training_args)
    print(f"pretrained model written to {training_args.output_dir}: " + _fmt_metrics(metrics))
    return 0


def cmd_finetune(args) -> int:
    from .training.models import finetune

    model_args, data_args, training_args = _hf_args(args)
    metrics = finetune(model_args, data_args, training_args)
    print(f"classifier written to {training_args.output_dir}: " + _fmt_metrics(metrics))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_classifier

    r = evaluate_classifier(
        args.model,
        args.train_data,
        args.test_data,
        args.signal,
        args.background,
        args.out,
        m4l_window=args.m4l_window,
        tokenizer=args.tokenizer,
        train_backgrounds=args.train_background,
        max_train_events=args.max_train_events,
        max_test_events=args.max_test_events,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(
        f"{args.signal} vs {', '.join(args.background)}: AUC {r['auc']:.4f} ± {r['auc_std']:.4f} (GBDT "
        f"{r['gbdt_auc']:.4f}; model - GBDT {r['auc_minus_gbdt']:+.4f} ± {r['auc_minus_gbdt_std']:.4f}; counts only "
        f"{r['counts_auc']:.4f}), accuracy {r['accuracy']:.4f}, rejection at 50% {r['rejection_at_50']:.1f}; "
        f"wrote {args.out}/metrics.json and roc.png"
    )
    return 0


def _fmt_metrics(m: dict) -> str:
    keys = [k for k in ("train_loss", "eval_loss", "eval_auc", "eval_accuracy") if k in m]
    return ", ".join(f"{k} {m[k]:.4f}" for k in keys)


def cmd_convert(args) -> int:
    from .convert import ConversionError, convert_files

    step = int(args.step_size) if str(args.step_size).isdigit() else args.step_size
    try:
        summary = convert_files(
            args.format,
            args.files,
            args.out,
            max_objects=args.max_objects,
            pt_cuts=args.pt_cuts,
            step_size=step,
            progress=not args.quiet,
            tree=args.tree,
            is_simulation=None if args.is_simulation is None else args.is_simulation == "1",
            process=args.process,
        )
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {summary['n_events']:,} {summary['experiment']} events to {args.out} "
        f"in {summary['seconds']:.1f} s ({summary['events_per_second']:,.0f} events/s)"
    )
    if summary["missing_branches"]:
        print(f"{len(summary['missing_branches'])} optional branches missing (metadata missing_branches)")
    if args.json:
        _write_json(args.json, summary)
    return 0


def cmd_diagnose(args) -> int:
    from .diagnostics import diagnose

    m = diagnose(
        args.tokenizer,
        args.data,
        args.out,
        val_every=args.val_every,
        max_objects=args.max_objects,
        plots=not args.no_plots,
    )
    print(f"{m['object']}: {m['n_objects']:,} held-out objects")
    for lvl in m["levels"]:
        print(
            f"  level {lvl['level']}: {lvl['used']} codes used, {lvl['dead']} dead, perplexity {lvl['perplexity']:.0f}"
        )
    for name, f in m["features"].items():
        extra = ""
        if "exact_match" in f:
            extra = f", exact {f['exact_match']:.4f}"
        if "ks" in f:
            extra += f", KS {f['ks']:.4f}"
        rel = " (relative)" if f["relative"] else ""
        print(f"  {name:<16} bias {f['bias']:+.4g}, resolution {f['resolution']:.4g}{rel}{extra}")
    print(f"wrote {args.out}/diagnostics.json and plots")
    return 0


def cmd_scan(args) -> int:
    from .scan import run_scan, scan_markdown

    rows = run_scan(
        args.config,
        args.data,
        args.out,
        codebook_sizes=args.codebook_size,
        num_quantizers=args.num_quantizers,
        codebook_dims=args.codebook_dim,
        encoders=args.encoder,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        val_every=args.val_every,
        extra_settings=_parse_settings(args.set),
        progress=not args.quiet,
    )
    print(scan_markdown(rows))
    print(f"wrote {args.out}/scan.md and scan.json")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    r = run_demo(
        args.out,
        scale=args.scale,
        seed=args.seed,
        device=args.device,
        config=args.config,
        force=args.force,
        progress=not args.quiet,
        **({"tokenizer_settings": {"quantizer": "rvq"}} if args.tokenizer_quantizer == "rvq" else {}),
        **({"object_pooling": args.object_pooling} if args.object_pooling else {}),
        **({"max_length": args.max_length} if args.max_length else {}),
        **({"token_embedding": args.token_embedding} if args.token_embedding else {}),
        **({"finetune_steps": args.finetune_steps} if args.finetune_steps else {}),
        **({"pretrain_steps": args.pretrain_steps} if args.pretrain_steps else {}),
        **({"inclusive_steps": args.inclusive_steps} if args.inclusive_steps else {}),
        pair_bias=args.pair_bias,
        kinematics_embedding=args.kinematics_embedding,
        mlm_code_logits=args.mlm_code_logits,
        mass_readout=args.mass_readout,
        mass_readout_pairs=args.mass_readout_pairs,
        mass_readout_init=args.mass_readout_init,
        label_seeds=args.label_seeds,
        classifier_pooling=args.classifier_pooling,
    )
    head, inc = r["headline"], r["inclusive"]["evaluation"]
    usage, low_obj, low_level = min(
        (lv["used_fraction"] / lv.get("reachable_fraction", 1.0), name, k)
        for name, d in r["diagnostics"].items()
        for k, lv in enumerate(d["levels"])
    )
    low_n = r["diagnostics"][low_obj].get("n_objects") or 0
    hz = r["physics_after_decode"]["hzz4l"]
    print(
        "\n".join(
            [
                f"demo finished in {r['wall_seconds'] / 60:.1f} min (all stages); results in {args.out}",
                f"  tokenizers: lowest codebook usage {usage:.0%} of the codes reachable ({low_obj} level "
                f"{low_level}, on {low_n:,} held-out objects); m_4l (H->4l) "
                f"per-event resolution from "
                f"tokenization {hz['residual']['resolution'] or float('nan'):.3f} GeV",
                f"  headline (hzz4l vs zz4l, 115<m4l<135): AUC {head['auc']:.3f} ± {head['auc_std']:.3f} "
                f"(GBDT {head['gbdt_auc']:.3f}; model - GBDT {head['auc_minus_gbdt']:+.3f} ± "
                f"{head['auc_minus_gbdt_std']:.3f}; counts only {head['counts_auc']:.3f})",
                f"  inclusive (trained vs zz4l; tested vs zz4l, ttbar, dy): AUC {inc['auc']:.3f} "
                f"(GBDT {inc['gbdt_auc']:.3f})",
                f"  pretraining: {r['pretrain']['tokens_per_second']:,.0f} tokens/s",
                f"  report: {Path(args.out) / r['report']['markdown']} and {Path(args.out) / r['report']['html']}",
            ]
        )
    )
    return 0


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .demo import MASS_READOUT_INIT, MASS_READOUT_PAIRS  # numpy only: cheap

    p = argparse.ArgumentParser(
        prog="hep-event-models",
        description="Tokenize collider events and train foundation models on them.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="generate labelled events into a schema-conformant HDF5 file",
        description="Generate events of one process with the built-in generator "
        "(see hep_event_models.generator for the physics and approximations).",
    )
    g.add_argument("--process", required=True, choices=list(schema.PROCESS_IDS), help="physics process")
    g.add_argument("--events", required=True, type=int, help="number of events")
    g.add_argument("--seed", type=int, default=0, help="random seed (output depends only on seed and sizes)")
    g.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    g.add_argument(
        "--chunk-size",
        type=int,
        default=10_000,
        help="events per generated chunk (small chunks keep worker memory and page faults low)",
    )
    g.add_argument("--workers", type=int, default=None, help="generator processes (default: CPU count, max 4)")
    g.add_argument(
        "--mass-window",
        type=_mass_window,
        default=None,
        metavar="LO,HI",
        help="generator-level filter on the truth hard-system mass in GeV: m_4l (zz4l), m_ll (dy), m_tt (ttbar); "
        "for hzz4l the window must contain m_H",
    )
    g.add_argument(
        "--sub-objects",
        action="store_true",
        help="also write jet constituents and track hits (common/jets/constituents/*, common/tracks/hits/*)",
    )
    g.add_argument("--json", help="also write a JSON summary here")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser(
        "inspect",
        help="summarise event files and list every schema problem",
        description="Counts per collection, per-feature ranges and means, and every validation "
        "problem (exit status 1 when there are problems).",
    )
    i.add_argument("files", nargs="+", help="HDF5 files or globs")
    i.add_argument("--chunk-size", type=int, default=50_000, help="events read per chunk")
    i.add_argument("--json", help="also write the report as JSON here")
    i.set_defaults(func=cmd_inspect)

    f = sub.add_parser(
        "fit-tokenizer",
        help="fit an object tokenizer (residual VQ-VAE) or a whole EventTokenizer",
        description="Object config: stream events, fit per-feature preprocessing, train the residual VQ-VAE "
        "and save it (config.json + model.safetensors). Event config (tokenizer_configs/event.yaml): fit every "
        "object tokenizer it names (OUT/fits/<object>, reused when finished) plus the context binning, and "
        "save the EventTokenizer to OUT.",
    )
    f.add_argument("--config", required=True, help="object config YAML, or a shipped name (jets, muons, ...)")
    f.add_argument("--data", required=True, nargs="+", help="HDF5 files or globs")
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--max-steps", type=int, default=2000, help="training steps (the budget)")
    f.add_argument("--batch-size", type=int, default=4096, help="objects per training batch")
    f.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, warm-up then cosine)")
    f.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up steps")
    f.add_argument("--val-every", type=int, default=20, help="hold out every N-th event of each file")
    f.add_argument("--eval-every", type=int, default=100, help="validate every N steps")
    f.add_argument("--checkpoint-every", type=int, default=200, help="checkpoint every N steps (0: never)")
    f.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    f.add_argument("--seed", type=int, default=0, help="random seed")
    f.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    f.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a tokenizer setting, e.g. --set codebook_size=1024 (repeatable)",
    )
    f.add_argument(
        "--num-proc", type=int, default=1, help="event configs: object tokenizers fitted at once (processes)"
    )
    f.add_argument(
        "--object-tokenizer",
        action="append",
        metavar="NAME=DIR",
        help="event configs: use this already fitted object tokenizer instead of fitting one (repeatable)",
    )
    f.add_argument("--refit", action="store_true", help="event configs: refit object tokenizers already in OUT/fits")
    f.add_argument(
        "--feature-groups",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tokenize objects by their config's feature groups, one tokenizer per group (event configs: "
        "default from the config's feature_groups; object configs: off)",
    )
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=cmd_fit_tokenizer)

    t = sub.add_parser(
        "tokenize",
        help="tokenize HDF5 events into sharded Parquet/Arrow datasets",
        description="Stream events through an EventTokenizer and write shards (input_ids, token_type_ids, "
        "attention_mask, event_index, source_file, label) with the tokenizer fingerprint in the schema. "
        "Resumable: finished shards are skipped.",
    )
    t.add_argument("--tokenizer", required=True, help="EventTokenizer directory or Hub id")
    t.add_argument("--data", required=True, nargs="+", help="HDF5 files or globs")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--format", default="parquet", choices=["parquet", "arrow"])
    t.add_argument("--num-proc", type=int, default=1, help="processes writing shards (this one + N-1 spawned)")
    t.add_argument("--shard-index", type=int, default=0, help="this job's index (file-level split)")
    t.add_argument("--num-shards", type=int, default=1, help="number of jobs the input files are split over")
    t.add_argument("--rows-per-shard", type=int, default=250_000, help="events per output shard")
    t.add_argument("--chunk-size", type=int, default=8192, help="events read and tokenized at once")
    t.add_argument("--max-length", type=int, default=None, help="truncate sequences to this length")
    t.add_argument("--device", default=None, help="cpu (FAISS search, default) or cuda (torch search on the GPU)")
    t.add_argument(
        "--m4l-window",
        type=_mass_window,
        default=None,
        metavar="LO,HI",
        help="keep only four-lepton events with LO < m_4l < HI GeV (e.g. the headline selection 115,135)",
    )
    t.add_argument(
        "--no-sub-objects",
        action="store_true",
        help="leave out jet constituents / track hits (by default their columns are added when every file holds them)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_tokenize)

    pu = sub.add_parser(
        "push",
        help="upload an EventTokenizer or model directory to the Hugging Face Hub",
        description="Creates the repository, the branch --revision when missing, and the tag --tag.",
    )
    pu.add_argument("path", help="directory to upload")
    pu.add_argument("--repo-id", required=True, help="Hub repository, e.g. my-org/hep-event-tokenizer")
    pu.add_argument("--revision", default=None, help="branch to push to (created when missing)")
    pu.add_argument("--tag", default=None, help="also tag the pushed revision")
    pu.add_argument("--message", default=None, help="commit message")
    pu.add_argument("--private", action="store_true", help="create the repository private")
    pu.set_defaults(func=cmd_push)

    for name, fn, what in (
        ("pretrain", cmd_pretrain, "masked-token pretraining of HepEventForMaskedLM (whole-object masking)"),
        ("finetune", cmd_finetune, "train HepEventForSequenceClassification (scratch, pretrained, or frozen)"),
    ):
        tp = sub.add_parser(
            name,
            help=what,
            description=f"{what}, with transformers.Trainer. Arguments: a YAML/JSON file (training/*.yaml) "
            "and/or flags of ModelArguments, DataArguments and transformers.TrainingArguments "
            "(--output_dir, --max_steps, --per_device_train_batch_size, --learning_rate, --deepspeed, ...); "
            "flags override the file. Example: hep-event-models "
            f"{name} training/{name}.yaml --tokenizer TOK --train_data DS --output_dir OUT",
        )
        tp.add_argument("config", nargs="?", help="YAML or JSON file of arguments")
        tp.add_argument(
            "overrides",
            nargs="*",
            help="--flag value pairs: fields of ModelArguments, DataArguments (hep_event_models.training.models) "
            "and transformers.TrainingArguments",
        )
        tp.set_defaults(func=fn)

    ev = sub.add_parser(
        "evaluate",
        help="ROC AUC, accuracy and rejection of a classifier, with GBDT and counts-only baselines",
        description="Scores held-out HDF5 events with a HepEventForSequenceClassification model and, in the "
        "same run, a gradient-boosted classifier on continuous object features and a counts-only classifier "
        "(both trained on --train-data). Writes OUT/metrics.json (auc, accuracy, rejection_at_50, gbdt_auc, "
        "counts_auc, per background) and OUT/roc.png.",
    )
    ev.add_argument("--model", required=True, help="classifier directory (finetune output)")
    ev.add_argument("--tokenizer", default=None, help="EventTokenizer (default: MODEL/tokenizer)")
    ev.add_argument("--train-data", required=True, nargs="+", help="HDF5 files for the baselines' training")
    ev.add_argument("--test-data", required=True, nargs="+", help="held-out HDF5 files")
    ev.add_argument("--signal", required=True, choices=list(schema.PROCESS_IDS))
    ev.add_argument("--background", required=True, nargs="+", choices=list(schema.PROCESS_IDS))
    ev.add_argument(
        "--train-background",
        nargs="+",
        choices=list(schema.PROCESS_IDS),
        default=None,
        help="backgrounds the baselines train against (default: --background); give the model's "
        "fine-tuning backgrounds, e.g. zz4l with --background zz4l ttbar dy for seed 003's "
        "generalisation protocol",
    )
    ev.add_argument(
        "--m4l-window",
        type=_mass_window,
        default=None,
        metavar="LO,HI",
        help="keep four-lepton events with LO < m_4l < HI GeV (the headline task: 115,135)",
    )
    ev.add_argument("--max-train-events", type=int, default=50_000, help="per process")
    ev.add_argument("--max-test-events", type=int, default=20_000, help="per process")
    ev.add_argument("--out", required=True, help="output directory")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    cv = sub.add_parser(
        "convert",
        help="convert CMS NanoAOD or ATLAS PHYSLITE ROOT files to one schema-conformant HDF5 file",
        description="Stream ROOT trees with uproot (constant memory), map the branches to common/ plus cms/ "
        "(nanoaod) or atlas/ (physlite), sort objects by pT, apply the pT cuts, pad to max objects and write "
        "atomically. Missing required branches fail naming the branch and file; missing optional ones are "
        "filled with defaults and reported once. Mapping and documented differences: "
        "hep_event_models.convert.nanoaod / .physlite.",
    )
    cv.add_argument("--format", required=True, choices=["nanoaod", "physlite"], help="input format")
    cv.add_argument("files", nargs="+", help="ROOT files or globs")
    cv.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    cv.add_argument("--max-objects", default=None, metavar="NAME=N,...", help="padding, e.g. jets=20,tracks=50")
    cv.add_argument("--pt-cuts", default=None, metavar="NAME=GEV,...", help="pT thresholds, e.g. jets=25,electrons=10")
    cv.add_argument("--step-size", default="20 MB", help="uproot step: events (e.g. 20000) or memory ('20 MB')")
    cv.add_argument("--tree", default=None, help="tree name (default: Events / CollectionTree)")
    cv.add_argument("--process", default=None, choices=list(schema.PROCESS_IDS), help="label every event")
    cv.add_argument("--is-simulation", default=None, choices=["0", "1"], help="force is_simulation (default: detected)")
    cv.add_argument("--json", help="also write a JSON summary here")
    cv.add_argument("--quiet", action="store_true", help="no progress bar")
    cv.set_defaults(func=cmd_convert)

    d = sub.add_parser(
        "diagnose",
        help="codebook health and reconstruction of a tokenizer on held-out events",
        description="Writes OUT/diagnostics.json (levels: used, dead, used_fraction, perplexity; "
        "features: kind, bias, resolution, exact_match, ks) and PNG plots.",
    )
    d.add_argument("--tokenizer", required=True, help="object tokenizer directory")
    d.add_argument("--data", required=True, nargs="+", help="HDF5 files or globs")
    d.add_argument("--out", required=True, help="output directory")
    d.add_argument(
        "--val-every",
        type=int,
        default=20,
        help="use every N-th event (the events fit-tokenizer held out); 1 for unseen files",
    )
    d.add_argument("--max-objects", type=int, default=200_000, help="objects to evaluate")
    d.add_argument("--no-plots", action="store_true", help="JSON only")
    d.set_defaults(func=cmd_diagnose)

    sc = sub.add_parser(
        "scan",
        help="train and compare a grid of object-tokenizer configurations",
        description="For every combination of the grid: train (same data and budget), diagnose on "
        "held-out events, time training and encoding; writes OUT/scan.md and scan.json.",
    )
    sc.add_argument("--config", required=True, help="object config YAML or shipped name")
    sc.add_argument("--data", required=True, nargs="+", help="HDF5 files or globs")
    sc.add_argument("--out", required=True, help="output directory (one tokenizer per configuration)")
    sc.add_argument("--codebook-size", type=int, nargs="+", default=[512, 4096])
    sc.add_argument("--num-quantizers", type=int, nargs="+", default=[2, 4])
    sc.add_argument("--codebook-dim", type=int, nargs="+", default=[8])
    sc.add_argument("--encoder", nargs="+", default=["mlp"], choices=["mlp", "transformer"])
    sc.add_argument("--max-steps", type=int, default=1000)
    sc.add_argument("--batch-size", type=int, default=4096)
    sc.add_argument("--lr", type=float, default=1e-3)
    sc.add_argument("--val-every", type=int, default=20)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--device", default="cpu")
    sc.add_argument("--set", action="append", metavar="KEY=VALUE", help="other tokenizer settings for every run")
    sc.add_argument("--quiet", action="store_true")
    sc.set_defaults(func=cmd_scan)

    dm = sub.add_parser(
        "demo",
        help="the whole chain on generated events, with a report (about 12 minutes on 2 CPU cores)",
        description="generate -> fit tokenizers -> diagnose -> tokenize -> pretrain -> fine-tune -> evaluate "
        "on the built-in generator's events; writes OUT/report.md, OUT/report.html (self-contained), PNG plots "
        "and OUT/results.json. Rerunning with the same OUT skips finished stages.",
    )
    dm.add_argument("--out", required=True, help="output directory")
    dm.add_argument(
        "--scale", type=float, default=1.0, help="multiplies event counts and training steps (1: ~12 min on 2 cores)"
    )
    dm.add_argument("--seed", type=int, default=0, help="random seed")
    dm.add_argument("--device", default="cpu", help="cpu or cuda[:N] for training")
    dm.add_argument("--config", default="event", help="event tokenizer config (shipped name or path)")
    dm.add_argument("--force", action="store_true", help="forget finished stages and run them again")
    dm.add_argument(
        "--object-pooling",
        choices=("mean", "attention"),
        default=None,
        help="train the hierarchical model (one outer position per object) instead of the flat BERT; "
        "pair with --config event_groups for feature-group tokens",
    )
    dm.add_argument("--max-length", type=int, default=None, help="token sequence length (default 128)")
    dm.add_argument(
        "--token-embedding",
        choices=("code", "id", "id+code"),
        default=None,
        help="how the event model embeds object tokens (default: code, from the tokenizer's code vectors)",
    )
    dm.add_argument(
        "--finetune-steps", type=int, default=None, help="steps of every headline fine-tuning run (default 150)"
    )
    dm.add_argument(
        "--inclusive-steps", type=int, default=None, help="steps of the inclusive task's fine-tuning (default 500)"
    )
    dm.add_argument(
        "--pretrain-steps", type=int, default=None, help="masked-token pretraining steps (default 300 × scale)"
    )
    dm.add_argument(
        "--pair-bias",
        action="store_true",
        help="physics-aware attention: a per-head bias from the decoded objects' pair features (ParT)",
    )
    dm.add_argument(
        "--kinematics-embedding",
        action="store_true",
        help="add every object's four-momentum, decoded from its tokens, to its input embedding "
        "(HepEventConfig.kinematics_embedding)",
    )
    dm.add_argument(
        "--mlm-code-logits",
        action="store_true",
        help="pretraining: masked-token logits also from the candidate codes' vectors (HepEventConfig.mlm_code_logits)",
    )
    dm.add_argument(
        "--mass-readout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the classifier the invariant masses of the event's object types and type pairs (default on)",
    )
    dm.add_argument(
        "--mass-readout-pairs",
        type=int,
        default=MASS_READOUT_PAIRS,
        help="with the mass readout, also every pair mass of the K leading objects of each type "
        f"(HepEventConfig.mass_readout_pairs; default {MASS_READOUT_PAIRS}, 0: none)",
    )
    dm.add_argument(
        "--mass-readout-init",
        choices=["normal", "fourier"],
        default=MASS_READOUT_INIT,
        help=f"how the readout's mass tables start (HepEventConfig.mass_readout_init; default {MASS_READOUT_INIT})",
    )
    dm.add_argument(
        "--label-seeds",
        type=int,
        default=1,
        help="fine-tuning runs per label budget (seeds seed, seed+1, ...): the label-efficiency curve reports "
        "means and the paired pretrained - scratch difference with its standard error",
    )
    dm.add_argument(
        "--classifier-pooling",
        choices=["cls", "mean"],
        default="cls",
        help="what the classification head reads: the [CLS] state or the mean final state of the tokens",
    )
    dm.add_argument(
        "--tokenizer-quantizer",
        choices=["rfsq", "rvq"],
        default="rfsq",
        help="object tokenizers: ResidualFSQ (default, fast on CPU) or the shipped ResidualVQ (4096 codes; "
        "~30x slower training steps on CPU, for GPUs or bigger budgets)",
    )
    dm.add_argument("--quiet", action="store_true", help="no progress output")
    dm.set_defaults(func=cmd_demo)
    return p


_HF_COMMANDS = {"pretrain": "cmd_pretrain", "finetune": "cmd_finetune"}


def _close_process_group() -> None:
    """Tear down the torch.distributed process group a torchrun job opened, before exit.

    Left to interpreter shutdown, gloo's worker threads can be destroyed while still joinable,
    and a rank then dies with ``terminate called without an active exception`` (SIGABRT)
    after its work is done, which fails the whole torchrun job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # pretrain/finetune take HfArgumentParser flags (any of ModelArguments, DataArguments,
    # TrainingArguments), which argparse subparsers cannot list: pass them through as they are
    if argv and argv[0] in _HF_COMMANDS and not {"-h", "--help"} & set(argv[1:]):
        rest = argv[1:]
        config = rest.pop(0) if rest and not rest[0].startswith("-") else None
        ns = argparse.Namespace(config=config, overrides=rest)
        rc = int(globals()[_HF_COMMANDS[argv[0]]](ns) or 0)
        _close_process_group()  # only after success: a barrier after one rank failed would hang
        return rc
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
