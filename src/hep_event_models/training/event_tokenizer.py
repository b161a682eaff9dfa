"""Building an EventTokenizer from an event config (``fit-tokenizer --config event.yaml``).

Every object tokenizer the config names is fitted into ``OUT/fits/<object>/`` (in parallel
processes where ``num_proc > 1``; each gets ``cores // num_proc`` torch threads), then the
context binning is fixed (the config's ``range``, or the training events' min/max), each
object tokenizer is diagnosed on held-out events, and the ``EventTokenizer`` is saved to
``OUT``. Finished object fits are reused when the command runs again (an interrupted fit
resumes from its checkpoint), and ``object_dirs`` assembles tokenizers fitted elsewhere
instead of fitting them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..event_tokenizer import EventTokenizer, load_event_config
from ..grouped_tokenizer import GROUPS_FILE, GroupedObjectTokenizer, load_object_tokenizer, load_single_tokenizer
from ..grouped_tokenizer import feature_groups as _object_groups
from ..io.reader import EventReader, expand_files
from ..layout import ContextSpec
from .tokenizer import fit_object_tokenizer, held_out, validation_set

FITS_DIR = "fits"


def fit_context(specs: list[dict], data, val_every: int = 20, max_events: int | None = None) -> list[ContextSpec]:
    """Context binning: each spec's ``range`` if given, else min/max over the training events."""
    need = [c for c in specs if c.get("range") is None]
    lo = {c["name"]: np.inf for c in need}
    hi = {c["name"]: -np.inf for c in need}
    if need:
        keys = {c["name"]: f"{c.get('group', 'event')}/{c['name']}" for c in need}
        reader = EventReader(data, selection={}, scalars=list(keys.values()), chunk_size=65_536, max_events=max_events)
        for b in reader:
            train = ~held_out(b.event_index, val_every)
            for name, key in keys.items():
                x = b.scalars[key][train]
                if x.size:
                    lo[name] = min(lo[name], float(x.min()))
                    hi[name] = max(hi[name], float(x.max()))
    out = []
    for c in specs:
        d = dict(c)
        d.setdefault("group", "event")
        if d.get("range") is None:
            a, b = lo[d["name"]], hi[d["name"]]
            if not np.isfinite(a):
                raise ValueError(f"context scalar {d['name']!r}: no training events to fit its range")
            d["range"] = [a, b if b > a else a + 1.0]
        out.append(ContextSpec.from_dict(d))
    return out


def _fit_one(name: str, cfg_dict: dict, data, out: str, kwargs: dict, threads: int, grouped: bool = False) -> dict:
    import torch

    from ..config import ObjectConfig

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
    fit = fit_grouped_object_tokenizer if grouped else fit_object_tokenizer
    return fit(ObjectConfig.from_dict(cfg_dict), data, out, **kwargs)


def _finished(d: Path, grouped: bool = False) -> bool:
    """A finished fit of the wanted kind in ``d`` (a flat fit is unfinished where ``groups.json``
    says the directory holds a grouped one, and the other way round)."""
    if not (d / "training_summary.json").exists():
        return False
    if grouped:
        return (d / GROUPS_FILE).exists()
    return (d / "model.safetensors").exists() and not (d / GROUPS_FILE).exists()


def fit_grouped_object_tokenizer(config, data, out_dir: str | Path, resume: bool = False, **kwargs) -> dict:
    """Fit one ``ObjectTokenizer`` per feature group of ``config`` (``groups:`` section) into
    ``out_dir/<group>/`` and save the ``GroupedObjectTokenizer`` to ``out_dir``.

    ``kwargs`` go to ``fit_object_tokenizer`` for every group (``settings`` override the
    groups' own ``tokenizer:`` sections too). With ``resume``, finished groups are kept and
    an interrupted one continues from its checkpoint. Returns the summary also written to
    ``out_dir/training_summary.json``: ``{"object", "groups": {group: summary}, "seconds"}``.
    """
    from ..config import ObjectConfig, load_object_config

    cfg = config if isinstance(config, ObjectConfig) else load_object_config(config)
    groups = _object_groups(cfg)
    if not groups:
        raise ValueError(f"the {cfg.object} config defines no feature groups ('groups:' section)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_summary.json").unlink(missing_ok=True)
    summaries = {}
    for gname, gcfg in groups.items():
        d = out / gname
        if resume and _finished(d):
            summaries[gname] = json.loads((d / "training_summary.json").read_text())
        else:
            summaries[gname] = fit_object_tokenizer(gcfg, data, d, resume=resume, **kwargs)
    tok = GroupedObjectTokenizer(cfg, {g: load_single_tokenizer(out / g) for g in groups})
    tok.save_pretrained(out)
    summary = {
        "object": cfg.object,
        "groups": summaries,
        "seconds": sum(s["seconds"] for s in summaries.values()),
        "model": tok.describe(),
    }
    tmp = out / ".training_summary.json.tmp"  # written last and atomically: it marks the fit finished
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "training_summary.json")
    return summary


def fit_event_tokenizer(
    config: str | Path,
    data,
    out_dir: str | Path,
    object_dirs: dict[str, str | Path] | None = None,
    num_proc: int = 1,
    refit: bool = False,
    max_steps: int = 2000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    min_lr_ratio: float = 0.1,
    warmup_steps: int = 100,
    seed: int = 0,
    device: str = "cpu",
    val_every: int = 20,
    settings: dict | None = None,
    diagnose_objects: int = 20_000,
    feature_groups: bool | None = None,
    progress: bool = True,
) -> EventTokenizer:
    """Fit (or assemble) every object tokenizer of an event config and save the EventTokenizer.

    Args:
        config: event config (``tokenizer_configs/event.yaml`` or a path).
        data: HDF5 files (path, glob or list).
        out_dir: output directory; object fits live in ``out_dir/fits/<object>``.
        object_dirs: ``{object: directory}`` of already fitted object tokenizers to use as they are.
        num_proc: object tokenizers fitted at once (processes).
        refit: fit again even where a finished fit exists.
        settings: ``ObjectTokenizerSettings`` overrides for every object.
        lr, min_lr_ratio: peak learning rate and the floor of its cosine decay, as a fraction
            of ``lr``, after ``warmup_steps`` of linear warm-up (``fit_object_tokenizer``).
        diagnose_objects: held-out objects per type for the diagnostics summary (0: none).
        feature_groups: tokenize objects whose config has ``groups:`` as feature groups
            (``GroupedObjectTokenizer``, one tokenizer per group); ``None``: the event
            config's ``feature_groups`` (default false).
    """
    ev = load_event_config(config)
    use_groups = ev["feature_groups"] if feature_groups is None else bool(feature_groups)
    grouped = {n for n, oc in ev["objects"].items() if use_groups and _object_groups(oc)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_files(data)
    object_dirs = {k: Path(v) for k, v in (object_dirs or {}).items()}
    unknown = set(object_dirs) - set(ev["objects"])
    if unknown:
        raise ValueError(f"object tokenizers given for {sorted(unknown)}, which the event config does not name")
    todo = []
    for name in ev["objects"]:
        if name in object_dirs:
            continue
        d = out / FITS_DIR / name
        if refit or not _finished(d, name in grouped):
            todo.append(name)
            if name not in grouped:
                (d / GROUPS_FILE).unlink(missing_ok=True)  # a flat fit replaces a grouped one
    kwargs = dict(
        settings=settings,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        min_lr_ratio=min_lr_ratio,
        warmup_steps=warmup_steps,
        seed=seed,
        device=device,
        val_every=val_every,
        resume=not refit,
        progress=progress and num_proc == 1,
    )
    if todo:
        if num_proc > 1 and len(todo) > 1:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // min(num_proc, len(todo)))
            with ProcessPoolExecutor(max_workers=num_proc, mp_context=mp.get_context("spawn")) as pool:
                futs = {
                    pool.submit(
                        _fit_one,
                        n,
                        ev["objects"][n].to_dict(),
                        files,
                        str(out / FITS_DIR / n),
                        kwargs,
                        threads,
                        n in grouped,
                    ): n
                    for n in todo
                }
                for fut in tqdm(
                    as_completed(futs), total=len(futs), desc="fit object tokenizers", disable=not progress
                ):
                    fut.result()
        else:
            for n in todo:
                fit = fit_grouped_object_tokenizer if n in grouped else fit_object_tokenizer
                fit(ev["objects"][n], files, out / FITS_DIR / n, **kwargs)
    objects = {}
    for name in ev["objects"]:
        d = object_dirs.get(name, out / FITS_DIR / name)
        t = load_object_tokenizer(d)
        if t.object != name:
            raise ValueError(f"{d}: holds a tokenizer for {t.object!r}, expected {name!r}")
        objects[name] = t
    context = fit_context(ev["context"], files, val_every)
    diagnostics = {}
    if diagnose_objects:
        from ..diagnostics import tokenizer_metrics
        from ..scan import summarize

        for name, t in tqdm(objects.items(), desc="diagnose", disable=not progress):
            values, mask = validation_set(t.object_config, files, val_every, max_objects=diagnose_objects)
            if mask.any():
                diagnostics[name] = summarize(tokenizer_metrics(t, values[mask]))
    tok = EventTokenizer(
        objects,
        context,
        model_max_length=ev["model_max_length"],
        metadata={
            "training_data": [os.path.basename(f) for f in files],
            "held_out": f"every {val_every}th event of each file",
            "diagnostics": diagnostics,
        },
    )
    tok.save_pretrained(out)
    (out / "fit_summary.json").write_text(
        json.dumps(
            {
                "objects": list(objects),
                "fitted": todo,
                "feature_groups": {n: objects[n].group_names for n in sorted(grouped)},
                "assembled": {k: str(v) for k, v in object_dirs.items()},
                "fingerprint": tok.fingerprint,
                "vocab_size": tok.vocab_size,
                "diagnostics": diagnostics,
            },
            indent=2,
        )
        + "\n"
    )
    return tok
