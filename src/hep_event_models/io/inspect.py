"""``hep-event-models inspect``: what a set of event files holds, and everything wrong with them.

Streams every file chunk by chunk (bounded memory), checks the whole schema (every
group, key, shape and dtype of ``common/`` and of the file's experiment group,
``atlas/`` or ``cms/``; ``mask`` against ``n``; NaN/inf in real objects and in per-event
scalars) and accumulates per-collection counts and per-feature ranges and means over
real objects (features of both experiments appear when the files mix them). Problems
are collected, not raised, so one run lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from .. import schema
from .reader import expand_files
from .validate import (
    Problem,
    check_collection_chunk,
    check_scalars_chunk,
    check_structure,
    collection_width,
    file_experiment,
    full_scalars,
    full_selection,
)


class _Stats:
    """Streaming count / min / max / sum of one feature."""

    def __init__(self):
        self.n, self.lo, self.hi, self.sum = 0, np.inf, -np.inf, 0.0

    def update(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if x.size:
            self.n += x.size
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))
            self.sum += float(x.sum(dtype=np.float64))

    def to_dict(self) -> dict:
        if not self.n:
            return {"n": 0, "min": None, "max": None, "mean": None}
        return {"n": self.n, "min": self.lo, "max": self.hi, "mean": self.sum / self.n}


def inspect_files(files: str | Path | Iterable[str | Path], chunk_size: int = 50_000) -> dict:
    """Report on ``files``: ``{"files", "n_events", "labels", "collections", "problems"}``.

    ``collections[name]`` holds ``objects``, ``events``, ``mean_per_event`` and per-feature
    ``{"n", "min", "max", "mean"}``; ``problems`` is a list of strings naming file, group and key.
    """
    paths = expand_files(files)
    problems: list[Problem] = []
    colls: dict[str, dict] = {c: {"objects": 0, "events": 0, "features": {}} for c in full_selection()}
    colls["event"] = {"objects": 0, "events": 0, "features": {}}
    experiments: dict[str, int] = {}
    labels: dict[int, int] = {}
    n_total = 0
    for path in paths:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            problems.append(Problem(path, "", f"cannot open as HDF5 ({e})"))
            continue
        with f:
            experiment = file_experiment(f)
            known = experiment if experiment in schema.EXPERIMENT_GROUPS else schema.DEFAULT_EXPERIMENT
            selection = full_selection(known)  # an unknown experiment is reported by check_structure
            scalars = full_scalars(known)
            for cname, feats in selection.items():
                for ft in feats:
                    colls[cname]["features"].setdefault(ft, _Stats())
            for sname in scalars:
                colls["event"]["features"].setdefault(sname.split("/")[1], _Stats())
            n, probs = check_structure(f, path, selection, scalars)
            problems += probs
            if not n or n <= 0:
                continue
            experiments[experiment] = experiments.get(experiment, 0) + n
            bad_keys = {p.key for p in probs}
            n_total += n
            for s in range(0, n, chunk_size):
                e = min(s + chunk_size, n)
                for cname, feats in selection.items():
                    coll = schema.COLLECTIONS[cname]
                    keys = {ft: coll.path_of(ft) for ft in feats}
                    usable = {ft: k for ft, k in keys.items() if k not in bad_keys and k in f}
                    st = colls[cname]
                    if coll.per_object:
                        mkey, nkey = coll.path_of(schema.MASK), coll.path_of(schema.COUNT)
                        if mkey in bad_keys or nkey in bad_keys or mkey not in f or nkey not in f:
                            continue
                        width = collection_width(f, cname)
                        mask = f[mkey][s:e]
                        counts = f[nkey][s:e]
                        vals = {ft: f[k][s:e] for ft, k in usable.items() if f[k].shape[1:] == (width,)}
                        problems += check_collection_chunk(path, cname, s, mask, counts, vals)
                        st["objects"] += int(mask.sum())
                        for ft, v in vals.items():
                            st["features"][ft].update(v[mask].astype(np.float64))
                    else:
                        vals = {k: f[k][s:e] for k in usable.values()}
                        problems += check_scalars_chunk(path, s, vals)
                        st["objects"] += e - s
                        for ft, k in usable.items():
                            st["features"][ft].update(vals[k].astype(np.float64))
                    st["events"] += e - s
                ev = colls["event"]
                for sname in scalars:
                    k = schema.collection("event").path_of(sname.split("/")[1])
                    if k in bad_keys or k not in f:
                        continue
                    v = f[k][s:e]
                    problems += check_scalars_chunk(path, s, {k: v})
                    ev["features"][sname.split("/")[1]].update(v.astype(np.float64))
                ev["events"] += e - s
                ev["objects"] += e - s
                if schema.LABEL_KEY in f and schema.LABEL_KEY not in bad_keys:
                    ids, cnt = np.unique(f[schema.LABEL_KEY][s:e], return_counts=True)
                    for i, c in zip(ids.tolist(), cnt.tolist(), strict=True):
                        labels[i] = labels.get(i, 0) + c
    if not paths:
        problems.append(Problem("", "", "no files"))
    out_colls = {}
    for cname, st in colls.items():
        out_colls[cname] = {
            "events": st["events"],
            "objects": st["objects"],
            "mean_per_event": st["objects"] / st["events"] if st["events"] else 0.0,
            "features": {k: v.to_dict() for k, v in st["features"].items()},
        }
    return {
        "files": paths,
        "n_events": n_total,
        "experiments": experiments,
        "labels": {schema.PROCESS_NAMES.get(k, str(k)): v for k, v in sorted(labels.items())},
        "collections": out_colls,
        "problems": [str(p) for p in problems],
    }


def format_report(report: dict) -> str:
    """Human-readable text of an ``inspect_files`` report."""
    lines = [f"{len(report['files'])} file(s), {report['n_events']:,} events"]
    if report.get("experiments"):
        lines.append("experiments: " + ", ".join(f"{k}={v:,}" for k, v in report["experiments"].items()))
    if report["labels"]:
        lines.append("labels: " + ", ".join(f"{k}={v:,}" for k, v in report["labels"].items()))
    for cname, c in report["collections"].items():
        lines.append("")
        lines.append(
            f"{cname}: {c['objects']:,} objects in {c['events']:,} events ({c['mean_per_event']:.2f} per event)"
        )
        lines.append(f"  {'feature':<16} {'min':>12} {'max':>12} {'mean':>12}")
        for fname, s in c["features"].items():
            if s["n"]:
                lines.append(f"  {fname:<16} {s['min']:>12.4g} {s['max']:>12.4g} {s['mean']:>12.4g}")
            else:
                lines.append(f"  {fname:<16} {'-':>12} {'-':>12} {'-':>12}")
    lines.append("")
    if report["problems"]:
        lines.append(f"{len(report['problems'])} problem(s):")
        lines += [f"  {p}" for p in report["problems"]]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
