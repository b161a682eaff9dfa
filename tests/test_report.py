"""Report rendering (Markdown and self-contained HTML) and the demo's summary plots."""

import base64
import re

import numpy as np
import pytest

from hep_event_models.report import (
    Report,
    plot_codebook_usage,
    plot_label_efficiency,
    plot_mass_closure,
    plot_timings,
)


def test_report_markdown_and_html_from_the_same_blocks(tmp_path):
    png = plot_timings({"generate": 3.0, "fit": 12.5}, tmp_path / "t.png")
    rep = Report("Title <&>", tmp_path)
    rep.heading("Numbers")
    rep.paragraph("AUC of the **token model** with `gbdt` beside it")
    rep.table(["name", "value"], [["a", 0.123456], ["b", None], ["c", float("inf")]])
    rep.figure(png, "wall time")
    md_path, html_path = rep.write()
    md = md_path.read_text()
    assert md.startswith("# Title <&>\n") and "## Numbers" in md
    assert "| name | value |\n|---|---:|\n| a | 0.1235 |\n| b | – |\n| c | ∞ |" in md
    assert "![wall time](t.png)" in md
    html = html_path.read_text()
    assert "<h1>Title &lt;&amp;&gt;</h1>" in html and "<b>token model</b>" in html and "<code>gbdt</code>" in html
    # the figure is embedded, byte for byte: the HTML file stands alone
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(data) == png.read_bytes()
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(FileNotFoundError):
        rep.figure(tmp_path / "missing.png", "x")


def test_summary_plots_are_written(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.normal(125, 2, 1000)
    paths = [
        plot_codebook_usage({"jets": [0.95, 0.99], "muons": [0.9, 0.97, 0.98]}, tmp_path / "u.png"),
        plot_mass_closure(m, m + rng.normal(0, 0.2, 1000), np.linspace(100, 150, 51), "m", "t", tmp_path / "m.png"),
        plot_label_efficiency(
            [
                {"labelled_events": n, "pretrained_auc": a, "scratch_auc": a - 0.05, "gbdt_auc": 0.7}
                for n, a in ((1000, 0.6), (3000, 0.65), (10000, 0.7))
            ],
            tmp_path / "l.png",
        ),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
