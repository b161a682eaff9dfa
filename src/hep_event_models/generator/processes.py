"""Hard processes: truth-level leptons, partons and neutrinos for each process.

Every function takes a ``numpy.random.Generator`` and a number of events and returns a
``HardEvents`` record of padded arrays. Kinematics come from exact two-body decays and
Lorentz boosts; see the package docstring (``hep_event_models.generator``) for the
physics and the approximations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import kinematics as kin

# Particle data (PDG 2024), GeV
M_Z, W_Z = 91.1876, 2.4952
M_W, W_W = 80.377, 2.085
M_H, W_H = 125.0, 0.0041
M_T, W_T = 172.5, 1.32
M_B = 4.8
M_TAU = 1.777
M_LEPTON = {11: 0.000511, 13: 0.10566, 15: M_TAU}

# Z -> l- l+ helicity weights: sigma = -1 couples with g_L^2, +1 with g_R^2 (sin^2 theta_W = 0.2312)
_GL, _GR = -0.5 + 0.2312, 0.2312
W_MINUS, W_PLUS = _GL**2 / (_GL**2 + _GR**2), _GR**2 / (_GL**2 + _GR**2)

# parton flavour codes used in the truth record
LIGHT, CHARM, BOTTOM, GLUON = 1, 4, 5, 21


@dataclass
class HardEvents:
    """Truth record of ``N`` events.

    Attributes:
        leptons: ``(N, L, 4)`` charged leptons from the hard process (taus undecayed).
        lepton_pid: ``(N, L)`` 11, 13 or 15 (0 for padding).
        lepton_charge: ``(N, L)`` ±1.
        partons: ``(N, P, 4)`` quarks and gluons (hard process and ISR), massless or b-mass.
        parton_flavour: ``(N, P)`` ``LIGHT``, ``CHARM``, ``BOTTOM`` or ``GLUON`` (0 padding).
        nu: ``(N, 2)`` summed px, py of neutrinos from the hard process.
        hard_mass: ``(N,)`` mass of the hard system (m_H, m_4l, m_ll, m_tt) at truth level.
        channel: ``(N,)`` int sub-channel (lepton flavour of a Z, tt decay mode...).
    """

    leptons: np.ndarray
    lepton_pid: np.ndarray
    lepton_charge: np.ndarray
    partons: np.ndarray
    parton_flavour: np.ndarray
    nu: np.ndarray
    hard_mass: np.ndarray
    channel: np.ndarray

    @property
    def n(self) -> int:
        return self.hard_mass.shape[0]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _d1(lam: int, sigma: int, c: np.ndarray) -> np.ndarray:
    """Wigner small-d function d^1_{lam, sigma}(theta) for sigma = ±1, c = cos(theta)."""
    s = np.sqrt(np.clip(1.0 - c * c, 0.0, 1.0))
    if lam == 0:
        return sigma * s / np.sqrt(2.0)
    if lam == sigma:
        return (1.0 + c) / 2.0
    return (1.0 - c) / 2.0


def vector_decay_pdf(lam: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Density (≤ 1) of cos θ of the fermion in V(helicity lam) -> f fbar, Z couplings."""
    out = np.zeros_like(c)
    for lv in (-1, 0, 1):
        sel = lam == lv
        if sel.any():
            cs = c[sel]
            out[sel] = W_PLUS * _d1(lv, 1, cs) ** 2 + W_MINUS * _d1(lv, -1, cs) ** 2
    return out


def isr(rng, n: int, rate: float, gluon_fraction: float, max_partons: int = 6, pt_min: float = 15.0):
    """Initial-state radiation: partons ``(n, max_partons, 4)``, flavours and their summed pT.

    Multiplicity ~ Poisson(rate) above ``pt_min``; dN/dpT ∝ pT^-3.5; rapidity ~ N(0, 1.8).
    Quarks are light, with 9% charm and 4% bottom (Z+HF).
    """
    k = np.minimum(rng.poisson(rate, size=n), max_partons)
    valid = np.arange(max_partons)[None, :] < k[:, None]
    p_t = kin.power_law(rng, 3.5, pt_min, 2000.0, size=(n, max_partons))
    y = np.clip(rng.normal(0.0, 1.8, size=(n, max_partons)), -4.7, 4.7)
    ph = rng.uniform(-np.pi, np.pi, size=(n, max_partons))
    p4 = kin.p4_from_ptyphim(p_t, y, ph, 0.0) * valid[..., None]
    u = rng.uniform(size=(n, max_partons))
    flav = np.where(
        u < gluon_fraction,
        GLUON,
        np.where(
            u < gluon_fraction + (1 - gluon_fraction) * 0.87,
            LIGHT,
            np.where(u < gluon_fraction + (1 - gluon_fraction) * 0.96, CHARM, BOTTOM),
        ),
    )
    flav = np.where(valid, flav, 0)
    recoil = p4[..., 1:3].sum(axis=1)
    return p4, flav, recoil


def system(rng, m: np.ndarray, recoil: np.ndarray, y_sigma: float, kt_sigma: float = 6.0) -> np.ndarray:
    """Lab four-vector of a hard system of mass ``m`` balancing the ISR ``recoil`` (n, 2)."""
    px = -recoil[:, 0] + rng.normal(0.0, kt_sigma, size=m.shape)
    py = -recoil[:, 1] + rng.normal(0.0, kt_sigma, size=m.shape)
    y = rng.normal(0.0, y_sigma, size=m.shape)
    return kin.p4_from_ptyphim(np.hypot(px, py), y, np.arctan2(py, px), m)


def lepton_pair(rng, parent, pids, lam, frame="helicity"):
    """V -> l- l+ with helicity ``lam``: returns (l-, l+) four-vectors."""
    c = kin.sample_rejection(rng, lambda x, idx: vector_decay_pdf(lam[idx], x), 1.0, parent.shape[0])
    ph = rng.uniform(-np.pi, np.pi, size=parent.shape[0])
    ml = np.vectorize(M_LEPTON.get, otypes=[float])(pids)
    return kin.decay(parent, ml, ml, c, ph, frame=frame)


def _ll_flavours(rng, n, flavours=(11, 13)) -> np.ndarray:
    return np.asarray(flavours)[rng.integers(0, len(flavours), size=n)]


def _pack(n, leptons, partons, nu, hard_mass, channel) -> HardEvents:
    """Assemble ``HardEvents`` from lists of (p4, pid, charge) and (p4, flavour)."""
    lp4 = np.stack([x[0] for x in leptons], axis=1) if leptons else np.zeros((n, 0, 4))
    lpid = np.stack([x[1] for x in leptons], axis=1) if leptons else np.zeros((n, 0), int)
    lq = np.stack([x[2] for x in leptons], axis=1) if leptons else np.zeros((n, 0), int)
    pp4 = np.concatenate([x[0] for x in partons], axis=1)
    pfl = np.concatenate([x[1] for x in partons], axis=1)
    return HardEvents(lp4, np.where(lq != 0, lpid, 0), lq, pp4, pfl, nu, hard_mass, channel)


# --------------------------------------------------------------------------------------
# gg -> H -> Z Z* -> 4l
# --------------------------------------------------------------------------------------
def _bw_density(m, m0, width):
    """Relativistic Breit–Wigner density in m (∝ m · BW(s))."""
    return m * m0 * width / ((m * m - m0 * m0) ** 2 + (m0 * width) ** 2)


@lru_cache(maxsize=4)
def _hzz_mass_grid(m_h: float, m_min: float = 10.0, bins: int = 600):
    """Tabulated dΓ/dm1 dm2 of H -> Z Z(*), m1 >= m2: BW x BW x β (β² + 12 m1²m2²/mH⁴)."""
    edges = np.linspace(m_min, m_h - m_min, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    m1, m2 = np.meshgrid(centres, centres, indexing="ij")
    r1, r2 = (m1 / m_h) ** 2, (m2 / m_h) ** 2
    lam = np.clip((1 - r1 - r2) ** 2 - 4 * r1 * r2, 0.0, None)
    beta = np.sqrt(lam)
    dens = _bw_density(m1, M_Z, W_Z) * _bw_density(m2, M_Z, W_Z) * beta * (beta**2 + 12 * r1 * r2)
    dens[(m1 < m2) | (m1 + m2 >= m_h)] = 0.0
    cdf = np.cumsum(dens.ravel())
    return edges, cdf / cdf[-1]


def hzz_masses(rng, n: int, m_h: float = M_H) -> tuple[np.ndarray, np.ndarray]:
    """(m_Z1, m_Z2) for H -> Z Z*, with m_Z1 >= m_Z2, from the tabulated density."""
    edges, cdf = _hzz_mass_grid(float(m_h))
    bins = edges.size - 1
    k = np.searchsorted(cdf, rng.uniform(size=n))
    i, j = np.divmod(k, bins)
    w = edges[1] - edges[0]
    m1 = edges[i] + w * rng.uniform(size=n)
    m2 = edges[j] + w * rng.uniform(size=n)
    return np.maximum(m1, m2), np.minimum(m1, m2)


def hzz_angles(rng, x: np.ndarray):
    """(cos θ1, cos θ2, Φ) of H -> Z1 Z2 -> 4l for the SM scalar.

    |M|² = Σ_{σ1,σ2} w_σ1 w_σ2 |Σ_λ A_λ d¹_{λσ1}(θ1) d¹_{λσ2}(θ2) e^{iλΦ}|², with
    A_0 = -x, A_±1 = 1 and x = (mH² - m1² - m2²) / (2 m1 m2).
    """
    n = x.shape[0]
    out = np.empty((n, 3))
    todo = np.arange(n)
    while todo.size:
        c1 = rng.uniform(-1, 1, todo.size)
        c2 = rng.uniform(-1, 1, todo.size)
        ph = rng.uniform(-np.pi, np.pi, todo.size)
        xs = x[todo]
        cos_ph, sin_ph = np.cos(ph), np.sin(ph)
        f = np.zeros(todo.size)
        for s1, w1 in ((1, W_PLUS), (-1, W_MINUS)):
            for s2, w2 in ((1, W_PLUS), (-1, W_MINUS)):
                a0 = -xs * _d1(0, s1, c1) * _d1(0, s2, c2)
                ap = _d1(1, s1, c1) * _d1(1, s2, c2)
                am = _d1(-1, s1, c1) * _d1(-1, s2, c2)
                f += w1 * w2 * ((a0 + (ap + am) * cos_ph) ** 2 + ((ap - am) * sin_ph) ** 2)
        ok = rng.uniform(size=todo.size) * (np.abs(xs) + 2.0) ** 2 < f
        out[todo[ok]] = np.stack([c1[ok], c2[ok], ph[ok]], axis=1)
        todo = todo[~ok]
    return out[:, 0], out[:, 1], out[:, 2]


def _zz_rest_frame_leptons(m_parent, m1, m2, c1, c2, ph1, ph2, ml1, ml2):
    """Four leptons of X -> Z1 Z2 in the X rest frame, Z1 along +z.

    Z1's l- is at (θ1, φ1) in Z1's rest frame; Z2's l- at (θ2, φ2) about Z2's flight
    direction (-z) with axes (x, -y, -z), so that Φ = φ1 + φ2 is the angle between the
    decay planes.
    """
    p = kin.two_body_momentum(m_parent, m1, m2)
    z1 = np.stack([np.sqrt(p**2 + m1**2), 0 * p, 0 * p, p], axis=-1)
    z2 = np.stack([np.sqrt(p**2 + m2**2), 0 * p, 0 * p, -p], axis=-1)
    out = []
    for zb, m, c, ph, ml, sign in ((z1, m1, c1, ph1, ml1, 1.0), (z2, m2, c2, ph2, ml2, -1.0)):
        q = kin.two_body_momentum(m, ml, ml)
        s = np.sqrt(np.clip(1 - c * c, 0, 1))
        d = np.stack([s * np.cos(ph), sign * s * np.sin(ph), sign * c], axis=-1)
        e = np.sqrt(q**2 + ml**2)
        lm = np.concatenate([e[:, None], q[:, None] * d], axis=-1)
        lp = np.concatenate([e[:, None], -q[:, None] * d], axis=-1)
        b = kin.beta_of(zb)
        out += [kin.boost(lm, b), kin.boost(lp, b)]
    return out  # [l1-, l1+, l2-, l2+]


def _four_leptons(rng, parent_lab, m1, m2, c1, c2, phi_planes, rotate_isotropic: bool):
    n = parent_lab.shape[0]
    pid1, pid2 = _ll_flavours(rng, n), _ll_flavours(rng, n)
    ml1 = np.where(pid1 == 11, M_LEPTON[11], M_LEPTON[13])
    ml2 = np.where(pid2 == 11, M_LEPTON[11], M_LEPTON[13])
    ph1 = rng.uniform(-np.pi, np.pi, n)
    leps = _zz_rest_frame_leptons(kin.mass(parent_lab), m1, m2, c1, c2, ph1, phi_planes - ph1, ml1, ml2)
    leps = np.stack(leps, axis=1)  # (n, 4, 4)
    if rotate_isotropic:
        leps = kin.rotate(leps, kin.random_rotation(rng, n))
    leps = kin.boost(leps, kin.beta_of(parent_lab)[:, None, :])
    pids = np.stack([pid1, pid1, pid2, pid2], axis=1)
    charges = np.tile(np.array([-1, 1, -1, 1]), (n, 1))
    return [(leps[:, i], pids[:, i], charges[:, i]) for i in range(4)], pid1 * 100 + pid2


def hzz4l(rng, n: int, mass_window=None) -> HardEvents:
    """gg -> H -> Z Z* -> 4l (l = e, μ), SM scalar angular correlations.

    ``mass_window`` must contain m_H (the Higgs line is 4 MeV wide: nothing to filter).
    """
    if mass_window is not None and not mass_window[0] < M_H < mass_window[1]:
        raise ValueError(f"mass window {mass_window} excludes m_H = {M_H} GeV")
    isr_p4, isr_fl, recoil = isr(rng, n, rate=0.9, gluon_fraction=0.8)
    m_h = kin.breit_wigner(rng, M_H, W_H, M_H - 1.0, M_H + 1.0, size=n)
    h = system(rng, m_h, recoil, y_sigma=1.8)
    m1, m2 = hzz_masses(rng, n)
    m2 = np.minimum(m2, m_h - m1 - 1e-3)
    x = (m_h**2 - m1**2 - m2**2) / (2 * m1 * m2)
    c1, c2, phi_planes = hzz_angles(rng, x)
    leptons, channel = _four_leptons(rng, h, m1, m2, c1, c2, phi_planes, rotate_isotropic=True)
    return _pack(n, leptons, [(isr_p4, isr_fl)], np.zeros((n, 2)), m_h, channel)


# --------------------------------------------------------------------------------------
# q qbar -> Z Z* / Z γ* -> 4l continuum
# --------------------------------------------------------------------------------------
def _boson_mass(rng, n, gamma_fraction, lo, hi):
    """Z/γ* line shape: Breit–Wigner with a γ* component dN/dm ∝ 1/m."""
    bw = kin.breit_wigner(rng, M_Z, W_Z, lo, hi, size=n)
    gam = kin.power_law(rng, 1.0001, lo, hi, size=n)
    return np.where(rng.uniform(size=n) < gamma_fraction, gam, bw)


def zz_masses(rng, n: int, mass_window=None):
    """(m4l, m1, m2) of the q qbar -> 4l continuum, optionally inside ``mass_window``.

    Two components: double-resonant ZZ*/Zγ* (85%): m1, m2 from Z/γ* line shapes, m4l
    above m1 + m2 from a falling parton luminosity (∝ m^-4.5) times the phase space β;
    single-resonant Z -> 4l (15%): m4l from the Z line shape in [80, 100] GeV.
    """
    out = np.empty((n, 3))
    filled = 0
    lo_w, hi_w = mass_window if mass_window is not None else (0.0, np.inf)
    for _ in range(10_000):
        k = max(2 * (n - filled), 1024)
        single = rng.uniform(size=k) < 0.15
        # double resonant
        ma = _boson_mass(rng, k, 0.08, 40.0, 200.0)
        mb = _boson_mass(rng, k, 0.35, 4.0, 200.0)
        m1, m2 = np.maximum(ma, mb), np.minimum(ma, mb)
        m4 = kin.power_law(rng, 4.5, m1 + m2 + 1e-3, 3000.0, size=k)
        beta = kin.two_body_momentum(m4, m1, m2) * 2 / m4
        keep_d = rng.uniform(size=k) < beta
        # single resonant Z -> l l γ* -> 4l
        m4s = kin.breit_wigner(rng, M_Z, W_Z, 80.0, 100.0, size=k)
        m2s = kin.power_law(rng, 1.0001, 4.0, 30.0, size=k)
        m1s = kin.breit_wigner(rng, M_Z, W_Z, 40.0, m4s - m2s - 0.5)
        m4 = np.where(single, m4s, m4)
        m1 = np.where(single, m1s, m1)
        m2 = np.where(single, m2s, m2)
        ok = (single | keep_d) & (m4 > lo_w) & (m4 < hi_w) & (m1 + m2 < m4)
        take = np.flatnonzero(ok)[: n - filled]
        out[filled : filled + take.size] = np.stack([m4[take], m1[take], m2[take]], axis=1)
        filled += take.size
        if filled == n:
            return out[:, 0], out[:, 1], out[:, 2]
    raise RuntimeError(f"mass window {mass_window} too narrow for the zz4l spectrum")


def zz4l(rng, n: int, mass_window=None) -> HardEvents:
    """q qbar -> ZZ*/Zγ* -> 4l including the off-shell continuum down to m4l ≈ 80 GeV.

    Z bosons are mostly transverse (helicity ±1 with 85%, 0 with 15%), decayed
    independently (no interference between helicities), so the decay-plane angle Φ is
    flat, unlike H -> ZZ*. The production angle follows the t/u-channel shape
    (1 + cos²θ*) / (1 - 0.8 β² cos²θ*).
    """
    m4, m1, m2 = zz_masses(rng, n, mass_window)
    isr_p4, isr_fl, recoil = isr(rng, n, rate=0.5, gluon_fraction=0.4)
    sys_ = system(rng, m4, recoil, y_sigma=1.6)
    p = kin.two_body_momentum(m4, m1, m2)
    beta = p / np.sqrt(p**2 + m1**2)
    cstar = kin.sample_rejection(rng, lambda c, idx: (1 + c * c) / (1 - 0.8 * beta[idx] ** 2 * c * c) / 10.0, 1.0, n)
    phistar = rng.uniform(-np.pi, np.pi, n)
    # rest frame: build with Z1 along z, then rotate Z1 to (θ*, φ*) about the beam axis
    lam1 = rng.choice([-1, 0, 1], p=[0.425, 0.15, 0.425], size=n)
    lam2 = rng.choice([-1, 0, 1], p=[0.425, 0.15, 0.425], size=n)
    c1 = kin.sample_rejection(rng, lambda x, idx: vector_decay_pdf(lam1[idx], x), 1.0, n)
    c2 = kin.sample_rejection(rng, lambda x, idx: vector_decay_pdf(lam2[idx], x), 1.0, n)
    phi_planes = rng.uniform(-np.pi, np.pi, n)
    pid1, pid2 = _ll_flavours(rng, n), _ll_flavours(rng, n)
    ml1 = np.where(pid1 == 11, M_LEPTON[11], M_LEPTON[13])
    ml2 = np.where(pid2 == 11, M_LEPTON[11], M_LEPTON[13])
    ph1 = rng.uniform(-np.pi, np.pi, n)
    leps = np.stack(_zz_rest_frame_leptons(m4, m1, m2, c1, c2, ph1, phi_planes - ph1, ml1, ml2), axis=1)
    st = np.sqrt(1 - cstar**2)
    ct = cstar
    cp, sp = np.cos(phistar), np.sin(phistar)
    # rotation taking +z to (θ*, φ*): R = Rz(φ*) Ry(θ*)
    rot = np.stack(
        [
            np.stack([cp * ct, -sp, cp * st], -1),
            np.stack([sp * ct, cp, sp * st], -1),
            np.stack([-st, np.zeros(n), ct], -1),
        ],
        axis=1,
    )
    leps = kin.rotate(leps, rot)
    leps = kin.boost(leps, kin.beta_of(sys_)[:, None, :])
    pids = np.stack([pid1, pid1, pid2, pid2], axis=1)
    charges = np.tile(np.array([-1, 1, -1, 1]), (n, 1))
    leptons = [(leps[:, i], pids[:, i], charges[:, i]) for i in range(4)]
    return _pack(n, leptons, [(isr_p4, isr_fl)], np.zeros((n, 2)), m4, pid1 * 100 + pid2)


# --------------------------------------------------------------------------------------
# Drell-Yan Z/γ* -> l l + jets
# --------------------------------------------------------------------------------------
def dy(rng, n: int, mass_window=None) -> HardEvents:
    """q qbar -> Z/γ* -> l l (l = e, μ, τ) + ISR jets; Z line shape plus a γ* tail."""
    lo, hi = mass_window if mass_window is not None else (40.0, 250.0)
    m = np.where(
        rng.uniform(size=n) < 0.9,
        kin.breit_wigner(rng, M_Z, W_Z, lo, hi, size=n),
        kin.power_law(rng, 3.0, lo, hi, size=n),
    )
    isr_p4, isr_fl, recoil = isr(rng, n, rate=0.45, gluon_fraction=0.3)
    z = system(rng, m, recoil, y_sigma=2.0)
    pid = _ll_flavours(rng, n, (11, 13, 15))
    lam = rng.choice([-1, 1], size=n)  # quark along ±z: transverse Z along the beam axis
    lm, lp = lepton_pair(rng, z, pid, lam, frame="beam")
    leptons = [(lm, pid, -np.ones(n, int)), (lp, pid, np.ones(n, int))]
    return _pack(n, leptons, [(isr_p4, isr_fl)], np.zeros((n, 2)), m, pid)


# --------------------------------------------------------------------------------------
# t tbar, all decay modes
# --------------------------------------------------------------------------------------
def _w_decay_pdf(c):
    """cos θ of the charged lepton (down-type fermion) in the W helicity frame, F0=0.7, FL=0.3."""
    return 0.7 * 0.75 * (1 - c * c) + 0.3 * 0.375 * (1 - c) ** 2


def ttbar(rng, n: int, mass_window=None) -> HardEvents:
    """gg/qq -> t tbar, t -> W b, W -> l ν or q q' (all modes, PDG branching ratios).

    W helicity fractions (F0 = 0.7, FL = 0.3) shape the W decay angles; top spin
    correlations are neglected.
    """
    mt1 = kin.breit_wigner(rng, M_T, W_T, 150.0, 195.0, size=n)
    mt2 = kin.breit_wigner(rng, M_T, W_T, 150.0, 195.0, size=n)
    lo = mt1 + mt2 + 1e-3
    mtt = np.empty(n)
    todo = np.arange(n)
    if mass_window is not None and mass_window[1] <= 2 * 150.0:
        raise ValueError(f"mass window {mass_window} lies below the tt threshold")
    while todo.size:
        cand = kin.power_law(rng, 5.0, lo[todo], 5000.0)
        b = kin.two_body_momentum(cand, mt1[todo], mt2[todo]) * 2 / cand
        ok = rng.uniform(size=todo.size) < b
        if mass_window is not None:  # generator-level filter on m_tt
            ok &= (cand > mass_window[0]) & (cand < mass_window[1])
        mtt[todo[ok]] = cand[ok]
        todo = todo[~ok]
    isr_p4, isr_fl, recoil = isr(rng, n, rate=1.2, gluon_fraction=0.75)
    tt = system(rng, mtt, recoil, y_sigma=1.0)
    cstar = kin.sample_rejection(rng, lambda c, idx: (1 + 0.4 * c * c) / 1.4, 1.0, n)
    phistar = rng.uniform(-np.pi, np.pi, n)
    # tops in the tt rest frame, then to the lab
    p = kin.two_body_momentum(mtt, mt1, mt2)
    st = np.sqrt(1 - cstar**2)
    d = np.stack([st * np.cos(phistar), st * np.sin(phistar), cstar], axis=-1)
    t1 = np.concatenate([np.sqrt(p**2 + mt1**2)[:, None], p[:, None] * d], axis=-1)
    t2 = np.concatenate([np.sqrt(p**2 + mt2**2)[:, None], -p[:, None] * d], axis=-1)
    bt = kin.beta_of(tt)
    t1, t2 = kin.boost(t1, bt), kin.boost(t2, bt)

    leptons, partons, nu = [], [], np.zeros((n, 2))
    channel = np.zeros(n, dtype=int)
    for top, mt, charge in ((t1, mt1, 1), (t2, mt2, -1)):
        mw = kin.breit_wigner(rng, M_W, W_W, 60.0, mt - M_B - 0.5)
        ct = rng.uniform(-1, 1, n)
        w, b = kin.decay(top, mw, np.full(n, M_B), ct, rng.uniform(-np.pi, np.pi, n))
        partons.append((b[:, None], np.full((n, 1), BOTTOM)))
        # decay mode: 0 e, 1 mu, 2 tau, 3 ud, 4 cs
        mode = rng.choice(5, p=[0.1071, 0.1063, 0.1138, 0.3364, 0.3364], size=n)
        channel = channel * 10 + mode
        is_lep = mode <= 2
        pid = np.array([11, 13, 15, 0, 0])[mode]
        m_down = np.where(is_lep, np.vectorize(lambda q: M_LEPTON.get(q, 0.0), otypes=[float])(pid), 0.0)
        c = kin.sample_rejection(rng, lambda x, idx: _w_decay_pdf(x) / 0.55, 1.0, n)
        down, up = kin.decay(w, m_down, np.zeros(n), c, rng.uniform(-np.pi, np.pi, n))
        leptons.append((np.where(is_lep[:, None], down, 0.0), np.where(is_lep, pid, 0), np.where(is_lep, charge, 0)))
        nu += np.where(is_lep[:, None], up[:, 1:3], 0.0)
        quarks = np.stack([down, up], axis=1) * (~is_lep)[:, None, None]
        qfl = np.where(~is_lep[:, None], np.stack([np.full(n, LIGHT), np.where(mode == 4, CHARM, LIGHT)], 1), 0)
        partons.append((quarks, qfl))
    partons.append((isr_p4, isr_fl))
    return _pack(n, leptons, partons, nu, mtt, channel)


PROCESSES = {"hzz4l": hzz4l, "zz4l": zz4l, "ttbar": ttbar, "dy": dy}
