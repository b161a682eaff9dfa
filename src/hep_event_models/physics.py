"""Derived physics from event batches: invariant masses of lepton systems.

Used by tests, diagnostics (before/after tokenization) and the headline selection
(four leptons in 115 < m_4ℓ < 135 GeV). Inputs are ``EventBatch`` objects whose
``electrons`` and ``muons`` collections include ``pt``, ``eta``, ``phi`` and ``charge``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generator import kinematics as kin
from .io.reader import EventBatch

M_Z = 91.1876
M_ELECTRON, M_MUON = 0.000511, 0.10566
ELECTRON, MUON = 11, 13

# the three ways of splitting four leptons into two pairs
_PAIRINGS = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))


@dataclass
class Leptons:
    """Electrons and muons of a batch merged and sorted by pT: arrays ``(B, K)``."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    flavour: np.ndarray  # 11 or 13, 0 for padding
    mask: np.ndarray

    @property
    def p4(self) -> np.ndarray:
        m = np.where(self.flavour == ELECTRON, M_ELECTRON, M_MUON)
        return kin.p4_from_ptetaphim(self.pt, self.eta, self.phi, m) * self.mask[..., None]

    @property
    def count(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def leptons(batch: EventBatch) -> Leptons:
    """Merge the ``electrons`` and ``muons`` collections of ``batch`` (pT-descending)."""
    cols = {k: [] for k in ("pt", "eta", "phi", "charge", "flavour", "mask")}
    for name, flav in (("electrons", ELECTRON), ("muons", MUON)):
        if name not in batch.collections:
            raise KeyError(f"batch has no {name!r} collection (read it with the reader's selection)")
        c = batch.collections[name]
        for f in ("pt", "eta", "phi", "charge"):
            if f not in c.features:
                raise KeyError(f"{name} lacks feature {f!r} needed for lepton masses")
            cols[f].append(c.feature(f))
        cols["flavour"].append(np.where(c.mask, flav, 0))
        cols["mask"].append(c.mask)
    arr = {k: np.concatenate(v, axis=1) for k, v in cols.items()}
    order = np.argsort(-np.where(arr["mask"], arr["pt"], -np.inf), axis=1, kind="stable")
    arr = {k: np.take_along_axis(v, order, axis=1) for k, v in arr.items()}
    return Leptons(**arr)


def _pair_ok(lep: Leptons, i: int, j: int) -> np.ndarray:
    return (
        lep.mask[:, i]
        & lep.mask[:, j]
        & (lep.flavour[:, i] == lep.flavour[:, j])
        & (lep.charge[:, i] * lep.charge[:, j] < 0)
    )


def dilepton_mass(batch: EventBatch) -> tuple[np.ndarray, np.ndarray]:
    """Mass of the two leading leptons if they are same-flavour opposite-sign.

    Returns ``(m_ll [GeV], valid)``, both ``(B,)``.
    """
    lep = leptons(batch)
    if lep.mask.shape[1] < 2:
        return np.zeros(len(batch)), np.zeros(len(batch), bool)
    p4 = lep.p4
    return kin.mass(p4[:, 0] + p4[:, 1]), _pair_ok(lep, 0, 1)


@dataclass
class FourLepton:
    """Four-lepton system of the four leading leptons: ``(B,)`` arrays (0 where not valid)."""

    m4l: np.ndarray
    m12: np.ndarray  # the same-flavour opposite-sign pair closest to the Z mass
    m34: np.ndarray  # the other pair
    valid: np.ndarray  # four leptons forming two same-flavour opposite-sign pairs


def four_lepton(batch: EventBatch) -> FourLepton:
    """Build the ZZ* candidate from the four leading leptons (ATLAS-style pairing).

    Among the pairings of the four leading leptons into two same-flavour opposite-sign
    pairs, Z1 is the pair with mass closest to m_Z and Z2 the other one.
    """
    lep = leptons(batch)
    b = len(batch)
    if lep.mask.shape[1] < 4:
        z = np.zeros(b)
        return FourLepton(z, z, z, np.zeros(b, bool))
    p4 = lep.p4[:, :4]
    m4l = kin.mass(p4.sum(axis=1))
    best = np.full(b, np.inf)
    m12 = np.zeros(b)
    m34 = np.zeros(b)
    valid = np.zeros(b, bool)
    for i, j, k, l in _PAIRINGS:
        ok = _pair_ok(lep, i, j) & _pair_ok(lep, k, l)
        ma, mb = kin.mass(p4[:, i] + p4[:, j]), kin.mass(p4[:, k] + p4[:, l])
        for z1, z2 in ((ma, mb), (mb, ma)):
            d = np.where(ok, np.abs(z1 - M_Z), np.inf)
            better = d < best
            best = np.where(better, d, best)
            m12 = np.where(better, z1, m12)
            m34 = np.where(better, z2, m34)
            valid |= ok
    return FourLepton(np.where(valid, m4l, 0.0), m12, m34, valid)
