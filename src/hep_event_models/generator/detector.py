"""From the truth record to reconstructed, schema-conformant objects.

Decays of taus and heavy-flavour hadrons, final-state radiation, jets, pile-up, an
ATLAS-like detector response (resolutions, acceptances, efficiencies, identification),
tracks, isolation, flavour tagging and missing transverse momentum, all vectorised over
padded ``(N, K)`` arrays. The approximations are listed in the package docstring.
"""

from __future__ import annotations

import numpy as np

from .. import schema
from ..schema import TruthOrigin as O
from . import kinematics as kin
from .processes import BOTTOM, CHARM, GLUON, M_LEPTON, HardEvents

# Run-2 pile-up profile per data-taking year: (fraction of luminosity, mean μ, σ μ, MC run number)
RUN2_YEARS = (
    (0.024, 13.4, 4.0, 284500),
    (0.237, 25.1, 7.0, 284500),
    (0.317, 37.8, 11.0, 300000),
    (0.422, 36.1, 10.5, 310000),
)
TAU_HAD_MODES = np.array([0.18, 0.42, 0.16, 0.16, 0.08])  # 1p0n 1p1n 1pXn 3p0n 3pXn
TAU_CHARGED_FRACTION = np.array([1.0, 0.5, 0.35, 1.0, 0.6])


class Objects:
    """A padded set of candidate objects: ``p4 (N, K, 4)``, ``valid (N, K)`` and named columns."""

    def __init__(self, p4: np.ndarray, valid: np.ndarray, **cols):
        self.p4 = p4
        self.valid = valid
        self.cols = dict(cols)

    @property
    def p4(self) -> np.ndarray:
        return self._p4

    @p4.setter
    def p4(self, value: np.ndarray) -> None:
        self._p4 = value
        self._cache: dict[str, np.ndarray] = {}

    def _cached(self, name, fn):
        if name not in self._cache:
            self._cache[name] = fn(self._p4)
        return self._cache[name]

    @property
    def pt(self):
        return self._cached("pt", kin.pt)

    @property
    def eta(self):
        return self._cached("eta", kin.eta)

    @property
    def phi(self):
        return self._cached("phi", kin.phi)

    def __getitem__(self, k):
        return self.cols[k]

    def __setitem__(self, k, v):
        self.cols[k] = v

    @staticmethod
    def concat(*objs: Objects) -> Objects:
        keys = set.intersection(*(set(o.cols) for o in objs))
        return Objects(
            np.concatenate([o.p4 for o in objs], axis=1),
            np.concatenate([o.valid for o in objs], axis=1),
            **{k: np.concatenate([o.cols[k] for o in objs], axis=1) for k in keys},
        )

    def select(self, keep: np.ndarray) -> None:
        self.valid = self.valid & keep

    def compact(self) -> Objects:
        """Move valid objects to the front and drop columns no event uses (cheaper downstream)."""
        order = np.argsort(~self.valid, axis=1, kind="stable")
        width = max(int(self.valid.sum(axis=1).max(initial=0)), 1)
        take = row_gather(order[:, :width], self.valid.shape[1])
        return Objects(take(self.p4), take(self.valid), **{k: take(v) for k, v in self.cols.items()})


def row_gather(order: np.ndarray, width_in: int):
    """A function taking ``a[i, order[i, j], ...]`` for arrays ``(n, width_in, ...)``.

    Same result as ``np.take_along_axis`` but with one flat index built once and reused
    for every column (several times faster for many columns).
    """
    n, w = order.shape
    flat = (np.arange(n)[:, None] * width_in + order).ravel()

    def take(a):
        a = np.broadcast_to(a, (n, width_in, *np.shape(a)[2:]))
        return np.take(a.reshape(n * width_in, *a.shape[2:]), flat, axis=0).reshape(n, w, *a.shape[2:])

    return take


# --------------------------------------------------------------------------------------
# event-level quantities
# --------------------------------------------------------------------------------------
def pileup(rng, n):
    """(μ, run number) from the Run-2 profile (a Gaussian per year, weighted by luminosity)."""
    fr = np.array([y[0] for y in RUN2_YEARS])
    year = rng.choice(len(RUN2_YEARS), p=fr / fr.sum(), size=n)
    mean = np.array([y[1] for y in RUN2_YEARS])[year]
    sig = np.array([y[2] for y in RUN2_YEARS])[year]
    mu = np.clip(rng.normal(mean, sig), 0.5, 80.0)
    mu = np.round(mu * 100) / 100  # ATLAS stores μ with finite precision
    run = np.array([y[3] for y in RUN2_YEARS])[year]
    return mu, run


# --------------------------------------------------------------------------------------
# decays of taus and heavy-flavour quarks, FSR
# --------------------------------------------------------------------------------------
def decay_taus(rng, h: HardEvents):
    """Collinear tau decays. Returns (light leptons, hadronic taus, neutrino px/py sum).

    Leptonic (35%): e or μ with momentum fraction ~ Beta(2, 2.4); hadronic (65%): the
    visible system takes ~ Beta(2.5, 1.6) with decay modes 1p0n/1p1n/1pXn/3p0n/3pXn.
    """
    n, L = h.lepton_pid.shape
    is_tau = h.lepton_pid == 15
    u = rng.uniform(size=(n, L))
    lep_e, lep_mu = is_tau & (u < 0.178), is_tau & (u >= 0.178) & (u < 0.352)
    had = is_tau & (u >= 0.352)
    z_lep = rng.beta(2.0, 2.4, size=(n, L))
    z_had = rng.beta(2.5, 1.6, size=(n, L))
    z = np.where(had, z_had, z_lep)
    # light leptons: prompt e/μ and leptonic tau decays
    pid = np.where(lep_e, 11, np.where(lep_mu, 13, h.lepton_pid))
    scale = np.where(is_tau & ~had, z, 1.0)
    light_valid = (pid == 11) | (pid == 13)
    light_valid &= ~had
    p4 = h.leptons * scale[..., None]
    p4[..., 0] = np.sqrt(np.sum(p4[..., 1:] ** 2, axis=-1) + np.where(pid == 13, M_LEPTON[13], 0.0) ** 2)
    light = Objects(
        p4 * light_valid[..., None], light_valid, pid=pid, charge=h.lepton_charge, origin=np.full((n, L), int(O.PROMPT))
    )
    mode = np.array([rng.choice(5, p=TAU_HAD_MODES / TAU_HAD_MODES.sum(), size=n) for _ in range(L)]).T
    vis = h.leptons * np.where(had, z_had, 0.0)[..., None]
    m_vis = np.where(mode >= 3, 1.1, np.where(mode == 0, 0.14, 0.8))
    vis[..., 0] = np.sqrt(np.sum(vis[..., 1:] ** 2, axis=-1) + m_vis**2) * had
    taus = Objects(vis, had, charge=h.lepton_charge, mode=mode, origin=np.full((n, L), int(O.PROMPT)))
    nu = np.sum(h.leptons[..., 1:3] * (is_tau * (1 - z))[..., None], axis=1)
    return light, taus, nu


def jets_from_partons(rng, h: HardEvents):
    """Truth jets from partons with heavy-flavour semileptonic decays.

    Returns (jets, non-prompt leptons, neutrino px/py). A b (c) quark gives a lepton in
    21% (18%) of cases, carrying ~Beta(2, 4) (Beta(1.5, 5)) of its momentum near the axis;
    the neutrino takes a similar share, so HF jets lose energy and add MET.
    """
    fl = h.parton_flavour
    valid = fl > 0
    n, P = fl.shape
    hf = (fl == BOTTOM) | (fl == CHARM)
    semi = hf & (rng.uniform(size=(n, P)) < np.where(fl == BOTTOM, 0.21, 0.18))
    semi_b, semi_c = semi & (fl == BOTTOM), semi & (fl == CHARM)
    z_l = _beta_where(rng, semi_b, 2.0, 4.0) + _beta_where(rng, semi_c, 1.5, 5.0)
    z_nu = _beta_where(rng, semi_b, 2.0, 4.0) + _beta_where(rng, semi_c, 1.5, 5.0)
    z_nu = np.minimum(z_nu, 0.9 - z_l)
    pid = np.where(rng.uniform(size=(n, P)) < 0.5, 11, 13)
    p_t, eta, phi = kin.pt(h.partons), kin.eta(h.partons), kin.phi(h.partons)
    l_p4 = kin.p4_from_ptetaphim(
        p_t * z_l,
        eta + rng.normal(0, 0.05, (n, P)),
        phi + rng.normal(0, 0.05, (n, P)),
        np.where(pid == 13, M_LEPTON[13], M_LEPTON[11]),
    )
    nonprompt = Objects(
        l_p4 * semi[..., None],
        semi,
        pid=pid,
        charge=rng.choice([-1, 1], size=(n, P)),
        origin=np.full((n, P), int(O.HEAVY_FLAVOUR)),
    )
    frac_left = np.where(semi, 1.0 - z_l - z_nu, 1.0)
    nu = np.sum(h.partons[..., 1:3] * np.where(semi, z_nu, 0.0)[..., None], axis=1)
    # out-of-cone losses and jet mass from the shower
    resp = np.clip(rng.normal(0.97, 0.04, (n, P)), 0.7, 1.1) * frac_left
    ratio = np.exp(rng.normal(np.log(np.select([fl == GLUON, fl == BOTTOM], [0.13, 0.12], 0.09)), 0.4))
    jpt = p_t * resp
    jets = Objects(
        kin.p4_from_ptetaphim(jpt, eta, phi, jpt * ratio) * valid[..., None],
        valid,
        label=np.select([fl == BOTTOM, fl == CHARM], [5, 4], 0),
        gluon=(fl == GLUON),
        origin=np.full((n, P), int(O.PROMPT)),
    )
    return jets, nonprompt, nu


def fsr(rng, leptons: Objects) -> Objects:
    """Final-state photons off charged leptons (soft-collinear spectrum); leptons lose that momentum.

    Electrons re-absorb photons within ΔR < 0.05 (calorimeter clustering).
    """
    n, L = leptons.valid.shape
    prob = np.where(leptons["pid"] == 11, 0.12, 0.08)
    emit = leptons.valid & (rng.uniform(size=(n, L)) < prob)
    z = kin.power_law(rng, 1.0001, 0.03, 0.6, size=(n, L))
    dr = rng.exponential(0.06, size=(n, L)) + 0.005
    ang = rng.uniform(-np.pi, np.pi, size=(n, L))
    merged = (leptons["pid"] == 11) & (dr < 0.05)
    emit &= ~merged
    p_t, eta, phi = leptons.pt, leptons.eta, leptons.phi
    g = kin.p4_from_ptetaphim(p_t * z, eta + dr * np.cos(ang), phi + dr * np.sin(ang), 0.0)
    keep = np.where(emit, 1.0 - z, 1.0)
    leptons.p4 = leptons.p4 * keep[..., None]
    return Objects(g * emit[..., None], emit, origin=np.full((n, L), int(O.FSR)))


# --------------------------------------------------------------------------------------
# detector response helpers
# --------------------------------------------------------------------------------------
def smear_pt(rng, p4, rel_sigma, eta_sigma=0.0, phi_sigma=0.0, mass=None):
    p_t = kin.pt(p4) * np.maximum(rng.normal(1.0, rel_sigma), 0.05)
    eta = kin.eta(p4) + rng.normal(0.0, 1.0, p_t.shape) * eta_sigma
    phi = kin.wrap_phi(kin.phi(p4) + rng.normal(0.0, 1.0, p_t.shape) * phi_sigma)
    m = kin.mass(p4) if mass is None else mass
    return kin.p4_from_ptetaphim(p_t, eta, phi, m)


def in_crack(eta):
    return (np.abs(eta) > 1.37) & (np.abs(eta) < 1.52)


def nested_flags(rng, levels):
    """Nested pass flags (loose ⊇ medium ⊇ tight) from conditional probabilities."""
    out, prev = [], None
    for p in levels:
        f = rng.uniform(size=p.shape) < p
        f = f if prev is None else (f & prev)
        out.append(f)
        prev = f
    return out


def profile_fraction(d, r, sigma):
    """Fraction of a 2D Gaussian (width ``sigma``) at distance ``d`` inside a cone of radius ``r``.

    Closed-form approximation of the offset-circle integral, exact at d = 0.
    """
    s2 = sigma**2
    return (1.0 - np.exp(-(r**2) / (2 * s2))) * np.exp(-(d**2) / (2 * s2 + r**2))


def fake_from_jets(rng, jets: Objects, prob, z_a, z_b) -> Objects:
    """Objects faked by jets: with probability ``prob`` per jet, carrying ~Beta(z_a, z_b) of its pT.

    Random numbers are drawn only for the jets that fake; the result is packed per event.
    """
    sel = jets.valid & (rng.uniform(size=jets.valid.shape) < prob)
    ev, slot = np.nonzero(sel)
    z = rng.beta(z_a, z_b, size=ev.size)
    eta = jets.eta[ev, slot] + rng.normal(0, 0.02, ev.size)
    phi = jets.phi[ev, slot] + rng.normal(0, 0.02, ev.size)
    valid, cols = pack_ragged(ev, sel.shape[0], pt=jets.pt[ev, slot] * z, eta=eta, phi=phi)
    p4 = kin.p4_from_ptetaphim(cols["pt"], cols["eta"], cols["phi"], 0.0) * valid[..., None]
    return Objects(p4, valid, origin=np.full(valid.shape, int(O.FAKE)))


def _beta_where(rng, mask: np.ndarray, a: float, b: float) -> np.ndarray:
    """Beta(a, b) samples where ``mask`` is true, 0 elsewhere (draws only what is needed)."""
    out = np.zeros(mask.shape)
    out[mask] = rng.beta(a, b, size=int(mask.sum()))
    return out


# --------------------------------------------------------------------------------------
# tracks and isolation
# --------------------------------------------------------------------------------------
def impact_parameter_resolution(pt, eta):
    """(σ d0, σ z0) in mm of a track with pT [GeV] and η (also used for jet constituents)."""
    return 0.010 + 0.09 / np.maximum(pt, 0.5), 0.040 + 0.12 * np.cosh(eta) / np.maximum(pt, 0.5)


def track_params(rng, pt, eta, charge, d0_extra=0.0, z0_offset=0.0):
    """Impact parameters [mm], q/p [1/GeV], χ² and nDoF of tracks with the given truth."""
    sig_d0, sig_z0 = impact_parameter_resolution(pt, eta)
    d0 = rng.normal(0.0, 1.0, pt.shape) * sig_d0 + d0_extra
    z0 = rng.normal(0.0, 1.0, pt.shape) * sig_z0 + z0_offset
    n_pix = rng.binomial(4, 0.97, pt.shape) + (np.abs(eta) > 1.8)
    n_sct = rng.binomial(8, 0.97, pt.shape) + (rng.uniform(size=pt.shape) < 0.3)
    trt_mean = np.where(np.abs(eta) < 1.7, 32.0, np.clip(32.0 * (2.0 - np.abs(eta)) / 0.3, 0.0, 32.0))
    n_trt = rng.poisson(trt_mean)
    ndof = (2 * n_pix + n_sct + n_trt - 5).astype(np.int16)
    # χ² with nDoF degrees of freedom (Wilson–Hilferty), with a 10% log-normal tail for mis-modelling
    k = np.maximum(ndof, 1).astype(np.float64)
    wh = 1.0 - 2.0 / (9.0 * k) + rng.normal(size=pt.shape) * np.sqrt(2.0 / (9.0 * k))
    chi2 = k * np.maximum(wh, 0.05) ** 3 * rng.lognormal(0.0, 0.1, pt.shape)
    qop = charge / (np.maximum(pt, 1e-3) * np.cosh(eta))
    return d0, z0, qop, chi2, ndof


def pack_ragged(event: np.ndarray, n: int, **arrays) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pack flat per-object arrays (``event`` ids sorted ascending) into ``(n, W)`` rows.

    Returns ``(valid (n, W), {name: (n, W)})`` with W the largest per-event count.
    """
    counts = np.bincount(event, minlength=n)
    width = max(int(counts.max(initial=0)), 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(event.size) - starts[event]
    valid = np.zeros((n, width), dtype=bool)
    valid[event, slot] = True
    out = {}
    for name, a in arrays.items():
        full = np.zeros((n, width), dtype=a.dtype)
        full[event, slot] = a
        out[name] = full
    return valid, out


def flatten(valid: np.ndarray, **arrays) -> dict[str, np.ndarray]:
    """Flat arrays of the valid entries of padded ``(n, K, ...)`` arrays, with their ``event`` ids."""
    idx = np.nonzero(valid)
    return {"event": idx[0], **{k: np.broadcast_to(a, valid.shape)[idx] for k, a in arrays.items()}}


def jet_tracks(rng, jets: Objects, keep_soft: np.ndarray, k: int = 4):
    """The ``k`` leading charged particles of each jet (|η| < 2.5), explicit.

    Charged fraction ~ Beta(6, 4); leading fractions by stick breaking (Beta(1.3, 2.5));
    positions around the axis with the jet's track width; b/c-hadron decay products get
    lifetime-displaced d0. The soft remainder enters isolation analytically. Tracks below
    the stored-track threshold are only kept for jets with ``keep_soft`` (jets near an
    isolated object, where they enter isolation sums); elsewhere nothing would see them.
    Computed on the flat list of jets inside the tracker; returns flat arrays with ``event``.
    """
    sel = jets.valid & (np.abs(jets.eta) < 2.5)
    ev, slot = np.nonzero(sel)
    nj = ev.size
    jpt, jeta, jphi = jets.pt[ev, slot], jets.eta[ev, slot], jets.phi[ev, slot]
    width, lab = jets["width"][ev, slot], jets["label"][ev, slot]
    is_pu = jets["origin"][ev, slot] == int(O.PILEUP)
    fch = rng.beta(6.0, 4.0, size=nj)
    b = rng.beta(1.3, 2.5, size=(nj, k))
    left = np.cumprod(np.concatenate([np.ones((nj, 1)), 1.0 - b[:, :-1]], axis=1), axis=1)
    pt = (jpt * fch)[:, None] * left * b
    spread = (width * 0.8)[:, None]
    eta = jeta[:, None] + rng.normal(0, 1, (nj, k)) * spread
    phi = kin.wrap_phi(jphi[:, None] + rng.normal(0, 1, (nj, k)) * spread)
    u = rng.uniform(size=(nj, k))
    displaced = ((lab == 5)[:, None] & (u < 0.7)) | ((lab == 4)[:, None] & (u < 0.5))
    d0x = np.where(
        displaced,
        np.sign(rng.uniform(-1, 1, (nj, k))) * rng.exponential(1.0, (nj, k)) * np.where(lab == 5, 0.25, 0.12)[:, None],
        0.0,
    )
    keep = (pt > 0.5) & (np.abs(eta) < 2.5)
    keep &= (pt > schema.COLLECTIONS["tracks"].pt_cut * 0.9) | keep_soft[ev, slot][:, None]
    origin = np.where(is_pu[:, None], int(O.PILEUP), np.where(displaced, int(O.HEAVY_FLAVOUR), int(O.UNDERLYING)))
    z0off = np.broadcast_to(np.where(is_pu, jets["z_pu"][ev, slot], 0.0)[:, None], (nj, k))
    charge = np.where(rng.uniform(size=(nj, k)) < 0.5, -1, 1)
    r, c = np.nonzero(keep)
    return {
        "event": ev[r],
        "pt": pt[r, c],
        "eta": eta[r, c],
        "phi": phi[r, c],
        "charge": charge[r, c],
        "d0x": d0x[r, c],
        "z0off": z0off[r, c],
        "origin": origin[r, c],
        "owner": np.full(r.size, -1),
    }


def event_pairs(obj_event: np.ndarray, trk_event: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All (object, track) index pairs within the same event; ``trk_event`` sorted ascending."""
    counts = np.bincount(trk_event, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_obj = counts[obj_event]
    obj_idx = np.repeat(np.arange(obj_event.size), per_obj)
    offset = np.concatenate([[0], np.cumsum(per_obj)[:-1]])
    trk_idx = starts[obj_event][obj_idx] + (np.arange(obj_idx.size) - offset[obj_idx])
    return obj_idx, trk_idx


def cone_sums(
    objs: dict, trk: dict, n: int, cones, pt_floor=schema.ISO_PT_FLOOR_GEV, z0_cut=schema.ISO_Z0SINTHETA_CUT_MM
) -> list[np.ndarray]:
    """Σ pT of tracks within each cone (scalar, or one radius per object) of each object.

    ``objs`` and ``trk`` are flat (``event``, ``eta``, ``phi``, ``owner``; tracks also ``pt``,
    ``z0``, sorted by event). Tracks need pT > 0.5 GeV and |z0 sinθ| < 3 mm (DESIGN §2);
    the object's own track (same ``owner``) is excluded.
    """
    oi, ti = event_pairs(objs["event"], trk["event"], n)
    ok = (trk["pt"] > pt_floor) & (np.abs(trk["z0"] / np.cosh(trk["eta"])) < z0_cut)
    use = ok[ti] & (trk["owner"][ti] != objs["owner"][oi])
    oi, ti = oi[use], ti[use]
    dr = kin.delta_r(objs["eta"][oi], objs["phi"][oi], trk["eta"][ti], trk["phi"][ti])
    out = []
    for c in cones:
        r = np.asarray(c)[oi] if np.ndim(c) else c
        out.append(np.bincount(oi, weights=np.where(dr < r, trk["pt"][ti], 0.0), minlength=objs["event"].size))
    return out


def soft_cone_sums(rng, oi, dr, jet_pt, jet_sigma, obj_mu, cones, charged=True):
    """Analytic Σ pT [GeV] in each cone from the jets' soft remainder, the underlying event and pile-up.

    Flat inputs: ``oi`` object index and ``dr`` ΔR of each (object, jet) pair of the same
    event, ``jet_pt``/``jet_sigma`` of the paired jet, ``obj_mu`` pile-up per object; cones
    are scalars or one radius per object. Charged sums are nested (a smaller cone never holds
    more soft activity than a larger one).
    """
    n_obj = obj_mu.size
    share = 0.45 * 0.6 if charged else 1.0  # soft charged remainder vs. all energy
    out, cap = [], None
    for cone in cones:
        r = np.broadcast_to(np.asarray(cone, dtype=np.float64), (n_obj,))
        frac = profile_fraction(dr, r[oi], jet_sigma)
        jet_part = np.bincount(oi, weights=jet_pt * frac * share, minlength=n_obj)
        area = np.pi * r**2
        if charged:
            # UE ~1.5 tracks per unit area; pile-up 0.7 per unit area per interaction, ~4% within the z0 window
            k = rng.poisson(area * (1.5 + 0.7 * obj_mu * 0.04))
            soft = rng.gamma(np.maximum(k, 1e-9), 0.9) * (k > 0)
            cap = soft if cap is None else np.minimum(soft, cap)
            soft = cap
        else:
            # calorimeter: noise after pile-up subtraction, can be negative
            soft = rng.normal(0.0, 1.0, n_obj) * (0.4 + 0.05 * obj_mu) * np.sqrt(area / (np.pi * 0.04))
        out.append(jet_part + soft)
    return out


# --------------------------------------------------------------------------------------
# packing into schema arrays
# --------------------------------------------------------------------------------------
def pack(objs: Objects, coll: str, values: dict[str, np.ndarray], truth: dict[str, np.ndarray] | None = None):
    """Sort real objects by pT, keep the collection's ``max_objects`` and pad with zeros."""
    c = schema.COLLECTIONS[coll]
    M = c.max_objects
    valid = objs.valid & (objs.pt >= c.pt_cut)
    key = np.where(valid, objs.pt, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")[:, :M]
    take = row_gather(order, valid.shape[1])
    mask = take(valid)
    if mask.shape[1] < M:  # fewer candidates than max_objects: pad (index 0, masked out)
        order = np.pad(order, ((0, 0), (0, M - mask.shape[1])))
        take = row_gather(order, valid.shape[1])
        mask = np.pad(mask, ((0, 0), (0, M - mask.shape[1])))
    out = {}
    base = {"pt": objs.pt, "eta": objs.eta, "phi": objs.phi}
    for name, arr in {**base, **values}.items():
        v = take(arr)
        out[c.path_of(name)] = np.where(mask, v, 0).astype(c.fields[name].dtype)
    out[c.path_of(schema.MASK)] = mask
    out[c.path_of(schema.COUNT)] = mask.sum(axis=1).astype(np.int16)
    for name, arr in (truth or {}).items():
        v = take(arr)
        out[f"{schema.TRUTH}/{coll}/{name}"] = np.where(mask, v, -1).astype(np.int8)
    return out


# --------------------------------------------------------------------------------------
# jets: substructure and flavour tagging
# --------------------------------------------------------------------------------------
_GN2_MEANS = {5: (4.0, 0.6, 0.0), 4: (1.0, 2.2, 0.0), 15: (-1.5, 0.3, 1.0), 0: (-2.2, -0.6, 1.6)}


def flavour_scores(rng, label, pt, eta):
    """(GN2, DL1d) probabilities (each ``(N, K, 3)`` as pb, pc, pu) from flavour-dependent logits.

    GN2 logits ~ flavour mean + Student-t noise (mistag tails); DL1d is a noisier,
    less separating function of the same latent. Jets outside the tracker (|η| > 2.5)
    get uninformative scores. Separation degrades slowly with pT.
    """
    means = np.zeros((*label.shape, 3))
    for lab, m in _GN2_MEANS.items():
        means[label == lab] = m
    means *= (1.0 / (1.0 + pt / 800.0))[..., None]
    gn2_logit = means + 1.2 * rng.standard_t(6, size=means.shape)
    dl1_logit = 0.75 * gn2_logit + 0.8 * rng.normal(size=means.shape)
    outside = np.abs(eta) > 2.5
    prior = np.array([-1.0, -0.5, 1.0])
    gn2_logit[outside] = prior + 0.3 * rng.normal(size=(int(outside.sum()), 3))
    dl1_logit[outside] = prior + 0.3 * rng.normal(size=(int(outside.sum()), 3))

    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return softmax(gn2_logit), softmax(dl1_logit)


def jet_substructure(rng, jets: Objects, mu):
    """QG_nTracks, n_trk, QG_tracksWidth, QG_tracksC1 (flavour- and pT-dependent)."""
    pt, label = np.maximum(jets.pt, 1.0), jets["label"]
    gluon, pu = jets["gluon"], jets["origin"] == int(O.PILEUP)
    base = np.clip(2.6 * np.log(pt) - 1.2, 1.0, None)
    mean = base * np.select([gluon, label == 5], [1.5, 1.35], 1.0)
    mean = np.where(label == 15, 0.5, np.where(pu, 1.0, mean))
    n_pv = rng.poisson(rng.gamma(15.0, mean / 15.0))
    n_pv = np.where(label == 15, n_pv + np.where(jets["prongs"] > 0, jets["prongs"], 1), n_pv)
    n_all = n_pv + rng.poisson(0.03 * mu[:, None] + np.where(pu, 3.0, 0.0))
    w_mean = 0.11 * (40.0 / pt) ** 0.45 * np.select([gluon, label == 5, label == 15], [1.35, 1.1, 0.5], 1.0)
    width = rng.gamma(3.0, w_mean / 3.0)
    c1 = np.clip(rng.normal(np.select([gluon, label == 5, label == 15], [0.30, 0.26, 0.12], 0.22), 0.05), 0.0, 0.6)
    inside = np.abs(jets.eta) < 2.5
    return (
        np.where(inside, n_pv, -1),
        np.where(inside, n_all, 0),
        np.where(inside, width, -1.0),
        np.where(inside, c1, -1.0),
        width,
    )


# --------------------------------------------------------------------------------------
# the full reconstruction of one chunk
# --------------------------------------------------------------------------------------
def _origin_select(origin, prompt, hf, other):
    return np.select([origin == int(O.PROMPT), origin == int(O.HEAVY_FLAVOUR)], [prompt, hf], other)


def _random_charge(rng, shape):
    return rng.choice(np.array([-1, 1]), size=shape)


def reconstruct(rng, h: HardEvents, label: int, mc_channel: int, first_event_number: int) -> dict[str, np.ndarray]:
    """Reconstructed events for the truth record ``h``: ``{dataset path: array}``.

    Candidate objects are kept with their truth four-vector (``tp4``) and compacted
    (``Objects.compact``) after each selection, so the pairwise work (isolation) only
    sees objects that exist.
    """
    n = h.n
    mu, run = pileup(rng, n)
    pv = np.stack([rng.normal(-0.5, 0.01, n), rng.normal(-0.5, 0.01, n), rng.normal(0.0, 35.0, n)], axis=1)

    light, taus_true, nu_tau = decay_taus(rng, h)
    pjets, nonprompt, nu_hf = jets_from_partons(rng, h)
    leptons = Objects.concat(light, nonprompt)
    prompt_view = Objects(leptons.p4, leptons.valid & (leptons["origin"] == int(O.PROMPT)), pid=leptons["pid"])
    photons_fsr = fsr(rng, prompt_view)
    leptons.p4 = prompt_view.p4  # leptons lose what they radiated
    leptons = leptons.compact()
    taus_true = taus_true.compact()
    L = taus_true.valid.shape[1]

    # ---- truth jets: hard partons, hadronic taus (also jets, as in ATLAS), pile-up ----
    n_pu_max = 4
    n_pu = np.minimum(rng.poisson(0.025 * mu), n_pu_max)
    pu_valid = np.arange(n_pu_max)[None, :] < n_pu[:, None]
    pu_pt = kin.power_law(rng, 4.0, 18.0, 200.0, size=(n, n_pu_max))
    pu_p4 = kin.p4_from_ptetaphim(
        pu_pt, rng.uniform(-4.5, 4.5, (n, n_pu_max)), rng.uniform(-np.pi, np.pi, (n, n_pu_max)), pu_pt * 0.1
    )
    z_pu = rng.normal(0.0, 45.0 * np.sqrt(2.0), size=(n, n_pu_max)) - pv[:, 2:3]
    P = pjets.valid.shape[1]
    jets_t = Objects.concat(
        Objects(
            pjets.p4,
            pjets.valid,
            label=pjets["label"],
            gluon=pjets["gluon"],
            origin=pjets["origin"],
            prongs=np.zeros((n, P), int),
            z_pu=np.zeros((n, P)),
        ),
        Objects(
            taus_true.p4,
            taus_true.valid,
            label=np.full((n, L), 15),
            gluon=np.zeros((n, L), bool),
            origin=np.full((n, L), int(O.PROMPT)),
            prongs=np.where(taus_true["mode"] >= 3, 3, 1),
            z_pu=np.zeros((n, L)),
        ),
        Objects(
            pu_p4 * pu_valid[..., None],
            pu_valid,
            label=np.zeros((n, n_pu_max), int),
            gluon=np.ones((n, n_pu_max), bool),
            origin=np.full((n, n_pu_max), int(O.PILEUP)),
            prongs=np.zeros((n, n_pu_max), int),
            z_pu=z_pu,
        ),
    ).compact()
    qg_ntrk, n_trk, qg_width, qg_c1, width = jet_substructure(rng, jets_t, mu)
    jets_t.cols.update(width=width, QG_nTracks=qg_ntrk, n_trk=n_trk, QG_tracksWidth=qg_width, QG_tracksC1=qg_c1)
    jpt = np.maximum(jets_t.pt, 1.0)
    sig = np.sqrt((0.5 + 0.08 * mu[:, None]) ** 2 / jpt**2 + 0.75**2 / jpt + 0.03**2)
    jets = Objects(
        smear_pt(rng, jets_t.p4, sig, 0.01, 0.01),
        jets_t.valid & (np.abs(jets_t.eta) < 4.5),
        tp4=jets_t.p4,
        **jets_t.cols,
    )
    jmass = kin.mass(jets_t.p4) * rng.normal(1.0, 0.1, jpt.shape).clip(0.3)
    jets.p4 = kin.p4_from_ptetaphim(jets.pt, jets.eta, jets.phi, jmass)
    gn2, dl1 = np.zeros((*jets.valid.shape, 3)), np.zeros((*jets.valid.shape, 3))
    v = jets.valid
    gn2[v], dl1[v] = flavour_scores(rng, jets["label"][v], jets.pt[v], jets.eta[v])
    jets.cols.update(
        GN2_pb=gn2[..., 0],
        GN2_pc=gn2[..., 1],
        GN2_pu=gn2[..., 2],
        DL1d_pb=dl1[..., 0],
        DL1d_pc=dl1[..., 1],
        DL1d_pu=dl1[..., 2],
    )
    jets.select(jets.pt >= schema.COLLECTIONS["jets"].pt_cut)
    lost_jets = jets_t.valid & (np.abs(jets_t.eta) >= 4.5)
    lost = np.sum(jets_t.p4[..., 1:3] * lost_jets[..., None], axis=1)
    jets = jets.compact()

    # ---- electrons: prompt, from taus and heavy flavour, and jet fakes ----
    e_fake = fake_from_jets(rng, Objects(jets_t.p4, jets_t.valid & (jets_t["label"] == 0)), 0.004, 4.0, 2.0)
    e_t = Objects.concat(
        Objects(leptons.p4, leptons.valid & (leptons["pid"] == 11), origin=leptons["origin"], charge=leptons["charge"]),
        Objects(e_fake.p4, e_fake.valid, origin=e_fake["origin"], charge=_random_charge(rng, e_fake.valid.shape)),
    ).compact()
    e_en = np.maximum(e_t.pt, 1e-3) * np.cosh(e_t.eta)
    e_sig = np.sqrt(0.1**2 / e_en + 0.007**2 + (0.25 / e_en) ** 2)
    electrons = Objects(
        smear_pt(rng, e_t.p4, e_sig, 0.0005, 0.0005, mass=M_LEPTON[11]), e_t.valid, tp4=e_t.p4, **e_t.cols
    )
    eff = _origin_select(e_t["origin"], 0.97, 0.9, 0.6) * (1.0 - np.exp(-(e_t.pt - 4.0).clip(0) / 6.0))
    electrons.select(
        (np.abs(electrons.eta) < 2.47)
        & ~in_crack(electrons.eta)
        & (rng.uniform(size=eff.shape) < eff)
        & (electrons.pt >= schema.COLLECTIONS["electrons"].pt_cut)
    )
    flip = rng.uniform(size=eff.shape) < 0.001 + 0.01 * np.abs(electrons.eta) / 2.5
    electrons["charge"] = np.where(flip, -electrons["charge"], electrons["charge"])
    o = electrons["origin"]
    electrons["LHLoose"], electrons["LHMedium"], electrons["LHTight"] = nested_flags(
        rng, [_origin_select(o, 0.98, 0.85, 0.4), _origin_select(o, 0.95, 0.85, 0.5), _origin_select(o, 0.92, 0.8, 0.4)]
    )
    electrons = electrons.compact()

    # ---- muons ----
    m_fake = fake_from_jets(rng, Objects(jets_t.p4, jets_t.valid & (jets_t.pt > 40)), 0.0015, 3.0, 3.0)
    m_t = Objects.concat(
        Objects(leptons.p4, leptons.valid & (leptons["pid"] == 13), origin=leptons["origin"], charge=leptons["charge"]),
        Objects(m_fake.p4, m_fake.valid, origin=m_fake["origin"], charge=_random_charge(rng, m_fake.valid.shape)),
    ).compact()
    m_sig = np.where(np.abs(m_t.eta) < 1.05, 0.017, 0.024) + 0.00015 * m_t.pt
    muons = Objects(smear_pt(rng, m_t.p4, m_sig, 0.0003, 0.0003, mass=M_LEPTON[13]), m_t.valid, tp4=m_t.p4, **m_t.cols)
    eff = _origin_select(m_t["origin"], 0.98, 0.95, 0.5)
    eff = np.where(np.abs(m_t.eta) < 0.1, eff * 0.75, eff)
    muons.select(
        (np.abs(muons.eta) < 2.7)
        & (rng.uniform(size=eff.shape) < eff)
        & (muons.pt >= schema.COLLECTIONS["muons"].pt_cut)
    )
    mo = muons["origin"]
    u = rng.uniform(size=mo.shape)
    quality = np.select(
        [mo == int(O.FAKE), mo == int(O.HEAVY_FLAVOUR)],
        [np.searchsorted([0.1, 0.3, 0.7], u), np.searchsorted([0.7, 0.9, 0.98], u)],
        np.searchsorted([0.85, 0.95, 0.99], u),
    )
    abs_eta = np.abs(muons.eta)
    r = rng.uniform(size=(3, *u.shape))
    mtype = np.where(
        abs_eta > 2.5,
        np.where(r[0] < 0.5, 1, 4),
        np.where((abs_eta < 0.1) & (r[1] < 0.4), 3, np.where(r[2] < 0.96, 0, 2)),
    )
    muons["quality"] = np.where(mtype == 3, np.maximum(quality, 2), quality)
    muons["muonType"] = mtype
    muons["passIDCuts"] = (mtype != 1) & (rng.uniform(size=u.shape) < 0.995)
    muons["passPresel"] = muons["passIDCuts"] & (muons["quality"] <= 1)
    muons["has_track"] = (mtype != 1) & (abs_eta < 2.5)
    muons = muons.compact()

    # ---- photons: FSR and π0 fakes ----
    g_fake = fake_from_jets(
        rng,
        Objects(jets_t.p4, jets_t.valid & (jets_t["label"] != 15), gluon=jets_t["gluon"]),
        np.where(jets_t["gluon"], 0.045, 0.03),
        5.0,
        3.0,
    )
    g_t = Objects.concat(photons_fsr, g_fake).compact()
    g_en = np.maximum(g_t.pt, 1e-3) * np.cosh(g_t.eta)
    g_sig = np.sqrt(0.1**2 / g_en + 0.008**2 + (0.25 / g_en) ** 2)
    photons = Objects(smear_pt(rng, g_t.p4, g_sig, 0.001, 0.001, mass=0.0), g_t.valid, **g_t.cols)
    photons.select(
        (np.abs(photons.eta) < 2.37)
        & ~in_crack(photons.eta)
        & (rng.uniform(size=g_en.shape) < 0.95)
        & (photons.pt >= schema.COLLECTIONS["photons"].pt_cut)
    )
    real = photons["origin"] == int(O.FSR)
    photons["isLoose"], photons["isTight"] = nested_flags(rng, [np.where(real, 0.98, 0.6), np.where(real, 0.9, 0.3)])
    photons["isCleaning"] = rng.uniform(size=g_en.shape) < 0.995
    photons["author"] = np.where(rng.uniform(size=g_en.shape) < np.where(real, 0.08, 0.15), 16, 4)
    photons = photons.compact()

    # ---- taus: real hadronic taus, jet fakes, electron fakes ----
    t_jet = fake_from_jets(
        rng,
        Objects(jets_t.p4, jets_t.valid & (jets_t["label"] != 15) & (jets_t.pt > 18)),
        np.where(jets_t["gluon"], 0.12, 0.22),
        12.0,
        1.5,
    )
    t_ele = Objects(
        electrons.p4,
        electrons.valid & (rng.uniform(size=electrons.valid.shape) < 0.04),
        origin=np.full(electrons.valid.shape, int(O.FAKE)),
    )
    nt, ne = t_jet.valid.shape[1], t_ele.valid.shape[1]
    ta_t = Objects.concat(
        Objects(
            taus_true.p4,
            taus_true.valid,
            origin=taus_true["origin"],
            kind=np.zeros((n, L), int),
            true_mode=taus_true["mode"],
            charge=taus_true["charge"],
        ),
        Objects(
            t_jet.p4,
            t_jet.valid,
            origin=t_jet["origin"],
            kind=np.ones((n, nt), int),
            true_mode=np.zeros((n, nt), int),
            charge=_random_charge(rng, (n, nt)),
        ),
        Objects(
            t_ele.p4,
            t_ele.valid,
            origin=t_ele["origin"],
            kind=np.full((n, ne), 2),
            true_mode=np.zeros((n, ne), int),
            charge=np.where(electrons["charge"] == 0, 1, electrons["charge"]),
        ),
    ).compact()
    taus = Objects(smear_pt(rng, ta_t.p4, 0.08, 0.005, 0.005), ta_t.valid, **ta_t.cols)
    kind, true_mode = taus["kind"], taus["true_mode"]
    taus.select(
        (np.abs(taus.eta) < 2.5)
        & ~in_crack(taus.eta)
        & (rng.uniform(size=kind.shape) < 0.85)
        & (taus.pt >= schema.COLLECTIONS["taus"].pt_cut)
    )
    fake_mode = rng.choice(5, p=[0.3, 0.25, 0.15, 0.2, 0.1], size=kind.shape)
    fake_mode = np.where(kind == 2, np.where(rng.uniform(size=kind.shape) < 0.7, 1, 0), fake_mode)
    shift = _random_charge(rng, kind.shape)
    neighbour = np.where(true_mode >= 3, np.clip(true_mode + shift, 3, 4), np.clip(true_mode + shift, 0, 2))
    reco_mode = np.where(rng.uniform(size=kind.shape) < 0.75, true_mode, neighbour)
    taus["NNDecayMode"] = np.where(kind == 0, reco_mode, fake_mode)
    taus["is_1prong"] = taus["NNDecayMode"] <= 2
    taus["charge"] = np.where((kind == 0) & (rng.uniform(size=kind.shape) < 0.02), -taus["charge"], taus["charge"])
    taus["RNNJetScore"] = np.select(
        [kind == 0, kind == 2],
        [rng.uniform(size=kind.shape), rng.beta(1.0, 2.0, size=kind.shape)],
        rng.beta(0.6, 5.0, size=kind.shape),
    )
    ele = np.select(
        [kind == 0, kind == 2],
        [rng.beta(4.0, 1.5, size=kind.shape), rng.beta(1.0, 8.0, size=kind.shape)],
        rng.beta(3.0, 1.5, size=kind.shape),
    )
    taus.cols.update(RNNEleScore=ele, EleRNNLoose_v1=ele > 0.05, EleRNNMedium_v1=ele > 0.15, EleRNNTight_v1=ele > 0.25)
    taus = taus.compact()

    # ---- tracks: leptons, tau prongs, jets' leading charged particles, pile-up (flat lists) ----
    n_prong = np.where(taus_true["mode"] >= 3, 3, 1)
    split = rng.dirichlet([2.0, 2.0, 2.0], size=(n, L))
    split = np.where((n_prong == 1)[..., None], np.array([1.0, 0.0, 0.0]), split)
    prong_pt = (taus_true.pt * TAU_CHARGED_FRACTION[taus_true["mode"]])[..., None] * split
    q_tau = taus_true["charge"][..., None]
    prong_valid = taus_true.valid[..., None] & (np.arange(3)[None, None, :] < n_prong[..., None]) & (prong_pt > 0.5)
    iso_objs = Objects.concat(
        Objects(electrons.p4, electrons.valid), Objects(muons.p4, muons.valid), Objects(photons.p4, photons.valid)
    )
    jf = flatten(jets_t.valid, eta=jets_t.eta, phi=jets_t.phi)
    isf = flatten(iso_objs.valid, eta=iso_objs.eta, phi=iso_objs.phi)
    ji, ii = event_pairs(jf["event"], isf["event"], n)
    close = kin.delta_r(jf["eta"][ji], jf["phi"][ji], isf["eta"][ii], isf["phi"][ii]) < 0.9
    near_iso = np.zeros(jets_t.valid.shape, dtype=bool)
    near_iso[jets_t.valid] = np.bincount(ji, weights=close, minlength=jf["event"].size) > 0
    e_owner = 1000 + np.arange(electrons.valid.shape[1])[None, :]
    m_owner = 2000 + np.arange(muons.valid.shape[1])[None, :]
    n_pu_trk = 6
    pu_valid = np.arange(n_pu_trk)[None, :] < np.minimum(rng.poisson(0.05 * mu), n_pu_trk)[:, None]
    zeros = 0.0
    sources = [
        flatten(
            electrons.valid & (np.abs(electrons.eta) < 2.5),
            pt=electrons.pt * rng.beta(12.0, 1.5, electrons.pt.shape),
            eta=electrons.eta,
            phi=electrons.phi,
            charge=electrons["charge"],
            owner=e_owner,
            origin=electrons["origin"],
            d0x=zeros,
            z0off=zeros,
        ),
        flatten(
            muons.valid & muons["has_track"],
            pt=kin.pt(muons["tp4"]) * rng.normal(1.0, 0.02, muons.pt.shape),
            eta=muons.eta,
            phi=muons.phi,
            charge=muons["charge"],
            owner=m_owner,
            origin=muons["origin"],
            d0x=zeros,
            z0off=zeros,
        ),
        flatten(
            prong_valid,
            pt=prong_pt,
            eta=taus_true.eta[..., None] + rng.normal(0, 0.02, (n, L, 3)),
            phi=taus_true.phi[..., None] + rng.normal(0, 0.02, (n, L, 3)),
            charge=np.concatenate([q_tau, q_tau, -q_tau], -1),  # 3-prong charges sum to the tau charge
            owner=-1,
            origin=int(O.PROMPT),
            d0x=zeros,
            z0off=zeros,
        ),
        jet_tracks(rng, Objects(jets_t.p4, jets_t.valid & (jets_t["label"] != 15), **jets_t.cols), near_iso),
        flatten(
            pu_valid,
            pt=kin.power_law(rng, 4.0, 2.0, 200.0, size=(n, n_pu_trk)),
            eta=rng.uniform(-2.5, 2.5, (n, n_pu_trk)),
            phi=rng.uniform(-np.pi, np.pi, (n, n_pu_trk)),
            charge=_random_charge(rng, (n, n_pu_trk)),
            owner=-1,
            origin=int(O.PILEUP),
            d0x=zeros,
            z0off=rng.normal(0, 45.0 * np.sqrt(2.0), (n, n_pu_trk)) - pv[:, 2:3],
        ),
    ]
    trk = {k: np.concatenate([np.asarray(src[k]) for src in sources]) for k in sources[0]}
    order = np.argsort(trk["event"], kind="stable")
    trk = {k: v[order] for k, v in trk.items()}
    sigma = np.sqrt(0.01**2 + (0.0005 * trk["pt"]) ** 2)
    trk["pt"] = trk["pt"] * np.maximum(1.0 + sigma * rng.normal(size=sigma.shape), 0.1)
    trk["eta"] = trk["eta"] + rng.normal(0, 0.001, sigma.shape)
    trk["phi"] = kin.wrap_phi(trk["phi"])
    keep = (trk["pt"] > 0.5) & (np.abs(trk["eta"]) < 2.5)
    trk = {k: v[keep] for k, v in trk.items()}
    trk["d0"], trk["z0"], trk["qOverP"], trk["chiSquared"], trk["nDoF"] = track_params(
        rng, trk["pt"], trk["eta"], trk["charge"], trk["d0x"], trk["z0off"]
    )
    stored = trk["pt"] >= schema.COLLECTIONS["tracks"].pt_cut
    t_valid, t_cols = pack_ragged(
        trk["event"][stored],
        n,
        **{k: trk[k][stored] for k in ("pt", "eta", "phi", "d0", "z0", "qOverP", "chiSquared", "nDoF", "origin")},
    )
    tracks = Objects(
        kin.p4_from_ptetaphim(t_cols.pop("pt"), t_cols.pop("eta"), t_cols.pop("phi"), 0.1396), t_valid, **t_cols
    )

    # ---- isolation (track: explicit tracks + soft part; calorimeter: jets' energy + noise) ----
    jet_flat = flatten(
        jets_t.valid, eta=jets_t.eta, phi=jets_t.phi, pt=jets_t.pt, sigma=np.maximum(jets_t["width"], 0.02)
    )

    def isolation(objs: Objects, owner, track_cones, calo_cones):
        """Track (explicit + soft) and calorimeter cone sums, computed on flat (object, x) pairs."""
        flat = flatten(objs.valid, eta=objs.eta, phi=objs.phi, owner=owner)
        flat_cones = [np.broadcast_to(c, objs.valid.shape)[objs.valid] if np.ndim(c) else c for c in track_cones]
        hard = cone_sums(flat, trk, n, flat_cones)
        oi, ji = event_pairs(flat["event"], jet_flat["event"], n)
        dr = kin.delta_r(flat["eta"][oi], flat["phi"][oi], jet_flat["eta"][ji], jet_flat["phi"][ji])
        args = (oi, dr, jet_flat["pt"][ji], jet_flat["sigma"][ji], mu[flat["event"]])
        soft = soft_cone_sums(rng, *args, flat_cones)
        calo = soft_cone_sums(rng, *args, calo_cones, charged=False)

        def full(x):
            a = np.zeros(objs.valid.shape)
            a[objs.valid] = x
            return a

        return [full(h_ + s_) for h_, s_ in zip(hard, soft, strict=True)], [full(c) for c in calo]

    for objs, owner in (
        (electrons, np.broadcast_to(e_owner, electrons.valid.shape)),
        (muons, np.where(muons["has_track"], m_owner, -2)),
    ):
        (c30, var), (c20,) = isolation(objs, owner, [0.3, np.minimum(0.3, 10.0 / np.maximum(objs.pt, 1e-3))], [0.2])
        objs["trk_iso03"] = c30 / np.maximum(objs.pt, 1e-3)
        objs["ptvarcone30"] = var
        objs["topoetcone20"] = c20
    (c30, c20t), (c20, c40) = isolation(photons, np.full(photons.valid.shape, -3), [0.3, 0.2], [0.2, 0.4])
    photons["trk_iso03"] = c30 / np.maximum(photons.pt, 1e-3)
    photons["ptcone20"] = c20t
    photons["topoetcone20"], photons["topoetcone40"] = c20, c20 + np.abs(c40 - c20)

    # ---- missing transverse momentum ----
    soft_sumet = rng.gamma(4.0, (40.0 + 4.0 * mu) / 4.0)
    mism = np.zeros((n, 2))
    sumet = soft_sumet.copy()
    for objs in (jets, electrons, muons):
        v = objs.valid[..., None]
        mism += np.sum((objs["tp4"][..., 1:3] - objs.p4[..., 1:3]) * v, axis=1)
        sumet += np.sum(objs.pt * objs.valid, axis=1)
    met_vec = h.nu + nu_tau + nu_hf + mism + lost + rng.normal(0, 1, (n, 2)) * 0.5 * np.sqrt(soft_sumet)[:, None]

    # ---- pack everything into schema arrays ----
    out: dict[str, np.ndarray] = {}
    origin = {schema.TRUTH_ORIGIN_KEY: None}
    for name, objs, extra_truth in (
        ("electrons", electrons, {}),
        ("muons", muons, {}),
        ("taus", taus, {}),
        ("photons", photons, {}),
        ("jets", jets, {schema.TRUTH_JET_FLAVOUR_KEY: jets["label"]}),
        ("tracks", tracks, {}),
    ):
        coll = schema.COLLECTIONS[name]
        values = {
            k: (kin.mass(objs.p4) if k == "mass" and name == "jets" else objs.cols.get(k))
            for k in coll.fields
            if k not in ("pt", "eta", "phi")
        }
        if name == "electrons":
            values["mass"] = np.full(objs.valid.shape, M_LEPTON[11])
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise RuntimeError(f"generator bug: {name} lacks {missing}")
        origin[schema.TRUTH_ORIGIN_KEY] = objs["origin"]
        out.update(pack(objs, name, values, {**origin, **extra_truth}))
    met = schema.COLLECTIONS["met"]
    out[met.path_of("pt")] = np.hypot(met_vec[:, 0], met_vec[:, 1]).astype(np.float32)
    out[met.path_of("phi")] = np.arctan2(met_vec[:, 1], met_vec[:, 0]).astype(np.float32)
    out[met.path_of("sumet")] = sumet.astype(np.float32)
    ev = schema.COLLECTIONS["event"]
    for k, v in (
        ("pvx", pv[:, 0]),
        ("pvy", pv[:, 1]),
        ("pvz", pv[:, 2]),
        ("mu", mu),
        ("experiment_id", np.zeros(n)),
        ("is_simulation", np.ones(n)),
        ("event_number", first_event_number + np.arange(n, dtype=np.uint64)),
        ("run_number", run),
        ("mcChannelNumber", np.full(n, mc_channel)),
    ):
        out[ev.path_of(k)] = np.asarray(v).astype(ev.fields[k].dtype)
    out[schema.LABEL_KEY] = np.full(n, label, dtype=np.int16)
    return out
