"""ROOT → HDF5 event files: CMS NanoAOD and ATLAS PHYSLITE converters (seed 004's pipeline).

``convert_files("nanoaod" | "physlite", files, out)`` streams the input trees with
``uproot`` (``TTree.iterate`` in steps of ``step_size``, so memory is set by the step, not
the files), maps the branches to the schema (``common/`` plus ``cms/`` or ``atlas/``),
sorts objects by pT, applies the pT cuts, pads to ``max_objects`` and writes through
``EventWriter`` (temporary name, renamed when complete, checked against the schema).

* The mapping tables (one dict per collection, units in their docstrings) are in
  ``nanoaod.py`` and ``physlite.py``; their module docs list the documented differences
  (NanoAOD isolation, PHYSLITE's thinned tracks and rebuilt MET).
* Every input file is checked before anything is written: a missing *required* branch
  (e.g. ``Electron_pt``) raises ``ConversionError`` naming the branch, the file and the
  tree; missing *optional* branches are filled with defaults, reported in one
  ``ConversionWarning`` and listed in the file's ``metadata`` (``missing_branches``).
* ``metadata`` records the experiment, the pT cuts and ``max_objects`` used, the input
  files, the branch each variable came from (``source_branches``) and how derived
  quantities were made (``trk_iso03_source``, ``met_source``, ...).

Example::

    from hep_event_models.convert import convert_files
    summary = convert_files("nanoaod", ["nano_1.root", "nano_2.root"], "data/cms.h5",
                            max_objects={"jets": 20}, pt_cuts={"jets": 25.0})
"""

from __future__ import annotations

import json
import subprocess
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import schema
from ..io.reader import expand_files
from ..io.writer import EventWriter
from ..memory import release_memory
from .base import OWN_TRACK_DR, Converter
from .nanoaod import NanoAODConverter
from .output import AlignedWriter
from .physlite import PhysliteConverter
from .sources import ConversionError, ConversionWarning, Resolution, Source

__all__ = [
    "FORMATS",
    "ConversionError",
    "ConversionWarning",
    "Converter",
    "NanoAODConverter",
    "PhysliteConverter",
    "Source",
    "convert_files",
    "parse_assignments",
]

FORMATS: dict[str, type[Converter]] = {"nanoaod": NanoAODConverter, "physlite": PhysliteConverter}
DEFAULT_STEP_SIZE = "20 MB"  # ~15k NanoAOD events: ~300 MiB above the import baseline


def _open_tree(path: str, tree: str):
    """``(uproot file, tree)``; errors name the file (and the trees it has)."""
    import uproot

    try:
        f = uproot.open(path)
    except Exception as e:  # uproot raises several types for non-ROOT input
        raise ConversionError(f"{path}: cannot open as a ROOT file ({type(e).__name__}: {e})") from None
    try:
        return f, f[tree]
    except Exception:
        names = sorted({k.split(";")[0] for k in f.keys(recursive=False)})
        f.close()
        raise ConversionError(f"{path}: no tree {tree!r} in the file (it has: {names}); pass tree=...") from None


def _branch_names(tree) -> set[str]:
    names: set[str] = set()
    for kwargs in ({}, {"full_paths": False}):
        try:
            names |= set(tree.keys(**kwargs))
        except TypeError:  # RNTuple keys() takes other arguments
            continue
    return names


def _git_hash() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_assignments(text: str | Mapping | None, kind: type = float, what: str = "value") -> dict:
    """``"jets=25,electrons=7"`` → ``{"jets": 25.0, "electrons": 7.0}`` (dicts pass through).

    A bare number (``"20"``) applies to every object collection.
    """
    if text is None or isinstance(text, Mapping):
        return dict(text or {})
    colls = [n for n, c in schema.COLLECTIONS.items() if c.per_object]
    out = {}
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        if "=" not in item:
            try:
                return {c: kind(item) for c in colls}
            except ValueError:
                raise ValueError(f"{what}: expected NAME=VALUE[,NAME=VALUE] or one number, got {text!r}") from None
        k, v = item.split("=", 1)
        if k not in colls:
            raise ValueError(f"{what}: unknown collection {k!r}; known: {colls}")
        try:
            out[k] = kind(v)
        except ValueError:
            raise ValueError(f"{what}: {k}={v!r} is not a {kind.__name__}") from None
    return out


def _source_branches(plans: list[tuple[str, Resolution, int]]) -> dict[str, list[str]]:
    """``{table/key: [branches used]}`` over all files (more than one when versions differ)."""
    used: dict[str, set[str]] = {}
    for _, res, _ in plans:
        for table, chosen in res.chosen.items():
            for key, branch in chosen.items():
                if branch is not None:
                    used.setdefault(f"{table}/{key}", set()).add(branch)
    return {k: sorted(v) for k, v in sorted(used.items())}


def convert_files(
    fmt: str,
    files: str | Path | Iterable[str | Path],
    out: str | Path,
    max_objects: Mapping[str, int] | str | None = None,
    pt_cuts: Mapping[str, float] | str | None = None,
    step_size: int | str = DEFAULT_STEP_SIZE,
    progress: bool = True,
    tree: str | None = None,
    is_simulation: bool | None = None,
    process: str | None = None,
    own_track_dr: float = OWN_TRACK_DR,
    chunk_events: int = 4096,
) -> dict:
    """Convert ROOT files of one format into one schema-conformant HDF5 file.

    Args:
        fmt: ``"nanoaod"`` (CMS, tree ``Events``) or ``"physlite"`` (ATLAS, ``CollectionTree``).
        files: paths, globs, or a list of them (converted in sorted order).
        out: output HDF5 file (appears only when complete).
        max_objects: ``{collection: M}`` or ``"jets=20,tracks=50"`` (default: the schema's).
        pt_cuts: ``{collection: GeV}`` or ``"jets=25"``; objects need ``pt >= cut``.
        step_size: events (int) or memory (``"20 MB"`` of input arrays) per ``uproot`` step;
            memory use is set by this, not by the file sizes.
        progress: show a progress bar (events).
        tree: tree name, if not the format's default.
        is_simulation: force ``common/event/is_simulation`` (default: detected per file).
        process: label every event with this process (``metadata`` attribute ``process``,
            one of ``schema.PROCESS_IDS``).
        own_track_dr: ΔR within which the nearest track is the object's own (isolation).
        chunk_events: HDF5 chunk length of the output.

    Returns:
        Summary: ``out``, ``format``, ``experiment``, ``files``, ``n_events``, ``steps``, ``seconds``,
        ``events_per_second``, ``missing_branches``, ``nonfinite_replaced``, ``metadata``.

    Raises:
        ConversionError: unreadable file, missing tree, missing required branch (named),
            malformed branch, no events.
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    if process is not None and process not in schema.PROCESS_IDS:
        raise ValueError(f"unknown process {process!r}; known: {list(schema.PROCESS_IDS)}")
    conv = FORMATS[fmt](
        parse_assignments(max_objects, int, "max_objects"),
        parse_assignments(pt_cuts, float, "pt_cuts"),
        is_simulation=is_simulation,
        own_track_dr=own_track_dr,
    )
    paths = expand_files(files)
    tree_name = tree or conv.default_tree

    # pre-flight: every file readable, every required branch present, before writing anything
    plans: list[tuple[str, Resolution, int]] = []
    missing: dict[str, list[str]] = {}
    for path in paths:
        f, t = _open_tree(path, tree_name)
        with f:
            res = conv.resolve(_branch_names(t))
            n = int(t.num_entries)
        if res.missing_required:
            lines = [
                f"{path}: required branch {cands[0]!r} not found in tree {tree_name!r} "
                f"(for {table}/{key}" + (f"; also tried {list(cands[1:])})" if len(cands) > 1 else ")")
                for table, key, cands in res.missing_required
            ]
            raise ConversionError("\n".join(lines))
        for b in res.missing_optional:
            missing.setdefault(b, []).append(path)
        plans.append((path, res, n))
    total = sum(n for _, _, n in plans)
    if total == 0:
        raise ConversionError(f"no events in {paths} (tree {tree_name!r})")
    if missing:
        where = (
            ""
            if all(len(v) == len(paths) for v in missing.values())
            else " (in some files only: see metadata missing_branches)"
        )
        warnings.warn(
            f"{fmt}: {len(missing)} optional branches missing{where}, their variables are filled with defaults: "
            + ", ".join(sorted(missing)),
            ConversionWarning,
            stacklevel=2,
        )
    conv.write_truth = any(conv.has_truth(res) for _, res, _ in plans)

    md = schema.default_metadata(
        0,
        experiment=conv.experiment,
        input_file=paths[0] if len(paths) == 1 else json.dumps(paths),
        git_hash=_git_hash(),
        pt_cuts=json.dumps(conv.pt_cuts),
        max_objects=json.dumps(conv.max_objects),
        source_format=fmt,
        source_tree=tree_name,
        source_branches=json.dumps(_source_branches(plans)),
        missing_branches=json.dumps({b: v for b, v in sorted(missing.items())}),
    )
    if process is not None:
        md["process"] = process

    steps = 0
    with (
        tqdm(total=total, desc=f"convert {fmt}", unit="ev", disable=not progress) as bar,
        EventWriter(out, metadata=md, chunk_events=chunk_events) as w,
    ):
        aligned = AlignedWriter(w)  # whole chunks, deflated on a thread pool behind the conversion
        try:
            for path, res, n in plans:
                if n == 0:
                    continue
                f, t = _open_tree(path, tree_name)
                with f:
                    wanted = set(res.branches())
                    try:
                        for arrays in t.iterate(filter_name=wanted.__contains__, step_size=step_size, library="ak"):
                            aligned.append(conv.convert(arrays, res, path))
                            bar.update(len(arrays))
                            steps += 1
                            del arrays
                            release_memory()  # flat RSS over many steps (see memory.py)
                    except (ConversionError, KeyboardInterrupt):
                        raise
                    except Exception as e:
                        raise ConversionError(
                            f"{path}: converting tree {tree_name!r} failed ({type(e).__name__}: {e})"
                        ) from e
            aligned.close()
        except BaseException:
            aligned.abort()
            raise
        w.metadata.update(conv.describe())
        w.metadata["nonfinite_replaced"] = json.dumps(conv.nonfinite)
    dt = time.perf_counter() - t0
    return {
        "out": str(out),
        "format": fmt,
        "experiment": conv.experiment,
        "files": paths,
        "n_events": int(w.n_events),
        "steps": steps,
        "seconds": dt,
        "events_per_second": w.n_events / dt if dt > 0 else float("nan"),
        "missing_branches": {b: v for b, v in sorted(missing.items())},
        "nonfinite_replaced": dict(conv.nonfinite),
        "metadata": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in w.metadata.items()},
    }
