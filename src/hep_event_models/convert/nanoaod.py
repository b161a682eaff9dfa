"""CMS NanoAOD → schema (``common/`` + ``cms/``, ``experiment_id`` 1).

Input: the flat ``Events`` tree of NanoAOD (v9 to v15): per collection a counter
(``nElectron``) and one jagged branch per variable (``Electron_pt``, ...). NanoAOD stores
GeV and radians like the schema, but lengths in **cm**: vertex positions and impact
parameters are converted to mm.

Mapping (the tables below are the reference; candidates are tried in order):

======================  ===============================================================
``common/electrons``    ``Electron_{pt,eta,phi,charge}``; ``trk_iso03`` see below
``common/muons``        ``Muon_{pt,eta,phi,charge}``; ``trk_iso03`` see below
``common/taus``         ``Tau_{pt,eta,phi,charge}``; ``is_1prong`` = ``Tau_decayMode`` ∈ {0, 1, 2}
``common/photons``      ``Photon_{pt,eta,phi}``; ``trk_iso03`` see below
``common/jets``         ``Jet_{pt,eta,phi,mass}``; ``n_trk`` = ``Jet_chMultiplicity``
                        (older files: ``Jet_nConstituents``, which also counts neutrals)
``common/tracks``       charged ``PFCands_*`` when present (PFNano), else ``IsoTrack_*``;
                        ``d0`` = ``dxy``, ``z0`` = ``dz`` (both w.r.t. the PV, cm → mm)
``common/met``          ``MET_{pt,phi,sumEt}`` (``PFMET_*`` in v15)
``common/event``        ``PV_{x,y,z}`` (cm → mm); ``mu`` = ``Pileup_nTrueInt`` (simulation
                        only: 0 in data); ``is_simulation`` = file has ``genWeight``
``cms/<collection>``    ID flags, taggers and PF isolations (tables below)
``cms/event``           ``run``, ``luminosityBlock``, ``event``, ``PV_npvsGood``
``truth/jets``          ``HadronConeExclTruthLabelID`` = ``Jet_hadronFlavour`` (simulation)
======================  ===============================================================

**Isolation** (``trk_iso03``, DESIGN §2: Σ pT of tracks with ΔR < 0.3, pT > 0.5 GeV,
|z0 sin θ| < 3 mm w.r.t. the PV, without the object's own track, over the object's pT).
NanoAOD has no tracks in general, so by default the nearest standard variable is used:
``Electron_pfRelIso03_chg``, ``Muon_pfRelIso03_chg``, ``Photon_pfRelIso03_chg_quadratic``
(``Photon_pfRelIso03_chg`` before v11). Differences: they sum charged PF *hadrons* (not
all tracks: no leptons, no lost tracks), associated with the PV by the PF
vertex association instead of the |z0 sin θ| cut, with no 0.5 GeV floor and the CMS veto
cones instead of removing exactly one track; the photon variable carries a
pile-up (effective-area) correction. When the file has PF candidates (PFNano:
``PFCands_{pt,eta,phi,charge,dz}``), ``trk_iso03`` is computed by the DESIGN definition from
the charged candidates instead (``dz`` is w.r.t. the PV; the nearest candidate within
ΔR < 0.01 is the object's own track for electrons and muons). The file's ``metadata``
attribute ``trk_iso03_source`` says which was used.

CMS-only variables with no counterpart in ``common/`` go to ``cms/``; the ATLAS-only ones
of ``atlas/`` (LH IDs, topoetcone, DL1d/GN2, QG variables, track fit χ²) do not exist.
"""

from __future__ import annotations

from typing import ClassVar

import awkward as ak
import numpy as np

from .. import schema
from .base import Converter
from .objects import Flat, cone_sum, flat_collection, select, sin_theta_from_eta
from .sources import CM, Resolution, Source, read, src

#: Electrons. GeV, rad; ``trk_iso03`` and the ``pfRelIso``/``miniPFRelIso`` are relative (÷ pT).
ELECTRONS: dict[str, Source] = {
    "pt": src("Electron_pt", required=True, doc="GeV"),
    "eta": src("Electron_eta", required=True),
    "phi": src("Electron_phi", required=True, doc="rad"),
    "charge": src("Electron_charge", required=True, doc="±1"),
    "trk_iso03": src("Electron_pfRelIso03_chg", doc="PF charged-hadron isolation ΔR<0.3 / pT (see module doc)"),
    "cutBased": src("Electron_cutBased", doc="0 fail .. 4 tight"),
    "mvaIso_WP80": src("Electron_mvaIso_WP80", "Electron_mvaFall17V2Iso_WP80"),
    "mvaIso_WP90": src("Electron_mvaIso_WP90", "Electron_mvaFall17V2Iso_WP90"),
    "convVeto": src("Electron_convVeto"),
    "pfRelIso03_all": src("Electron_pfRelIso03_all"),
    "miniPFRelIso_all": src("Electron_miniPFRelIso_all"),
    "sip3d": src("Electron_sip3d"),
}

#: Muons. GeV, rad; isolations relative.
MUONS: dict[str, Source] = {
    "pt": src("Muon_pt", required=True, doc="GeV"),
    "eta": src("Muon_eta", required=True),
    "phi": src("Muon_phi", required=True, doc="rad"),
    "charge": src("Muon_charge", required=True, doc="±1"),
    "trk_iso03": src("Muon_pfRelIso03_chg", doc="PF charged-hadron isolation ΔR<0.3 / pT (see module doc)"),
    "looseId": src("Muon_looseId"),
    "mediumId": src("Muon_mediumId"),
    "tightId": src("Muon_tightId"),
    "pfIsoId": src("Muon_pfIsoId", doc="0 none .. 6 VeryVeryTight"),
    "pfRelIso04_all": src("Muon_pfRelIso04_all"),
    "miniPFRelIso_all": src("Muon_miniPFRelIso_all"),
    "sip3d": src("Muon_sip3d"),
}

#: Hadronic taus. GeV, rad; DeepTau scores in [0, 1]. ``idDeepTau*`` become the number of
#: working points passed (v12+ store that index; v9's 2017v2p1 bit masks are bit-counted).
TAUS: dict[str, Source] = {
    "pt": src("Tau_pt", required=True, doc="GeV"),
    "eta": src("Tau_eta", required=True),
    "phi": src("Tau_phi", required=True, doc="rad"),
    "charge": src("Tau_charge", required=True),
    "decayMode": src("Tau_decayMode", required=True, doc="5 (prongs - 1) + pi0s; also gives is_1prong"),
    "rawDeepTauVSjet": src("Tau_rawDeepTau2018v2p5VSjet", "Tau_rawDeepTau2017v2p1VSjet"),
    "rawDeepTauVSe": src("Tau_rawDeepTau2018v2p5VSe", "Tau_rawDeepTau2017v2p1VSe"),
    "rawDeepTauVSmu": src("Tau_rawDeepTau2018v2p5VSmu", "Tau_rawDeepTau2017v2p1VSmu"),
    "idDeepTauVSjet": src(
        "Tau_idDeepTau2018v2p5VSjet",
        "Tau_idDeepTau2017v2p1VSjet",
        transforms={"Tau_idDeepTau2017v2p1VSjet": "popcount"},
    ),
    "idDeepTauVSe": src(
        "Tau_idDeepTau2018v2p5VSe", "Tau_idDeepTau2017v2p1VSe", transforms={"Tau_idDeepTau2017v2p1VSe": "popcount"}
    ),
    "idDeepTauVSmu": src(
        "Tau_idDeepTau2018v2p5VSmu",
        "Tau_idDeepTau2017v2p1VSmu",
        transforms={"Tau_idDeepTau2017v2p1VSmu": "popcount"},
    ),
}

#: Photons. GeV, rad; isolations relative.
PHOTONS: dict[str, Source] = {
    "pt": src("Photon_pt", required=True, doc="GeV"),
    "eta": src("Photon_eta", required=True),
    "phi": src("Photon_phi", required=True, doc="rad"),
    "trk_iso03": src(
        "Photon_pfRelIso03_chg_quadratic", "Photon_pfRelIso03_chg", doc="PF charged isolation / pT (see module doc)"
    ),
    "cutBased": src("Photon_cutBased", doc="0 fail, 1 loose, 2 medium, 3 tight"),
    "mvaID": src("Photon_mvaID"),
    "mvaID_WP80": src("Photon_mvaID_WP80"),
    "mvaID_WP90": src("Photon_mvaID_WP90"),
    "electronVeto": src("Photon_electronVeto"),
    "pixelSeed": src("Photon_pixelSeed"),
    "pfRelIso03_all": src("Photon_pfRelIso03_all_quadratic", "Photon_pfRelIso03_all"),
}

#: AK4 jets. GeV, rad; tagger scores in [0, 1] (-1 when not evaluated); energy fractions.
JETS: dict[str, Source] = {
    "pt": src("Jet_pt", required=True, doc="GeV"),
    "eta": src("Jet_eta", required=True),
    "phi": src("Jet_phi", required=True, doc="rad"),
    "mass": src("Jet_mass", required=True, doc="GeV"),
    "n_trk": src("Jet_chMultiplicity", "Jet_nConstituents", doc="charged PF constituents (see module doc)"),
    "btagDeepFlavB": src("Jet_btagDeepFlavB"),
    "btagDeepFlavCvL": src("Jet_btagDeepFlavCvL"),
    "btagDeepFlavCvB": src("Jet_btagDeepFlavCvB"),
    "btagDeepFlavQG": src("Jet_btagDeepFlavQG"),
    "btagPNetB": src("Jet_btagPNetB"),
    "btagPNetCvL": src("Jet_btagPNetCvL"),
    "btagPNetCvB": src("Jet_btagPNetCvB"),
    "btagPNetQvG": src("Jet_btagPNetQvG"),
    "btagUParTAK4B": src("Jet_btagUParTAK4B"),
    "jetId": src("Jet_jetId"),
    "nConstituents": src("Jet_nConstituents"),
    "chHEF": src("Jet_chHEF"),
    "neHEF": src("Jet_neHEF"),
    "chEmEF": src("Jet_chEmEF"),
    "neEmEF": src("Jet_neEmEF"),
    "_truth_flavour": src("Jet_hadronFlavour", default=-1, report=False, doc="5 b, 4 c, 0 light (simulation)"),
}

#: Isolated tracks (the default ``tracks``). GeV, rad; ``dxy``/``dz`` cm → mm, w.r.t. the PV.
ISO_TRACKS: dict[str, Source] = {
    "pt": src("IsoTrack_pt", required=True, doc="GeV"),
    "eta": src("IsoTrack_eta", required=True),
    "phi": src("IsoTrack_phi", required=True, doc="rad"),
    "d0": src("IsoTrack_dxy", scale=CM, doc="mm, transverse IP w.r.t. the PV"),
    "z0": src("IsoTrack_dz", scale=CM, doc="mm, longitudinal IP w.r.t. the PV"),
    "charge": src("IsoTrack_charge"),
    "fromPV": src("IsoTrack_fromPV"),
    "pfRelIso03_chg": src("IsoTrack_pfRelIso03_chg"),
    "isHighPurityTrack": src("IsoTrack_isHighPurityTrack"),
}

#: PF candidates (PFNano), when present: charged ones are the ``tracks`` and feed ``trk_iso03``.
#: GeV, rad; ``d0``/``dz`` cm → mm, w.r.t. the PV.
PF_CANDIDATES: dict[str, Source] = {
    "pt": src("PFCands_pt", required=True, report=False, doc="GeV"),
    "eta": src("PFCands_eta", required=True, report=False),
    "phi": src("PFCands_phi", required=True, report=False, doc="rad"),
    "charge": src("PFCands_charge", required=True, report=False),
    "z0": src("PFCands_dz", required=True, report=False, scale=CM, doc="mm, w.r.t. the PV"),
    "d0": src("PFCands_d0", scale=CM, report=False, doc="mm"),
    "fromPV": src("PFCands_fromPV", report=False),
}

#: Missing transverse momentum (GeV, rad).
MET: dict[str, Source] = {
    "pt": src("MET_pt", "PFMET_pt", required=True, doc="GeV"),
    "phi": src("MET_phi", "PFMET_phi", required=True, doc="rad"),
    "sumet": src("MET_sumEt", "PFMET_sumEt", doc="GeV"),
}

#: Per-event variables. Vertex positions cm → mm; ``mu`` is the true mean number of
#: interactions (simulation only).
EVENT: dict[str, Source] = {
    "pvx": src("PV_x", scale=CM, doc="mm"),
    "pvy": src("PV_y", scale=CM, doc="mm"),
    "pvz": src("PV_z", scale=CM, doc="mm"),
    "mu": src("Pileup_nTrueInt", doc="mean interactions per crossing (simulation)"),
    "run": src("run"),
    "luminosityBlock": src("luminosityBlock"),
    "event": src("event"),
    "npvsGood": src("PV_npvsGood"),
}

OBJECT_TABLES = {"electrons": ELECTRONS, "muons": MUONS, "taus": TAUS, "photons": PHOTONS, "jets": JETS}
SIMULATION_BRANCH = "genWeight"  # present only in simulated files
ONE_PRONG_DECAY_MODES = (0, 1, 2)
ISO_OBJECTS = ("electrons", "muons", "photons")


class NanoAODConverter(Converter):
    """CMS NanoAOD ``Events`` trees → ``common/`` + ``cms/`` (see the module doc)."""

    format = "nanoaod"
    experiment = schema.CMS_EXPERIMENT
    default_tree = "Events"
    tables: ClassVar[dict[str, dict[str, Source]]] = {
        **OBJECT_TABLES,
        "iso_tracks": ISO_TRACKS,
        "pf_candidates": PF_CANDIDATES,
        "met": MET,
        "event": EVENT,
    }
    optional_tables: ClassVar[tuple[str, ...]] = ("iso_tracks", "pf_candidates")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.iso_sources: set[str] = set()
        self.track_sources: set[str] = set()

    def resolve(self, available: set[str]) -> Resolution:
        res = super().resolve(available)
        pf = all(res.has("pf_candidates", k) for k, s in PF_CANDIDATES.items() if s.required)
        drop = "iso_tracks" if pf else "pf_candidates"
        dropped = {b for s in self.tables[drop].values() for b in s.branches[:1]}
        res.chosen[drop] = dict.fromkeys(self.tables[drop])
        if pf:  # isolation is computed: the pfRelIso03_chg variables are not needed
            for t in ISO_OBJECTS:
                dropped.add(self.tables[t]["trk_iso03"].branches[0])
                res.chosen[t]["trk_iso03"] = None
        res.missing_optional = [b for b in res.missing_optional if b not in dropped]
        res.missing_required = [m for m in res.missing_required if m[0] != drop]
        res.info["pf_candidates"] = pf
        res.info["has_tracks"] = pf or res.has("iso_tracks", "pt")
        res.info["is_simulation"] = SIMULATION_BRANCH in available
        if not res.info["has_tracks"]:
            res.missing_optional = sorted({*res.missing_optional, "IsoTrack_pt"})
        return res

    def has_truth(self, res: Resolution) -> bool:
        return res.has("jets", "_truth_flavour")

    def convert(self, arrays: ak.Array, res: Resolution, path: str) -> dict[str, np.ndarray]:
        n = len(arrays)
        out: dict[str, np.ndarray] = {}
        pf = res.info["pf_candidates"]
        if pf:
            candidates = self._charged_candidates(arrays, res, path)
            iso_tracks = candidates.take(
                (candidates["pt"] > schema.ISO_PT_FLOOR_GEV)
                & (np.abs(candidates["z0"] * candidates["sin_theta"]) < schema.ISO_Z0SINTHETA_CUT_MM)
            )
        for name in OBJECT_TABLES:
            sel = select(self.read_objects(arrays, res, name, path), self.pt_cuts[name], self.max_objects[name])
            if name == "taus":
                sel.values["is_1prong"] = np.isin(sel["decayMode"], ONE_PRONG_DECAY_MODES).astype(np.int8)
            if name in ISO_OBJECTS and pf:
                own = self.own_track_dr if name != "photons" else None  # photons have no own track
                sums = cone_sum(sel, iso_tracks, schema.ISO_CONE, own)
                sel.values["trk_iso03"] = sums / np.maximum(np.asarray(sel["pt"], np.float64), 1e-9)
            self.write_objects(out, name, sel)
            if name == "jets" and self.write_truth:
                self.write_truth_flavour(out, sel, "_truth_flavour")
        self.iso_sources.add("pf_candidates" if pf else "pfRelIso03_chg")
        if pf:
            tracks = candidates
            self.track_sources.add("PFCands (charged)")
        elif res.info["has_tracks"]:
            tracks = self.read_objects(arrays, res, "iso_tracks", path)
            self.track_sources.add("IsoTrack")
        else:
            tracks = Flat(np.zeros(0, np.int64), {k: np.zeros(0) for k in ISO_TRACKS}, n)
        for key in schema.COLLECTIONS["tracks"].fields_for(self.experiment):
            tracks.values.setdefault(key, np.zeros(len(tracks), np.float32))  # not in PFCands
        self.write_objects(out, "tracks", select(tracks, self.pt_cuts["tracks"], self.max_objects["tracks"]))

        self.write_scalars(out, "met", self.read_event(arrays, res, "met", path))
        ev = self.read_event(arrays, res, "event", path)
        is_sim = res.info["is_simulation"] if self.is_simulation is None else bool(self.is_simulation)
        ev["experiment_id"] = np.full(n, schema.EXPERIMENT_IDS[self.experiment])
        ev["is_simulation"] = np.full(n, int(is_sim))
        self.write_scalars(out, "event", ev)
        return out

    def _charged_candidates(self, arrays: ak.Array, res: Resolution, path: str) -> Flat:
        """Charged PF candidates with sin θ (for |z0 sin θ|), as ``Flat``."""
        tab = PF_CANDIDATES
        chosen = res.chosen["pf_candidates"]
        flat, _ = flat_collection(
            read(arrays, tab, chosen),
            chosen,
            {k: s.default for k, s in tab.items()},
            len(arrays),
            path,
            required={k for k, s in tab.items() if s.required},
        )
        flat = flat.take(flat["charge"] != 0)
        flat.values["sin_theta"] = sin_theta_from_eta(flat["eta"])
        return flat

    def describe(self) -> dict[str, str]:
        iso = {
            "pfRelIso03_chg": "NanoAOD *_pfRelIso03_chg (PF charged hadrons from the PV, CMS veto cones, "
            "no 0.5 GeV floor; photons: Photon_pfRelIso03_chg_quadratic)",
            "pf_candidates": "DESIGN definition from charged PFCands: dR<0.3, pT>0.5 GeV, |dz sin(theta)|<3 mm "
            "w.r.t. the PV, nearest candidate within dR<0.01 removed for electrons and muons",
        }
        return {
            "trk_iso03_source": "; ".join(iso[s] for s in sorted(self.iso_sources)),
            "tracks_source": ", ".join(sorted(self.track_sources)) or "none (no IsoTrack_* or PFCands_* branches)",
            "met_source": "MET_pt, MET_phi, MET_sumEt (PF MET as stored)",
            "mu_source": "Pileup_nTrueInt (0 where absent, e.g. in data)",
        }
