import json

import numpy as np
import pytest
import torch

from hep_event_models import schema
from hep_event_models.config import load_object_config
from hep_event_models.io import EventBatch, EventReader
from hep_event_models.object_tokenizer import ObjectTokenizer, ObjectTokenizerSettings
from hep_event_models.preprocessing import ANGLE_SCALE, ObjectPreprocessor

SMALL = {
    "quantizer": "rvq",
    "codebook_size": 128,
    "num_quantizers": 3,
    "hidden_dim": 64,
    "num_layers": 2,
    "decoder_hidden_dim": 64,
}


def _jets(samples, n_events=4000):
    cfg = load_object_config("jets")
    b = EventBatch.concat(
        list(EventReader(samples["ttbar"], selection=[cfg], chunk_size=n_events, max_events=n_events))
    )
    return cfg, b.collections["jets"]


def _tokenizer(cfg, coll, settings, steps=15):
    torch.manual_seed(0)
    pre = ObjectPreprocessor(cfg, raw=settings.get("raw_features", False))
    pre.partial_fit(coll.values[coll.mask])
    tok = ObjectTokenizer.from_fitted(cfg, pre.finalize(), settings)
    opt = torch.optim.Adam(tok.parameters(), 1e-3)
    x, m, tg = tok.prepare(coll.values, coll.mask)
    for _ in range(steps):  # a few steps: k-means init, EMA and dead-code expiry move the codebooks
        tok.train()
        loss = tok(x, m, tg)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tok.eval()


def _assert_same_codes(tok, real, fast, ref):
    """Codes agree; where not, both choices are equally near (a float-precision tie)."""
    same = (fast == ref).all(axis=1)
    if same.all():
        return
    with torch.no_grad():
        z = tok.quantizer.project_in(tok.encoder(torch.from_numpy(tok.preprocessor.forward(real[~same]))))
    cbs = [cb.numpy() for cb in tok._codebooks()]
    for row, (zf, a, b) in enumerate(zip(z.numpy(), fast[~same], ref[~same], strict=True)):
        residual = zf.astype(np.float64)
        for level, cb in enumerate(cbs):
            if a[level] != b[level]:
                da = np.sum((residual - cb[a[level]]) ** 2)
                db = np.sum((residual - cb[b[level]]) ** 2)
                assert abs(da - db) <= 1e-5 * max(da, db, 1e-12), (row, level, da, db)
                break
            residual = residual - cb[a[level]]
    assert same.mean() > 0.999


@pytest.mark.parametrize("cosine", [False, True])
def test_fast_encoding_returns_the_library_codes(samples, cosine):
    cfg, coll = _jets(samples)
    tok = _tokenizer(cfg, coll, {**SMALL, "use_cosine_sim": cosine})
    real = coll.values[coll.mask]
    ref = tok.encode(real, backend="library")
    assert ref.shape == (len(real), 3) and ref.min() >= 0 and ref.max() < 128
    _assert_same_codes(tok, real, tok.encode(real, backend="faiss"), ref)
    _assert_same_codes(tok, real, tok.encode(real, backend="torch"), ref)


FSQ_CASES = {
    "8x4_q4_skip": {"quantizer": "rfsq", "fsq_levels": [8, 8, 8, 8], "num_quantizers": 4, "linear_skip": True},
    "5x3_q3": {"quantizer": "rfsq", "fsq_levels": [5, 5, 3], "num_quantizers": 3, "linear_skip": False},
    "4x6_q2_projected": {"quantizer": "rfsq", "fsq_levels": [4] * 6, "num_quantizers": 2, "latent_dim": 9},
}


@pytest.mark.parametrize("case", list(FSQ_CASES))
def test_fast_fsq_encoding_equals_the_library_codes(samples, case):
    """The fused FSQ rounding gives ResidualFSQ's own codes bit for bit, also on bin edges."""
    cfg, coll = _jets(samples, 2000)
    settings = {**FSQ_CASES[case], "hidden_dim": 32, "uniformity_weight": 1.0}
    tok = _tokenizer(cfg, coll, settings, steps=10)
    real = coll.values[coll.mask]
    ref = tok.encode(real, backend="library")
    size = int(np.prod(settings["fsq_levels"]))
    assert tok.codebook_sizes == [size] * settings["num_quantizers"]
    assert ref.shape == (len(real), settings["num_quantizers"]) and 0 <= ref.min() and ref.max() < size
    for backend in ("auto", "fsq", "faiss", "torch"):  # every fast backend is the fused rounding for FSQ
        np.testing.assert_array_equal(tok.encode(real, backend=backend), ref)
    # latents spanning the clamp range, and latents exactly on rounding edges of every level
    d = tok.quantizer.layers[0].codebook_dim
    torch.manual_seed(1)
    z = torch.randn(20_000, tok.quantizer.project_in.in_features if tok.quantizer.has_projections else d) * 2
    lv = np.asarray(settings["fsq_levels"], dtype=np.float32)
    edges = torch.from_numpy(((np.arange(2 * lv.max() + 1) - lv.max()) / (lv.max() - 1)).astype(np.float32))
    with torch.no_grad():
        if not tok.quantizer.has_projections:
            z = torch.cat([z, edges[:, None].expand(-1, d).contiguous()])
        np.testing.assert_array_equal(tok._fsq_codes(z).numpy(), tok.quantizer(z[None])[1][0].numpy())
    # decoding goes through the library's get_output_from_indices
    assert tok.decode(ref).shape == real.shape


@pytest.mark.parametrize("quantizer", ["rvq", "rfsq"])
def test_padded_encode_and_decode(samples, quantizer):
    cfg, coll = _jets(samples, 1000)
    settings = SMALL if quantizer == "rvq" else {**SMALL, **FSQ_CASES["5x3_q3"]}
    tok = _tokenizer(cfg, coll, settings, steps=3)
    codes = tok.encode(coll.values, coll.mask)
    assert codes.shape == (*coll.mask.shape, 3)
    assert (codes[~coll.mask] == -1).all() and (codes[coll.mask] >= 0).all()
    np.testing.assert_array_equal(codes[coll.mask], tok.encode(coll.values[coll.mask]))
    dec = tok.decode(codes)
    assert dec.shape == coll.values.shape
    assert (dec[~coll.mask] == 0).all()
    # decoded values respect their kinds: integers, probabilities, angles
    real = dec[coll.mask]
    names = tok.feature_names
    assert np.array_equal(real[:, names.index("n_trk")], np.rint(real[:, names.index("n_trk")]))
    gn2 = real[:, names.index("GN2_pb")]
    assert gn2.min() >= 0 and gn2.max() <= 1
    assert np.abs(real[:, names.index("phi")]).max() <= np.pi


def test_transformer_encoder_and_fsq_option(samples):
    cfg, coll = _jets(samples, 500)
    for settings in (
        {**SMALL, "encoder": "transformer", "num_layers": 1},
        {"quantizer": "rfsq", "fsq_levels": [4, 4, 4], "num_quantizers": 2, "hidden_dim": 32},
    ):
        tok = _tokenizer(cfg, coll, settings, steps=2)
        codes = tok.encode(coll.values, coll.mask)
        assert codes.shape[-1] == tok.num_quantizers
        assert (codes[coll.mask] >= 0).all() and (codes[coll.mask] < tok.codebook_sizes[0]).all()
        assert tok.decode(codes).shape == coll.values.shape
    if True:  # the transformer sees the whole event: padding must not change real objects' codes
        tok = _tokenizer(cfg, coll, {**SMALL, "encoder": "transformer", "num_layers": 1}, steps=2)
        padded = np.concatenate([coll.values, np.zeros((len(coll.values), 3, coll.values.shape[2]), np.float32)], 1)
        pmask = np.concatenate([coll.mask, np.zeros((len(coll.mask), 3), bool)], 1)
        np.testing.assert_array_equal(tok.encode(padded, pmask)[pmask], tok.encode(coll.values, coll.mask)[coll.mask])


@pytest.mark.parametrize("quantizer", ["rvq", "rfsq"])
def test_save_load_round_trip(samples, tmp_path, quantizer):
    cfg, coll = _jets(samples, 1000)
    settings = SMALL if quantizer == "rvq" else {**SMALL, **FSQ_CASES["8x4_q4_skip"]}
    tok = _tokenizer(cfg, coll, settings, steps=5)
    tok.save_pretrained(tmp_path / "tok")
    saved = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert saved["object_config"]["object"] == "jets" and saved["settings"]["quantizer"] == quantizer
    assert tok.codebook_sizes == ([128] * 3 if quantizer == "rvq" else [4096] * 4)
    assert (tmp_path / "tok" / "model.safetensors").exists()
    tok2 = ObjectTokenizer.from_pretrained(tmp_path / "tok")
    sd1, sd2 = tok.state_dict(), tok2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    real = coll.values[coll.mask]
    codes = tok.encode(real)
    np.testing.assert_array_equal(tok2.encode(real), codes)
    np.testing.assert_array_equal(tok2.decode(codes), tok.decode(codes))


def test_bad_settings_and_versions(samples, tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer settings"):
        ObjectTokenizerSettings.from_dict({"codebook_sise": 12})
    with pytest.raises(ValueError, match="encoder must be"):
        ObjectTokenizerSettings.from_dict({"encoder": "cnn"})
    cfg, coll = _jets(samples, 300)
    tok = _tokenizer(cfg, coll, SMALL, steps=1)
    tok.save_pretrained(tmp_path / "tok")
    c = json.loads((tmp_path / "tok" / "config.json").read_text())
    c["format_version"] = 99
    (tmp_path / "tok" / "config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="format_version 99 is not supported"):
        ObjectTokenizer.from_pretrained(tmp_path / "tok")
    assert schema.LOG_STANDARD in tok.describe()["features"].values()


def test_seed_style_baseline_option(samples):
    """raw_features + L1 reproduces the seeds' first setup: no preprocessing, continuous outputs."""
    cfg, coll = _jets(samples, 500)
    tok = _tokenizer(
        cfg,
        coll,
        {**SMALL, "raw_features": True, "loss": "l1", "kmeans_init": False, "threshold_ema_dead_code": 0.0},
        steps=2,
    )
    assert {t.kind for t in tok.preprocessor.transforms} == {"raw"}
    real = coll.values[coll.mask]
    np.testing.assert_array_equal(tok.preprocessor.forward(real)[:, 0], real[:, 0].astype(np.float32))
    dec = tok.decode(tok.encode(real))
    assert dec.shape == real.shape and np.isfinite(dec).all()
    with pytest.raises(ValueError, match="loss must be"):
        ObjectTokenizerSettings.from_dict({"loss": "l3"})


def test_goal_loss_weights(samples):
    cfg, coll = _jets(samples, 2000)
    pre = ObjectPreprocessor(cfg)
    pre.partial_fit(coll.values[coll.mask])
    pre.finalize()
    goal = ObjectTokenizer.from_fitted(cfg, pre, {**SMALL, "goal_power": 1.0}).loss_weights
    assert np.isclose(np.mean(list(goal.values())), 1.0)
    # weight ∝ 1/goal² in model space: η at 0.005 absolute, φ at 0.005 rad on the φ / s output
    eta_std = pre.transforms[cfg.feature_names.index("eta")].stats["std"]
    assert np.isclose(goal["eta"] / goal["phi"], (eta_std / 0.005) ** 2 / (ANGLE_SCALE / 0.005) ** 2, rtol=1e-6)
    assert goal["eta"] > goal["QG_tracksWidth"]
    # regressed integers (the default): goal 0.15 in their own units
    ntrk_std = pre.transforms[cfg.feature_names.index("n_trk")].stats["std"]
    assert np.isclose(goal["n_trk"] / goal["eta"], (ntrk_std / 0.15) ** 2 / (eta_std / 0.005) ** 2, rtol=1e-6)
    classes = ObjectPreprocessor(cfg, regress_integers=False)
    classes.partial_fit(coll.values[coll.mask])
    w = ObjectTokenizer.from_fitted(cfg, classes.finalize(), {**SMALL, "goal_power": 1.0}).loss_weights
    assert w["n_trk"] == w["QG_nTracks"]  # classes: one discrete_weight
    assert np.isclose(w["n_trk"] / w["eta"], 300.0 / (eta_std / 0.005) ** 2, rtol=1e-6)
    sqrt = ObjectTokenizer.from_fitted(cfg, pre, SMALL).loss_weights
    assert np.isclose(sqrt["eta"] / sqrt["phi"], np.sqrt(goal["eta"] / goal["phi"]), rtol=1e-6)
    uniform = ObjectTokenizer.from_fitted(cfg, pre, {**SMALL, "loss_weighting": "uniform"}).loss_weights
    assert set(uniform.values()) == {1.0}
    boosted = ObjectTokenizer.from_fitted(cfg, pre, {**SMALL, "loss_weights": {"pt": 3.0}}).loss_weights
    assert np.isclose(boosted["pt"], 3.0 * sqrt["pt"])
    with pytest.raises(ValueError, match="loss_weighting"):
        ObjectTokenizerSettings.from_dict({"loss_weighting": "magic"})
    from hep_event_models.config import ObjectConfig

    with pytest.raises(ValueError, match="goal"):
        ObjectConfig.from_dict({"object": "jets", "features": [{"name": "pt", "kind": "log_standard", "goal": -1}]})


def test_event_tokenizer_mixes_rvq_and_fsq_objects(samples):
    """FSQ tokenizers plug into the EventTokenizer: id blocks from codebook_sizes, decode exact."""
    from hep_event_models.event_tokenizer import EventTokenizer

    cfg_mu, cfg_j = load_object_config("muons"), load_object_config("jets")
    reader = EventReader(samples["ttbar"], selection=[cfg_mu, cfg_j], chunk_size=400, max_events=400)
    events = EventBatch.concat(list(reader))
    mu = _tokenizer(cfg_mu, events.collections["muons"], SMALL, steps=2)
    jets = _tokenizer(cfg_j, events.collections["jets"], {**SMALL, **FSQ_CASES["8x4_q4_skip"]}, steps=2)
    tok = EventTokenizer({"muons": mu, "jets": jets})
    assert tok.layout.to_dict()["objects"] == [
        {"name": "muons", "codebook_sizes": [128] * 3},
        {"name": "jets", "codebook_sizes": [4096] * 4},
    ]
    enc = tok(events, padding=True, return_tensors="np")
    back = tok.decode(enc["input_ids"], enc["attention_mask"])
    c = events.collections["jets"]
    expected = jets.decode(jets.encode(c.values[c.mask]))
    got = back.collections["jets"]
    np.testing.assert_allclose(got.values[got.mask], expected, rtol=1e-5, atol=1e-5)
