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


def cmd_fit_tokenizer(args) -> int:
    import yaml

    from .config import resolve_config_path
    from .training.tokenizer import fit_object_tokenizer

    cfg_path = resolve_config_path(args.config)
    raw = yaml.safe_load(cfg_path.read_text())
    if isinstance(raw, dict) and "objects" in raw and "object" not in raw:
        print(
            f"error: {cfg_path} is an event config; fitting whole event tokenizers is not available yet. "
            "Fit each object config (e.g. tokenizer_configs/jets.yaml) instead.",
            file=sys.stderr,
        )
        return 2
    summary = fit_object_tokenizer(
        cfg_path,
        args.data,
        args.out,
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
    fin = summary["final"]
    usage = ", ".join(f"q{i} {u:.0%}" for i, u in enumerate(fin["val_usage"]))
    print(
        f"wrote {summary['object']} tokenizer to {args.out} after {summary['steps']} steps "
        f"({summary['seconds']:.0f} s): validation loss {fin['val_loss']:.4f}, code usage {usage}"
    )
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


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
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
        help="fit preprocessing and train an object tokenizer (residual VQ-VAE)",
        description="Stream events, fit per-feature preprocessing, train the residual VQ-VAE of one "
        "object config, and save it (config.json + model.safetensors).",
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
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=cmd_fit_tokenizer)

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
