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
    g.add_argument("--chunk-size", type=int, default=50_000, help="events generated and written per chunk")
    g.add_argument("--workers", type=int, default=None, help="generator processes (default: CPU count, max 4)")
    g.add_argument(
        "--mass-window",
        type=_mass_window,
        default=None,
        metavar="LO,HI",
        help="generator-level filter on the hard-system mass in GeV (m_4l for zz4l, m_ll for dy)",
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
