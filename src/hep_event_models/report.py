"""Reports a physicist reads: Markdown and self-contained HTML from one document, plus the
summary plots of the demo (``hep-event-models demo``).

A ``Report`` is a list of blocks (headings, paragraphs, tables, figures). ``write`` renders
it twice from the same blocks: ``report.md`` links the PNG files next to it, ``report.html``
embeds them (base64), so the HTML file can be mailed or attached to a logbook on its own.
Numbers behind every figure live in the run's ``results.json``; the report only shows them.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Report:
    """An ordered list of blocks rendered to Markdown and HTML.

    Args:
        title: the document title.
        root: directory the report is written to; figure paths are stored relative to it.
    """

    title: str
    root: Path
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: list[str], rows: list[list], align: str | None = None) -> None:
        """``align``: one character per column, ``l`` or ``r`` (default: text left, numbers right)."""
        rows = [[_cell(v) for v in r] for r in rows]
        if align is None:
            align = "".join("r" if rows and _is_number(rows[0][i]) else "l" for i in range(len(header)))
        self.blocks.append(("table", list(header), rows, align))

    def figure(self, path: str | Path, caption: str) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"figure {path} does not exist")
        self.blocks.append(("figure", path, caption))

    # -- rendering ---------------------------------------------------------------------------
    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "heading":
                out += [f"{'#' * b[1]} {b[2]}", ""]
            elif kind == "paragraph":
                out += [b[1], ""]
            elif kind == "bullets":
                out += [f"- {x}" for x in b[1]] + [""]
            elif kind == "table":
                _, header, rows, align = b
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                rel = os.path.relpath(b[1], self.root)
                out += [f"![{b[2]}]({rel})", "", f"*{b[2]}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "heading":
                body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
            elif kind == "table":
                _, header, rows, align = b
                th = "".join(f"<th>{_inline(h)}</th>" for h in header)
                trs = "".join(
                    "<tr>"
                    + "".join(
                        f'<td style="text-align:{"right" if a == "r" else "left"}">{_inline(c)}</td>'
                        for c, a in zip(r, align, strict=True)
                    )
                    + "</tr>"
                    for r in rows
                )
                body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "figure":
                data = base64.b64encode(Path(b[1]).read_bytes()).decode()
                cap = html.escape(b[2])
                img = f'<img alt="{cap}" src="data:image/png;base64,{data}">'
                body.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
            "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555;font-size:90%}"
            "code{background:#f5f5f5;padding:0 3px}"
        )
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )

    def write(self, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<root>/<stem>.md`` and ``<root>/<stem>.html`` atomically; returns both paths."""
        paths = []
        for suffix, text in ((".md", self.to_markdown()), (".html", self.to_html())):
            path = self.root / f"{stem}{suffix}"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            paths.append(path)
        return paths[0], paths[1]


def _is_number(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace("×", "").replace("±", "").strip()
    try:
        float(t.split()[0])
        return True
    except (ValueError, IndexError):
        return False


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "∞" if v > 0 else "–"
        return f"{v:.4g}"
    return str(v)


def _inline(text: str) -> str:
    """Escape text and render Markdown's ``code`` and **bold** spans."""
    import re

    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


# -- summary plots ------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    _plt().close(fig)
    tmp.replace(path)
    return path


def plot_codebook_usage(usage: dict[str, list[float]], path: Path, target: float = 0.9) -> Path:
    """Grouped bars: used fraction of every quantizer level, per object type (held-out data)."""
    plt = _plt()
    names = list(usage)
    n_lv = max(len(v) for v in usage.values())
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 3.6))
    width = 0.8 / n_lv
    x = np.arange(len(names))
    for q in range(n_lv):
        vals = [usage[n][q] if q < len(usage[n]) else np.nan for n in names]
        ax.bar(x + (q - (n_lv - 1) / 2) * width, vals, width, label=f"level {q}")
    ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.0%}")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of codebook used")
    ax.set_title("Codebook usage per quantizer level (held-out events)")
    ax.legend(fontsize=8, ncol=min(5, n_lv + 1), loc="lower right")
    return _save(fig, path)


def plot_mass_closure(
    original: np.ndarray, decoded: np.ndarray, bins: np.ndarray, xlabel: str, title: str, path: Path
) -> Path:
    """Left: the mass distribution before and after tokenize → decode; right: per-event residuals."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.hist(original, bins=bins, histtype="step", lw=1.6, label="original")
    a.hist(decoded, bins=bins, histtype="step", lw=1.2, ls="--", label="tokenize → decode")
    a.set_xlabel(xlabel)
    a.set_ylabel("events")
    a.set_title(title)
    a.legend(fontsize=8)
    n = min(len(original), len(decoded))
    d = decoded[:n] - original[:n]
    lim = max(1e-3, float(np.percentile(np.abs(d), 99))) if n else 1.0
    b.hist(np.clip(d, -lim, lim), bins=80, color="C2")
    b.set_xlabel("decoded − original [GeV]")
    b.set_ylabel("events")
    b.set_title("per-event residual")
    return _save(fig, path)


def plot_label_efficiency(curve: list[dict], path: Path) -> Path:
    """Test AUC against the number of labelled training events: pretrained, scratch, GBDT."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = [c["labelled_events"] for c in curve]
    for key, label, style in (
        ("pretrained_auc", "fine-tuned from pretrained", "o-"),
        ("scratch_auc", "from scratch", "s--"),
        ("gbdt_auc", "GBDT, continuous features", "^:"),
        ("counts_auc", "counts only", "x:"),
    ):
        vals = [c.get(key) for c in curve]
        if any(v is not None for v in vals):
            ax.plot(n, vals, style, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training events")
    ax.set_ylabel("test ROC AUC")
    ax.set_title("Label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_timings(timings: dict[str, float], path: Path) -> Path:
    """Wall time per stage (horizontal bars)."""
    plt = _plt()
    names = list(timings)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(names[::-1], [timings[k] for k in names][::-1], color="C0")
    ax.set_xlabel("seconds")
    ax.set_title("Wall time per stage")
    for i, k in enumerate(names[::-1]):
        ax.text(timings[k], i, f" {timings[k]:.0f} s", va="center", fontsize=8)
    ax.set_xlim(0, max(timings.values()) * 1.2 if timings else 1)
    return _save(fig, path)
