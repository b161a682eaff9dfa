"""Optional sub-objects: jet constituents and track hits (``schema.SUB_COLLECTIONS``).

Both functions work on the packed output of ``detector.reconstruct`` (``{dataset path:
array}``) and return ``(n_events, M, C)`` arrays in the parent's object slots, packed at
the front of the ``C`` axis, zero-padded, with their ``mask`` and ``n``. They only draw
from ``rng`` after ``reconstruct`` is done, so every other dataset is the same with and
without sub-objects. Everything is vectorised over the flat list of real parent objects.

Jet constituents (``jet_constituents``), sampled per reconstructed jet from its pT, η,
flavour label, origin, track count and width:

* multiplicity: charged = the jet's ``n_trk`` inside the tracker (|η| < 2.5), 0 outside;
  neutral ~ Poisson(0.5 n_charged + 2) inside, Poisson(1.5 max(2.6 ln pT − 1.2, 1))
  outside (at least one constituent per jet);
* pT: the charged share of the jet pT ~ Beta(6, 4) (all of it when a group is empty),
  split by normalised Gamma(0.8) draws above a floor of 0.5 GeV for charged (``n_trk``
  counts tracks above 0.5 GeV) and 0.2 GeV for neutral constituents (lowered for very
  soft jets), so Σ constituent pT = jet pT before truncation to ``C``;
* direction: jet axis + Normal(0, σ_i) in η and φ, σ_i ∝ z_i^-0.25 (z_i = pT_i / pT_jet,
  harder constituents closer to the axis), normalised so the pT-weighted mean ΔR is the
  jet's ``QG_tracksWidth`` (or 0.11 (40/pT)^0.45 where that is undefined);
* charged constituents: charge ±1, d0/z0 from ``detector.impact_parameter_resolution``;
  b jets (label 5): 70% displaced by d0 ~ ±Exponential(0.25 mm), c jets (4): 50% by
  ±Exponential(0.12 mm); the ``n_trk − QG_nTracks`` pile-up tracks of a hard-scatter jet
  each get z0 ~ Normal(0, 60 mm); a pile-up jet (origin 4) shares one z0 offset ~ Normal(0,
  60 mm) for all its charged constituents; neutral constituents have charge = d0 = z0 = 0;
* sorted by pT descending, the leading ``C`` = 50 kept.

Not modelled: the constituents are NOT the particles of the ``tracks`` collection (that
holds jets' leading charged particles drawn independently in ``detector.jet_tracks``), nor
do they enter isolation or MET; no shower correlations, no photons/neutral hadrons
distinction, no tau-lifetime displacement, constituent η is not restricted to the tracker
and Σ pT is a scalar sum (it equals the jet pT, not its vector sum).

Track hits (``track_hits``), for every stored track, on cylinders at fixed radii:

* layers 0-3 pixel (33, 50.5, 88.5, 122.5 mm), 4-11 SCT (two hits per double layer at 299,
  371, 443, 514 mm), 12-29 TRT (18 straw crossings evenly between 563 and 1066 mm, only
  for |η| < 2.0); each hit present with efficiency 0.97 (silicon) or 0.90 (TRT);
* position seen from the primary vertex: η from z = z0 + r sinh η (the track's z0
  matters for pile-up tracks) plus Normal(0, 0.002) (silicon) or Normal(0, 0.01) (TRT,
  which measures no z); φ = track φ − q asin(0.3 B r / (2 pT)), B = 2 T, r in m (helix
  bending, q = sign(qOverP)), plus the layer's rφ resolution / r;
* deposited energy [GeV]: silicon Landau-like (Moyal) with most probable value 85 keV
  times the path through the sensor (min(cosh η, |coth η|): barrel or end-cap crossing);
  TRT log-normal around 2 keV, plus transition radiation (≥ 6 keV, high threshold) with
  probability 0.2 per hit for electron tracks (within ΔR < 0.01 of a stored electron) and
  0.04 for others;
* time [ns]: r cosh η / c + Normal(0, 0.5) (silicon) or Normal(0, 1.5) (TRT), plus
  Normal(0, 0.2) per pile-up track (truth origin 4) for its collision time;
* packed inner to outer (layer order), at most ``C`` = 30 (every layer at most once).

Not modelled: end-cap disk geometry (all layers are barrel cylinders, so hits exist up to
|η| = 2.5 at every radius), dead modules, shared/merged hits, holes, multiple scattering,
energy loss, d0 in the hit positions, and hits of particles that are not stored tracks.
"""

from __future__ import annotations

import numpy as np

from .. import schema
from ..schema import TruthOrigin as O
from . import kinematics as kin
from .detector import impact_parameter_resolution

JETS = schema.COLLECTIONS["jets"]
TRACKS = schema.COLLECTIONS["tracks"]
ELECTRONS = schema.COLLECTIONS["electrons"]
CONSTITUENTS = schema.sub_collection("jets_constituents")
HITS = schema.sub_collection("tracks_hits")

TRACKER_ETA = 2.5
CHARGED_PT_FLOOR, NEUTRAL_PT_FLOOR = 0.5, 0.2  # GeV
GAMMA_SHAPE = 0.8
PILEUP_Z0_SIGMA = 60.0  # mm

# ID geometry: radius [mm], detector (0 pixel, 1 SCT, 2 TRT), rφ resolution [mm] per layer
PIXEL_RADII = (33.0, 50.5, 88.5, 122.5)
SCT_RADII = (299.0, 371.0, 443.0, 514.0)
N_TRT = 18
LAYER_RADIUS = np.array([*PIXEL_RADII, *np.repeat(SCT_RADII, 2), *np.linspace(563.0, 1066.0, N_TRT)])
LAYER_DET = np.repeat([0, 1, 2], [len(PIXEL_RADII), 2 * len(SCT_RADII), N_TRT])
N_SI = len(PIXEL_RADII) + 2 * len(SCT_RADII)  # silicon layers come first
LAYER_EFF = np.array([0.97, 0.97, 0.90])[LAYER_DET]
LAYER_RPHI_RES = np.array([0.010, 0.017, 0.130])[LAYER_DET]
LAYER_ETA_RES = np.array([0.002, 0.002, 0.01])[LAYER_DET]
LAYER_TIME_RES = np.array([0.5, 0.5, 1.5])[LAYER_DET]
TRT_MAX_ETA = 2.0
B_FIELD = 2.0  # T
C_MM_PER_NS = 299.792458
SI_MPV, SI_XI = 85e-6, 0.08 * 85e-6  # GeV
TRT_DEDX, TRT_HT_THRESHOLD, TRT_TR_MEAN = 2e-6, 6e-6, 4e-6  # GeV
TRT_HT_PROB_ELECTRON, TRT_HT_PROB_OTHER = 0.2, 0.04
ELECTRON_MATCH_DR = 0.01
PILEUP_TIME_SIGMA = 0.2  # ns


def _truth_path(coll: str, key: str) -> str:
    return f"{schema.TRUTH}/{coll}/{key}"


def _pack(sub: schema.SubCollectionSchema, shape, ev, slot, pos, values: dict) -> dict[str, np.ndarray]:
    """Scatter flat sub-objects (parent slot ``(ev, slot)``, position ``pos``) into ``(n, M, C)`` arrays."""
    n, m = shape
    c = sub.max_objects
    flat = (ev * m + slot) * c + pos
    out = {}
    for name, f in sub.fields.items():
        a = np.zeros(n * m * c, dtype=f.dtype)
        a[flat] = values[name]
        out[sub.path_of(name)] = a.reshape(n, m, c)
    mask = np.zeros(n * m * c, dtype=bool)
    mask[flat] = True
    mask = mask.reshape(n, m, c)
    out[sub.path_of(schema.MASK)] = mask
    out[sub.path_of(schema.COUNT)] = mask.sum(axis=-1, dtype=np.int16)
    return out


def jet_constituents(rng, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Constituents of every stored jet: ``common/jets/constituents/*`` (see the module doc)."""
    mask = out[JETS.path_of(schema.MASK)]
    ev, slot = np.nonzero(mask)
    nj = ev.size

    def col(path):
        return out[path][ev, slot]

    pt = col(JETS.path_of("pt")).astype(np.float64)
    eta = col(JETS.path_of("eta")).astype(np.float64)
    phi = col(JETS.path_of("phi")).astype(np.float64)
    n_trk = col(JETS.path_of("n_trk")).astype(np.int64)
    n_pv = col(JETS.path_of("QG_nTracks")).astype(np.int64)
    width = col(JETS.path_of("QG_tracksWidth")).astype(np.float64)
    label = col(_truth_path(JETS.name, schema.TRUTH_JET_FLAVOUR_KEY))
    pileup_jet = col(_truth_path(JETS.name, schema.TRUTH_ORIGIN_KEY)) == int(O.PILEUP)

    # multiplicities
    inside = np.abs(eta) < TRACKER_ETA
    n_ch = np.where(inside, np.maximum(n_trk, 0), 0)
    base = np.clip(2.6 * np.log(np.maximum(pt, 1.0)) - 1.2, 1.0, None)
    n_neu = rng.poisson(np.where(inside, 0.5 * n_ch + 2.0, 1.5 * base))
    n_neu = np.where(n_ch + n_neu == 0, 1, n_neu)
    total = n_ch + n_neu
    f_ch = np.where(n_neu == 0, 1.0, np.where(n_ch == 0, 0.0, rng.beta(6.0, 4.0, size=nj)))

    # flat constituents, grouped by jet: charged first, then neutral
    j = np.repeat(np.arange(nj), total)
    starts = np.cumsum(total) - total
    k = np.arange(j.size) - starts[j]
    charged = k < n_ch[j]
    g = rng.gamma(GAMMA_SHAPE, size=j.size)
    group = j * 2 + ~charged  # (jet, charged|neutral)
    g_sum = np.bincount(group, weights=g, minlength=2 * nj)
    share = np.stack([pt * f_ch, pt * (1.0 - f_ch)], axis=1).ravel()
    count = np.stack([n_ch, n_neu], axis=1).ravel()
    floor = np.minimum(np.tile([CHARGED_PT_FLOOR, NEUTRAL_PT_FLOOR], nj), 0.5 * share / np.maximum(count, 1))
    scale = (share - count * floor) / np.maximum(g_sum, 1e-300)
    cpt = floor[group] + scale[group] * g  # Σ over a group = its pT share, each member above the floor

    # directions: σ_i ∝ z_i^-0.25 with Σ z_i σ_i sqrt(π/2) = width (pT-weighted mean ΔR)
    w = np.where(width > 0, width, 0.11 * (40.0 / np.maximum(pt, 1.0)) ** 0.45)
    z = cpt / pt[j]
    zq = np.sqrt(np.sqrt(np.maximum(z, 1e-6)))  # z^0.25
    z75 = np.bincount(j, weights=z / zq, minlength=nj)
    s = w * np.bincount(j, weights=z, minlength=nj) / (np.sqrt(np.pi / 2.0) * np.maximum(z75, 1e-300))
    sigma = s[j] / zq
    ceta = eta[j] + rng.normal(size=j.size) * sigma
    cphi = kin.wrap_phi(phi[j] + rng.normal(size=j.size) * sigma)

    # charged: charge, impact parameters (resolution, heavy-flavour decays, pile-up z0)
    u = rng.random((2, j.size))
    charge = np.where(charged, np.where(u[0] < 0.5, -1, 1), 0).astype(np.int8)
    lab = label[j]
    displaced = charged & (((lab == 5) & (u[1] < 0.7)) | ((lab == 4) & (u[1] < 0.5)))
    d0 = np.zeros(j.size)
    z0 = np.zeros(j.size)
    n_disp = int(displaced.sum())
    d0[displaced] = rng.exponential(np.where(lab[displaced] == 5, 0.25, 0.12)) * np.where(
        rng.random(n_disp) < 0.5, -1.0, 1.0
    )
    z0[charged] = np.where(pileup_jet, rng.normal(0.0, PILEUP_Z0_SIGMA, nj), 0.0)[j[charged]]
    pu_track = charged & ~pileup_jet[j] & (k >= np.maximum(n_pv, 0)[j])  # n_trk − QG_nTracks from other vertices
    z0[pu_track] = rng.normal(0.0, PILEUP_Z0_SIGMA, int(pu_track.sum()))
    sig_d0, sig_z0 = impact_parameter_resolution(cpt[charged], ceta[charged])
    noise = rng.standard_normal((2, sig_d0.size))
    d0[charged] += noise[0] * sig_d0
    z0[charged] += noise[1] * sig_z0

    # sort by the stored (float32) pT within each jet and keep the leading C: one exact int64 key,
    # jet index then descending pT (the bits of a positive float32 order like its value)
    pt32 = cpt.astype(np.float32)
    order = np.argsort((j.astype(np.int64) << 31) | (0x7FFFFFFF - pt32.view(np.int32)))
    rank = np.arange(j.size) - starts[j]  # j is unchanged by the sort (groups stay in place)
    keep = order[rank < CONSTITUENTS.max_objects]
    jk = j[keep]
    values = {"pt": pt32, "eta": ceta, "phi": cphi, "charge": charge, "d0": d0, "z0": z0}
    return _pack(
        CONSTITUENTS,
        mask.shape,
        ev[jk],
        slot[jk],
        rank[rank < CONSTITUENTS.max_objects],
        {name: v[keep] for name, v in values.items()},
    )


def track_hits(rng, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hits of every stored track: ``common/tracks/hits/*`` (see the module doc)."""
    mask = out[TRACKS.path_of(schema.MASK)]
    ev, slot = np.nonzero(mask)
    nt = ev.size

    def col(path):
        return out[path][ev, slot].astype(np.float64)

    pt, eta, phi, z0 = (col(TRACKS.path_of(k)) for k in ("pt", "eta", "phi", "z0"))
    q = np.where(col(TRACKS.path_of("qOverP")) < 0, -1.0, 1.0)
    pileup = out[_truth_path(TRACKS.name, schema.TRUTH_ORIGIN_KEY)][ev, slot] == int(O.PILEUP)

    # electron tracks: within ΔR < 0.01 of a stored electron of the same event
    e_mask = out[ELECTRONS.path_of(schema.MASK)][ev]
    dr = kin.delta_r(
        eta[:, None],
        phi[:, None],
        out[ELECTRONS.path_of("eta")][ev].astype(np.float64),
        out[ELECTRONS.path_of("phi")][ev].astype(np.float64),
    )
    electron = np.any(e_mask & (dr < ELECTRON_MATCH_DR), axis=1)

    n_layers = LAYER_RADIUS.size
    shape = (nt, n_layers)
    f32 = np.float32
    present = rng.random(shape, dtype=f32) < LAYER_EFF.astype(f32)
    present &= (LAYER_DET != 2) | (np.abs(eta) < TRT_MAX_ETA)[:, None]
    r = LAYER_RADIUS.astype(f32)[None, :]

    # ideal positions, seen from the primary vertex (float32: the stored precision)
    x = np.sinh(eta).astype(f32)[:, None] + z0.astype(f32)[:, None] / r  # z / r of the hit
    eta_ideal = np.copysign(np.log(np.abs(x) + np.sqrt(x * x + 1)), x)  # asinh, faster
    curv = (q * 0.3 * B_FIELD / 1000.0 / (2.0 * np.maximum(pt, 1e-3))).astype(f32)  # 1/mm, signed
    phi_ideal = phi.astype(f32)[:, None] - np.arcsin(np.clip(curv[:, None] * r, -1.0, 1.0))

    # energy: silicon (Landau-like, times the path through the sensor), TRT (dE/dx + transition radiation)
    energy = np.empty(shape, dtype=f32)
    sensor_path = np.minimum(np.cosh(eta), 1.0 / np.maximum(np.abs(np.tanh(eta)), 1e-9)).astype(f32)[:, None]
    moyal = -np.log(rng.standard_normal((nt, N_SI), dtype=f32) ** 2 + f32(1e-30))  # Landau-like, mode 0
    energy[:, :N_SI] = np.maximum(f32(SI_MPV) + f32(SI_XI) * moyal, f32(0.2 * SI_MPV)) * sensor_path
    trt_e = f32(TRT_DEDX) * np.exp(f32(0.4) * rng.standard_normal((nt, n_layers - N_SI), dtype=f32))
    p_ht = np.where(electron, TRT_HT_PROB_ELECTRON, TRT_HT_PROB_OTHER).astype(f32)[:, None]
    ht = rng.random(trt_e.shape, dtype=f32) < p_ht
    trt_e[ht] += TRT_HT_THRESHOLD + rng.exponential(TRT_TR_MEAN, int(ht.sum()))
    energy[:, N_SI:] = trt_e

    # time of flight from the vertex, plus the (pile-up) collision time
    t0 = np.zeros(nt)
    t0[pileup] = rng.normal(0.0, PILEUP_TIME_SIGMA, int(pileup.sum()))
    time_ideal = (r / f32(C_MM_PER_NS)) * np.cosh(eta).astype(f32)[:, None] + t0.astype(f32)[:, None]

    # present hits only, in layer order (position = number of earlier present layers), plus resolutions
    count = present.sum(axis=1)
    track = np.repeat(np.arange(nt), count)
    layer = np.broadcast_to(np.arange(n_layers, dtype=np.int8), shape)[present]
    pos = np.arange(track.size) - np.repeat(np.cumsum(count) - count, count)
    noise = rng.standard_normal((3, track.size), dtype=f32)
    values = {
        "eta": eta_ideal[present] + noise[0] * LAYER_ETA_RES.astype(f32)[layer],
        "phi": kin.wrap_phi(phi_ideal[present] + noise[1] * (LAYER_RPHI_RES / LAYER_RADIUS).astype(f32)[layer]),
        "energy": energy[present],
        "layer": layer,
        "time": time_ideal[present] + noise[2] * LAYER_TIME_RES.astype(f32)[layer],
    }
    return _pack(HITS, mask.shape, ev[track], slot[track], pos, values)
