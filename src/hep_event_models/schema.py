"""The HDF5 event schema, feature kinds, token type ids and special tokens, defined once.

Everything that names an HDF5 group or key, a dtype, a feature kind, a token type id or a
special token id comes from this module; the reader, the writer, the generator, the
tokenizers and the CLI import it instead of spelling strings themselves.

File layout (DESIGN §2; seed 004). One file holds ``n_events`` events::

    common/<collection>/<key>   (n_events, max_objects) padded per-object arrays
    common/<collection>/mask    (n_events, max_objects) bool, True for real objects
    common/<collection>/n       (n_events,) number of real objects (== mask.sum(1))
    atlas/<collection>/<key>    (n_events, max_objects) ATLAS-only per-object arrays
    cms/<collection>/<key>      (n_events, max_objects) CMS-only per-object arrays
    common/<coll>/<sub>/<key>   (n_events, max_objects, C) optional sub-objects (jet constituents,
                                track hits; ``SUB_COLLECTIONS``), with their own mask and n
    common/met/<key>            (n_events,) per-event scalars (MET is one object per event)
    common/event/<key>          (n_events,) per-event scalars
    atlas/event/<key>           (n_events,) per-event scalars (cms/event/<key> in CMS files)
    truth/process               (n_events,) int16 process label (see ``PROCESS_IDS``)
    truth/<collection>/<key>    optional per-object truth (same padding as the collection)
    metadata                    group attributes only (``METADATA_ATTRS``)

Objects are sorted by pT descending and packed at the front of each row. Energies and
momenta are in GeV, angles in radians, lengths (vertex positions, d0, z0) in mm.

Experiment-specific groups: a file holds ``common/`` plus exactly one experiment group,
the one its ``metadata`` attribute ``experiment`` names (``EXPERIMENT_GROUPS``: ``ATLAS`` ->
``atlas/``, ``CMS`` -> ``cms/``; files without the attribute are ATLAS files).
``common/event/experiment_id`` holds ``EXPERIMENT_IDS[experiment]``. Features under
``common/`` mean the same in both experiments, so tokenizers configured with ``common/``
features only read files of either experiment (condition on ``experiment_id``);
``atlas/`` and ``cms/`` features are for single-experiment studies.

Labels: a file carries per-event labels in ``truth/process`` (integers from
``PROCESS_IDS``); the ``metadata`` attribute ``label_names`` (JSON list) names them.
A file without ``truth/process`` may instead set the ``metadata`` attribute ``process``
to one process name, which then labels every event. Files with neither are unlabelled
(label -1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# --------------------------------------------------------------------------------------
# Format versions
# --------------------------------------------------------------------------------------
FORMAT_VERSION = "1.0"
SUPPORTED_FORMAT_MAJOR = 1  # any "1.x" file is readable

# --------------------------------------------------------------------------------------
# Feature kinds: they decide preprocessing and reconstruction loss (DESIGN §3).
# --------------------------------------------------------------------------------------
STANDARD = "standard"  # continuous, standardised
LOG_STANDARD = "log_standard"  # skewed positive: log, then standardised
QUANTILE = "quantile"  # continuous, mapped through its empirical CDF
ANGLE = "angle"  # azimuth: wraps at ±π
INTEGER = "integer"  # counts (n_trk, nDoF): must come back exactly
BINARY = "binary"  # flags (0/1): must come back exactly
CATEGORICAL = "categorical"  # small set of codes (charge, quality, decay mode): exact
SCORE = "score"  # bounded in [0, 1] (tagger probabilities): must not be smeared

FEATURE_KINDS = (STANDARD, LOG_STANDARD, QUANTILE, ANGLE, INTEGER, BINARY, CATEGORICAL, SCORE)
CONTINUOUS_KINDS = (STANDARD, LOG_STANDARD, QUANTILE)
DISCRETE_KINDS = (INTEGER, BINARY, CATEGORICAL)

# dtype classes accepted when reading; the writer always writes the field's own dtype
FLOAT, INT, FLAG, BOOL = "float", "int", "flag", "bool"


@dataclass(frozen=True)
class Field:
    """One HDF5 dataset of the schema.

    Args:
        name: key inside its group (e.g. ``"pt"``).
        dtype: numpy dtype the writer uses (e.g. ``"float32"``).
        kind: default feature kind (one of ``FEATURE_KINDS``); configs may override.
        unit: physical unit ("GeV", "rad", "mm", "1/GeV" or "" for dimensionless).
        doc: one-line description.
        categories: allowed values for categorical fields (``None`` otherwise).
    """

    name: str
    dtype: str
    kind: str
    unit: str = ""
    doc: str = ""
    categories: tuple[int, ...] | None = None

    @property
    def dtype_class(self) -> str:
        dt = np.dtype(self.dtype)
        if dt == np.bool_:
            return BOOL
        if self.kind == BINARY:
            return FLAG  # bool or any integer type
        if np.issubdtype(dt, np.floating):
            return FLOAT
        return INT


def dtype_matches(dtype: np.dtype, dtype_class: str) -> bool:
    """Whether a stored dtype is acceptable for a field of ``dtype_class``."""
    dtype = np.dtype(dtype)
    if dtype_class == FLOAT:
        return bool(np.issubdtype(dtype, np.floating))
    if dtype_class == INT:
        return bool(np.issubdtype(dtype, np.integer))
    if dtype_class == FLAG:
        return dtype == np.bool_ or bool(np.issubdtype(dtype, np.integer))
    if dtype_class == BOOL:
        return dtype == np.bool_
    raise ValueError(f"unknown dtype class {dtype_class!r}")


def _f(name, kind, unit="", doc="", dtype="float32", categories=None) -> Field:
    return Field(name=name, dtype=dtype, kind=kind, unit=unit, doc=doc, categories=categories)


_PT = _f("pt", LOG_STANDARD, "GeV", "transverse momentum")
_ETA = _f("eta", STANDARD, "", "pseudorapidity")
_PHI = _f("phi", ANGLE, "rad", "azimuth in (-pi, pi]")
_CHARGE = _f("charge", CATEGORICAL, "", "electric charge", dtype="int8", categories=(-1, 1))
_TRK_ISO = _f("trk_iso03", LOG_STANDARD, "", "track isolation / pT (cone 0.3, see module doc)")


def _flag(name, doc=""):
    return _f(name, BINARY, "", doc, dtype="int8", categories=(0, 1))


@dataclass(frozen=True)
class CollectionSchema:
    """The datasets of one object collection (or of one per-event group).

    Args:
        name: collection name, also the group name under ``common/``, ``atlas/`` and ``cms/``.
        type_id: token type id of its tokens (DESIGN §4).
        common: fields under ``common/<name>``.
        atlas: fields under ``atlas/<name>`` (ATLAS files only).
        cms: fields under ``cms/<name>`` (CMS files only). Names never repeat across
            ``common``, ``atlas`` and ``cms``, so a key alone names its group.
        per_object: ``True`` for padded per-object arrays with ``mask``/``n``; ``False``
            for per-event scalars (``met``, ``event``).
        max_objects: default padding written by the generator.
        pt_cut: generator's pT threshold in GeV (``None`` for per-event groups).
    """

    name: str
    type_id: int
    common: tuple[Field, ...]
    atlas: tuple[Field, ...] = ()
    cms: tuple[Field, ...] = ()
    per_object: bool = True
    max_objects: int = 1
    pt_cut: float | None = None

    @property
    def fields(self) -> dict[str, Field]:
        """``common`` + ``atlas`` fields: the layout of ATLAS files (and of the generator)."""
        return self.fields_for(ATLAS_EXPERIMENT)

    @property
    def all_fields(self) -> dict[str, Field]:
        """Fields of every group (``common``, ``atlas``, ``cms``)."""
        return {f.name: f for f in (*self.common, *self.atlas, *self.cms)}

    def experiment_fields(self, experiment: str) -> tuple[Field, ...]:
        """Fields of the experiment-specific group of ``experiment`` (``"ATLAS"`` or ``"CMS"``)."""
        group = experiment_group(experiment)
        return self.atlas if group == ATLAS else self.cms

    def fields_for(self, experiment: str) -> dict[str, Field]:
        """``common`` fields plus those of ``experiment``'s group: the layout of its files."""
        return {f.name: f for f in (*self.common, *self.experiment_fields(experiment))}

    def group_of(self, key: str) -> str:
        """HDF5 group holding ``key`` (e.g. ``"atlas/jets"``, ``"cms/jets"``)."""
        if key in {f.name for f in self.common} or key in (MASK, COUNT):
            return f"{COMMON}/{self.name}"
        if key in {f.name for f in self.atlas}:
            return f"{ATLAS}/{self.name}"
        if key in {f.name for f in self.cms}:
            return f"{CMS}/{self.name}"
        raise KeyError(f"{key!r} is not a field of collection {self.name!r}; known: {sorted(self.all_fields)}")

    def path_of(self, key: str) -> str:
        return f"{self.group_of(key)}/{key}"


COMMON, ATLAS, CMS, TRUTH, METADATA = "common", "atlas", "cms", "truth", "metadata"
MASK, COUNT = "mask", "n"

# Experiments: the metadata attribute ``experiment`` names one; it selects the file's
# experiment-specific group and the value of ``common/event/experiment_id``.
ATLAS_EXPERIMENT, CMS_EXPERIMENT = "ATLAS", "CMS"
EXPERIMENT_IDS: dict[str, int] = {ATLAS_EXPERIMENT: 0, CMS_EXPERIMENT: 1}
EXPERIMENT_GROUPS: dict[str, str] = {ATLAS_EXPERIMENT: ATLAS, CMS_EXPERIMENT: CMS}
DEFAULT_EXPERIMENT = ATLAS_EXPERIMENT  # files without the attribute (and the generator's)


def experiment_group(experiment) -> str:
    """The experiment-specific group (``"atlas"`` or ``"cms"``) of an experiment name."""
    name = normalize_experiment(experiment)
    try:
        return EXPERIMENT_GROUPS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {experiment!r}; known: {list(EXPERIMENT_GROUPS)}") from None


def normalize_experiment(experiment) -> str:
    """``"ATLAS"``/``"CMS"`` from any spelling (bytes, lower case); ``None`` means the default."""
    if experiment is None:
        return DEFAULT_EXPERIMENT
    v = experiment.decode() if isinstance(experiment, bytes) else str(experiment)
    return v.strip().upper()


# Token type ids (DESIGN §4, seed 003). The collection-to-type map is in COLLECTIONS.
TYPE_SPECIAL = 0
TYPE_VOCAB_SIZE = 12

COLLECTIONS: dict[str, CollectionSchema] = {
    c.name: c
    for c in (
        CollectionSchema(
            "electrons",
            4,
            common=(_PT, _ETA, _PHI, _CHARGE, _TRK_ISO),
            atlas=(
                _flag("LHLoose", "likelihood ID loose"),
                _flag("LHMedium", "likelihood ID medium"),
                _flag("LHTight", "likelihood ID tight"),
                _f("topoetcone20", STANDARD, "GeV", "calorimeter isolation, cone 0.2 (pile-up corrected)"),
                _f("ptvarcone30", LOG_STANDARD, "GeV", "track isolation, variable cone min(0.3, 10 GeV/pT)"),
                _f("mass", STANDARD, "GeV", "electron mass"),
            ),
            cms=(
                _f(
                    "cutBased",
                    CATEGORICAL,
                    "",
                    "cut-based ID: 0 fail, 1 veto, 2 loose, 3 medium, 4 tight",
                    "int8",
                    (0, 1, 2, 3, 4),
                ),
                _flag("mvaIso_WP80", "MVA ID with isolation, 80% working point"),
                _flag("mvaIso_WP90", "MVA ID with isolation, 90% working point"),
                _flag("convVeto", "passes the conversion veto"),
                _f("pfRelIso03_all", LOG_STANDARD, "", "PF relative isolation, cone 0.3, all particles (PU corrected)"),
                _f("miniPFRelIso_all", LOG_STANDARD, "", "PF relative mini-isolation, all particles"),
                _f("sip3d", LOG_STANDARD, "", "3D impact parameter significance"),
            ),
            max_objects=6,
            pt_cut=7.0,
        ),
        CollectionSchema(
            "muons",
            5,
            common=(_PT, _ETA, _PHI, _CHARGE, _TRK_ISO),
            atlas=(
                _f("quality", CATEGORICAL, "", "0 Tight, 1 Medium, 2 Loose, 3 VeryLoose", "int8", (0, 1, 2, 3)),
                _f(
                    "muonType",
                    CATEGORICAL,
                    "",
                    "0 Combined, 1 StandAlone, 2 SegmentTagged, 3 CaloTagged, 4 SiliconAssociatedForward",
                    "int8",
                    (0, 1, 2, 3, 4),
                ),
                _flag("passIDCuts", "passes inner-detector hit requirements"),
                _flag("passPresel", "passes analysis preselection"),
                _f("topoetcone20", STANDARD, "GeV", "calorimeter isolation, cone 0.2"),
                _f("ptvarcone30", LOG_STANDARD, "GeV", "track isolation, variable cone min(0.3, 10 GeV/pT)"),
            ),
            cms=(
                _flag("looseId", "loose muon ID"),
                _flag("mediumId", "medium muon ID"),
                _flag("tightId", "tight muon ID"),
                _f(
                    "pfIsoId",
                    CATEGORICAL,
                    "",
                    "PF isolation WP: 0 none, 1 VeryLoose ... 6 VeryVeryTight",
                    "int8",
                    (0, 1, 2, 3, 4, 5, 6),
                ),
                _f("pfRelIso04_all", LOG_STANDARD, "", "PF relative isolation, cone 0.4, all particles (dBeta)"),
                _f("miniPFRelIso_all", LOG_STANDARD, "", "PF relative mini-isolation, all particles"),
                _f("sip3d", LOG_STANDARD, "", "3D impact parameter significance"),
            ),
            max_objects=6,
            pt_cut=5.0,
        ),
        CollectionSchema(
            "taus",
            11,
            common=(_PT, _ETA, _PHI, _CHARGE, _flag("is_1prong", "one charged track")),
            atlas=(
                _f("NNDecayMode", CATEGORICAL, "", "0 1p0n, 1 1p1n, 2 1pXn, 3 3p0n, 4 3pXn", "int8", (0, 1, 2, 3, 4)),
                _f("RNNJetScore", SCORE, "", "RNN jet-rejection score (transformed, flat for taus)"),
                _f("RNNEleScore", SCORE, "", "RNN electron-rejection score"),
                _flag("EleRNNLoose_v1", "passes loose electron veto"),
                _flag("EleRNNMedium_v1", "passes medium electron veto"),
                _flag("EleRNNTight_v1", "passes tight electron veto"),
            ),
            cms=(
                _f(
                    "decayMode",
                    CATEGORICAL,
                    "",
                    "5 (prongs - 1) + pi0s: 0, 1, 2 one prong; 5, 6, 7 two; 10, 11 three",
                    "int8",
                    (0, 1, 2, 5, 6, 7, 10, 11),
                ),
                _f("rawDeepTauVSjet", SCORE, "", "DeepTau score against jets"),
                _f("rawDeepTauVSe", SCORE, "", "DeepTau score against electrons"),
                _f("rawDeepTauVSmu", SCORE, "", "DeepTau score against muons"),
                _f(
                    "idDeepTauVSjet",
                    CATEGORICAL,
                    "",
                    "DeepTau vs jets: working points passed (0 none .. 8 VVTight)",
                    "int8",
                    tuple(range(9)),
                ),
                _f(
                    "idDeepTauVSe",
                    CATEGORICAL,
                    "",
                    "DeepTau vs electrons: working points passed (0 .. 8)",
                    "int8",
                    tuple(range(9)),
                ),
                _f(
                    "idDeepTauVSmu",
                    CATEGORICAL,
                    "",
                    "DeepTau vs muons: working points passed (0 .. 4)",
                    "int8",
                    tuple(range(5)),
                ),
            ),
            max_objects=6,
            pt_cut=20.0,
        ),
        CollectionSchema(
            "photons",
            8,
            common=(_PT, _ETA, _PHI, _TRK_ISO),
            atlas=(
                _flag("isLoose", "loose photon ID"),
                _flag("isTight", "tight photon ID"),
                _flag("isCleaning", "passes cleaning"),
                _f("author", CATEGORICAL, "", "4 Photon, 16 Ambiguous", "int16", (4, 16)),
                _f("topoetcone20", STANDARD, "GeV", "calorimeter isolation, cone 0.2"),
                _f("topoetcone40", STANDARD, "GeV", "calorimeter isolation, cone 0.4"),
                _f("ptcone20", LOG_STANDARD, "GeV", "track isolation, cone 0.2"),
            ),
            cms=(
                _f(
                    "cutBased",
                    CATEGORICAL,
                    "",
                    "cut-based ID: 0 fail, 1 loose, 2 medium, 3 tight",
                    "int8",
                    (0, 1, 2, 3),
                ),
                _f("mvaID", STANDARD, "", "MVA ID score in [-1, 1]"),
                _flag("mvaID_WP80", "MVA ID, 80% working point"),
                _flag("mvaID_WP90", "MVA ID, 90% working point"),
                _flag("electronVeto", "passes the electron veto"),
                _flag("pixelSeed", "has a pixel seed"),
                _f("pfRelIso03_all", LOG_STANDARD, "", "PF relative isolation, cone 0.3, all particles"),
            ),
            max_objects=6,
            pt_cut=10.0,
        ),
        CollectionSchema(
            "jets",
            6,
            common=(
                _PT,
                _ETA,
                _PHI,
                _f("mass", LOG_STANDARD, "GeV", "jet mass"),
                _f("n_trk", INTEGER, "", "tracks with pT > 0.5 GeV ghost-associated (all vertices)", "int16"),
            ),
            atlas=(
                _f("DL1d_pb", SCORE, "", "DL1d b probability"),
                _f("DL1d_pc", SCORE, "", "DL1d c probability"),
                _f("DL1d_pu", SCORE, "", "DL1d light probability"),
                _f("GN2_pb", SCORE, "", "GN2 b probability"),
                _f("GN2_pc", SCORE, "", "GN2 c probability"),
                _f("GN2_pu", SCORE, "", "GN2 light probability"),
                _f("QG_nTracks", INTEGER, "", "primary-vertex tracks with pT > 0.5 GeV (-1 outside tracker)", "int16"),
                _f("QG_tracksWidth", STANDARD, "", "pT-weighted track width (-1 outside tracker)"),
                _f("QG_tracksC1", STANDARD, "", "track energy-correlation ratio C1 (-1 outside tracker)"),
            ),
            cms=(
                _f("btagDeepFlavB", SCORE, "", "DeepJet b+bb+lepb probability (-1 when not evaluated)"),
                _f("btagDeepFlavCvL", SCORE, "", "DeepJet c vs udsg"),
                _f("btagDeepFlavCvB", SCORE, "", "DeepJet c vs b+bb+lepb"),
                _f("btagDeepFlavQG", SCORE, "", "DeepJet g vs uds"),
                _f("btagPNetB", SCORE, "", "ParticleNet b vs udscg (NanoAOD v12+)"),
                _f("btagPNetCvL", SCORE, "", "ParticleNet c vs udsg"),
                _f("btagPNetCvB", SCORE, "", "ParticleNet c vs b"),
                _f("btagPNetQvG", SCORE, "", "ParticleNet q (uds) vs g"),
                _f("btagUParTAK4B", SCORE, "", "UnifiedParT b vs udscg (NanoAOD v15+)"),
                _f(
                    "jetId",
                    CATEGORICAL,
                    "",
                    "jet ID bits: 2 tight, 4 tight lepton veto (6 both)",
                    "int8",
                    tuple(range(8)),
                ),
                _f("nConstituents", INTEGER, "", "PF constituents (charged and neutral)", "int16"),
                _f("chHEF", STANDARD, "", "charged hadron energy fraction"),
                _f("neHEF", STANDARD, "", "neutral hadron energy fraction"),
                _f("chEmEF", STANDARD, "", "charged electromagnetic energy fraction"),
                _f("neEmEF", STANDARD, "", "neutral electromagnetic energy fraction"),
            ),
            max_objects=15,
            pt_cut=20.0,
        ),
        CollectionSchema(
            "tracks",
            9,
            common=(
                _PT,
                _ETA,
                _PHI,
                _f("d0", STANDARD, "mm", "transverse impact parameter w.r.t. beam line"),
                _f("z0", STANDARD, "mm", "longitudinal impact parameter w.r.t. primary vertex"),
            ),
            atlas=(
                _f("qOverP", STANDARD, "1/GeV", "charge over momentum"),
                _f("chiSquared", LOG_STANDARD, "", "track fit chi2"),
                _f("nDoF", INTEGER, "", "track fit degrees of freedom", "int16"),
            ),
            cms=(
                _f("charge", CATEGORICAL, "", "electric charge", dtype="int8", categories=(-1, 1)),
                _f(
                    "fromPV",
                    CATEGORICAL,
                    "",
                    "PV association: 0 other PV, 1 none, 2 PV loose, 3 PV tight",
                    "int8",
                    (0, 1, 2, 3),
                ),
                _f("pfRelIso03_chg", LOG_STANDARD, "", "PF relative isolation, cone 0.3, charged particles"),
                _flag("isHighPurityTrack", "high-purity track"),
            ),
            max_objects=30,
            pt_cut=5.0,
        ),
        CollectionSchema(
            "met",
            7,
            common=(
                _f("pt", LOG_STANDARD, "GeV", "missing transverse momentum"),
                _f("phi", ANGLE, "rad", "azimuth of the missing transverse momentum"),
                _f("sumet", LOG_STANDARD, "GeV", "scalar sum of transverse energy"),
            ),
            per_object=False,
        ),
        CollectionSchema(
            "event",
            10,
            common=(
                _f("pvx", STANDARD, "mm", "primary vertex x"),
                _f("pvy", STANDARD, "mm", "primary vertex y"),
                _f("pvz", STANDARD, "mm", "primary vertex z"),
                _f(
                    "mu",
                    STANDARD,
                    "",
                    "pile-up: interactions per bunch crossing (generator: actual; converters: the Poisson mean, "
                    "ATLAS averageInteractionsPerCrossing, CMS Pileup_nTrueInt)",
                ),
                _f("experiment_id", CATEGORICAL, "", "0 ATLAS, 1 CMS", "int8", (0, 1)),
                _f("is_simulation", CATEGORICAL, "", "1 MC, 0 data", "int8", (0, 1)),
            ),
            atlas=(
                _f("event_number", INTEGER, "", "event number", "uint64"),
                _f("run_number", INTEGER, "", "run number", "uint32"),
                _f("mcChannelNumber", INTEGER, "", "MC dataset id (0 for data)", "uint32"),
            ),
            cms=(
                _f("run", INTEGER, "", "run number", "uint32"),
                _f("luminosityBlock", INTEGER, "", "luminosity section", "uint32"),
                _f("event", INTEGER, "", "event number", "uint64"),
                _f("npvsGood", INTEGER, "", "number of good reconstructed primary vertices", "int16"),
            ),
            per_object=False,
        ),
    )
}

OBJECT_COLLECTIONS = tuple(name for name, c in COLLECTIONS.items() if c.per_object)
EVENT_GROUPS = tuple(name for name, c in COLLECTIONS.items() if not c.per_object)
TYPE_IDS: dict[str, int] = {name: c.type_id for name, c in COLLECTIONS.items()}


# --------------------------------------------------------------------------------------
# Sub-objects: optional collections one level deeper (seed 004)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubCollectionSchema:
    """Optional sub-objects of the objects of one collection: jet constituents, track hits.

    Stored under ``common/<parent>/<name>/<key>`` as ``(n_events, M, C)`` arrays, ``M`` the
    parent's ``max_objects`` (the same slots as the parent's own arrays) and ``C`` the
    sub-objects per object, packed at the front (``mask`` ``(n_events, M, C)`` bool, ``n``
    ``(n_events, M)`` counts). A file may hold them or not; readers that ask for them
    ``"auto"`` use them where every file has them and fall back to objects only.

    Args:
        name: group name under the parent's group (``"constituents"``, ``"hits"``).
        parent: the object collection (``"jets"``, ``"tracks"``).
        fields: datasets of each sub-object.
        max_objects: default ``C`` written by the generator.
    """

    name: str
    parent: str
    fields_: tuple[Field, ...]
    max_objects: int

    @property
    def key(self) -> str:
        """``"<parent>_<name>"``: the name used by readers, datasets and model configs."""
        return f"{self.parent}_{self.name}"

    @property
    def group(self) -> str:
        return f"{COMMON}/{self.parent}/{self.name}"

    @property
    def fields(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields_}

    def path_of(self, key: str) -> str:
        if key not in self.fields and key not in (MASK, COUNT):
            raise KeyError(f"{key!r} is not a field of {self.group}; known: {list(self.fields)}")
        return f"{self.group}/{key}"


SUB_COLLECTIONS: dict[str, SubCollectionSchema] = {
    s.key: s
    for s in (
        SubCollectionSchema(
            "constituents",
            "jets",
            (
                _f("pt", LOG_STANDARD, "GeV", "constituent transverse momentum"),
                _f("eta", STANDARD, "", "constituent pseudorapidity"),
                _f("phi", ANGLE, "rad", "constituent azimuth"),
                _f("charge", CATEGORICAL, "", "electric charge (0: neutral)", dtype="int8", categories=(-1, 0, 1)),
                _f("d0", STANDARD, "mm", "transverse impact parameter (0 for neutral constituents)"),
                _f("z0", STANDARD, "mm", "longitudinal impact parameter w.r.t. the PV (0 for neutral)"),
            ),
            max_objects=50,
        ),
        SubCollectionSchema(
            "hits",
            "tracks",
            (
                _f("eta", STANDARD, "", "pseudorapidity of the hit position"),
                _f("phi", ANGLE, "rad", "azimuth of the hit position"),
                _f("energy", LOG_STANDARD, "GeV", "deposited energy"),
                _f("layer", INTEGER, "", "detector layer (0-3 pixel, 4-11 SCT, 12-29 TRT)", dtype="int8"),
                _f("time", STANDARD, "ns", "hit time after the bunch crossing"),
            ),
            max_objects=30,
        ),
    )
}


def sub_collection(key: str) -> SubCollectionSchema:
    """Schema of a sub-object collection (``"jets_constituents"``, ``"tracks_hits"``)."""
    try:
        return SUB_COLLECTIONS[key]
    except KeyError:
        raise KeyError(f"unknown sub-object collection {key!r}; known: {list(SUB_COLLECTIONS)}") from None


# --------------------------------------------------------------------------------------
# Truth: labels and optional per-object truth
# --------------------------------------------------------------------------------------
PROCESS_IDS: dict[str, int] = {"hzz4l": 0, "zz4l": 1, "ttbar": 2, "dy": 3}
PROCESS_NAMES: dict[int, str] = {v: k for k, v in PROCESS_IDS.items()}
LABEL_KEY = f"{TRUTH}/process"
UNLABELLED = -1


class TruthOrigin(IntEnum):
    """Origin of a reconstructed object, stored in ``truth/<collection>/origin``."""

    PROMPT = 0  # from a W, Z, H or top decay (incl. leptons from such taus)
    HEAVY_FLAVOUR = 1  # from a b- or c-hadron decay (non-prompt)
    FAKE = 2  # a jet (or its pi0s/tracks) reconstructed as this object
    FSR = 3  # photon radiated by a lepton
    PILEUP = 4  # from a pile-up interaction
    UNDERLYING = 5  # underlying event / soft hard-scatter activity


TRUTH_ORIGIN_KEY = "origin"
TRUTH_JET_FLAVOUR_KEY = "HadronConeExclTruthLabelID"  # 5 b, 4 c, 15 tau, 0 light/gluon

# --------------------------------------------------------------------------------------
# Metadata attributes
# --------------------------------------------------------------------------------------
METADATA_ATTRS = (
    "experiment",
    "format_version",
    "input_file",
    "n_events",
    "git_hash",
    "pt_cuts",
    "max_objects",
    "common_iso_cone",
    "common_iso_pt_floor_gev",
    "common_iso_z0sintheta_cut_mm",
)
REQUIRED_METADATA_ATTRS = ("format_version", "n_events")
ISO_CONE = 0.3
ISO_PT_FLOOR_GEV = 0.5
ISO_Z0SINTHETA_CUT_MM = 3.0

# --------------------------------------------------------------------------------------
# Special tokens (DESIGN §4)
# --------------------------------------------------------------------------------------
PAD_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, UNK_TOKEN = "[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"
SPECIAL_TOKENS: dict[str, int] = {PAD_TOKEN: 0, CLS_TOKEN: 1, SEP_TOKEN: 2, MASK_TOKEN: 3, UNK_TOKEN: 4}
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = (SPECIAL_TOKENS[t] for t in SPECIAL_TOKENS)
# ids below this offset are reserved for special tokens (present and future)
NUM_RESERVED_IDS = 16


def collection(name: str) -> CollectionSchema:
    """Schema of a collection, with an error that lists the known ones."""
    try:
        return COLLECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown collection {name!r}; known: {list(COLLECTIONS)}") from None


def default_metadata(n_events: int, **extra) -> dict:
    """Metadata attributes with the schema's defaults (JSON-encoded where structured)."""
    md = {
        "experiment": "ATLAS",
        "format_version": FORMAT_VERSION,
        "input_file": "",
        "n_events": int(n_events),
        "git_hash": "",
        "pt_cuts": json.dumps({n: c.pt_cut for n, c in COLLECTIONS.items() if c.per_object}),
        "max_objects": json.dumps({n: c.max_objects for n, c in COLLECTIONS.items() if c.per_object}),
        "common_iso_cone": ISO_CONE,
        "common_iso_pt_floor_gev": ISO_PT_FLOOR_GEV,
        "common_iso_z0sintheta_cut_mm": ISO_Z0SINTHETA_CUT_MM,
        "label_names": json.dumps([PROCESS_NAMES[i] for i in sorted(PROCESS_NAMES)]),
    }
    md.update(extra)
    return md


def check_format_version(version) -> None:
    """Raise ``ValueError`` unless ``version`` is a supported format version."""
    v = version.decode() if isinstance(version, bytes) else str(version)
    try:
        major = int(v.lstrip("v").split(".")[0])
    except ValueError:
        raise ValueError(f"unknown format_version {v!r}; this package reads {SUPPORTED_FORMAT_MAJOR}.x") from None
    if major != SUPPORTED_FORMAT_MAJOR:
        raise ValueError(f"unknown format_version {v!r}; this package reads {SUPPORTED_FORMAT_MAJOR}.x")
