"""ROOT → HDF5 conversion benchmark: events/s and peak memory of ``hep-event-models convert``.

Writes synthetic NanoAOD-like (``Events``, real branch names and types) and PHYSLITE-like
(``CollectionTree``, ``AuxDyn`` branches in MeV) files with realistic multiplicities, each
much larger than one ``uproot`` step, converts them with the CLI in a child process, and
reads that process's own peak RSS (``VmHWM``). Two file sizes per format show whether
memory is set by the step or by the file. Input files are cached in ``benchmarks/_work``.

Run through ``python benchmarks/run.py --only convert`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import awkward as ak
import numpy as np

WORK = Path(__file__).resolve().parent / "_work"
WRITE_EVENTS = 25_000  # events per basket batch when writing inputs (bounded memory)
STEP_SIZE = "20 MB"  # the CLI default

_CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    from hep_event_models.cli import main

    def peak_rss_mib():  # VmHWM: this process's own peak
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    import hep_event_models.convert  # imports (torch comes with the package) before measuring
    base = rss_mib()
    fmt, src, out, js, step = sys.argv[1:6]
    t = time.perf_counter()
    rc = main(["convert", "--format", fmt, src, "--out", out, "--json", js, "--step-size", step, "--quiet"])
    dt = time.perf_counter() - t
    print(json.dumps({"rc": rc, "wall_seconds": dt, "peak_rss_mib": peak_rss_mib(), "rss_after_import_mib": base}))
    """
)


def _jag(rng_vals: np.ndarray, counts: np.ndarray, dtype) -> ak.Array:
    return ak.unflatten(np.asarray(rng_vals, dtype=dtype), counts)


def _nano_chunk(rng: np.random.Generator, n: int, first_event: int) -> dict:
    """NanoAOD-like events: Run-2/3 multiplicities, v12 branch names and types."""

    def coll(lam, pt_lo, pt_scale, eta_max, extra):
        counts = rng.poisson(lam, n)
        k = int(counts.sum())
        fields = {
            "pt": _jag(pt_lo + rng.exponential(pt_scale, k), counts, "f4"),
            "eta": _jag(rng.uniform(-eta_max, eta_max, k), counts, "f4"),
            "phi": _jag(rng.uniform(-np.pi, np.pi, k), counts, "f4"),
        }
        for name, (fn, dt) in extra.items():
            fields[name] = _jag(fn(k), counts, dt)
        return ak.zip(fields)

    sign = (lambda k: rng.choice([-1, 1], k), "i4")
    flag = (lambda k: rng.random(k) < 0.7, "?")
    frac = (lambda k: rng.random(k), "f4")
    small = (lambda k: rng.exponential(0.1, k), "f4")
    return {
        "Electron": coll(
            1.0,
            5,
            20,
            2.5,
            {
                "charge": sign,
                "pfRelIso03_chg": small,
                "pfRelIso03_all": small,
                "miniPFRelIso_all": small,
                "sip3d": (lambda k: rng.exponential(2, k), "f4"),
                "cutBased": (lambda k: rng.integers(0, 5, k), "u1"),
                "mvaIso_WP80": flag,
                "mvaIso_WP90": flag,
                "convVeto": flag,
            },
        ),
        "Muon": coll(
            1.2,
            3,
            20,
            2.4,
            {
                "charge": sign,
                "pfRelIso03_chg": small,
                "pfRelIso04_all": small,
                "miniPFRelIso_all": small,
                "sip3d": (lambda k: rng.exponential(2, k), "f4"),
                "looseId": flag,
                "mediumId": flag,
                "tightId": flag,
                "pfIsoId": (lambda k: rng.integers(0, 7, k), "u1"),
            },
        ),
        "Tau": coll(
            1.5,
            18,
            15,
            2.3,
            {
                "charge": sign,
                "decayMode": (lambda k: rng.choice([0, 1, 2, 10, 11], k), "u1"),
                "rawDeepTau2018v2p5VSjet": frac,
                "rawDeepTau2018v2p5VSe": frac,
                "rawDeepTau2018v2p5VSmu": frac,
                "idDeepTau2018v2p5VSjet": (lambda k: rng.integers(0, 9, k), "u1"),
                "idDeepTau2018v2p5VSe": (lambda k: rng.integers(0, 9, k), "u1"),
                "idDeepTau2018v2p5VSmu": (lambda k: rng.integers(0, 5, k), "u1"),
            },
        ),
        "Photon": coll(
            2.0,
            5,
            15,
            2.5,
            {
                "pfRelIso03_chg_quadratic": small,
                "pfRelIso03_all_quadratic": small,
                "cutBased": (lambda k: rng.integers(0, 4, k), "u1"),
                "mvaID": (lambda k: rng.uniform(-1, 1, k), "f4"),
                "mvaID_WP80": flag,
                "mvaID_WP90": flag,
                "electronVeto": flag,
                "pixelSeed": flag,
            },
        ),
        "Jet": coll(
            7.0,
            15,
            30,
            4.7,
            {
                "mass": (lambda k: rng.uniform(2, 30, k), "f4"),
                **{f"btag{t}": frac for t in ("DeepFlavB", "DeepFlavCvL", "DeepFlavCvB", "DeepFlavQG")},
                **{f"btag{t}": frac for t in ("PNetB", "PNetCvL", "PNetCvB", "PNetQvG")},
                "jetId": (lambda k: rng.choice([2, 6], k), "u1"),
                "nConstituents": (lambda k: rng.integers(2, 60, k), "u1"),
                "chMultiplicity": (lambda k: rng.integers(0, 40, k), "i2"),
                "chHEF": frac,
                "neHEF": frac,
                "chEmEF": frac,
                "neEmEF": frac,
                "hadronFlavour": (lambda k: rng.choice([0, 4, 5], k), "i4"),
            },
        ),
        "IsoTrack": coll(
            1.5,
            5,
            10,
            2.5,
            {
                "dxy": (lambda k: rng.normal(0, 0.01, k), "f4"),
                "dz": (lambda k: rng.normal(0, 0.02, k), "f4"),
                "charge": sign,
                "fromPV": (lambda k: rng.integers(0, 4, k), "i4"),
                "pfRelIso03_chg": small,
                "isHighPurityTrack": flag,
            },
        ),
        "MET_pt": rng.exponential(30, n).astype("f4"),
        "MET_phi": rng.uniform(-np.pi, np.pi, n).astype("f4"),
        "MET_sumEt": rng.uniform(200, 2000, n).astype("f4"),
        "PV_x": rng.normal(0.01, 0.001, n).astype("f4"),
        "PV_y": rng.normal(0.04, 0.001, n).astype("f4"),
        "PV_z": rng.normal(0, 3.5, n).astype("f4"),
        "PV_npvsGood": rng.poisson(30, n).astype("i4"),
        "Pileup_nTrueInt": rng.uniform(10, 70, n).astype("f4"),
        "genWeight": np.ones(n, "f4"),
        "run": np.ones(n, "u4"),
        "luminosityBlock": np.full(n, 7, "u4"),
        "event": np.arange(first_event, first_event + n, dtype="u8"),
    }


def _physlite_chunk(rng: np.random.Generator, n: int, first_event: int) -> dict:
    """PHYSLITE-like events (MeV, AuxDyn branch names); tracks as thinned PHYSLITE keeps them."""
    data: dict = {}

    def coll(prefix, lam, pt_lo, pt_scale, eta_max, extra, counts=None):
        counts = rng.poisson(lam, n) if counts is None else counts
        k = int(counts.sum())
        data[f"{prefix}.pt"] = _jag((pt_lo + rng.exponential(pt_scale, k)) * 1e3, counts, "f4")
        data[f"{prefix}.eta"] = _jag(rng.uniform(-eta_max, eta_max, k), counts, "f4")
        data[f"{prefix}.phi"] = _jag(rng.uniform(-np.pi, np.pi, k), counts, "f4")
        for name, (fn, dt) in extra.items():
            data[f"{prefix}.{name}"] = _jag(fn(k), counts, dt)
        return counts

    charge = (lambda k: rng.choice([-1.0, 1.0], k), "f4")
    flag = (lambda k: (rng.random(k) < 0.7).astype("i1"), "i1")
    frac = (lambda k: rng.random(k), "f4")
    mev = (lambda k: rng.exponential(2e3, k), "f4")
    coll(
        "AnalysisElectronsAuxDyn",
        1.0,
        5,
        20,
        2.47,
        {
            "charge": charge,
            "m": (lambda k: np.full(k, 0.511), "f4"),
            "DFCommonElectronsLHLoose": flag,
            "DFCommonElectronsLHMedium": flag,
            "DFCommonElectronsLHTight": flag,
            "topoetcone20": mev,
            "ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000": mev,
        },
    )
    coll(
        "AnalysisMuonsAuxDyn",
        1.2,
        3,
        20,
        2.5,
        {
            "charge": charge,
            "quality": (lambda k: rng.integers(0, 4, k), "u1"),
            "muonType": (lambda k: rng.integers(0, 5, k), "u2"),
            "DFCommonMuonPassIDCuts": flag,
            "DFCommonMuonPassPreselection": flag,
            "topoetcone20": mev,
            "ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt1000": mev,
        },
    )
    coll(
        "AnalysisTauJetsAuxDyn",
        1.5,
        18,
        15,
        2.5,
        {
            "charge": charge,
            "NNDecayMode": (lambda k: rng.integers(0, 5, k), "i4"),
            "RNNJetScoreSigTrans": frac,
            "RNNEleScoreSigTrans_v1": frac,
            "EleRNNLoose_v1": flag,
            "EleRNNMedium_v1": flag,
            "EleRNNTight_v1": flag,
        },
    )
    coll(
        "AnalysisPhotonsAuxDyn",
        2.0,
        5,
        15,
        2.37,
        {
            "DFCommonPhotonsIsEMLoose": flag,
            "DFCommonPhotonsIsEMTight": flag,
            "DFCommonPhotonsCleaning": flag,
            "author": (lambda k: rng.choice([4, 16], k), "u2"),
            "topoetcone20": mev,
            "topoetcone40": mev,
            "ptcone20": mev,
        },
    )
    jets = coll(
        "AnalysisJetsAuxDyn",
        7.0,
        15,
        30,
        4.5,
        {
            "m": (lambda k: rng.uniform(2e3, 3e4, k), "f4"),
            "NumTrkPt500": (lambda k: rng.integers(0, 40, k), "i4"),
            "DFCommonJets_QGTagger_NTracks": (lambda k: rng.integers(0, 30, k), "i4"),
            "DFCommonJets_QGTagger_TracksWidth": frac,
            "DFCommonJets_QGTagger_TracksC1": frac,
            "HadronConeExclTruthLabelID": (lambda k: rng.choice([0, 4, 5, 15], k), "i4"),
        },
    )
    k = int(jets.sum())
    for tagger in ("DL1dv01", "GN2v01"):
        for p in ("pb", "pc", "pu"):
            data[f"BTagging_AntiKt4EMPFlowAuxDyn.{tagger}_{p}"] = _jag(rng.random(k), jets, "f4")
    tcounts = rng.poisson(30, n)
    k = int(tcounts.sum())
    theta = 2 * np.arctan(np.exp(-rng.uniform(-2.5, 2.5, k)))
    pt = 0.4e3 + rng.exponential(3e3, k)
    trk = "InDetTrackParticlesAuxDyn"
    data[f"{trk}.qOverP"] = _jag(rng.choice([-1, 1], k) * np.sin(theta) / pt, tcounts, "f4")
    data[f"{trk}.theta"] = _jag(theta, tcounts, "f4")
    data[f"{trk}.phi"] = _jag(rng.uniform(-np.pi, np.pi, k), tcounts, "f4")
    data[f"{trk}.d0"] = _jag(rng.normal(0, 0.05, k), tcounts, "f4")
    data[f"{trk}.z0"] = _jag(rng.normal(0, 40, k), tcounts, "f4")
    data[f"{trk}.vz"] = _jag(np.full(k, -0.5), tcounts, "f4")
    data[f"{trk}.chiSquared"] = _jag(rng.exponential(20, k), tcounts, "f4")
    data[f"{trk}.numberDoF"] = _jag(rng.integers(5, 40, k), tcounts, "f4")
    vcounts = rng.poisson(30, n) + 1
    k = int(vcounts.sum())
    pv = "PrimaryVerticesAuxDyn"
    data[f"{pv}.x"] = _jag(rng.normal(-0.5, 0.01, k), vcounts, "f4")
    data[f"{pv}.y"] = _jag(rng.normal(-0.5, 0.01, k), vcounts, "f4")
    data[f"{pv}.z"] = _jag(rng.normal(0, 40, k), vcounts, "f4")
    data[f"{pv}.vertexType"] = _jag(
        np.where(np.arange(k) == np.repeat(np.cumsum(vcounts) - vcounts, vcounts), 1, 3), vcounts, "u1"
    )
    mcounts = np.full(n, 2)
    for v in ("mpx", "mpy", "sumet"):
        data[f"MET_Core_AnalysisMETAuxDyn.{v}"] = _jag(rng.normal(0, 5e3, 2 * n), mcounts, "f4")
    evt = "EventInfoAuxDyn"
    data[f"{evt}.eventNumber"] = np.arange(first_event, first_event + n, dtype="u8")
    data[f"{evt}.runNumber"] = np.full(n, 410000, "u4")
    data[f"{evt}.mcChannelNumber"] = np.full(n, 345060, "u4")
    data[f"{evt}.averageInteractionsPerCrossing"] = rng.uniform(10, 70, n).astype("f4")
    data[f"{evt}.eventTypeBitmask"] = np.ones(n, "u4")
    return data


FORMATS = {
    "nanoaod": ("Events", _nano_chunk),
    "physlite": ("CollectionTree", _physlite_chunk),
}


def write_input(fmt: str, path: Path, n: int, seed: int = 1) -> Path:
    """A ROOT file of ``n`` synthetic events (written in batches: bounded memory); cached."""
    import uproot

    tree, make = FORMATS[fmt]
    marker = path.with_suffix(".done")
    if path.exists() and marker.exists() and marker.read_text() == str(n):
        return path
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:
        t = None
        for start in range(0, n, WRITE_EVENTS):
            chunk = make(rng, min(WRITE_EVENTS, n - start), start)
            if t is None:
                types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in chunk.items()}
                t = f.mktree(tree, types)
            t.extend(chunk)
    marker.write_text(str(n))
    return path


def _convert_in_child(fmt: str, src: Path, step: str) -> dict:
    out = WORK / f"convert_{fmt}_{src.stem}.h5"
    js = WORK / f"convert_{fmt}_{src.stem}.json"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, fmt, str(src), str(out), str(js), step],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"conversion of {src} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.loads(js.read_text())
    return {
        "events": summary["n_events"],
        "steps": summary["steps"],
        "convert_seconds": summary["seconds"],
        "events_per_s": summary["events_per_second"],
        "process_wall_seconds": r["wall_seconds"],
        "peak_rss_mib": r["peak_rss_mib"],
        "rss_after_import_mib": r["rss_after_import_mib"],
        "conversion_rss_mib": r["peak_rss_mib"] - r["rss_after_import_mib"],
        "input_mib": src.stat().st_size / 2**20,
        "output_mib": out.stat().st_size / 2**20,
    }


def bench_convert(quick: bool, opts=None) -> tuple[dict, str]:
    """ROOT → HDF5 conversion with the CLI: events/s and peak RSS, two file sizes per format."""
    WORK.mkdir(exist_ok=True)
    sizes = {"nanoaod": (20_000, 100_000), "physlite": (10_000, 50_000)}
    if not quick:
        sizes = {"nanoaod": (50_000, 500_000), "physlite": (25_000, 250_000)}
    rows = {}
    for fmt, (small, large) in sizes.items():
        for n in (small, large):
            src = write_input(fmt, WORK / f"bench_{fmt}_{n}.root", n)
            r = _convert_in_child(fmt, src, STEP_SIZE)
            rows[f"{fmt}_{n}"] = {"format": fmt, **r}
            print(f"  {fmt} {n:,}: {r['events_per_s']:,.0f} events/s, {r['peak_rss_mib']:.0f} MiB", flush=True)
    ratios = {
        fmt: rows[f"{fmt}_{large}"]["peak_rss_mib"] / rows[f"{fmt}_{small}"]["peak_rss_mib"]
        for fmt, (small, large) in sizes.items()
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res = {"step_size": STEP_SIZE, "rows": rows, "rss_ratio_large_over_small": ratios, "load_average_1min": load}
    md = [
        "`hep-event-models convert` in a child process (conversion in the main thread, gzip on a thread pool "
        f"behind it; load average {load:.1f} at the end, other jobs shared the cores), default step "
        f"(`--step-size {STEP_SIZE!r}`), synthetic inputs with real branch names and types: NanoAOD-like "
        "(≈1 e, 1.2 μ, 1.5 τ, 2 γ, 7 jets, 1.5 IsoTracks per event; isolation from `*_pfRelIso03_chg`) and "
        "PHYSLITE-like (same objects in MeV plus ≈30 tracks and 31 vertices per event; `trk_iso03` computed from "
        "the tracks, MET rebuilt). Peak RSS is the converting process's own (VmHWM); about "
        f"{min(r['rss_after_import_mib'] for r in rows.values()):.0f} MiB of it is the imports (the package "
        "imports torch and transformers), the last column is the rest.",
        "",
        "| format | events | uproot steps | input MiB | output MiB | events/s | peak RSS MiB | above imports MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows.values():
        md.append(
            f"| {r['format']} | {r['events']:,} | {r['steps']} | {r['input_mib']:.0f} | {r['output_mib']:.0f} "
            f"| {r['events_per_s']:,.0f} | {r['peak_rss_mib']:.0f} | {r['conversion_rss_mib']:.0f} |"
        )
    md.append("")
    for fmt, (small, large) in sizes.items():
        md.append(
            f"{fmt}: peak RSS for {large:,} events ({rows[f'{fmt}_{large}']['steps']} steps) is "
            f"{ratios[fmt]:.2f}× that for {small:,} ({rows[f'{fmt}_{small}']['steps']} steps)."
        )
    return res, "\n".join(md)
