"""The demo pipeline end to end at a tiny scale: every stage runs and the report holds sane values."""

import json
import math

import numpy as np
import pytest

from hep_event_models.cli import main
from hep_event_models.demo import DemoSettings, run_demo

TINY = dict(
    tokenizer_settings={
        "quantizer": "rfsq",
        "fsq_levels": [4, 4, 4],
        "num_quantizers": 2,
        "hidden_dim": 32,
        "decoder_hidden_dim": 64,
    },
    tokenizer_steps=25,
    tokenizer_batch=1024,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    max_length=96,
    pretrain_steps=15,
    finetune_steps=8,
    inclusive_steps=8,
    batch_size=32,
    label_budgets=(200, 400, 800),
    diagnose_objects=2000,
    mass_check_events=1000,
)


def test_settings_scale():
    s1, s4 = DemoSettings.from_scale(1.0), DemoSettings.from_scale(4.0)
    assert s4.train_events == 4 * s1.train_events and s4.pretrain_steps == 4 * s1.pretrain_steps
    assert s1.inclusive_steps == 500 and s4.inclusive_steps == 4 * s1.inclusive_steps
    assert s1.label_budgets[0] == 1000 and len(s1.label_budgets) >= 3
    with pytest.raises(ValueError, match="unknown demo setting"):
        DemoSettings.from_scale(1.0, nonsense=1)
    with pytest.raises(ValueError, match="positive"):
        DemoSettings.from_scale(0.0)


def test_tiny_demo_end_to_end(tmp_path, event_config):
    """Four object types (the session's small event config), tiny sizes: about a minute."""
    out = tmp_path / "demo"
    r = run_demo(out, scale=0.06, seed=1, config=event_config, progress=False, **TINY)
    # the files a reader opens
    for f in ("report.md", "report.html", "results.json", "demo_state.json"):
        assert (out / f).stat().st_size > 500, f
    saved = json.loads((out / "results.json").read_text())
    assert saved["headline"]["auc"] == r["headline"]["auc"]
    md = (out / "report.md").read_text()
    for p in r["report"]["plots"]:
        assert (out / p).read_bytes()[:4] == b"\x89PNG"
    for link in ("plots/codebook_usage.png", "plots/mass_hzz4l.png", "plots/label_efficiency.png", "roc.png"):
        assert link in md
    assert md.count("data:image") == 0 and (out / "report.html").read_text().count("data:image/png;base64") >= 8
    # sane values: AUCs in [0, 1], usage fractions, masses near their peaks before tokenization
    for c in r["label_efficiency"]:
        for k in ("scratch_auc", "pretrained_auc", "gbdt_auc", "gbdt_decoded_auc", "counts_auc"):
            assert 0.0 <= c[k] <= 1.0
    assert [c["labelled_events"] for c in r["label_efficiency"]] == [200, 400, 800]
    assert 0.5 < r["inclusive"]["evaluation"]["gbdt_auc"] <= 1.0
    assert set(r["inclusive"]["evaluation"]["per_background"]) == {"all", "zz4l", "ttbar", "dy"}
    # seed 003's protocol: model and baselines trained against zz4l only, tested against all
    assert set(r["inclusive"]["finetune"]["train_events_per_process"]) == {"hzz4l", "zz4l"}
    assert r["inclusive"]["evaluation"]["train_backgrounds"] == ["zz4l"]
    first = r["label_efficiency"][0]["finetune"]
    for ft in (first["scratch"], first["pretrained"]):
        assert set(ft["train_events_per_process"]) == {"hzz4l", "zz4l"}
        # 10% of the 200 labelled events (stratified) are the validation split that picks the best checkpoint
        assert sum(ft["train_events_per_process"].values()) == 180
        assert 0.0 <= ft["eval_auc"] <= 1.0
        assert not list((out / "models" / "headline_scratch_200").glob("checkpoint-*"))
    for d in r["diagnostics"].values():
        assert all(0.0 < lv["used_fraction"] <= 1.0 for lv in d["levels"])
    hz = r["physics_after_decode"]["hzz4l"]
    assert abs(hz["original"]["median"] - 125.0) < 1.5 and 0.5 < hz["original"]["width"] < 4.0
    assert abs(r["physics_after_decode"]["dy"]["original"]["median"] - 91.0) < 1.5
    assert r["pretrain"]["tokens_per_second"] > 0 and math.isfinite(r["pretrain"]["loss_last"])
    ctx = r["pretrain"]["metrics"]["masked_token_context"]  # the backbone against the code frequencies
    assert ctx["masked_tokens"] > 0 and math.isfinite(ctx["context_gain_nats"])
    assert f"{ctx['context_gain_nats']:+.3f} nats/token" in md and "context gain" in md
    assert r["tokenized"]["headline"]["selection"].startswith("four leptons")
    assert 0 < r["tokenized"]["headline"]["events"] < r["tokenized"]["all"]["events"]
    # a rerun skips every finished stage and gives the same numbers
    r2 = run_demo(out, scale=0.06, seed=1, config=event_config, progress=False, **TINY)
    assert r2["headline"]["auc"] == r["headline"]["auc"] and r2["this_invocation_seconds"] < 30
    # other settings in the same directory are refused
    with pytest.raises(ValueError, match="other settings"):
        run_demo(out, scale=0.06, seed=2, config=event_config, progress=False, **TINY)


def test_demo_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--scale" in capsys.readouterr().out


def test_cli_demo_passes_the_tokenizer_quantizer(monkeypatch, tmp_path):
    """`demo --tokenizer-quantizer rvq` runs the shipped ResidualVQ; the default keeps the FSQ settings."""
    import hep_event_models.demo as demo_mod
    from hep_event_models import cli

    seen = []

    class Stop(Exception):
        pass

    def fake(out, **kw):
        seen.append(kw)
        raise Stop

    monkeypatch.setattr(demo_mod, "run_demo", fake)
    runs = (
        [],
        ["--tokenizer-quantizer", "rvq"],
        ["--label-seeds", "3", "--classifier-pooling", "mean", "--pretrain-steps", "3000"],
    )
    for extra in runs:
        with pytest.raises(Stop):
            cli.main(["demo", "--out", str(tmp_path), "--quiet", *extra])
    assert "tokenizer_settings" not in seen[0] and seen[0]["progress"] is False
    assert seen[0]["label_seeds"] == 1 and seen[0]["classifier_pooling"] == "cls"
    assert "pretrain_steps" not in seen[0]  # the scale decides (300 at scale 1)
    assert seen[1]["tokenizer_settings"] == {"quantizer": "rvq"}
    assert seen[2]["label_seeds"] == 3 and seen[2]["classifier_pooling"] == "mean"
    assert seen[2]["pretrain_steps"] == 3000
    assert DemoSettings().tokenizer_settings == {
        "quantizer": "rfsq",
        "fsq_levels": [8, 8, 8, 8],
        "linear_skip": True,
        "linear_angles": True,
        "num_layers": 2,
        "decoder_layers": 3,
    }


def test_label_budget_repeats_seeds_and_pairs_the_differences(monkeypatch, tmp_path):
    """label_seeds=3: three scratch/pretrained pairs (seeds 5, 6, 7), means, the paired gain and
    its standard error; stages are recorded per seed and reused on a rerun."""
    import hep_event_models.demo as demo_mod

    calls = []
    auc = {("scratch", 5): 0.60, ("pretrained", 5): 0.63, ("scratch", 6): 0.70, ("pretrained", 6): 0.71}
    auc |= {("scratch", 7): 0.65, ("pretrained", 7): 0.67}

    def fake_finetune(out, s, name, data, backgrounds, budget, pretrained, progress):
        calls.append((name, s.seed, pretrained, budget))
        return {"eval_auc": 0.5}

    def fake_evaluate(out, s, model, headline, gbdt_events, progress):
        kind = "pretrained" if "pretrained" in model else "scratch"
        return {"auc": auc[kind, s.seed], "gbdt_auc": 0.5 + s.seed / 100, "gbdt_decoded_auc": 0.5, "counts_auc": 0.5}

    monkeypatch.setattr(demo_mod, "_finetune_one", fake_finetune)
    monkeypatch.setattr(demo_mod, "_evaluate_one", fake_evaluate)
    monkeypatch.setattr(demo_mod, "_strip_roc", lambda r: r)
    with pytest.raises(ValueError, match="label_seeds"):
        DemoSettings.from_scale(1.0, label_seeds=0)
    s = DemoSettings.from_scale(1.0, seed=5, label_seeds=3)
    st = demo_mod._Stages(tmp_path, s, False, "event")
    row = demo_mod._label_budget(tmp_path, s, st, 1000, False)
    assert [c[:3] for c in calls] == [
        ("headline_scratch_1000", 5, False),
        ("headline_pretrained_1000", 5, True),
        ("headline_scratch_1000_seed6", 6, False),
        ("headline_pretrained_1000_seed6", 6, True),
        ("headline_scratch_1000_seed7", 7, False),
        ("headline_pretrained_1000_seed7", 7, True),
    ]
    assert row["seeds"] == [5, 6, 7] and row["scratch_aucs"] == [0.60, 0.70, 0.65]
    assert row["pretrained_auc"] == pytest.approx((0.63 + 0.71 + 0.67) / 3)
    gains = np.array([0.03, 0.01, 0.02])
    assert row["gain"] == pytest.approx(gains.mean())
    assert row["gain_se"] == pytest.approx(gains.std(ddof=1) / np.sqrt(3))
    assert row["gbdt_auc"] == pytest.approx(0.56)  # the mean over the seeds' GBDTs
    assert row["pretrained_eval"]["auc"] == 0.63  # the first seed's full evaluation
    # a rerun reuses every recorded stage
    row2 = demo_mod._label_budget(tmp_path, s, demo_mod._Stages(tmp_path, s, False, "event"), 1000, False)
    assert len(calls) == 6 and row2["gain"] == pytest.approx(row["gain"])
