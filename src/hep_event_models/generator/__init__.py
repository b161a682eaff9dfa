"""A fast, physics-motivated event generator writing schema-conformant HDF5.

Processes (labels in ``schema.PROCESS_IDS``):

``hzz4l``  gg → H → ZZ* → 4ℓ (ℓ = e, μ). m_H from a Breit–Wigner (125 GeV, Γ = 4.1 MeV);
           (m_Z1, m_Z2) from the tabulated density BW(m1)·BW(m2)·β·(β² + 12 m1²m2²/m_H⁴),
           so Z2 is off shell; the decay angles (θ1, θ2, Φ) follow the SM scalar's coherent
           helicity amplitudes (A_00 = −x, A_±± = 1) with the Z's lepton couplings.
``zz4l``   qq̄ → ZZ*/Zγ* → 4ℓ: double-resonant pairs (Z/γ* line shapes, m_4ℓ from a falling
           parton luminosity × β) plus single-resonant Z → 4ℓ (m_4ℓ ≈ 91 GeV), so the
           continuum runs from ≈ 80 GeV through the Higgs window to the ZZ threshold and
           beyond. Z bosons mostly transverse and decayed independently: flat Φ.
``ttbar``  tt̄ with t → Wb and every W decay mode at its PDG branching ratio; top and W
           Breit–Wigners, W helicity fractions F0 = 0.7, FL = 0.3 in the W decay angle.
``dy``     qq̄ → Z/γ* → ℓℓ (e, μ, τ) + jets; Z line shape with a γ* tail (m_ℓℓ > 40 GeV).

Common to all: ISR partons (Poisson multiplicity, dN/dpT ∝ pT^-3.5) recoiling against the
hard system, exact two-body decays and Lorentz boosts; tau decays (leptonic 35%,
hadronic decay modes 1p0n…3pXn, collinear visible fraction); b/c semileptonic decays
giving non-prompt leptons and neutrinos; final-state photon radiation off leptons;
pile-up μ from the Run-2 profile per year, pile-up jets and pile-up tracks displaced in
z0; jets with flavour-dependent mass, track multiplicity, width, C1 and GN2/DL1d scores
(softmax of flavour-dependent logits with Student-t tails); fake electrons, muons,
photons (π⁰) and taus from jets, fake taus from electrons; ATLAS-like resolutions,
acceptances, efficiencies and ID flags correlated with the truth origin; tracks (stored
above 5 GeV) from leptons, tau prongs, the leading charged particles of jets (b/c decay
products displaced in d0) and pile-up; track isolation as in DESIGN §2 (Σ pT of tracks
in ΔR < 0.3 with pT > 0.5 GeV and |z0 sinθ| < 3 mm, own track excluded) from the
explicit tracks plus an analytic soft part (jets' soft charged remainder, underlying
event, pile-up); MET from neutrinos, object mismeasurement, lost forward jets and a
soft term whose resolution grows with ΣET.

Approximations (this is not a generator of record): no parton shower or hadronisation
(jets are smeared partons with sampled substructure), no matrix-element interference
between signal and background or between Z helicities in ``zz4l``, no top spin
correlations, collinear tau decays, no merging of nearby partons into one jet, no
overlap removal between collections except that hadronic taus also appear as jets (as
in ATLAS), parton luminosities as power laws, cross sections not modelled (one
process per file; mix files to build samples).

Optional sub-objects (``sub_objects=True``): jet constituents and track hits, sampled
from the packed jets and tracks (``generator.subobjects`` lists what they model).

Determinism: chunk ``k`` of a file with seed ``s`` uses ``SeedSequence([s, process id, k])``,
so output depends only on (process, seed, events, chunk size).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__, schema
from ..io.writer import EventWriter, compress_batch
from . import processes
from .detector import reconstruct
from .subobjects import jet_constituents, track_hits

PROCESSES = tuple(processes.PROCESSES)
# MC dataset ids (DSIDs) in the style of ATLAS Run-2 samples
MC_CHANNELS = {"hzz4l": 345060, "zz4l": 364250, "ttbar": 410470, "dy": 700320}


def generate_batch(
    process: str, n_events: int, seed: int = 0, chunk_index: int = 0, mass_window=None, sub_objects: bool = False
) -> dict[str, np.ndarray]:
    """Generate one chunk of events: ``{dataset path: array}`` (schema keys plus ``truth/``).

    Args:
        process: one of ``PROCESSES``.
        n_events: events in this chunk.
        seed: random seed of the whole file.
        chunk_index: which chunk of the file (decides the random stream and event numbers).
        mass_window: optional ``(lo, hi)`` GeV on the truth mass of the hard system
            (m_4ℓ for ``zz4l``, m_ℓℓ for ``dy``): a generator-level filter.
        sub_objects: also add jet constituents and track hits (``schema.SUB_COLLECTIONS``,
            see ``generator.subobjects``). They are drawn after everything else from the
            same stream, so every other dataset is identical with and without them.
    """
    if process not in processes.PROCESSES:
        raise ValueError(f"unknown process {process!r}; choose from {PROCESSES}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), schema.PROCESS_IDS[process], int(chunk_index)]))
    hard = processes.PROCESSES[process](rng, int(n_events), mass_window=mass_window)
    first = int(seed) * 1_000_000_000 + int(chunk_index) * int(n_events) + 1
    out = reconstruct(rng, hard, schema.PROCESS_IDS[process], MC_CHANNELS[process], first)
    if sub_objects:
        out.update(jet_constituents(rng, out))
        out.update(track_hits(rng, out))
    out[f"{schema.TRUTH}/hard_mass"] = hard.hard_mass.astype(np.float32)
    return out


def _batch_args(process, n_events, seed, chunk_size, mass_window, compress, sub_objects=False):
    """Arguments of ``_generate_star`` per chunk: ``generate_batch``'s positional arguments, then ``compress``."""
    for k, start in enumerate(range(0, n_events, chunk_size)):
        yield (process, min(chunk_size, n_events - start), seed, k, mass_window, bool(sub_objects), compress)


def _generate_star(args):
    *gen_args, compress = args
    batch = generate_batch(*gen_args)
    return batch if compress is None else compress_batch(batch, *compress)


def hdf5_chunk_events(chunk_size: int, limit: int = 8192) -> int:
    """HDF5 chunk rows that divide the generation chunk (so pre-compressed chunks align)."""
    ce = chunk_size
    while ce > limit and ce % 2 == 0:
        ce //= 2
    return ce


def iter_chunks(
    process: str,
    n_events: int,
    seed: int = 0,
    chunk_size: int = 10_000,
    mass_window=None,
    workers: int = 1,
    compress: tuple[int, int] | None = None,
    sub_objects: bool = False,
) -> Iterator:
    """Chunks of ``chunk_size`` events (the last one shorter) totalling ``n_events``, in order.

    With ``workers > 1`` chunks are generated in worker processes, at most ``workers + 1``
    in flight (bounded memory); the output is identical to ``workers=1``. With
    ``compress=(chunk_events, level)`` each chunk is also deflated where it was generated
    and yielded as a ``CompressedBatch``, so compression runs in parallel too. With
    ``sub_objects`` chunks also hold jet constituents and track hits (``generate_batch``).
    """
    args = _batch_args(process, n_events, seed, chunk_size, mass_window, compress, sub_objects)
    if workers <= 1:
        yield from map(_generate_star, args)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque = deque()
        for a in args:
            pending.append(pool.submit(_generate_star, a))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def generate(
    process: str,
    n_events: int,
    out: str | Path,
    seed: int = 0,
    chunk_size: int = 10_000,
    mass_window=None,
    progress: bool = True,
    compression: str | None = "gzip",
    workers: int | None = None,
    sub_objects: bool = False,
) -> dict:
    """Generate ``n_events`` of ``process`` into the HDF5 file ``out`` (atomically).

    ``workers`` processes generate and compress chunks in parallel (default: the CPU count,
    at most 4); the main process only writes the compressed chunks. The file is the same for
    any number of workers. ``sub_objects`` also writes jet constituents and track hits
    (``common/jets/constituents/*``, ``common/tracks/hits/*``) without changing any other
    dataset; the metadata attribute ``sub_objects`` lists their keys ("" when off).

    Returns a summary ``{"file", "process", "n_events", "seconds", "events_per_second"}``.
    """
    if n_events <= 0:
        raise ValueError("n_events must be positive")
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    t0 = time.perf_counter()
    md = schema.default_metadata(
        n_events,
        input_file=f"hep_event_models.generator process={process} seed={seed}",
        generator_version=__version__,
        process=process,
        generator="hep_event_models.generator",
        seed=int(seed),
        mass_window="" if mass_window is None else f"{mass_window[0]},{mass_window[1]}",
        sub_objects=",".join(schema.SUB_COLLECTIONS) if sub_objects else "",
    )
    chunk_events = hdf5_chunk_events(chunk_size)
    precompress = (chunk_events, 1) if compression == "gzip" else None
    with (
        EventWriter(out, metadata=md, compression=compression, chunk_events=chunk_events) as w,
        tqdm(total=n_events, unit="ev", desc=f"generate {process}", disable=not progress) as bar,
    ):
        for chunk in iter_chunks(
            process, n_events, seed, chunk_size, mass_window, workers, precompress, sub_objects=sub_objects
        ):
            if precompress:
                w.append_compressed(chunk)
                bar.update(chunk.n_events)
            else:
                w.append(chunk)
                bar.update(len(chunk[schema.LABEL_KEY]))
    dt = time.perf_counter() - t0
    return {
        "file": str(out),
        "process": process,
        "n_events": int(n_events),
        "seconds": dt,
        "events_per_second": n_events / dt,
    }
