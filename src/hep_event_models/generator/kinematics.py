"""Vectorised relativistic kinematics for the event generator.

Four-vectors are arrays with a trailing axis of 4: ``(E, px, py, pz)`` in GeV. All
functions broadcast over leading axes and never loop over events.
"""

from __future__ import annotations

import numpy as np

ZERO = 1e-12


def p4_from_ptetaphim(pt, eta, phi, m) -> np.ndarray:
    """Four-vectors ``(..., 4)`` from pT [GeV], η, φ [rad], mass [GeV]."""
    pt, eta, phi, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, m)))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    return np.stack([e, px, py, pz], axis=-1)


def p4_from_ptyphim(pt, y, phi, m) -> np.ndarray:
    """Four-vectors from pT, rapidity y, φ and mass (for massive systems)."""
    pt, y, phi, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (pt, y, phi, m)))
    mt = np.sqrt(pt**2 + m**2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=-1)


def pt(p4) -> np.ndarray:
    return np.hypot(p4[..., 1], p4[..., 2])


def phi(p4) -> np.ndarray:
    return np.arctan2(p4[..., 2], p4[..., 1])


def eta(p4) -> np.ndarray:
    """Pseudorapidity; ±20 for vectors along the beam."""
    p_t = pt(p4)
    return np.where(p_t > ZERO, np.arcsinh(p4[..., 3] / np.maximum(p_t, ZERO)), np.sign(p4[..., 3]) * 20.0)


def mass(p4) -> np.ndarray:
    """Invariant mass (0 for slightly space-like vectors from rounding)."""
    m2 = p4[..., 0] ** 2 - p4[..., 1] ** 2 - p4[..., 2] ** 2 - p4[..., 3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def wrap_phi(x) -> np.ndarray:
    """Angles wrapped into (-π, π]."""
    return np.pi - np.mod(np.pi - np.asarray(x), 2 * np.pi)


def delta_phi(a, b) -> np.ndarray:
    """a - b wrapped into [-π, π] (inputs within [-π, π], as from ``phi``)."""
    d = np.asarray(a) - np.asarray(b)
    d = np.where(d > np.pi, d - 2 * np.pi, d)
    return np.where(d < -np.pi, d + 2 * np.pi, d)


def delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(np.asarray(eta1) - np.asarray(eta2), delta_phi(phi1, phi2))


def two_body_momentum(m_parent, m1, m2) -> np.ndarray:
    """Momentum of either daughter in the parent rest frame (0 below threshold)."""
    m_parent, m1, m2 = (np.asarray(a, dtype=np.float64) for a in (m_parent, m1, m2))
    lam = (m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2)
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * np.maximum(m_parent, ZERO))


def boost(p4, beta) -> np.ndarray:
    """Lorentz boost of ``p4`` (..., 4) by velocity ``beta`` (..., 3) (|beta| < 1)."""
    beta = np.asarray(beta, dtype=np.float64)
    b2 = np.sum(beta**2, axis=-1)
    gamma = 1.0 / np.sqrt(np.maximum(1.0 - b2, ZERO))
    bp = np.sum(beta * p4[..., 1:], axis=-1)
    g2 = np.where(b2 > ZERO, (gamma - 1.0) / np.maximum(b2, ZERO), 0.0)
    e = gamma * (p4[..., 0] + bp)
    p = p4[..., 1:] + (g2 * bp + gamma * p4[..., 0])[..., None] * beta
    return np.concatenate([e[..., None], p], axis=-1)


def beta_of(p4) -> np.ndarray:
    """Velocity (..., 3) of a four-vector."""
    return p4[..., 1:] / np.maximum(p4[..., :1], ZERO)


def helicity_basis(direction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal axes (x', y', z') with z' along ``direction`` (..., 3).

    x' lies in the plane of z' and the beam axis (the usual helicity-frame choice);
    vectors along the beam use the lab x axis.
    """
    d = np.asarray(direction, dtype=np.float64)
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    z = np.where(norm > ZERO, d / np.maximum(norm, ZERO), np.array([0.0, 0.0, 1.0]))
    beam = np.broadcast_to(np.array([0.0, 0.0, 1.0]), z.shape)
    y = np.cross(beam, z)
    ny = np.linalg.norm(y, axis=-1, keepdims=True)
    y = np.where(ny > 1e-9, y / np.maximum(ny, ZERO), np.array([0.0, 1.0, 0.0]))
    x = np.cross(y, z)
    return x, y, z


def decay(parent, m1, m2, cos_theta, phi_, frame: str = "helicity") -> tuple[np.ndarray, np.ndarray]:
    """Two-body decay of ``parent`` (..., 4) into masses ``m1``, ``m2``.

    Daughter 1 is emitted at polar angle ``arccos(cos_theta)`` and azimuth ``phi_`` in the
    parent rest frame, measured in the helicity frame (z' along the parent's flight
    direction) or, with ``frame="beam"``, relative to the beam axis. Both daughters are
    returned boosted to the frame of ``parent``.
    """
    m_parent = mass(parent)
    p = two_body_momentum(m_parent, m1, m2)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, 1.0))
    local = np.stack([sin_theta * np.cos(phi_), sin_theta * np.sin(phi_), cos_theta], axis=-1)
    if frame == "helicity":
        x, y, z = helicity_basis(parent[..., 1:])
        direction = local[..., :1] * x + local[..., 1:2] * y + local[..., 2:] * z
    elif frame == "beam":
        direction = local
    else:
        raise ValueError(f"unknown frame {frame!r}")
    e1 = np.sqrt(p**2 + np.asarray(m1) ** 2)
    e2 = np.sqrt(p**2 + np.asarray(m2) ** 2)
    d1 = np.concatenate([e1[..., None], p[..., None] * direction], axis=-1)
    d2 = np.concatenate([e2[..., None], -p[..., None] * direction], axis=-1)
    b = beta_of(parent)
    return boost(d1, b), boost(d2, b)


def random_rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random 3x3 rotation matrices (from random unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def rotate(p4, rot) -> np.ndarray:
    """Rotate the spatial part of ``p4`` (N, ..., 4) by per-event matrices ``rot`` (N, 3, 3)."""
    extra = p4.ndim - 2
    r = rot.reshape(rot.shape[:1] + (1,) * extra + (3, 3))
    p = np.einsum("...ij,...j->...i", r, p4[..., 1:])
    return np.concatenate([p4[..., :1], p], axis=-1)


def breit_wigner(rng, m0: float, width: float, lo, hi, size=None) -> np.ndarray:
    """Relativistic Breit–Wigner masses, truncated to [lo, hi].

    Samples s = m² from 1/((s - m0²)² + m0²Γ²) exactly by inverting its CDF.
    ``lo``/``hi`` may be arrays (per-event limits).
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    size = size if size is not None else np.broadcast(lo, hi).shape
    mg = m0 * width
    a = np.arctan((np.maximum(lo, 0.0) ** 2 - m0**2) / mg)
    b = np.arctan((hi**2 - m0**2) / mg)
    u = rng.uniform(size=size)
    s = m0**2 + mg * np.tan(a + u * (b - a))
    return np.sqrt(np.maximum(s, 0.0))


def power_law(rng, index: float, lo, hi, size=None) -> np.ndarray:
    """Samples of dN/dx ∝ x^-index on [lo, hi] (index != 1)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    size = size if size is not None else np.broadcast(lo, hi).shape
    u = rng.uniform(size=size)
    k = 1.0 - index
    return (lo**k + u * (hi**k - lo**k)) ** (1.0 / k)


def sample_rejection(rng, pdf, bound: float, n: int, lo: float = -1.0, hi: float = 1.0, max_rounds: int = 200):
    """``n`` samples of a 1D density ``pdf(x)`` (vectorised; ``pdf <= bound``)."""
    out = np.empty(n)
    todo = np.arange(n)
    for _ in range(max_rounds):
        if todo.size == 0:
            return out
        x = rng.uniform(lo, hi, size=todo.size)
        ok = rng.uniform(0.0, bound, size=todo.size) < pdf(x, todo)
        out[todo[ok]] = x[ok]
        todo = todo[~ok]
    raise RuntimeError("rejection sampling did not converge: bound too loose")
