"""Physics of the built-in generator, checked on generated samples."""

import h5py
import numpy as np
import pytest

from hep_event_models import physics, schema
from hep_event_models.generator import generate, generate_batch, iter_chunks
from hep_event_models.generator import kinematics as kin
from hep_event_models.generator.processes import hzz_masses
from hep_event_models.io import EventBatch, EventReader
from hep_event_models.io.writer import required_keys

LEPTONS = {"electrons": ["pt", "eta", "phi", "charge"], "muons": ["pt", "eta", "phi", "charge"]}


def _read(path, selection=None) -> EventBatch:
    return EventBatch.concat(list(EventReader(path, selection=selection or LEPTONS, chunk_size=10_000)))


def _mode(x, lo, hi, width):
    h, e = np.histogram(x, bins=np.arange(lo, hi + width, width))
    return e[h.argmax()] + width / 2


def test_kinematics_two_body_decay_conserves_four_momentum():
    rng = np.random.default_rng(0)
    parent = kin.p4_from_ptyphim(rng.uniform(0, 300, 1000), rng.normal(0, 2, 1000), rng.uniform(-3, 3, 1000), 125.0)
    d1, d2 = kin.decay(
        parent, np.full(1000, 91.0), np.full(1000, 20.0), rng.uniform(-1, 1, 1000), rng.uniform(-np.pi, np.pi, 1000)
    )
    np.testing.assert_allclose(d1 + d2, parent, atol=1e-8)
    np.testing.assert_allclose(kin.mass(d1), 91.0, rtol=1e-9)
    np.testing.assert_allclose(kin.mass(d2), 20.0, rtol=1e-7)
    np.testing.assert_allclose(kin.delta_phi(np.array([3.1]), np.array([-3.1])), [-(2 * np.pi - 6.2)], atol=1e-12)


def test_breit_wigner_line_shape():
    rng = np.random.default_rng(1)
    m = kin.breit_wigner(rng, 91.1876, 2.4952, 60, 120, size=200_000)
    assert 60 <= m.min() and m.max() <= 120
    assert abs(np.median(m) - 91.19) < 0.05
    # fraction within ±Γ/2 of the pole: the relativistic BW's CDF in s = m² is an arctan
    M, G = 91.1876, 2.4952

    def cdf(x):
        return np.arctan((x**2 - M**2) / (M * G))

    expected = (cdf(M + G / 2) - cdf(M - G / 2)) / (cdf(120) - cdf(60))
    assert abs(np.mean(np.abs(m - M) < G / 2) - expected) < 0.005


def test_h_to_zz_star_masses_are_off_shell():
    m1, m2 = hzz_masses(np.random.default_rng(2), 50_000)
    assert (m1 + m2 < 125.0).all() and (m1 >= m2).all()
    assert abs(np.median(m1) - 89) < 3  # Z1 near the pole
    assert 15 < np.median(m2) < 35  # Z2 off shell


def test_deterministic_by_seed_and_independent_of_workers(tmp_path):
    a = generate_batch("hzz4l", 300, seed=5)
    b = generate_batch("hzz4l", 300, seed=5)
    c = generate_batch("hzz4l", 300, seed=6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["common/muons/pt"], c["common/muons/pt"])
    serial = list(iter_chunks("dy", 900, seed=3, chunk_size=300, workers=1))
    parallel = list(iter_chunks("dy", 900, seed=3, chunk_size=300, workers=2))
    for s, p in zip(serial, parallel, strict=True):
        for k in s:
            np.testing.assert_array_equal(s[k], p[k], err_msg=k)


@pytest.mark.parametrize("process", list(schema.PROCESS_IDS))
def test_every_schema_key_filled(process):
    b = generate_batch(process, 2_000, seed=1)
    assert set(required_keys()) <= set(b)
    for name, coll in schema.COLLECTIONS.items():
        for f in coll.fields.values():
            arr = b[coll.path_of(f.name)]
            assert arr.dtype == np.dtype(f.dtype), (name, f.name)
            assert np.isfinite(arr.astype(np.float64)).all(), (name, f.name)
        if coll.per_object:
            mask, n = b[coll.path_of("mask")], b[coll.path_of("n")]
            np.testing.assert_array_equal(mask.sum(1), n)
            pt = np.where(mask, b[coll.path_of("pt")], 0.0)
            assert (np.diff(pt, axis=1)[mask[:, 1:]] <= 0).all(), f"{name} not sorted by pT"
            assert (b[coll.path_of("pt")][mask] >= coll.pt_cut).all()
            assert np.all(np.abs(b[coll.path_of("phi")]) <= np.pi + 1e-6)
            for f in coll.fields.values():
                if f.categories is not None:
                    vals = set(np.unique(b[coll.path_of(f.name)][mask]).tolist())
                    assert vals <= set(f.categories), (name, f.name, vals)
    # tagger probabilities are probabilities
    m = b["common/jets/mask"]
    for tagger in ("DL1d", "GN2"):
        s = sum(b[f"atlas/jets/{tagger}_p{x}"] for x in "bcu")
        np.testing.assert_allclose(s[m], 1.0, atol=1e-5)
    # nested electron ID
    me = b["common/electrons/mask"]
    lt, lm, ll = (b[f"atlas/electrons/LH{x}"][me] for x in ("Tight", "Medium", "Loose"))
    assert (lt <= lm).all() and (lm <= ll).all()


def test_higgs_peak_at_125(samples):
    fl = physics.four_lepton(_read(samples["hzz4l"]))
    m = fl.m4l[fl.valid]
    assert fl.valid.mean() > 0.2
    assert abs(_mode(m, 100, 150, 1.0) - 125.0) <= 1.0
    window = m[(m > 115) & (m < 135)]
    assert abs(np.median(window) - 125.0) < 1.0
    sigma = np.subtract(*np.percentile(window, [75, 25])) / 1.349
    assert 1.0 < sigma < 3.0  # ATLAS: ~1.6 (4μ) to ~2.2 GeV (4e)
    assert abs(np.median(fl.m12[fl.valid]) - 91) < 4 and np.median(fl.m34[fl.valid]) < 40


def test_z_peak_in_drell_yan(samples):
    m, ok = physics.dilepton_mass(_read(samples["dy"]))
    m = m[ok]
    assert ok.mean() > 0.3
    assert abs(_mode(m, 70, 110, 0.5) - 91.2) <= 1.0
    core = m[(m > 70) & (m < 110)]
    assert abs(np.median(core) - 91.2) < 1.0
    width = np.subtract(*np.percentile(core, [75, 25])) / 1.349
    assert 1.5 < width < 5.0  # natural width 2.5 GeV (Breit–Wigner) plus resolution


def test_zz_continuum_overlaps_higgs(samples):
    sig, bkg = physics.leptons(_read(samples["hzz4l"])), physics.leptons(_read(samples["zz4l"]))
    hs = np.bincount(sig.count, minlength=7)[:7] / len(sig.count)
    hb = np.bincount(bkg.count, minlength=7)[:7] / len(bkg.count)
    assert np.minimum(hs, hb).sum() > 0.85  # lepton multiplicities nearly identical
    fl = physics.four_lepton(_read(samples["zz4l"]))
    m = fl.m4l[fl.valid]
    assert ((m > 115) & (m < 135)).sum() > 100
    assert (m < 100).mean() > 0.05  # single-resonant Z -> 4l down to ~80 GeV
    assert m.min() < 85
    assert 180 < np.median(m[m > 150]) < 300  # ZZ above threshold


def test_zz_mass_window_filter(tmp_path):
    path = tmp_path / "zzwin.h5"
    generate("zz4l", 3_000, path, seed=1, mass_window=(115, 135), progress=False, workers=1)
    with h5py.File(path) as f:
        truth = f["truth/hard_mass"][:]
    assert truth.min() > 115 and truth.max() < 135
    fl = physics.four_lepton(_read(path))
    m = fl.m4l[fl.valid]
    assert ((m > 110) & (m < 140)).mean() > 0.9


def test_btag_scores_higher_for_b_jets(samples):
    with h5py.File(samples["ttbar"]) as f:
        mask = f["common/jets/mask"][:] & (np.abs(f["common/jets/eta"][:]) < 2.5)
        label = f["truth/jets/HadronConeExclTruthLabelID"][:]
        for tagger in ("GN2", "DL1d"):
            pb = f[f"atlas/jets/{tagger}_pb"][:]
            b, c, light = pb[mask & (label == 5)], pb[mask & (label == 4)], pb[mask & (label == 0)]
            assert len(b) > 5000 and len(light) > 5000
            assert np.median(b) > 0.5 > np.median(light)
            assert np.mean(b) > np.mean(c) > np.mean(light)
            assert (light > 0.5).mean() < 0.1 and (b > 0.5).mean() > 0.6


def test_met_larger_in_ttbar_than_dy(samples):
    with h5py.File(samples["ttbar"]) as f1, h5py.File(samples["dy"]) as f2:
        met_tt, met_dy = f1["common/met/pt"][:], f2["common/met/pt"][:]
        assert np.median(met_tt) > 2.5 * np.median(met_dy)
        assert 5 < np.median(met_dy) < 25  # resolution only, ~10 GeV
        assert f1["common/met/sumet"][:].mean() > f2["common/met/sumet"][:].mean()


def test_isolation_small_for_prompt_leptons(samples):
    with h5py.File(samples["ttbar"]) as f:
        for coll in ("electrons", "muons"):
            mask = f[f"common/{coll}/mask"][:]
            origin = f[f"truth/{coll}/origin"][:]
            iso = f[f"common/{coll}/trk_iso03"][:]
            prompt, hf = iso[mask & (origin == 0)], iso[mask & (origin == 1)]
            assert (iso[mask] >= 0).all()
            assert np.median(prompt) < 0.05 and (prompt < 0.15).mean() > 0.8
            assert np.median(hf) > 0.3 and np.median(hf) > 10 * np.median(prompt)
            # ptvarcone30 uses a cone no larger than 0.3
            var = f[f"atlas/{coll}/ptvarcone30"][:][mask]
            assert (var <= iso[mask] * f[f"common/{coll}/pt"][:][mask] * (1 + 1e-5) + 1e-4).all()


def test_pileup_like_run2(samples):
    with h5py.File(samples["dy"]) as f:
        mu = f["common/event/mu"][:]
        runs = set(np.unique(f["atlas/event/run_number"][:]).tolist())
        z0 = f["common/tracks/z0"][:][f["common/tracks/mask"][:]]
        origin = f["truth/tracks/origin"][:][f["common/tracks/mask"][:]]
    assert 30 < mu.mean() < 37 and 8 < mu.std() < 14 and mu.min() > 0
    assert runs == {284500, 300000, 310000}
    assert np.median(np.abs(z0[origin == schema.TruthOrigin.PILEUP])) > 20  # pile-up tracks far in z0
    assert np.median(np.abs(z0[origin == schema.TruthOrigin.PROMPT])) < 0.5


def test_taus_real_and_fake(samples):
    with h5py.File(samples["dy"]) as f:
        mask = f["common/taus/mask"][:]
        origin = f["truth/taus/origin"][:][mask]
        score = f["atlas/taus/RNNJetScore"][:][mask]
        one = f["common/taus/is_1prong"][:][mask]
        mode = f["atlas/taus/NNDecayMode"][:][mask]
    real, fake = origin == schema.TruthOrigin.PROMPT, origin == schema.TruthOrigin.FAKE
    assert real.sum() > 500 and fake.sum() > 500
    assert score[real].mean() > 0.4 > score[fake].mean()
    assert ((mode <= 2) == (one == 1)).all()


def test_mass_window_filters_or_refuses():
    tt = generate_batch("ttbar", 1000, seed=2, mass_window=(500.0, 600.0))["truth/hard_mass"]
    assert tt.min() > 500 and tt.max() < 600
    mll = generate_batch("dy", 1000, seed=2, mass_window=(60.0, 120.0))["truth/hard_mass"]
    assert mll.min() >= 60 and mll.max() <= 120
    with pytest.raises(ValueError, match="excludes m_H"):
        generate_batch("hzz4l", 10, mass_window=(130.0, 140.0))
    with pytest.raises(ValueError, match="below the tt threshold"):
        generate_batch("ttbar", 10, mass_window=(100.0, 200.0))
    with pytest.raises(ValueError, match="unknown process"):
        generate_batch("susy", 10)


# --------------------------------------------------------------------------------------
# sub-objects: jet constituents and track hits
# --------------------------------------------------------------------------------------
JETS, TRACKS, ELECTRONS = (schema.COLLECTIONS[c] for c in ("jets", "tracks", "electrons"))
CONST, HITS = schema.sub_collection("jets_constituents"), schema.sub_collection("tracks_hits")
SUB_KEYS = {s.path_of(k) for s in schema.SUB_COLLECTIONS.values() for k in (*s.fields, schema.MASK, schema.COUNT)}


@pytest.fixture(scope="module")
def ttbar_sub() -> dict:
    return generate_batch("ttbar", 2_000, seed=21, sub_objects=True)


def _dphi(a, b):
    return kin.wrap_phi(np.asarray(a, np.float64) - np.asarray(b, np.float64))


@pytest.mark.parametrize("process", list(schema.PROCESS_IDS))
def test_sub_objects_change_nothing_else_and_follow_the_schema(process):
    plain = generate_batch(process, 1_000, seed=9)
    b = generate_batch(process, 1_000, seed=9, sub_objects=True)
    assert set(b) - set(plain) == SUB_KEYS and set(plain) <= set(b)
    for k in plain:
        assert np.array_equal(plain[k], b[k]), k
    for sub in schema.SUB_COLLECTIONS.values():
        parent = schema.COLLECTIONS[sub.parent]
        shape = (1_000, parent.max_objects, sub.max_objects)
        mask, count = b[sub.path_of(schema.MASK)], b[sub.path_of(schema.COUNT)]
        assert mask.shape == shape and mask.dtype == np.bool_
        assert count.shape == shape[:2] and count.dtype == np.int16
        np.testing.assert_array_equal(count, mask.sum(-1))
        assert not mask[~b[parent.path_of(schema.MASK)]].any(), "sub-objects of padded parent slots"
        assert (mask[..., 1:] <= mask[..., :-1]).all(), "not packed at the front"
        for f in sub.fields.values():
            arr = b[sub.path_of(f.name)]
            assert arr.shape == shape and arr.dtype == np.dtype(f.dtype), (sub.key, f.name)
            assert np.isfinite(arr.astype(np.float64)).all(), (sub.key, f.name)
            assert (arr[~mask] == 0).all(), f"{sub.key}/{f.name}: padding is not 0"
            if f.categories is not None:
                assert set(np.unique(arr[mask]).tolist()) <= set(f.categories), (sub.key, f.name)
        if "phi" in sub.fields:
            assert (np.abs(b[sub.path_of("phi")]) <= np.pi + 1e-6).all()
    # every real jet has constituents; every real track has hits
    assert (b[CONST.path_of("n")][b[JETS.path_of("mask")]] >= 1).all()
    assert (b[HITS.path_of("n")][b[TRACKS.path_of("mask")]] >= 8).all()


def test_jet_constituents_physics(ttbar_sub):
    b = ttbar_sub
    jm = b[JETS.path_of("mask")]
    m, n = b[CONST.path_of("mask")], b[CONST.path_of("n")]
    pt, charge = b[CONST.path_of("pt")], b[CONST.path_of("charge")]
    charged = m & (charge != 0)
    n_ch, n_trk = charged.sum(-1), b[JETS.path_of("n_trk")]
    jeta, jpt = b[JETS.path_of("eta")], b[JETS.path_of("pt")]
    inside = jm & (np.abs(jeta) < 2.5)
    full = n == CONST.max_objects  # the leading 50 of more constituents were kept
    assert inside.sum() > 5_000 and (jm & ~inside).sum() > 300 and full[jm].mean() < 0.02
    # charged multiplicity: exactly n_trk inside the tracker unless truncated to 50 (then at most n_trk); 0 outside
    np.testing.assert_array_equal(n_ch[inside & ~full], n_trk[inside & ~full])
    assert (n_ch[inside & full] <= n_trk[inside & full]).all()
    assert (n_ch[jm & ~inside] == 0).all()
    # pT: sorted, positive, Σ = jet pT unless truncated
    assert (pt[m] > 0).all() and (np.diff(pt, axis=-1)[m[..., 1:]] <= 0).all()
    ratio = pt.sum(-1)[jm] / jpt[jm]
    np.testing.assert_allclose(ratio[~full[jm]], 1.0, rtol=1e-4)
    assert (ratio > 0.8).all() and 0.99 < np.median(ratio) <= 1.0001
    assert 0.5 < np.median(pt.sum(-1, where=charged)[inside] / jpt[inside]) < 0.7  # charged share ~ Beta(6, 4)
    # directions: close to the axis, pT-weighted width of the charged ones ≈ QG_tracksWidth
    dr = np.hypot(
        b[CONST.path_of("eta")] - jeta[..., None], _dphi(b[CONST.path_of("phi")], b[JETS.path_of("phi")][..., None])
    )
    assert (dr[m] < 0.4).mean() > 0.9 and np.median(dr[m]) < 0.15
    width = b[JETS.path_of("QG_tracksWidth")]
    w_ch = (dr * pt).sum(-1, where=charged) / np.maximum(pt.sum(-1, where=charged), 1e-9)
    sel = inside & (width > 0) & (n_ch >= 3)
    assert 0.8 < np.median(w_ch[sel] / width[sel]) < 1.25
    # neutral constituents: no impact parameters
    d0, z0 = b[CONST.path_of("d0")], b[CONST.path_of("z0")]
    assert (d0[m & ~charged] == 0).all() and (z0[m & ~charged] == 0).all()
    # b jets: displaced tracks (lifetime); light jets: resolution only
    label = np.broadcast_to(b["truth/jets/HadronConeExclTruthLabelID"][..., None], m.shape)
    hard = charged & (pt > 1.0)
    disp = {lab: (np.abs(d0[hard & (label == lab)]) > 0.1).mean() for lab in (5, 4, 0)}
    assert disp[5] > 3 * disp[0] and disp[5] > disp[4] > disp[0], disp
    # pile-up jets: charged constituents far from the primary vertex in z0
    origin = np.broadcast_to(b["truth/jets/origin"][..., None], m.shape)
    pu, prompt = charged & (origin == schema.TruthOrigin.PILEUP), charged & (origin == schema.TruthOrigin.PROMPT)
    assert np.median(np.abs(z0[pu])) > 10 and np.median(np.abs(z0[prompt])) < 1


def test_track_hits_physics(ttbar_sub):
    from hep_event_models.generator.subobjects import LAYER_RADIUS

    b = ttbar_sub
    tm = b[TRACKS.path_of("mask")]
    m = b[HITS.path_of("mask")]
    layer = b[HITS.path_of("layer")].astype(int)
    assert ((layer[m] >= 0) & (layer[m] <= 29)).all()
    assert (np.diff(layer, axis=-1)[m[..., 1:]] > 0).all(), "layers not strictly increasing"
    teta = np.broadcast_to(b[TRACKS.path_of("eta")][..., None], m.shape)
    tpt = np.broadcast_to(b[TRACKS.path_of("pt")][..., None], m.shape)
    q = np.broadcast_to(np.sign(b[TRACKS.path_of("qOverP")])[..., None], m.shape)
    trt = m & (layer >= 12)
    assert (np.abs(teta[trt]) < 2.0).all()  # TRT only for |eta| < 2
    n_trt = trt.sum(-1)
    assert np.median(n_trt[tm & (np.abs(b[TRACKS.path_of("eta")]) < 2.0)]) >= 14
    si = m & (layer < 12)
    assert 10 <= np.median(si.sum(-1)[tm]) <= 12
    # helix bending: opposite charges bend opposite ways, Δφ = −q asin(0.3 B r / 2 pT)
    dphi = _dphi(b[HITS.path_of("phi")], b[TRACKS.path_of("phi")][..., None])
    outer = m & (layer >= 20)
    assert np.mean(dphi[outer] * q[outer]) < 0
    assert np.mean(dphi[outer & (q > 0)]) < 0 < np.mean(dphi[outer & (q < 0)])
    expected = np.arcsin(0.3 * 2.0 * LAYER_RADIUS[layer[outer]] / 1000.0 / (2 * tpt[outer]))
    np.testing.assert_allclose(np.median(-dphi[outer] * q[outer] / expected), 1.0, atol=0.02)
    soft, hard = outer & (tpt < 10), outer & (tpt > 30)
    assert np.median(np.abs(dphi[soft])) > 3 * np.median(np.abs(dphi[hard]))
    # positions: η follows the track (prompt tracks), time ≈ time of flight
    prompt = m & (np.broadcast_to(b["truth/tracks/origin"][..., None], m.shape) != schema.TruthOrigin.PILEUP)
    assert np.median(np.abs(b[HITS.path_of("eta")] - teta)[prompt & si]) < 0.005
    tof = LAYER_RADIUS[layer] * np.cosh(teta) / 299.792458
    assert abs(np.median((b[HITS.path_of("time")] - tof)[m])) < 0.1
    assert np.median(b[HITS.path_of("time")][m & (layer == 29)]) > 3.0 > np.median(b[HITS.path_of("time")][si])
    # energy: silicon ~85 keV (MIP), TRT ~2 keV with a transition-radiation tail, higher for electrons
    energy = b[HITS.path_of("energy")]
    assert (energy[m] > 0).all()
    assert 80e-6 < np.median(energy[si & (np.abs(teta) < 0.3)]) < 100e-6
    assert 1.5e-6 < np.median(energy[trt]) < 3e-6
    em, eeta, ephi = (b[ELECTRONS.path_of(k)] for k in ("mask", "eta", "phi"))
    dr = np.hypot(
        b[TRACKS.path_of("eta")][..., None] - eeta[:, None, :],
        _dphi(b[TRACKS.path_of("phi")][..., None], ephi[:, None, :]),
    )
    ele = np.broadcast_to((tm & np.any(em[:, None, :] & (dr < 0.01), axis=-1))[..., None], m.shape)
    ht = energy >= 6e-6
    f_ele, f_other = ht[trt & ele].mean(), ht[trt & ~ele].mean()
    assert (trt & ele).sum() > 2_000
    assert 0.15 < f_ele < 0.25 and 0.03 < f_other < 0.07 and f_ele > 3 * f_other


def test_generate_writes_sub_objects(tmp_path):
    path, plain = tmp_path / "sub.h5", tmp_path / "plain.h5"
    generate("ttbar", 1_000, path, seed=3, chunk_size=500, progress=False, workers=1, sub_objects=True)
    generate("ttbar", 1_000, plain, seed=3, chunk_size=500, progress=False, workers=1)
    with h5py.File(path) as f, h5py.File(plain) as g:
        assert f[CONST.path_of("pt")].shape == (1_000, 15, 50)
        assert f[HITS.path_of("layer")].shape == (1_000, 30, 30) and f[HITS.path_of("layer")].dtype == np.int8
        assert f[CONST.path_of("mask")].dtype == np.bool_ and f[CONST.path_of("n")].dtype == np.int16
        assert f["metadata"].attrs["sub_objects"] == "jets_constituents,tracks_hits"
        assert g["metadata"].attrs["sub_objects"] == "" and CONST.group not in g
        batch = generate_batch("ttbar", 500, seed=3, chunk_index=1, sub_objects=True)
        np.testing.assert_array_equal(f[CONST.path_of("pt")][500:], batch[CONST.path_of("pt")])
        np.testing.assert_array_equal(f[JETS.path_of("pt")][:], g[JETS.path_of("pt")][:])


def test_cli_generate_sub_objects(tmp_path):
    from hep_event_models.cli import main

    out = tmp_path / "cli.h5"
    args = ["generate", "--process", "dy", "--events", "300", "--seed", "3", "--out", str(out), "--quiet"]
    assert main([*args, "--workers", "1", "--sub-objects"]) == 0
    with h5py.File(out) as f:
        assert f[HITS.path_of("energy")].shape == (300, 30, 30)
        assert f[CONST.path_of("charge")].shape == (300, 15, 50)
        assert f["metadata"].attrs["sub_objects"] == "jets_constituents,tracks_hits"
