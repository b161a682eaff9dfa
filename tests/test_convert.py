"""ROOT → HDF5 converters: small ROOT files written here with uproot, using the real branch
names and types of NanoAOD (flat ``Events`` tree, ``nElectron`` counters) and PHYSLITE
(``CollectionTree`` with ``<Container>AuxDyn.<var>`` branches), converted, and every filled
key compared with values computed by hand (units, sorting, cuts, padding, isolation, MET)."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from hep_event_models import schema
from hep_event_models.cli import main
from hep_event_models.config import ObjectConfig, load_object_config
from hep_event_models.convert import (
    ConversionError,
    ConversionWarning,
    convert_files,
    nanoaod,
    parse_assignments,
    physlite,
)
from hep_event_models.convert.objects import Flat, cone_sum, delta_r
from hep_event_models.io import EventBatch, EventFileError, EventReader, read_metadata, write_events
from hep_event_models.io.inspect import inspect_files


# --------------------------------------------------------------------------------------
# writing ROOT files
# --------------------------------------------------------------------------------------
def _jagged(rows: list[list], dtype) -> ak.Array:
    counts = [len(r) for r in rows]
    flat = np.asarray([x for r in rows for x in r], dtype=dtype)
    return ak.unflatten(flat, counts)


def _write_ttree(path, tree: str, data: dict, pieces: int = 1) -> None:
    """A TTree with ``data`` (jagged awkward arrays get ``n<name>`` counters), in ``pieces`` baskets."""
    n = len(next(iter(data.values())))
    bounds = np.linspace(0, n, pieces + 1).astype(int)
    with uproot.recreate(path) as f:
        t = None
        for a, b in itertools.pairwise(bounds):
            part = {k: v[a:b] for k, v in data.items()}
            if t is None:
                t = f.mktree(tree, {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
            t.extend(part)


def _collection(prefix: str, events: list[list[dict]], dtypes: dict[str, str], drop=()) -> dict[str, ak.Array]:
    """A NanoAOD collection: one record array, written as the counter ``n{prefix}`` plus
    ``{prefix}_{var}`` branches (fields in ``drop`` left out)."""
    fields = {k: _jagged([[o[k] for o in ev] for ev in events], dt) for k, dt in dtypes.items() if k not in drop}
    return {prefix: ak.zip(fields)}


def _expected(events: list[list[dict]], key: str, cut: float, m: int, scale: float = 1.0, pt: str = "pt"):
    """Reference packing, one event at a time: pT >= cut, sorted by pT descending, first m."""
    out = np.zeros((len(events), m))
    for i, objs in enumerate(events):
        kept = sorted((o for o in objs if o[pt] * scale >= cut), key=lambda o: -o[pt])[:m]
        for j, o in enumerate(kept):
            out[i, j] = o[key]
    return out


# --------------------------------------------------------------------------------------
# NanoAOD: hand-written events
# --------------------------------------------------------------------------------------
N_NANO = 4
NANO_ELECTRONS = [
    [
        dict(pt=20.0, eta=0.1, phi=1.0, charge=-1, pfRelIso03_chg=0.05, cutBased=4, mvaIso_WP80=True),
        dict(pt=50.0, eta=-1.2, phi=-2.0, charge=1, pfRelIso03_chg=0.2, cutBased=2, mvaIso_WP80=False),
        dict(pt=5.0, eta=0.5, phi=0.3, charge=1, pfRelIso03_chg=0.9, cutBased=1, mvaIso_WP80=False),  # < 7 GeV
    ],
    [],
    [
        dict(
            pt=p,
            eta=0.1 * i,
            phi=-0.1 * i,
            charge=(-1) ** i,
            pfRelIso03_chg=0.01 * i,
            cutBased=i % 5,
            mvaIso_WP80=bool(i % 2),
        )
        for i, p in enumerate([10.0, 80.0, 30.0, 70.0, 20.0, 60.0, 40.0, 50.0])  # 8 > max_objects 6
    ],
    [dict(pt=7.0, eta=2.0, phi=3.0, charge=1, pfRelIso03_chg=0.0, cutBased=3, mvaIso_WP80=True)],  # == cut: kept
]
NANO_ELECTRON_TYPES = dict(
    pt="f4", eta="f4", phi="f4", charge="i4", pfRelIso03_chg="f4", cutBased="u1", mvaIso_WP80="?"
)
NANO_MUONS = [
    [dict(pt=30.0, eta=0.3, phi=0.2, charge=1, pfRelIso03_chg=0.1, tightId=True, pfIsoId=4)],
    [
        dict(pt=4.0, eta=0.0, phi=0.0, charge=-1, pfRelIso03_chg=0.0, tightId=False, pfIsoId=0),  # < 5 GeV
        dict(pt=12.0, eta=-2.0, phi=2.5, charge=-1, pfRelIso03_chg=0.3, tightId=True, pfIsoId=1),
    ],
    [],
    [
        dict(pt=6.0, eta=1.0, phi=-1.0, charge=1, pfRelIso03_chg=0.5, tightId=False, pfIsoId=2),
        dict(pt=60.0, eta=-1.0, phi=1.0, charge=-1, pfRelIso03_chg=0.02, tightId=True, pfIsoId=6),
    ],
]
NANO_MUON_TYPES = dict(pt="f4", eta="f4", phi="f4", charge="i4", pfRelIso03_chg="f4", tightId="?", pfIsoId="u1")
# v9 tau IDs: bit masks of the passed working points (1 VVVLoose, 2 VVLoose, 4 VLoose, ...)
NANO_TAUS = [
    [
        dict(
            pt=25.0,
            eta=0.0,
            phi=0.0,
            charge=1,
            decayMode=10,
            idDeepTau2017v2p1VSjet=0b1111,
            rawDeepTau2017v2p1VSjet=0.7,
        )
    ],
    [
        dict(
            pt=40.0,
            eta=1.0,
            phi=1.0,
            charge=-1,
            decayMode=1,
            idDeepTau2017v2p1VSjet=0b11111111,
            rawDeepTau2017v2p1VSjet=0.99,
        ),
        dict(
            pt=22.0, eta=-1.0, phi=-1.0, charge=1, decayMode=0, idDeepTau2017v2p1VSjet=0b1, rawDeepTau2017v2p1VSjet=0.2
        ),
        dict(pt=19.0, eta=0.0, phi=2.0, charge=1, decayMode=2, idDeepTau2017v2p1VSjet=0, rawDeepTau2017v2p1VSjet=0.1),
    ],
    [],
    [],
]
NANO_TAU_TYPES = dict(
    pt="f4", eta="f4", phi="f4", charge="i4", decayMode="u1", idDeepTau2017v2p1VSjet="u1", rawDeepTau2017v2p1VSjet="f4"
)
NANO_PHOTONS = [
    [],
    [dict(pt=15.0, eta=0.2, phi=0.4, pfRelIso03_chg=0.1, cutBased=3)],
    [dict(pt=9.0, eta=0.2, phi=0.4, pfRelIso03_chg=0.1, cutBased=1)],  # < 10 GeV
    [
        dict(pt=11.0, eta=-0.2, phi=-0.4, pfRelIso03_chg=0.0, cutBased=2),
        dict(pt=100.0, eta=1.2, phi=1.4, pfRelIso03_chg=0.01, cutBased=3),
    ],
]
NANO_PHOTON_TYPES = dict(pt="f4", eta="f4", phi="f4", pfRelIso03_chg="f4", cutBased="u1")  # v9 names
NANO_JETS = [
    [
        dict(
            pt=30.0 + 10 * i,
            eta=0.1 * i,
            phi=0.2 * i - 1.5,
            mass=5.0 + i,
            btagDeepFlavB=0.05 * i,
            chMultiplicity=3 + i,
            nConstituents=10 + i,
            jetId=6,
            hadronFlavour=(0, 4, 5)[i % 3],
        )
        for i in range(17)
    ],
    [
        dict(
            pt=18.0,
            eta=0.0,
            phi=0.0,
            mass=2.0,
            btagDeepFlavB=0.9,
            chMultiplicity=2,
            nConstituents=4,
            jetId=2,
            hadronFlavour=5,
        )
    ],  # < 20 GeV
    [],
    [
        dict(
            pt=25.0,
            eta=4.0,
            phi=-3.0,
            mass=3.0,
            btagDeepFlavB=-1.0,
            chMultiplicity=0,
            nConstituents=3,
            jetId=2,
            hadronFlavour=0,
        ),
        dict(
            pt=250.0,
            eta=-0.5,
            phi=0.5,
            mass=25.0,
            btagDeepFlavB=0.99,
            chMultiplicity=20,
            nConstituents=40,
            jetId=6,
            hadronFlavour=5,
        ),
    ],
]
NANO_JET_TYPES = dict(
    pt="f4",
    eta="f4",
    phi="f4",
    mass="f4",
    btagDeepFlavB="f4",
    chMultiplicity="i2",
    nConstituents="u1",
    jetId="u1",
    hadronFlavour="i4",
)
NANO_TRACKS = [
    [
        dict(pt=12.0, eta=0.5, phi=0.1, dxy=0.002, dz=-0.01, charge=1, fromPV=3, isHighPurityTrack=True),
        dict(pt=40.0, eta=-0.5, phi=-0.1, dxy=-0.001, dz=0.02, charge=-1, fromPV=2, isHighPurityTrack=True),
    ],
    [],
    [dict(pt=4.0, eta=0.0, phi=0.0, dxy=0.0, dz=0.0, charge=1, fromPV=3, isHighPurityTrack=False)],  # < 5 GeV
    [dict(pt=5.5, eta=2.0, phi=3.0, dxy=0.05, dz=0.3, charge=1, fromPV=1, isHighPurityTrack=False)],
]
NANO_TRACK_TYPES = dict(pt="f4", eta="f4", phi="f4", dxy="f4", dz="f4", charge="i4", fromPV="i4", isHighPurityTrack="?")
NANO_EVENT = dict(
    MET_pt=np.array([10.0, 55.5, 0.5, 120.0], "f4"),
    MET_phi=np.array([0.1, -3.0, 2.0, 1.5], "f4"),
    MET_sumEt=np.array([300.0, 800.0, 150.0, 1500.0], "f4"),
    PV_x=np.array([0.01, 0.02, -0.01, 0.0], "f4"),  # cm
    PV_y=np.array([0.03, -0.02, 0.0, 0.01], "f4"),
    PV_z=np.array([1.5, -4.0, 0.0, 10.0], "f4"),
    PV_npvsGood=np.array([30, 41, 12, 55], "i4"),
    Pileup_nTrueInt=np.array([31.5, 45.25, 18.0, 60.0], "f4"),
    genWeight=np.ones(N_NANO, "f4"),
    run=np.full(N_NANO, 1, "u4"),
    luminosityBlock=np.array([5, 5, 6, 7], "u4"),
    event=np.array([1001, 1002, 1003, 2**40 + 4], "u8"),
)


def _nano_data(**overrides) -> dict:
    data = {
        **_collection("Electron", NANO_ELECTRONS, NANO_ELECTRON_TYPES),
        **_collection("Muon", NANO_MUONS, NANO_MUON_TYPES),
        **_collection("Tau", NANO_TAUS, NANO_TAU_TYPES),
        **_collection("Photon", NANO_PHOTONS, NANO_PHOTON_TYPES),
        **_collection("Jet", NANO_JETS, NANO_JET_TYPES),
        **_collection("IsoTrack", NANO_TRACKS, NANO_TRACK_TYPES),
        **NANO_EVENT,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture()
def nano_file(tmp_path) -> str:
    path = tmp_path / "nano.root"
    _write_ttree(path, "Events", _nano_data())
    return str(path)


def _convert_quiet(*args, **kwargs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        return convert_files(*args, progress=False, **kwargs)


def _check_objects(
    f, coll: str, events, mapping: dict[str, str], experiment: str, scale: float = 1.0, derived: dict | None = None
):
    """Every schema key of ``coll`` against the reference packing (missing inputs: 0)."""
    c = schema.COLLECTIONS[coll]
    cut, m = c.pt_cut, c.max_objects
    ref = _expected(events, "pt", cut, m, scale=scale)
    mask = ref > 0
    np.testing.assert_array_equal(f[c.path_of("mask")][:], mask, err_msg=coll)
    np.testing.assert_array_equal(f[c.path_of("n")][:], mask.sum(1), err_msg=coll)
    for key, field in c.fields_for(experiment).items():
        got = f[c.path_of(key)][:]
        assert got.shape == (len(events), m) and got.dtype == np.dtype(field.dtype), (coll, key)
        if derived and key in derived:
            want = derived[key]
        elif key in mapping:
            want = _expected(events, mapping[key], cut, m, scale=scale)
        else:
            want = np.zeros_like(ref)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{coll}/{key}")


def test_nanoaod_every_key_against_hand_values(nano_file, tmp_path):
    out = tmp_path / "cms.h5"
    s = _convert_quiet("nanoaod", nano_file, out, step_size=3)  # 4 events in 2 steps
    assert s["n_events"] == N_NANO and s["experiment"] == "CMS"
    with h5py.File(out) as f:
        assert "atlas" not in f and "cms" in f
        ident = {k: k for k in ("pt", "eta", "phi", "charge")}
        _check_objects(
            f,
            "electrons",
            NANO_ELECTRONS,
            {**ident, "trk_iso03": "pfRelIso03_chg", "cutBased": "cutBased", "mvaIso_WP80": "mvaIso_WP80"},
            "CMS",
        )
        _check_objects(
            f,
            "muons",
            NANO_MUONS,
            {**ident, "trk_iso03": "pfRelIso03_chg", "tightId": "tightId", "pfIsoId": "pfIsoId"},
            "CMS",
        )
        # taus: is_1prong from decayMode; v9 bit masks become the number of working points passed
        for ev in NANO_TAUS:
            for o in ev:
                o["_1p"] = int(o["decayMode"] in (0, 1, 2))
                o["_wp"] = bin(o["idDeepTau2017v2p1VSjet"]).count("1")
        _check_objects(
            f,
            "taus",
            NANO_TAUS,
            {
                **ident,
                "decayMode": "decayMode",
                "is_1prong": "_1p",
                "idDeepTauVSjet": "_wp",
                "rawDeepTauVSjet": "rawDeepTau2017v2p1VSjet",
            },
            "CMS",
        )
        assert f["common/taus/is_1prong"][1, :2].tolist() == [1, 1] and f["common/taus/is_1prong"][0, 0] == 0
        assert f["cms/taus/idDeepTauVSjet"][1, 0] == 8
        _check_objects(
            f,
            "photons",
            NANO_PHOTONS,
            {"pt": "pt", "eta": "eta", "phi": "phi", "trk_iso03": "pfRelIso03_chg", "cutBased": "cutBased"},
            "CMS",
        )
        _check_objects(
            f,
            "jets",
            NANO_JETS,
            {
                "pt": "pt",
                "eta": "eta",
                "phi": "phi",
                "mass": "mass",
                "n_trk": "chMultiplicity",
                "btagDeepFlavB": "btagDeepFlavB",
                "nConstituents": "nConstituents",
                "jetId": "jetId",
            },
            "CMS",
        )
        # 17 jets > max_objects 15: the 15 hardest, sorted
        assert f["common/jets/n"][0] == 15
        np.testing.assert_allclose(f["common/jets/pt"][0], [190.0 - 10 * i for i in range(15)])
        flav = _expected(NANO_JETS, "hadronFlavour", 20.0, 15)
        flav[_expected(NANO_JETS, "pt", 20.0, 15) == 0] = -1
        np.testing.assert_array_equal(f["truth/jets/HadronConeExclTruthLabelID"][:], flav)
        # tracks: IsoTrack dxy/dz in cm -> d0/z0 in mm
        for ev in NANO_TRACKS:
            for o in ev:
                o["d0"], o["z0"] = o["dxy"] * 10, o["dz"] * 10
        _check_objects(
            f,
            "tracks",
            NANO_TRACKS,
            {
                "pt": "pt",
                "eta": "eta",
                "phi": "phi",
                "d0": "d0",
                "z0": "z0",
                "charge": "charge",
                "fromPV": "fromPV",
                "isHighPurityTrack": "isHighPurityTrack",
            },
            "CMS",
        )
        assert f["common/tracks/z0"][3, 0] == pytest.approx(3.0)  # 0.3 cm
        # electrons: sorting, cut at 7 GeV (>=), padding to 6 with zeros
        np.testing.assert_allclose(f["common/electrons/pt"][0], [50, 20, 0, 0, 0, 0])
        np.testing.assert_allclose(f["common/electrons/pt"][2], [80, 70, 60, 50, 40, 30])
        assert f["common/electrons/n"][:].tolist() == [2, 0, 6, 1]
        assert f["common/electrons/charge"][0, :2].tolist() == [1, -1]
        # per-event: PV cm -> mm, mu = Pileup_nTrueInt, experiment and simulation flags
        ev = NANO_EVENT
        np.testing.assert_allclose(f["common/met/pt"][:], ev["MET_pt"])
        np.testing.assert_allclose(f["common/met/phi"][:], ev["MET_phi"])
        np.testing.assert_allclose(f["common/met/sumet"][:], ev["MET_sumEt"])
        for k in "xyz":
            np.testing.assert_allclose(f[f"common/event/pv{k}"][:], ev[f"PV_{k}"] * 10, rtol=1e-6)
        np.testing.assert_allclose(f["common/event/mu"][:], ev["Pileup_nTrueInt"])
        assert f["common/event/experiment_id"][:].tolist() == [1] * N_NANO
        assert f["common/event/is_simulation"][:].tolist() == [1] * N_NANO
        assert f["cms/event/event"][:].tolist() == ev["event"].tolist()
        assert f["cms/event/event"].dtype == np.uint64
        assert f["cms/event/luminosityBlock"][:].tolist() == [5, 5, 6, 7]
        assert f["cms/event/npvsGood"][:].tolist() == [30, 41, 12, 55]
    md = read_metadata(out)
    assert md["experiment"] == "CMS" and md["n_events"] == N_NANO and md["source_format"] == "nanoaod"
    assert md["pt_cuts"]["electrons"] == 7.0 and md["max_objects"]["jets"] == 15
    assert md["input_file"] == nano_file
    assert md["common_iso_cone"] == pytest.approx(0.3)
    assert "pfRelIso03_chg" in md["trk_iso03_source"] and md["tracks_source"] == "IsoTrack"
    assert md["source_branches"]["jets/n_trk"] == ["Jet_chMultiplicity"]
    assert md["source_branches"]["taus/idDeepTauVSjet"] == ["Tau_idDeepTau2017v2p1VSjet"]
    assert "Electron_sip3d" in md["missing_branches"]
    assert not inspect_files(out)["problems"]


def test_nanoaod_cuts_and_max_objects_are_applied_and_recorded(nano_file, tmp_path):
    out = tmp_path / "cut.h5"
    _convert_quiet("nanoaod", nano_file, out, max_objects="jets=3,electrons=2", pt_cuts={"electrons": 25.0})
    with h5py.File(out) as f:
        assert f["common/jets/pt"].shape == (N_NANO, 3) and f["cms/jets/btagDeepFlavB"].shape == (N_NANO, 3)
        np.testing.assert_allclose(f["common/jets/pt"][0], [190, 180, 170])
        np.testing.assert_allclose(f["common/electrons/pt"][:], [[50, 0], [0, 0], [80, 70], [0, 0]])
        assert f["common/electrons/mask"][:].sum() == 3
    md = read_metadata(out)
    assert md["max_objects"]["jets"] == 3 and md["max_objects"]["electrons"] == 2
    assert md["pt_cuts"]["electrons"] == 25.0 and md["pt_cuts"]["jets"] == 20.0


def test_nanoaod_isolation_from_pf_candidates(tmp_path):
    """PFNano files: trk_iso03 by the DESIGN definition from charged PF candidates, computed by hand."""
    mu_eta, mu_phi, mu_pt = 0.5, 1.0, 40.0
    cands = [  # (pt, eta, phi, charge, dz in cm)
        (40.0, mu_eta, mu_phi + 0.001, -1, 0.0),  # the muon's own candidate (nearest, dR < 0.01): left out
        (2.0, mu_eta + 0.1, mu_phi, 1, 0.05),  # in: dR 0.1, |dz sin(theta)| = 0.5 mm * 0.887
        (1.0, mu_eta, mu_phi + 0.005, 1, 0.0),  # in: second-nearest, not the own track
        (3.0, mu_eta - 0.2, mu_phi, -1, 0.5),  # out: |dz sin(theta)| = 5 mm * 0.94 > 3 mm
        (0.4, mu_eta, mu_phi - 0.1, 1, 0.0),  # out: below 0.5 GeV
        (4.0, mu_eta, mu_phi + 0.31, 1, 0.0),  # out: dR 0.31
        (9.0, mu_eta, mu_phi - 0.2, 0, 0.0),  # out: neutral
        (12.0, -1.0, -2.0, 1, 0.01),  # a track elsewhere (in the tracks output)
    ]
    c = [dict(zip(("pt", "eta", "phi", "charge", "dz"), x, strict=True)) for x in cands]
    data = _nano_data(
        **_collection(
            "Muon",
            [[dict(pt=mu_pt, eta=mu_eta, phi=mu_phi, charge=1, pfRelIso03_chg=0.9, tightId=True, pfIsoId=1)]],
            NANO_MUON_TYPES,
        ),
        **_collection("PFCands", [c], dict(pt="f4", eta="f4", phi="f4", charge="i4", dz="f4")),
    )
    data = {k: v[:1] for k, v in data.items()}
    path = tmp_path / "pfnano.root"
    _write_ttree(path, "Events", data)
    out = tmp_path / "pf.h5"
    _convert_quiet("nanoaod", str(path), out)
    with h5py.File(out) as f:
        assert f["common/muons/trk_iso03"][0, 0] == pytest.approx((2.0 + 1.0) / mu_pt, rel=1e-6)
        # tracks: the charged candidates above 5 GeV, sorted; dz cm -> mm
        np.testing.assert_allclose(f["common/tracks/pt"][0, :3], [40.0, 12.0, 0.0])
        np.testing.assert_allclose(f["common/tracks/z0"][0, :2], [0.0, 0.1], atol=1e-6)
        np.testing.assert_array_equal(f["cms/tracks/charge"][0, :2], [-1, 1])
    md = read_metadata(out)
    assert "PFCands" in md["trk_iso03_source"] and md["tracks_source"] == "PFCands (charged)"
    assert not any(b.startswith("IsoTrack") or b.endswith("pfRelIso03_chg") for b in md["missing_branches"])


# --------------------------------------------------------------------------------------
# PHYSLITE: hand-written events
# --------------------------------------------------------------------------------------
PV_Z, VZ = 10.0, 0.5  # hard-scatter vertex z, track reference point z (mm)
SIN_M = 1 / math.cosh(-0.5)


def _theta(eta):
    return 2 * math.atan(math.exp(-eta))


def _track(pt, eta, phi, charge, dz, d0=0.0):
    """A PHYSLITE track: perigee parameters in MeV/mm with z0 measured from vz."""
    theta = _theta(eta)  # qOverP = q / p = q sin(theta) / pT
    return dict(
        qOverP=charge * math.sin(theta) / (pt * 1e3),
        theta=theta,
        phi=phi,
        d0=d0,
        z0=PV_Z - VZ + dz,
        vz=VZ,
        chiSquared=10.0 + pt,
        numberDoF=12.0,
    )


PL_TRACKS = [
    [
        _track(40.0, 0.0, 0.005, -1, 0.0, d0=0.01),  # t1: the electron's own track (nearest, dR 0.005)
        _track(2.0, 0.0, 0.1, 1, 1.0),  # t2: in e0's cone
        _track(0.4, 0.0, -0.2, 1, 0.0),  # t3: below the 0.5 GeV floor
        _track(3.0, 0.0, 0.25, 1, 5.0),  # t4: |z0 sin(theta)| = 5 mm
        _track(5.5, 0.0, 0.35, -1, 2.5, d0=-0.2),  # t5: outside the cone, in the tracks output
        _track(1.0, 0.0, 0.008, 1, 0.0),  # t6: in (second-nearest)
        _track(25.0, -0.5, -1.5, 1, -1.0, d0=0.05),  # t7: the muon's own track
        _track(1.5, -0.5, -1.4, -1, 2.0),  # t8: in the muon's cone, |z0 sin| = 1.77 mm
        _track(10.0, 0.0, 1.0, 1, 0.5),  # t9: on the photon (photons keep every track)
    ],
    [],
    [_track(6.0, 1.0, 2.0, 1, 0.0)],
]
PL_VERTICES = [
    [dict(x=0.1, y=0.2, z=-30.0, vertexType=3), dict(x=0.3, y=-0.1, z=PV_Z, vertexType=1)],
    [],
    [dict(x=-0.2, y=0.05, z=PV_Z, vertexType=1)],
]
PL_ELECTRONS = [
    [
        dict(pt=40e3, eta=0.0, phi=0.0, charge=-1.0, DFCommonElectronsLHTight=1, m=0.511),
        dict(pt=15e3, eta=1.0, phi=2.0, charge=1.0, DFCommonElectronsLHTight=0, m=0.511),
        dict(pt=3e3, eta=0.0, phi=-3.0, charge=1.0, DFCommonElectronsLHTight=0, m=0.511),
    ],  # < 7 GeV
    [],
    [dict(pt=8e3, eta=-1.0, phi=1.0, charge=1.0, DFCommonElectronsLHTight=1, m=0.511)],
]
PL_MUONS = [[dict(pt=25e3, eta=-0.5, phi=-1.5, charge=1.0, quality=1, muonType=0)], [], []]
PL_PHOTONS = [[dict(pt=30e3, eta=0.0, phi=1.0, DFCommonPhotonsIsEMTight=1, author=4)], [], []]
PL_TAUS = [
    [
        dict(pt=30e3, eta=1.5, phi=-2.5, charge=-1.0, NNDecayMode=3, RNNJetScoreSigTrans=0.8),
        dict(pt=25e3, eta=-1.5, phi=2.5, charge=1.0, NNDecayMode=1, RNNJetScoreSigTrans=0.6),
    ],
    [],
    [],
]
PL_JETS = [
    [
        dict(pt=60e3, eta=0.0, phi=0.05, m=8e3, ntrk=(7, 2), DL1dv01_pb=0.1),  # overlaps e0: not in the MET
        dict(pt=45e3, eta=0.5, phi=3.0, m=6e3, ntrk=(5, 0), DL1dv01_pb=0.8),
        dict(pt=15e3, eta=0.5, phi=1.0, m=2e3, ntrk=(1, 1), DL1dv01_pb=0.3),
    ],  # < 20 GeV
    [],
    [dict(pt=(21 + i) * 1e3, eta=0.1 * i, phi=0.1 * i, m=1e3 * i, ntrk=(i, 1), DL1dv01_pb=i / 20) for i in range(17)],
]
for _ev in PL_JETS:
    for _j in _ev:
        _j["NumTrkPt500"] = sum(_j["ntrk"])
SOFT = dict(names=["SoftClusCore", "PVSoftTrkCore"], mpx=[100e3, 2e3], mpy=[0.0, -1e3], sumet=[50e3, 8e3])
N_PL = 3


def _pl_collection(prefix, events, dtypes):
    return {f"{prefix}.{k}": _jagged([[o[k] for o in ev] for ev in events], dt) for k, dt in dtypes.items()}


def _physlite_data(rntuple: bool) -> dict:
    data = {
        **_pl_collection(
            "AnalysisElectronsAuxDyn",
            PL_ELECTRONS,
            dict(pt="f4", eta="f4", phi="f4", charge="f4", DFCommonElectronsLHTight="i1", m="f4"),
        ),
        **_pl_collection(
            "AnalysisMuonsAuxDyn", PL_MUONS, dict(pt="f4", eta="f4", phi="f4", charge="f4", quality="u1", muonType="u2")
        ),
        **_pl_collection(
            "AnalysisPhotonsAuxDyn",
            PL_PHOTONS,
            dict(pt="f4", eta="f4", phi="f4", DFCommonPhotonsIsEMTight="i1", author="u2"),
        ),
        **_pl_collection(
            "AnalysisTauJetsAuxDyn",
            PL_TAUS,
            dict(pt="f4", eta="f4", phi="f4", charge="f4", NNDecayMode="i4", RNNJetScoreSigTrans="f4"),
        ),
        **_pl_collection("AnalysisJetsAuxDyn", PL_JETS, dict(pt="f4", eta="f4", phi="f4", m="f4")),
        **_pl_collection("BTagging_AntiKt4EMPFlowAuxDyn", PL_JETS, dict(DL1dv01_pb="f4")),
        **_pl_collection(
            "InDetTrackParticlesAuxDyn",
            PL_TRACKS,
            dict(qOverP="f4", theta="f4", phi="f4", d0="f4", z0="f4", vz="f4", chiSquared="f4", numberDoF="f4"),
        ),
        **_pl_collection("PrimaryVerticesAuxDyn", PL_VERTICES, dict(x="f4", y="f4", z="f4", vertexType="u1")),
        "EventInfoAuxDyn.eventNumber": np.array([101, 102, 2**63 + 3], "u8"),
        "EventInfoAuxDyn.runNumber": np.full(N_PL, 410000, "u4"),
        "EventInfoAuxDyn.mcChannelNumber": np.full(N_PL, 345060, "u4"),
        "EventInfoAuxDyn.averageInteractionsPerCrossing": np.array([30.5, 40.5, 50.5], "f4"),
        "EventInfoAuxDyn.eventTypeBitmask": np.full(N_PL, 1, "u4"),
    }
    met = lambda k: _jagged([SOFT[k]] * N_PL, "f4")  # noqa: E731
    data.update({f"MET_Core_AnalysisMETAuxDyn.{k}": met(k) for k in ("mpx", "mpy", "sumet")})
    if rntuple:  # what a TTree written by uproot cannot hold: vector<vector<int>>, vector<string>
        data["AnalysisJetsAuxDyn.NumTrkPt500"] = ak.values_astype(
            ak.Array([[list(j["ntrk"]) for j in ev] for ev in PL_JETS]), "i4"
        )
        data["MET_Core_AnalysisMETAuxDyn.name"] = ak.Array([SOFT["names"]] * N_PL)
    else:
        data["AnalysisJetsAuxDyn.NumTrkPt500"] = _jagged([[j["NumTrkPt500"] for j in ev] for ev in PL_JETS], "i4")
    return data


def _write_physlite(path, rntuple: bool = False) -> str:
    data = _physlite_data(rntuple)
    if rntuple:
        if not hasattr(uproot.WritableDirectory, "mkrntuple"):
            pytest.skip("this uproot cannot write RNTuples")
        with uproot.recreate(path) as f:
            f.mkrntuple("CollectionTree", data)
    else:
        _write_ttree(path, "CollectionTree", data)
    return str(path)


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
def test_physlite_every_key_against_hand_values(tmp_path, rntuple):
    path = _write_physlite(tmp_path / "physlite.root", rntuple)
    out = tmp_path / "atlas.h5"
    s = _convert_quiet("physlite", path, out, step_size=2)
    assert s["n_events"] == N_PL and s["experiment"] == "ATLAS"
    mev = 1e-3
    with h5py.File(out) as f:
        assert "cms" not in f and "atlas" in f
        for ev in (*PL_ELECTRONS, *PL_MUONS, *PL_PHOTONS, *PL_TAUS, *PL_JETS):
            for o in ev:
                o["pt_gev"] = o["pt"] * mev
                if "m" in o:
                    o["m_gev"] = o["m"] * mev
        kin = {"pt": "pt_gev", "eta": "eta", "phi": "phi"}
        # isolation by hand (DESIGN §2): e0 = (t2 + t6) / 40, m0 = t8 / 25, photon = t9 / 30
        iso_e = np.zeros((N_PL, 6))
        iso_e[0, 0] = (2.0 + 1.0) / 40.0
        iso_m = np.zeros((N_PL, 6))
        iso_m[0, 0] = 1.5 / 25.0
        iso_g = np.zeros((N_PL, 6))
        iso_g[0, 0] = 10.0 / 30.0
        _check_objects(
            f,
            "electrons",
            PL_ELECTRONS,
            {**kin, "charge": "charge", "LHTight": "DFCommonElectronsLHTight", "mass": "m_gev"},
            "ATLAS",
            scale=mev,
            derived={"trk_iso03": iso_e},
        )
        _check_objects(
            f,
            "muons",
            PL_MUONS,
            {**kin, "charge": "charge", "quality": "quality", "muonType": "muonType"},
            "ATLAS",
            scale=mev,
            derived={"trk_iso03": iso_m},
        )
        _check_objects(
            f,
            "photons",
            PL_PHOTONS,
            {**kin, "isTight": "DFCommonPhotonsIsEMTight", "author": "author"},
            "ATLAS",
            scale=mev,
            derived={"trk_iso03": iso_g},
        )
        for ev in PL_TAUS:
            for o in ev:
                o["_1p"] = int(o["NNDecayMode"] in (0, 1, 2))
        _check_objects(
            f,
            "taus",
            PL_TAUS,
            {
                **kin,
                "charge": "charge",
                "NNDecayMode": "NNDecayMode",
                "is_1prong": "_1p",
                "RNNJetScore": "RNNJetScoreSigTrans",
            },
            "ATLAS",
            scale=mev,
        )
        _check_objects(
            f,
            "jets",
            PL_JETS,
            {**kin, "mass": "m_gev", "n_trk": "NumTrkPt500", "DL1d_pb": "DL1dv01_pb"},
            "ATLAS",
            scale=mev,
        )
        assert f["common/jets/n_trk"][0, :2].tolist() == [9, 5]  # NumTrkPt500 summed over vertices
        np.testing.assert_allclose(f["common/jets/pt"][2], [37 - i for i in range(15)], rtol=1e-6)
        assert f["common/electrons/pt"][0, 0] == pytest.approx(40.0)  # MeV -> GeV

        # tracks >= 5 GeV: t1 (40), t7 (25), t9 (10), t5 (5.5); pT and eta from qOverP and theta,
        # z0 w.r.t. the hard-scatter vertex (z0 + vz - PV z), qOverP in 1/GeV
        np.testing.assert_allclose(f["common/tracks/pt"][0, :5], [40, 25, 10, 5.5, 0], rtol=1e-5)
        np.testing.assert_allclose(f["common/tracks/eta"][0, :4], [0, -0.5, 0, 0], atol=1e-5)
        np.testing.assert_allclose(f["common/tracks/phi"][0, :4], [0.005, -1.5, 1.0, 0.35], atol=1e-6)
        np.testing.assert_allclose(f["common/tracks/z0"][0, :4], [0.0, -1.0, 0.5, 2.5], atol=1e-5)
        np.testing.assert_allclose(f["common/tracks/d0"][0, :4], [0.01, 0.05, 0.0, -0.2], atol=1e-6)
        np.testing.assert_allclose(
            f["atlas/tracks/qOverP"][0, :4], [-1 / 40, SIN_M / 25, 1 / 10, -1 / 5.5], rtol=1e-5
        )  # q/p in 1/GeV
        np.testing.assert_allclose(f["atlas/tracks/chiSquared"][0, :4], [50, 35, 20, 15.5], rtol=1e-6)
        assert f["atlas/tracks/nDoF"][0, :4].tolist() == [12] * 4
        assert f["common/tracks/n"][:].tolist() == [4, 0, 1]
        np.testing.assert_allclose(f["common/tracks/eta"][2, 0], 1.0, atol=1e-5)

        # event: PV = the vertexType-1 entry (not the first), none -> 0; mu; flags; ATLAS ids
        np.testing.assert_allclose(f["common/event/pvz"][:], [PV_Z, 0.0, PV_Z])
        np.testing.assert_allclose(f["common/event/pvx"][:], [0.3, 0.0, -0.2], rtol=1e-6)
        np.testing.assert_allclose(f["common/event/pvy"][:], [-0.1, 0.0, 0.05], rtol=1e-6)
        np.testing.assert_allclose(f["common/event/mu"][:], [30.5, 40.5, 50.5])
        assert f["common/event/experiment_id"][:].tolist() == [0] * N_PL
        assert f["common/event/is_simulation"][:].tolist() == [1] * N_PL
        assert f["atlas/event/event_number"][:].tolist() == [101, 102, 2**63 + 3]
        assert f["atlas/event/mcChannelNumber"][:].tolist() == [345060] * N_PL

        # MET by hand: -(e0 + e1 + mu + photon + j1; j0 overlaps e0) (+ the track soft term)
        objs = [(40, 0.0), (15, 2.0), (25, -1.5), (30, 1.0), (45, 3.0)]
        px = -sum(p * math.cos(a) for p, a in objs)
        py = -sum(p * math.sin(a) for p, a in objs)
        sumet = sum(p for p, _ in objs)
        if rntuple:
            px, py, sumet = px + 2.0, py - 1.0, sumet + 8.0
        assert f["common/met/pt"][0] == pytest.approx(math.hypot(px, py), rel=1e-5)
        assert f["common/met/phi"][0] == pytest.approx(math.atan2(py, px), abs=1e-5)
        assert f["common/met/sumet"][0] == pytest.approx(sumet, rel=1e-5)
        assert f["common/met/sumet"][1] == pytest.approx(8.0 if rntuple else 0.0)
    md = read_metadata(out)
    assert md["experiment"] == "ATLAS" and md["source_format"] == "physlite"
    assert md["track_z0_reference"] == "z0 + vz - PV z"
    assert ("PVSoftTrkCore" in md["met_source"]) == rntuple
    assert md["source_branches"]["jets/DL1d_pb"] == ["BTagging_AntiKt4EMPFlowAuxDyn.DL1dv01_pb"]
    assert not inspect_files(out)["problems"]


# --------------------------------------------------------------------------------------
# errors and warnings
# --------------------------------------------------------------------------------------
def test_missing_required_branch_names_branch_and_file(tmp_path):
    path = tmp_path / "no_pt.root"
    _write_ttree(path, "Events", _nano_data(**_collection("Electron", NANO_ELECTRONS, NANO_ELECTRON_TYPES, ["pt"])))
    out = tmp_path / "x.h5"
    with pytest.raises(ConversionError, match=r"no_pt\.root: required branch 'Electron_pt' not found in tree 'Events'"):
        convert_files("nanoaod", str(path), out, progress=False)
    assert not out.exists()
    pl = tmp_path / "no_theta.root"
    data = _physlite_data(False)
    del data["InDetTrackParticlesAuxDyn.theta"]
    _write_ttree(pl, "CollectionTree", data)
    with pytest.raises(ConversionError, match=r"no_theta\.root: required branch 'InDetTrackParticlesAuxDyn\.theta'"):
        convert_files("physlite", str(pl), out, progress=False)


@pytest.mark.filterwarnings("ignore::hep_event_models.convert.ConversionWarning")
def test_bad_inputs_fail_clearly(tmp_path, nano_file):
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a ROOT file at all" * 10)
    with pytest.raises(ConversionError, match=r"junk\.root: cannot open as a ROOT file"):
        convert_files("nanoaod", str(junk), tmp_path / "o.h5", progress=False)
    with pytest.raises(
        ConversionError, match=r"nano\.root: no tree 'CollectionTree' in the file \(it has: \['Events'\]"
    ):
        convert_files("physlite", nano_file, tmp_path / "o.h5", progress=False)
    with pytest.raises(FileNotFoundError, match=r"missing\.root"):
        convert_files("nanoaod", str(tmp_path / "missing.root"), tmp_path / "o.h5", progress=False)
    with pytest.raises(ValueError, match="unknown format 'delphes'"):
        convert_files("delphes", nano_file, tmp_path / "o.h5")
    jagged_met = tmp_path / "jagged_met.root"
    _write_ttree(jagged_met, "Events", _nano_data(MET_pt=_jagged([[1.0]] * N_NANO, "f4")))
    with pytest.raises(ConversionError, match=r"jagged_met\.root: .*'MET_pt' has 2 dimensions"):
        convert_files("nanoaod", str(jagged_met), tmp_path / "o.h5", progress=False)
    bad_count = tmp_path / "bad_count.root"
    eta = [NANO_ELECTRONS[0], [dict(eta=0.0)], *NANO_ELECTRONS[2:]]  # one electron too many in event 1
    data = _nano_data(**_collection("Electron", NANO_ELECTRONS, NANO_ELECTRON_TYPES, ["eta"]))
    data["Electron_eta"] = _jagged([[o["eta"] for o in e] for e in eta], "f4")
    _write_ttree(bad_count, "Events", data)
    with pytest.raises(ConversionError, match=r"bad_count\.root: branch 'Electron_eta' has a different number"):
        convert_files("nanoaod", str(bad_count), tmp_path / "o.h5", progress=False)
    assert not (tmp_path / "o.h5").exists()
    with pytest.raises(ValueError, match="unknown collection 'jet'"):
        parse_assignments("jet=3", int, "max_objects")


def test_missing_optional_branches_warn_once(tmp_path, nano_file):
    second = tmp_path / "nano2.root"
    _write_ttree(second, "Events", _nano_data(Pileup_nTrueInt=None, genWeight=None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = convert_files("nanoaod", [nano_file, str(second)], tmp_path / "o.h5", progress=False, step_size=2)
    conv = [w for w in caught if issubclass(w.category, ConversionWarning)]
    assert len(conv) == 1, [str(w.message) for w in conv]
    msg = str(conv[0].message)
    assert "Electron_sip3d" in msg and "Pileup_nTrueInt" in msg and "some files only" in msg
    assert s["missing_branches"]["Pileup_nTrueInt"] == [str(second)]
    with h5py.File(tmp_path / "o.h5") as f:  # data file: mu 0, is_simulation 0
        assert f["common/event/mu"][N_NANO:].tolist() == [0.0] * N_NANO
        assert f["common/event/is_simulation"][:].tolist() == [1] * N_NANO + [0] * N_NANO


# --------------------------------------------------------------------------------------
# streaming: chunks and files do not change the output
# --------------------------------------------------------------------------------------
def _random_nano(rng, n: int) -> dict:
    def coll(prefix, lam, kin, extra):
        counts = rng.poisson(lam, n)
        k = int(counts.sum())
        out = {
            "pt": ak.unflatten(rng.uniform(*kin, k).astype("f4"), counts),
            "eta": ak.unflatten(rng.uniform(-2.5, 2.5, k).astype("f4"), counts),
            "phi": ak.unflatten(rng.uniform(-np.pi, np.pi, k).astype("f4"), counts),
        }
        for name, fn in extra.items():
            out[name] = ak.unflatten(fn(k), counts)
        return {prefix: ak.zip(out)}

    sign = lambda k: rng.choice([-1, 1], k).astype("i4")  # noqa: E731
    return {
        **coll("Electron", 1.2, (3, 90), {"charge": sign, "pfRelIso03_chg": lambda k: rng.random(k).astype("f4")}),
        **coll("Muon", 1.2, (3, 90), {"charge": sign, "tightId": lambda k: rng.random(k) < 0.5}),
        **coll("Tau", 0.8, (15, 90), {"charge": sign, "decayMode": lambda k: rng.choice([0, 1, 10], k).astype("u1")}),
        **coll("Photon", 1.0, (5, 90), {}),
        **coll("Jet", 5.0, (15, 300), {"mass": lambda k: rng.uniform(1, 30, k).astype("f4")}),
        **coll(
            "PFCands",
            40.0,
            (0.2, 30),
            {
                "charge": lambda k: rng.choice([-1, 0, 1], k).astype("i4"),
                "dz": lambda k: rng.normal(0, 0.3, k).astype("f4"),
            },
        ),
        "MET_pt": rng.uniform(0, 100, n).astype("f4"),
        "MET_phi": rng.uniform(-3, 3, n).astype("f4"),
        "PV_z": rng.normal(0, 4, n).astype("f4"),
        "event": np.arange(n, dtype="u8"),
    }


def test_chunked_multi_file_equals_single_step(tmp_path):
    rng = np.random.default_rng(7)
    a, b = _random_nano(rng, 150), _random_nano(rng, 110)
    fa, fb, fab = tmp_path / "a.root", tmp_path / "b.root", tmp_path / "ab.root"
    _write_ttree(fa, "Events", a, pieces=3)
    _write_ttree(fb, "Events", b, pieces=2)
    _write_ttree(fab, "Events", {k: ak.concatenate([a[k], b[k]]) for k in a}, pieces=1)
    _convert_quiet("nanoaod", [str(fa), str(fb)], tmp_path / "chunked.h5", step_size=37, chunk_events=64)
    _convert_quiet("nanoaod", str(fab), tmp_path / "whole.h5", step_size=100_000)
    with h5py.File(tmp_path / "chunked.h5") as f1, h5py.File(tmp_path / "whole.h5") as f2:
        keys = []
        f1.visit(lambda k: keys.append(k) if isinstance(f1[k], h5py.Dataset) else None)
        assert len(keys) > 80 and "common/muons/trk_iso03" in keys
        for k in keys:
            np.testing.assert_array_equal(f1[k][:], f2[k][:], err_msg=k)
        assert f1["common/muons/trk_iso03"][:].max() > 0  # computed from the PF candidates
    md = read_metadata(tmp_path / "chunked.h5")
    assert md["n_events"] == 260 and md["input_file"] == [str(fa), str(fb)]


def test_cone_sum_batches_match_brute_force():
    rng = np.random.default_rng(3)
    n_ev = 50
    no, nt = rng.integers(0, 4, n_ev), rng.integers(0, 30, n_ev)
    objs = Flat(
        np.repeat(np.arange(n_ev), no),
        {"eta": rng.uniform(-1, 1, no.sum()), "phi": rng.uniform(-np.pi, np.pi, no.sum())},
        n_ev,
    )
    trks = Flat(
        np.repeat(np.arange(n_ev), nt),
        {
            "eta": rng.uniform(-1, 1, nt.sum()),
            "phi": rng.uniform(-np.pi, np.pi, nt.sum()),
            "pt": rng.uniform(0.5, 10, nt.sum()),
        },
        n_ev,
    )
    want = np.zeros(len(objs))
    for i in range(len(objs)):
        same = np.flatnonzero(trks.row == objs.row[i])
        dr = delta_r(objs["eta"][i], objs["phi"][i], trks["eta"][same], trks["phi"][same])
        inside = dr < 0.8
        if inside.any() and dr.min() < 0.3:
            inside[np.argmin(dr)] = False  # own track
        want[i] = trks["pt"][same][inside].sum()
    for max_pairs in (1, 7, 10**6):
        np.testing.assert_allclose(cone_sum(objs, trks, 0.8, 0.3, max_pairs=max_pairs), want, rtol=1e-12)


# --------------------------------------------------------------------------------------
# schema, reader and CLI
# --------------------------------------------------------------------------------------
def test_mapping_tables_cover_the_schema():
    for conv, tables, exp in (
        (nanoaod.NanoAODConverter, nanoaod.OBJECT_TABLES, "CMS"),
        (physlite.PhysliteConverter, physlite.OBJECT_TABLES, "ATLAS"),
    ):
        assert conv.experiment == exp
        for name, table in tables.items():
            fields = schema.COLLECTIONS[name].fields_for(exp)
            assert {k for k in table if not k.startswith("_")} <= set(fields), name
            assert {"pt", "eta", "phi"} <= {k for k, s in table.items() if s.required}
    for c in schema.COLLECTIONS.values():
        names = [f.name for f in (*c.common, *c.atlas, *c.cms)]
        assert len(names) == len(set(names)), c.name


def test_cms_files_read_with_common_features_next_to_atlas_files(tmp_path, nano_file, small_file):
    out = tmp_path / "cms.h5"
    _convert_quiet("nanoaod", nano_file, out)
    common_muons = ObjectConfig.from_dict({"object": "muons", "features": ["pt", "eta", "phi", "charge", "trk_iso03"]})
    batches = list(
        EventReader([small_file, str(out)], selection=[common_muons], scalars=["event/experiment_id"], chunk_size=1000)
    )
    b = EventBatch.concat(batches)
    assert len(b) == 2000 + N_NANO
    assert set(np.unique(b.scalars["event/experiment_id"]).tolist()) == {0, 1}
    np.testing.assert_allclose(b.collections["muons"].feature("pt")[-1, :2], [60.0, 6.0])
    with pytest.raises(EventFileError, match=r"cms\.h5: atlas/jets/GN2_pb: atlas/ feature, but this is a CMS file"):
        list(EventReader(str(out), selection=[load_object_config("jets")]))
    got = EventBatch.concat(list(EventReader(str(out), selection=None, chunk_size=3)))  # common + cms
    assert "btagDeepFlavB" in got.collections["jets"].features and "GN2_pb" not in got.collections["jets"].features
    cms_jets = ObjectConfig.from_dict({"object": "jets", "features": ["pt", "btagDeepFlavB"]})
    assert cms_jets.features[1].source == "cms/jets/btagDeepFlavB"
    mixed = EventReader([small_file, str(out)], selection=None)
    assert mixed.selection["jets"] == ["pt", "eta", "phi", "mass", "n_trk"]
    with h5py.File(out, "r+") as f:
        f["metadata"].attrs["experiment"] = "LHCb"
    assert any("unknown experiment 'LHCb'" in p for p in inspect_files(out)["problems"])


def test_writer_checks_the_experiment_group(tmp_path):
    from hep_event_models.generator import generate_batch

    batch = generate_batch("dy", 10, seed=1)
    with pytest.raises(ValueError, match=r"lacks schema keys.*cms/"):
        write_events(tmp_path / "a.h5", batch, metadata=schema.default_metadata(0, experiment="CMS"))
    with pytest.raises(ValueError, match="metadata experiment is CMS"):
        cms_keys = {}
        for c in schema.COLLECTIONS.values():
            for f in c.cms:
                shape = (10, c.max_objects) if c.per_object else (10,)
                cms_keys[c.path_of(f.name)] = np.zeros(shape, f.dtype)
        write_events(tmp_path / "b.h5", {**batch, **cms_keys}, metadata=schema.default_metadata(0, experiment="CMS"))
    assert not list(tmp_path.iterdir())


def test_cli_convert(tmp_path, nano_file, capsys):
    out, js = tmp_path / "cli.h5", tmp_path / "cli.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        rc = main(
            [
                "convert",
                "--format",
                "nanoaod",
                nano_file,
                "--out",
                str(out),
                "--max-objects",
                "jets=4",
                "--pt-cuts",
                "jets=40,electrons=10",
                "--step-size",
                "2",
                "--process",
                "dy",
                "--json",
                str(js),
                "--quiet",
            ]
        )
    assert rc == 0
    assert f"wrote {N_NANO} CMS events" in capsys.readouterr().out
    summary = json.loads(js.read_text())
    assert summary["n_events"] == N_NANO and summary["experiment"] == "CMS"
    md = read_metadata(out)
    assert md["max_objects"]["jets"] == 4 and md["pt_cuts"]["jets"] == 40.0 and md["process"] == "dy"
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["common/jets/pt"][0], [190, 180, 170, 160])
        assert f["common/jets/n"][3] == 1
    b = next(iter(EventReader(str(out), selection={"met": ["pt"]})))
    assert (b.labels == schema.PROCESS_IDS["dy"]).all()
    assert main(["convert", "--format", "nanoaod", str(tmp_path / "nope.root"), "--out", str(out), "--quiet"]) == 2
