"""ATLAS DAOD_PHYSLITE → schema (``common/`` + ``atlas/``, ``experiment_id`` 0).

Input: the ``CollectionTree`` of PHYSLITE (TTree or RNTuple), read through the dynamic
auxiliary-store branches ``<Container>AuxDyn.<variable>``. PHYSLITE stores energies and
momenta in **MeV** (converted to GeV), angles in radians, lengths in mm.

Mapping (the tables below are the reference; candidates are tried in order):

======================  ===============================================================
``common/electrons``    ``AnalysisElectronsAuxDyn.{pt,eta,phi,charge}``; ``trk_iso03`` computed
``common/muons``        ``AnalysisMuonsAuxDyn.{pt,eta,phi,charge}``; ``trk_iso03`` computed
``common/taus``         ``AnalysisTauJetsAuxDyn.{pt,eta,phi,charge}``; ``is_1prong`` =
                        ``NNDecayMode`` ∈ {0 1p0n, 1 1p1n, 2 1pXn}
``common/photons``      ``AnalysisPhotonsAuxDyn.{pt,eta,phi}``; ``trk_iso03`` computed
``common/jets``         ``AnalysisJetsAuxDyn.{pt,eta,phi,m}``; ``n_trk`` = ``NumTrkPt500`` summed
                        over vertices (it is stored per primary-vertex candidate)
``common/tracks``       ``InDetTrackParticlesAuxDyn``: pT = |sin θ / qOverP|, η = −ln tan(θ/2),
                        ``phi``, ``d0``; ``z0`` re-expressed w.r.t. the PV (below)
``common/met``          rebuilt (below)
``common/event``        PV = the ``PrimaryVerticesAuxDyn`` entry with ``vertexType`` 1
                        (first entry if absent); ``mu`` = ``averageInteractionsPerCrossing``;
                        ``is_simulation`` from ``eventTypeBitmask`` (else ``mcChannelNumber`` > 0)
``atlas/<collection>``  ID flags (``DFCommon*``), isolation variables, taggers (``DL1dv01_*``,
                        ``GN2v01_*``, on the jets or in ``BTagging_AntiKt4EMPFlowAuxDyn``),
                        QG variables, track ``qOverP`` (1/GeV), ``chiSquared``, ``numberDoF``
``atlas/event``         ``eventNumber``, ``runNumber``, ``mcChannelNumber``
``truth/jets``          ``HadronConeExclTruthLabelID`` (simulation)
======================  ===============================================================

**Track z0.** xAOD ``z0`` is measured from the track's reference point ``vz`` (the beam
spot): z0 w.r.t. the PV = ``z0 + vz − PV z``. Without ``vz`` it is taken as 0 (the beam spot
at z = 0; the ``metadata`` attribute ``track_z0_reference`` says which).

**Isolation** (``trk_iso03``, DESIGN §2) is computed from ``InDetTrackParticles``: Σ pT of
tracks with ΔR < 0.3, pT > 0.5 GeV and |z0 sin θ| < 3 mm w.r.t. the PV, over the object's
pT, leaving out the object's own track (the nearest track within ΔR < 0.01; photons keep
all). Caveat: PHYSLITE *thins* ``InDetTrackParticles`` (tight-primary tracks above ~10 GeV
from the PV plus lepton and tau tracks), so on PHYSLITE the sum misses the soft tracks and
runs low; on formats that keep all tracks (PHYS, ntuples with these branch names) it is
the DESIGN quantity. Electrons' own tracks are GSF tracks, not in ``InDetTrackParticles``:
their ID track (if kept) is what the ΔR < 0.01 veto removes.

**MET.** PHYSLITE has no final MET (analyses rebuild it with METMaker). The converter
rebuilds a simple one: −Σ pT vectors of the electrons, muons, photons and jets passing the
converter's pT cuts, jets within ΔR < 0.2 of a kept electron or photon removed, plus the
track soft term ``PVSoftTrkCore`` of ``MET_Core_AnalysisMET`` when the term names are
readable (``sumet`` likewise). No JVT, no object calibration beyond PHYSLITE's, taus
counted as jets: an approximation of ATLAS's MET (``metadata`` ``met_source``).

Missing in ``atlas/``: photons have no ``isMedium`` in PHYSLITE (seed 004).
"""

from __future__ import annotations

from typing import ClassVar

import awkward as ak
import numpy as np

from .. import schema
from .base import Converter
from .objects import (
    Flat,
    concat,
    cone_sum,
    eta_from_theta,
    flat_collection,
    min_delta_r,
    select,
    vector_sum,
)
from .sources import MEV, Resolution, Source, read, src

# branch-name prefixes: the containers' dynamic auxiliary stores
E = "AnalysisElectronsAuxDyn"
M = "AnalysisMuonsAuxDyn"
T = "AnalysisTauJetsAuxDyn"
G = "AnalysisPhotonsAuxDyn"
J = "AnalysisJetsAuxDyn"
BTAG = "BTagging_AntiKt4EMPFlowAuxDyn"
TRK = "InDetTrackParticlesAuxDyn"
PV = "PrimaryVerticesAuxDyn"
MET_CORE = "MET_Core_AnalysisMETAuxDyn"
EVT = "EventInfoAuxDyn"

#: Electrons. MeV → GeV; rad; LH flags 0/1.
ELECTRONS: dict[str, Source] = {
    "pt": src(f"{E}.pt", required=True, scale=MEV, doc="GeV"),
    "eta": src(f"{E}.eta", required=True),
    "phi": src(f"{E}.phi", required=True, doc="rad"),
    "charge": src(f"{E}.charge", required=True, doc="±1 (stored as float)"),
    "LHLoose": src(f"{E}.DFCommonElectronsLHLoose"),
    "LHMedium": src(f"{E}.DFCommonElectronsLHMedium"),
    "LHTight": src(f"{E}.DFCommonElectronsLHTight"),
    "topoetcone20": src(f"{E}.topoetcone20", scale=MEV, doc="GeV"),
    "ptvarcone30": src(
        f"{E}.ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000",
        f"{E}.ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt1000",
        f"{E}.ptvarcone30",
        scale=MEV,
        doc="GeV",
    ),
    "mass": src(f"{E}.m", scale=MEV, doc="GeV"),
}

#: Muons. MeV → GeV; rad; quality 0 Tight .. 3 VeryLoose; muonType 0 Combined .. 4.
MUONS: dict[str, Source] = {
    "pt": src(f"{M}.pt", required=True, scale=MEV, doc="GeV"),
    "eta": src(f"{M}.eta", required=True),
    "phi": src(f"{M}.phi", required=True, doc="rad"),
    "charge": src(f"{M}.charge", required=True, doc="±1 (stored as float)"),
    "quality": src(f"{M}.quality"),
    "muonType": src(f"{M}.muonType"),
    "passIDCuts": src(f"{M}.DFCommonMuonPassIDCuts"),
    "passPresel": src(f"{M}.DFCommonMuonPassPreselection"),
    "topoetcone20": src(f"{M}.topoetcone20", scale=MEV, doc="GeV"),
    "ptvarcone30": src(f"{M}.ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt1000", f"{M}.ptvarcone30", scale=MEV, doc="GeV"),
}

#: Hadronic taus. MeV → GeV; rad; RNN scores in [0, 1] (the flattened "SigTrans" ones first).
TAUS: dict[str, Source] = {
    "pt": src(f"{T}.pt", required=True, scale=MEV, doc="GeV"),
    "eta": src(f"{T}.eta", required=True),
    "phi": src(f"{T}.phi", required=True, doc="rad"),
    "charge": src(f"{T}.charge", required=True),
    "NNDecayMode": src(f"{T}.NNDecayMode", f"{T}.PanTau_DecayMode", required=True, doc="0 1p0n .. 4 3pXn"),
    "RNNJetScore": src(f"{T}.RNNJetScoreSigTrans", f"{T}.RNNJetScore"),
    "RNNEleScore": src(f"{T}.RNNEleScoreSigTrans_v1", f"{T}.RNNEleScoreSigTrans", f"{T}.RNNEleScore"),
    "EleRNNLoose_v1": src(f"{T}.EleRNNLoose_v1"),
    "EleRNNMedium_v1": src(f"{T}.EleRNNMedium_v1"),
    "EleRNNTight_v1": src(f"{T}.EleRNNTight_v1"),
}

#: Photons. MeV → GeV; rad; IsEM flags 0/1 (no isMedium in PHYSLITE).
PHOTONS: dict[str, Source] = {
    "pt": src(f"{G}.pt", required=True, scale=MEV, doc="GeV"),
    "eta": src(f"{G}.eta", required=True),
    "phi": src(f"{G}.phi", required=True, doc="rad"),
    "isLoose": src(f"{G}.DFCommonPhotonsIsEMLoose"),
    "isTight": src(f"{G}.DFCommonPhotonsIsEMTight"),
    "isCleaning": src(f"{G}.DFCommonPhotonsCleaning"),
    "author": src(f"{G}.author"),
    "topoetcone20": src(f"{G}.topoetcone20", scale=MEV, doc="GeV"),
    "topoetcone40": src(f"{G}.topoetcone40", scale=MEV, doc="GeV"),
    "ptcone20": src(f"{G}.ptcone20", scale=MEV, doc="GeV"),
}

#: AntiKt4EMPFlow jets. MeV → GeV; rad; tagger probabilities in [0, 1]; QG variables -1
#: outside the tracker. ``NumTrkPt500`` is a list per jet (one count per vertex): summed.
JETS: dict[str, Source] = {
    "pt": src(f"{J}.pt", required=True, scale=MEV, doc="GeV"),
    "eta": src(f"{J}.eta", required=True),
    "phi": src(f"{J}.phi", required=True, doc="rad"),
    "mass": src(f"{J}.m", required=True, scale=MEV, doc="GeV"),
    "n_trk": src(f"{J}.NumTrkPt500", transforms={f"{J}.NumTrkPt500": "sum_inner"}, doc="tracks pT>0.5 GeV"),
    **{f"DL1d_{p}": src(f"{J}.DL1dv01_{p}", f"{BTAG}.DL1dv01_{p}", doc="DL1d probability") for p in ("pb", "pc", "pu")},
    **{
        f"GN2_{p}": src(f"{J}.GN2v01_{p}", f"{BTAG}.GN2v01_{p}", f"{BTAG}.GN2v00_{p}", doc="GN2 probability")
        for p in ("pb", "pc", "pu")
    },
    "QG_nTracks": src(f"{J}.DFCommonJets_QGTagger_NTracks"),
    "QG_tracksWidth": src(f"{J}.DFCommonJets_QGTagger_TracksWidth"),
    "QG_tracksC1": src(f"{J}.DFCommonJets_QGTagger_TracksC1"),
    "_truth_flavour": src(f"{J}.HadronConeExclTruthLabelID", default=-1, report=False, doc="5 b, 4 c, 15 tau, 0"),
}

#: Inner-detector tracks. ``qOverP`` 1/MeV → 1/GeV; θ, φ in rad; d0, z0, vz in mm.
TRACKS: dict[str, Source] = {
    "qOverP": src(f"{TRK}.qOverP", required=True, scale=1.0 / MEV, doc="1/GeV"),
    "_theta": src(f"{TRK}.theta", required=True, doc="rad"),
    "phi": src(f"{TRK}.phi", required=True, doc="rad"),
    "d0": src(f"{TRK}.d0", required=True, doc="mm, w.r.t. the beam line"),
    "_z0": src(f"{TRK}.z0", required=True, doc="mm, w.r.t. vz"),
    "_vz": src(f"{TRK}.vz", doc="mm, z of the reference point (beam spot)"),
    "chiSquared": src(f"{TRK}.chiSquared"),
    "nDoF": src(f"{TRK}.numberDoF"),
}

#: Primary-vertex candidates (mm); ``vertexType`` 1 is the hard-scatter vertex.
VERTICES: dict[str, Source] = {
    "z": src(f"{PV}.z", doc="mm"),
    "x": src(f"{PV}.x", doc="mm"),
    "y": src(f"{PV}.y", doc="mm"),
    "vertexType": src(f"{PV}.vertexType", default=1, report=False, doc="1 PriVtx, 3 PileUp"),
}

#: MET core terms (MeV → GeV): ``mpx``/``mpy`` already carry the minus sign of MET.
MET_TERMS: dict[str, Source] = {
    "mpx": src(f"{MET_CORE}.mpx", scale=MEV, doc="GeV"),
    "mpy": src(f"{MET_CORE}.mpy", scale=MEV, doc="GeV"),
    "sumet": src(f"{MET_CORE}.sumet", scale=MEV, doc="GeV"),
    "_name": src(f"{MET_CORE}.name", doc="term names (strings)"),
}

#: Per-event variables (``EventInfo``).
EVENT: dict[str, Source] = {
    "mu": src(f"{EVT}.averageInteractionsPerCrossing", f"{EVT}.actualInteractionsPerCrossing"),
    "event_number": src(f"{EVT}.eventNumber", "EventInfoAux.eventNumber"),
    "run_number": src(f"{EVT}.runNumber", "EventInfoAux.runNumber"),
    "mcChannelNumber": src(f"{EVT}.mcChannelNumber", "EventInfoAux.mcChannelNumber"),
    "_eventTypeBitmask": src(f"{EVT}.eventTypeBitmask", "EventInfoAux.eventTypeBitmask", report=False),
}

OBJECT_TABLES = {"electrons": ELECTRONS, "muons": MUONS, "taus": TAUS, "photons": PHOTONS, "jets": JETS}
ONE_PRONG_DECAY_MODES = (0, 1, 2)
HARD_SCATTER_VERTEX = 1
SOFT_TERM = "PVSoftTrkCore"
MET_OVERLAP_DR = 0.2
IS_SIMULATION_BIT = 1  # xAOD::EventInfo::IS_SIMULATION


class PhysliteConverter(Converter):
    """ATLAS PHYSLITE ``CollectionTree`` → ``common/`` + ``atlas/`` (see the module doc)."""

    format = "physlite"
    experiment = schema.ATLAS_EXPERIMENT
    default_tree = "CollectionTree"
    tables: ClassVar[dict[str, dict[str, Source]]] = {
        **OBJECT_TABLES,
        "tracks": TRACKS,
        "vertices": VERTICES,
        "met_terms": MET_TERMS,
        "event": EVENT,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.z0_reference: set[str] = set()
        self.soft_term: set[str] = set()

    def resolve(self, available: set[str]) -> Resolution:
        res = super().resolve(available)
        res.info["has_vz"] = res.has("tracks", "_vz")
        return res

    def has_truth(self, res: Resolution) -> bool:
        return res.has("jets", "_truth_flavour")

    def convert(self, arrays: ak.Array, res: Resolution, path: str) -> dict[str, np.ndarray]:
        n = len(arrays)
        out: dict[str, np.ndarray] = {}
        pv = self._primary_vertex(arrays, res, path)

        # tracks: kinematics from the perigee parameters, z0 w.r.t. the PV
        trk = self.read_objects(arrays, res, "tracks", path, ref="qOverP")
        theta = np.asarray(trk["_theta"], np.float64)
        qop = np.asarray(trk["qOverP"], np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            trk.values["pt"] = np.abs(np.sin(theta) / qop)
        trk.values["eta"] = eta_from_theta(theta)
        trk.values["z0"] = trk["_z0"] + trk["_vz"] - pv[2][trk.row]
        self.z0_reference.add("z0 + vz - PV z" if res.info["has_vz"] else "z0 - PV z (no vz branch: vz = 0)")
        good = trk.take(
            (trk["pt"] > schema.ISO_PT_FLOOR_GEV) & (np.abs(trk["z0"] * np.sin(theta)) < schema.ISO_Z0SINTHETA_CUT_MM)
        )

        kept: dict[str, Flat] = {}
        for name in OBJECT_TABLES:
            objs = self.read_objects(arrays, res, name, path)
            kept[name] = select(objs, self.pt_cuts[name], None)  # all passing the cut (for MET)
            sel = select(objs, self.pt_cuts[name], self.max_objects[name])
            if name == "taus":
                sel.values["is_1prong"] = np.isin(sel["NNDecayMode"], ONE_PRONG_DECAY_MODES).astype(np.int8)
            if name in ("electrons", "muons", "photons"):
                own = self.own_track_dr if name != "photons" else None  # photons have no own track
                sums = cone_sum(sel, good, schema.ISO_CONE, own)
                sel.values["trk_iso03"] = sums / np.maximum(np.asarray(sel["pt"], np.float64), 1e-9)
            self.write_objects(out, name, sel)
            if name == "jets" and self.write_truth:
                self.write_truth_flavour(out, sel, "_truth_flavour")
        self.write_objects(out, "tracks", select(trk, self.pt_cuts["tracks"], self.max_objects["tracks"]))

        self.write_scalars(out, "met", self._met(arrays, res, path, kept))
        ev = self.read_event(arrays, res, "event", path)
        ev["pvx"], ev["pvy"], ev["pvz"] = pv
        ev["experiment_id"] = np.full(n, schema.EXPERIMENT_IDS[self.experiment])
        ev["is_simulation"] = self._is_simulation(res, ev, n)
        self.write_scalars(out, "event", ev)
        return out

    # -- pieces -----------------------------------------------------------------------------
    def _primary_vertex(self, arrays: ak.Array, res: Resolution, path: str) -> tuple[np.ndarray, ...]:
        """(x, y, z) of the hard-scatter vertex per event (mm); 0 without vertices."""
        n = len(arrays)
        vtx = self.read_objects(arrays, res, "vertices", path, ref="z")
        first_hs = np.full(n, -1, dtype=np.int64)
        idx = np.arange(len(vtx))
        is_hs = np.asarray(vtx["vertexType"]) == HARD_SCATTER_VERTEX
        # the first hard-scatter entry of each event (vertices are grouped by event)
        rows_hs, pos = np.unique(vtx.row[is_hs], return_index=True)
        first_hs[rows_hs] = idx[is_hs][pos]
        rows_any, first_any = np.unique(vtx.row, return_index=True)
        fallback = np.full(n, -1, dtype=np.int64)
        fallback[rows_any] = first_any
        choice = np.where(first_hs >= 0, first_hs, fallback)
        has = choice >= 0
        out = []
        for k in ("x", "y", "z"):
            v = np.zeros(n, dtype=np.float64)
            v[has] = np.asarray(vtx[k], np.float64)[choice[has]]
            out.append(v)
        return tuple(out)

    def _met(self, arrays: ak.Array, res: Resolution, path: str, kept: dict[str, Flat]) -> dict[str, np.ndarray]:
        """Rebuilt MET: hard objects (jets overlapping e/γ removed) plus the track soft term."""
        n = len(arrays)
        jets = kept["jets"]
        egamma = concat([kept["electrons"], kept["photons"]])
        jets = jets.take(min_delta_r(jets, egamma) >= MET_OVERLAP_DR)
        px = np.zeros(n)
        py = np.zeros(n)
        sumet = np.zeros(n)
        for flat in (kept["electrons"], kept["muons"], kept["photons"], jets):
            x, y, s = vector_sum(flat)
            px -= x
            py -= y
            sumet += s
        chosen = res.chosen["met_terms"]
        if all(chosen.get(k) for k in ("mpx", "mpy", "_name")):
            vals = read(arrays, MET_TERMS, chosen)
            vals["_name"] = vals["_name"] == SOFT_TERM
            if vals["sumet"] is None:
                vals["sumet"] = ak.zeros_like(vals["mpx"])
            terms, _ = flat_collection(vals, chosen, {}, n, path, ref="mpx", required=set(vals))
            soft = terms.take(np.asarray(terms["_name"], bool))
            px += np.bincount(soft.row, weights=np.asarray(soft["mpx"], np.float64), minlength=n)
            py += np.bincount(soft.row, weights=np.asarray(soft["mpy"], np.float64), minlength=n)
            sumet += np.bincount(soft.row, weights=np.asarray(soft["sumet"], np.float64), minlength=n)
            self.soft_term.add(f"{SOFT_TERM} of MET_Core_AnalysisMET")
        else:
            self.soft_term.add("none (MET_Core_AnalysisMET term names not readable)")
        return {"pt": np.hypot(px, py), "phi": np.arctan2(py, px), "sumet": sumet}

    def _is_simulation(self, res: Resolution, ev: dict[str, np.ndarray], n: int) -> np.ndarray:
        if self.is_simulation is not None:
            return np.full(n, int(bool(self.is_simulation)))
        if res.has("event", "_eventTypeBitmask"):
            return (ev["_eventTypeBitmask"].astype(np.int64) & IS_SIMULATION_BIT).astype(np.int8)
        if res.has("event", "mcChannelNumber"):
            return (ev["mcChannelNumber"] > 0).astype(np.int8)
        self.warn_once("is_simulation", "no eventTypeBitmask or mcChannelNumber: is_simulation set to 0 (data)")
        return np.zeros(n, dtype=np.int8)

    def describe(self) -> dict[str, str]:
        return {
            "trk_iso03_source": "DESIGN definition from InDetTrackParticles: dR<0.3, pT>0.5 GeV, |z0 sin(theta)|<3 mm "
            "w.r.t. the PV, nearest track within dR<0.01 removed for electrons and muons (PHYSLITE thins "
            "the tracks: soft tracks are missing)",
            "track_z0_reference": "; ".join(sorted(self.z0_reference)),
            "met_source": "rebuilt: -(sum of electrons, muons, photons, jets passing the pT cuts; jets within "
            f"dR<{MET_OVERLAP_DR} of an electron or photon removed) + soft term: " + "; ".join(sorted(self.soft_term)),
            "mu_source": "averageInteractionsPerCrossing",
        }
