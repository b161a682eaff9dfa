"""Tokenizer diagnostics physicists can check: codebook health and feature fidelity.

``tokenizer_metrics`` returns the stable ``diagnostics.json`` contract::

    {"levels": [{"level", "used", "dead", "used_fraction", "perplexity"}, ...],
     "features": {name: {"kind", "bias", "resolution", "relative", "exact_match" (discrete),
                         "ks" (scores)}}}

Definitions (on held-out objects, decoded from their codes):

* ``used``: distinct codes chosen at that level; ``dead = size - used``; ``perplexity``:
  exp of the entropy of the code frequencies (equals ``size`` for uniform use).
* residual: decoded - original, wrapped into (-π, π] for angles, divided by the original
  for pT-like features (``log_standard`` in GeV and strictly positive, like pT, jet mass,
  ΣET), where ``relative`` is true; isolation sums, which can be 0, stay absolute.
* ``bias``: median residual; ``resolution``: IQR / 1.349 of the residual (the σ of a
  Gaussian with that IQR; robust to tails).
* ``exact_match``: fraction of objects whose discrete value comes back exactly.
* ``ks``: two-sample Kolmogorov–Smirnov distance between original and decoded values.
"""

from __future__ import annotations

import itertools

import numpy as np

from . import schema
from .object_tokenizer import ObjectTokenizer


def code_usage(codes: np.ndarray, sizes: list[int]) -> list[dict]:
    """Per-level usage of ``codes`` ``(N, Q)``.

    ``used_fraction`` is used codes / codebook size; ``reachable_fraction`` is the most that
    ``N`` objects can show (min(1, N / size)), so a small sample (a few hundred photons for a
    4096-code level) is not read as a collapsed codebook.
    """
    out = []
    for q, size in enumerate(sizes):
        counts = np.bincount(codes[:, q], minlength=size)
        used = int((counts > 0).sum())
        p = counts[counts > 0] / counts.sum()
        out.append(
            {
                "level": q,
                "used": used,
                "dead": int(size - used),
                "used_fraction": used / size,
                "reachable_fraction": min(1.0, len(codes) / size),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())),
            }
        )
    return out


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def is_relative(kind: str, unit: str, fitted_min: float) -> bool:
    """pT-like: resolution quoted relative to the value."""
    return kind == schema.LOG_STANDARD and unit == "GeV" and fitted_min > 0


def residuals(kind: str, relative: bool, original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, bool]:
    """Residual of one feature and whether it is relative."""
    if kind == schema.ANGLE:
        return np.angle(np.exp(1j * (decoded - original))), False
    if relative:
        return (decoded - original) / np.where(original != 0, original, 1.0), True
    return decoded - original, False


def feature_metrics(kind: str, relative: bool, original: np.ndarray, decoded: np.ndarray) -> dict:
    r, relative = residuals(kind, relative, original, decoded)
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    m = {"kind": kind, "bias": float(q50), "resolution": float((q75 - q25) / 1.349), "relative": relative}
    if kind in schema.DISCRETE_KINDS:
        m["exact_match"] = float(np.mean(decoded == original))
    if kind == schema.SCORE:
        m["ks"] = ks_distance(original, decoded)
    return m


def relative_features(tok: ObjectTokenizer) -> dict[str, bool]:
    kinds = {f.name: f.kind for f in tok.object_config.features}
    units = {f.name: f.unit for f in tok.object_config.features}
    return {
        t.name: is_relative(kinds[t.name], units.get(t.name, ""), t.stats.get("min", 0.0))
        for t in tok.preprocessor.transforms
    }


def tokenizer_metrics(
    tok: ObjectTokenizer, values: np.ndarray, mask: np.ndarray | None = None, return_arrays: bool = False
):
    """Codebook health and per-feature fidelity of ``tok`` on objects ``values``.

    Args:
        values: ``(N, F)`` real objects, or ``(B, M, F)`` with ``mask``.
        return_arrays: also return ``(original, decoded, codes)`` of the real objects.
    """
    codes = tok.encode(values, mask)
    if mask is not None:
        codes, values = codes[mask], values[mask]
    decoded = tok.decode(codes)
    rel = relative_features(tok)
    # metrics follow the feature's kind in the config (also for the raw-feature baseline)
    feats = {
        f.name: feature_metrics(f.kind, rel[f.name], values[:, j].astype(np.float64), decoded[:, j])
        for j, f in enumerate(tok.object_config.features)
    }
    metrics = {
        "object": tok.object,
        "n_objects": len(values),
        "levels": code_usage(codes, tok.codebook_sizes),
        "features": feats,
    }
    return (metrics, (values, decoded, codes)) if return_arrays else metrics


def binned_resolution(tok: ObjectTokenizer, original: np.ndarray, decoded: np.ndarray, n_bins: int = 8) -> dict:
    """Resolution of pT, η and φ in quantile bins of the true pT (for pT-carrying objects)."""
    names = tok.feature_names
    if "pt" not in names:
        return {}
    pt = original[:, names.index("pt")]
    edges = np.unique(np.quantile(pt, np.linspace(0, 1, n_bins + 1)))
    rel = relative_features(tok)
    kinds = {f.name: f.kind for f in tok.object_config.features}
    out = {}
    for name in ("pt", "eta", "phi"):
        if name not in names:
            continue
        j = names.index(name)
        r, relative = residuals(kinds[name], rel[name], original[:, j], decoded[:, j])
        res = []
        for lo, hi in itertools.pairwise(edges):
            sel = (pt >= lo) & (pt <= hi)
            q25, q75 = np.percentile(r[sel], [25, 75]) if sel.any() else (np.nan, np.nan)
            res.append(float((q75 - q25) / 1.349))
        out[name] = {"edges": edges.tolist(), "resolution": res, "relative": relative}
    return out


def diagnose(
    tokenizer,
    data,
    out_dir,
    val_every: int = 20,
    max_objects: int = 200_000,
    plots: bool = True,
    chunk_size: int = 50_000,
) -> dict:
    """Diagnostics of a tokenizer on held-out events of ``data``; writes JSON and PNGs to ``out_dir``.

    Held-out events are those ``fit-tokenizer`` never trained on (every ``val_every``-th
    event of each file); pass ``val_every=1`` for data the tokenizer has never seen.
    """
    import json
    from pathlib import Path

    from .grouped_tokenizer import load_object_tokenizer
    from .io.reader import EventReader
    from .training.tokenizer import held_out

    # a tokenizer (flat or grouped), or its directory
    tok = load_object_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vals, n = [], 0
    for b in EventReader(data, selection=[tok.object_config], scalars=(), chunk_size=chunk_size):
        c = b.collections[tok.object]
        sel = c.mask & held_out(b.event_index, val_every)[:, None]
        vals.append(c.values[sel])
        n += int(sel.sum())
        if n >= max_objects:
            break
    values = np.concatenate(vals)[:max_objects]
    if len(values) == 0:
        raise ValueError(f"no held-out {tok.object} objects in {data!r} (val_every={val_every})")
    metrics, (orig, dec, codes) = tokenizer_metrics(tok, values, return_arrays=True)
    metrics["resolution_vs_pt"] = binned_resolution(tok, orig, dec)
    metrics["tokenizer"] = tok.describe()
    (out / "diagnostics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if plots:
        from . import plots as P

        names = tok.feature_names
        kinds = [f.kind for f in tok.object_config.features]
        rel = relative_features(tok)
        title = tok.object
        files = [
            P.codebook_usage(codes, tok.codebook_sizes, title, out / "codebook_usage.png"),
            P.feature_histograms(names, kinds, orig, dec, title, out / "features.png"),
            P.residual_histograms(names, kinds, [rel[k] for k in names], orig, dec, title, out / "residuals.png"),
            P.correlations(names, orig, dec, title, out / "correlation.png"),
        ]
        if metrics["resolution_vs_pt"]:
            files.append(P.resolution_vs_pt(metrics["resolution_vs_pt"], title, out / "resolution_vs_pt.png"))
        metrics["plots"] = [str(f.name) for f in files]
        (out / "diagnostics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
