"""``hep-event-models scan``: a grid of object-tokenizer configurations, one table.

For each configuration (codebook size × levels × codebook dim × encoder) it trains a
tokenizer with the same data and budget, diagnoses it on held-out events, and records
what seed 003 asks to log per configuration: reconstruction (pT/η/φ resolution, worst
discrete exact-match rate, worst score KS), codebook usage (per level, level 0 singled
out), training time and encoding speed. Writes ``scan.json`` and ``scan.md``.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from .diagnostics import tokenizer_metrics
from .object_tokenizer import ObjectTokenizer
from .training.tokenizer import fit_object_tokenizer, validation_set


def encoding_speed(
    tok: ObjectTokenizer, values: np.ndarray, backend: str = "auto", min_objects: int = 200_000, repeats: int = 3
) -> float:
    """Objects per second of ``tok.encode`` (encoder + every level), best of ``repeats``."""
    reps = max(1, int(np.ceil(min_objects / len(values))))
    x = np.concatenate([values] * reps)[:min_objects]
    tok.encode(x[:1000], backend=backend)  # warm-up (builds the search index)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        tok.encode(x, backend=backend)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def summarize(metrics: dict) -> dict:
    """The headline numbers of one ``tokenizer_metrics`` result."""
    feats = metrics["features"]
    out = {
        "usage_min": min(lvl["used_fraction"] for lvl in metrics["levels"]),
        "usage_level0": metrics["levels"][0]["used_fraction"],
        "usage": [lvl["used_fraction"] for lvl in metrics["levels"]],
    }
    for name in ("pt", "eta", "phi"):
        if name in feats:
            out[f"{name}_resolution"] = feats[name]["resolution"]
    exact = [f["exact_match"] for f in feats.values() if "exact_match" in f]
    ks = [f["ks"] for f in feats.values() if "ks" in f]
    out["discrete_exact_min"] = min(exact) if exact else None
    out["score_ks_max"] = max(ks) if ks else None
    return out


def run_scan(
    config,
    data,
    out_dir,
    codebook_sizes=(512, 4096),
    num_quantizers=(2, 4),
    codebook_dims=(8,),
    encoders=("mlp",),
    max_steps: int = 1000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    val_every: int = 20,
    extra_settings: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train and diagnose every configuration of the grid; returns the rows (also saved)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    grid = list(itertools.product(codebook_sizes, num_quantizers, codebook_dims, encoders))
    for i, (cb, q, dim, enc) in enumerate(grid):
        name = f"{enc}_cb{cb}_q{q}_dim{dim}"
        if progress:
            print(f"[{i + 1}/{len(grid)}] {name}", flush=True)
        settings = {
            **(extra_settings or {}),
            "codebook_size": cb,
            "num_quantizers": q,
            "codebook_dim": dim,
            "encoder": enc,
        }
        summary = fit_object_tokenizer(
            config,
            data,
            out / name,
            settings=settings,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            val_every=val_every,
            checkpoint_every=0,
            progress=progress,
        )
        tok = ObjectTokenizer.from_pretrained(out / name)
        values, mask = validation_set(tok.object_config, data, val_every, max_objects=100_000)
        real = values[mask]
        m = tokenizer_metrics(tok, real)
        rows.append(
            {
                "name": name,
                "codebook_size": cb,
                "num_quantizers": q,
                "codebook_dim": dim,
                "encoder": enc,
                "train_seconds": summary["seconds"],
                "steps": summary["steps"],
                "val_loss": summary["final"]["val_loss"],
                "encode_objects_per_s": encoding_speed(tok, real),
                "n_val_objects": len(real),
                **summarize(m),
            }
        )
        (out / "scan.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out / "scan.md").write_text(scan_markdown(rows))
    return rows


def _fmt(v, spec):
    return "–" if v is None else format(v, spec)


def scan_markdown(rows: list[dict]) -> str:
    head = (
        "| config | train s | encode obj/s | val loss | usage min | usage q0 | pT res (rel) | η res | φ res "
        "| discrete exact min | score KS max |"
    )
    lines = [head, "|---|" + "---:|" * 10]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['train_seconds']:.0f} | {r['encode_objects_per_s']:,.0f} | {r['val_loss']:.3f} "
            f"| {r['usage_min']:.1%} | {r['usage_level0']:.1%} | {_fmt(r.get('pt_resolution'), '.4f')} "
            f"| {_fmt(r.get('eta_resolution'), '.4f')} | {_fmt(r.get('phi_resolution'), '.4f')} "
            f"| {_fmt(r['discrete_exact_min'], '.4f')} | {_fmt(r['score_ks_max'], '.4f')} |"
        )
    return "\n".join(lines) + "\n"
