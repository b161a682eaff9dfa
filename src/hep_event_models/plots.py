"""Diagnostic plots (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .diagnostics import residuals


def _grid(n: int, size: float = 3.0):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * 0.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def codebook_usage(codes: np.ndarray, sizes: list[int], title: str, path: Path) -> Path:
    """Token frequency per level, codes sorted by frequency (log scale)."""
    fig, axes = _grid(len(sizes), 3.4)
    for q, (ax, size) in enumerate(zip(axes, sizes, strict=False)):
        counts = np.sort(np.bincount(codes[:, q], minlength=size))[::-1]
        ax.semilogy(np.arange(size), np.maximum(counts, 0.5), lw=1)
        used = int((counts > 0).sum())
        ax.set_title(f"{title} q{q}: {used}/{size} used", fontsize=9)
        ax.set_xlabel("code rank")
        ax.set_ylabel("objects")
    return _save(fig, path)


def feature_histograms(names, kinds, original, decoded, title: str, path: Path) -> Path:
    """Original vs reconstructed distribution of every feature."""
    fig, axes = _grid(len(names))
    for j, ax in enumerate(axes):
        if j >= len(names):
            break
        o, d = original[:, j], decoded[:, j]
        lo, hi = np.percentile(np.concatenate([o, d]), [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 60)
        ax.hist(o, bins=bins, histtype="step", label="original", lw=1.2)
        ax.hist(d, bins=bins, histtype="step", label="decoded", lw=1.2, ls="--")
        ax.set_title(f"{names[j]} ({kinds[j]})", fontsize=9)
        ax.set_yscale("log")
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def residual_histograms(names, kinds, relative, original, decoded, title: str, path: Path) -> Path:
    fig, axes = _grid(len(names))
    for j, ax in enumerate(axes):
        if j >= len(names):
            break
        r, rel = residuals(kinds[j], relative[j], original[:, j], decoded[:, j])
        lo, hi = np.percentile(r, [1, 99])
        span = max(abs(lo), abs(hi), 1e-6)
        ax.hist(r, bins=np.linspace(-span, span, 61), histtype="stepfilled", alpha=0.7)
        ax.set_title(f"{names[j]}: {'(dec-orig)/orig' if rel else 'dec-orig'}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def correlations(names, original, decoded, title: str, path: Path) -> Path:
    fig, axes = _grid(len(names))
    for j, ax in enumerate(axes):
        if j >= len(names):
            break
        o, d = original[:, j], decoded[:, j]
        lo, hi = np.percentile(o, [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        ax.hist2d(o, d, bins=50, range=[[lo, hi], [lo, hi]], cmin=1, norm=matplotlib.colors.LogNorm())
        ax.plot([lo, hi], [lo, hi], "r-", lw=0.5)
        ax.set_title(names[j], fontsize=9)
        ax.set_xlabel("original", fontsize=8)
        ax.set_ylabel("decoded", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def resolution_vs_pt(binned: dict, title: str, path: Path) -> Path:
    """Binned resolution (IQR/1.349 of the residual) of pT, η, φ versus true pT."""
    fig, axes = _grid(len(binned), 3.4)
    for ax, (name, b) in zip(axes, binned.items(), strict=False):
        centres = 0.5 * (np.asarray(b["edges"][1:]) + np.asarray(b["edges"][:-1]))
        ax.plot(centres, b["resolution"], "o-", ms=3)
        ax.set_xscale("log")
        ax.set_xlabel("true pT [GeV]")
        ax.set_ylabel(f"{name} resolution" + (" (relative)" if b["relative"] else ""))
        ax.set_title(f"{title}: {name}", fontsize=9)
    return _save(fig, path)
