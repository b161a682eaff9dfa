"""Benchmarks: one command reproduces every figure in ``benchmarks/RESULTS.md``.

    python benchmarks/run.py                 # all sections
    python benchmarks/run.py --only reader   # one section (others keep their last results)
    python benchmarks/run.py --quick         # small sizes, for a smoke run

Each section writes ``benchmarks/results/<section>.json`` and ``.md``; ``RESULTS.md`` is
assembled from all section files with the machine each ran on. Work files go to
``benchmarks/_work/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from bench_convert import bench_convert
from bench_hierarchy import bench_constituents, bench_hierarchy
from bench_models import bench_models

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / "_work"


def machine() -> dict:
    """The machine a benchmark ran on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": mem,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['date']}"


# --------------------------------------------------------------------------------------
def bench_generator(quick: bool, opts=None) -> tuple[dict, str]:
    """End-to-end generation (generate + compress + write) per process, and generation alone."""
    from hep_event_models.generator import generate, generate_batch

    n = 20_000 if quick else 200_000
    rows = {}
    for proc in ("hzz4l", "zz4l", "ttbar", "dy"):
        t = time.perf_counter()
        generate_batch(proc, 20_000, seed=1)
        gen_only = 20_000 / (time.perf_counter() - t)
        out = WORK / f"gen_{proc}.h5"
        s = generate(proc, n, out, seed=1, progress=False)
        rows[proc] = {
            "events": n,
            "end_to_end_events_per_s": s["events_per_second"],
            "events_per_minute": s["events_per_second"] * 60,
            "generation_only_events_per_s_1proc": gen_only,
            "bytes_per_event": out.stat().st_size / n,
        }
    mean_rate = n * len(rows) / sum(n / r["end_to_end_events_per_s"] for r in rows.values())
    res = {"rows": rows, "mix_events_per_minute": mean_rate * 60}
    md = [
        "| process | events | end-to-end events/s (all cores, gzip) | events/min "
        "| generation only, 1 process | bytes/event |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p, r in rows.items():
        md.append(
            f"| {p} | {r['events']:,} | {r['end_to_end_events_per_s']:,.0f} | {r['events_per_minute'] / 1e6:.2f}M | "
            f"{r['generation_only_events_per_s_1proc']:,.0f} | {r['bytes_per_event']:.0f} |"
        )
    md.append(
        f"\nEqual mix of the four processes: **{res['mix_events_per_minute'] / 1e6:.2f}M events/minute** end to end."
    )
    return res, "\n".join(md)


_READ_CHILD = textwrap.dedent(
    """
    import sys, time, json
    from hep_event_models.io import EventReader

    def peak_rss_mib():  # VmHWM: this process's own peak (ru_maxrss would include the parent's at fork)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    t = time.perf_counter(); n = 0; objects = 0
    for b in EventReader(sys.argv[1], selection=None, scalars=["event/mu"], chunk_size=int(sys.argv[2])):
        n += len(b)
        objects += sum(int(c.mask.sum()) for k, c in b.collections.items() if k != "met")
    dt = time.perf_counter() - t
    print(json.dumps({"events": n, "objects": objects, "seconds": dt,
                      "peak_rss_mib": peak_rss_mib()}))
    """
)


def bench_reader(quick: bool, opts=None) -> tuple[dict, str]:
    """Streaming read of every collection and feature: speed and peak RSS vs file size."""
    from hep_event_models.generator import generate

    sizes = (10_000, 100_000) if quick else (100_000, 1_000_000)
    chunk = 8192
    rows = {}
    for n in sizes:
        path = WORK / f"read_ttbar_{n}.h5"
        if not path.exists() or h5py.File(path, "r")["metadata"].attrs["n_events"] != n:
            generate("ttbar", n, path, seed=2, progress=False)
        out = subprocess.run(
            [sys.executable, "-c", _READ_CHILD, str(path), str(chunk)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["events_per_s"] = r["events"] / r["seconds"]
        r["objects_per_s"] = r["objects"] / r["seconds"]
        r["file_mib"] = path.stat().st_size / 2**20
        rows[n] = r
    small, large = rows[sizes[0]], rows[sizes[1]]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    res = {"chunk_size": chunk, "rows": {str(k): v for k, v in rows.items()}, "rss_ratio_large_over_small": ratio}
    md = [
        f"ttbar files, every collection and feature, chunks of {chunk:,} events, one process:",
        "",
        "| events in file | file MiB | events/s | objects/s | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, r in rows.items():
        md.append(
            f"| {n:,} | {r['file_mib']:.0f} | {r['events_per_s']:,.0f} | {r['objects_per_s']:,.0f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    md.append(
        f"\nPeak RSS for {sizes[1]:,} events is {ratio:.2f}× that for {sizes[0]:,}: memory is set by the chunk, "
        "not the file."
    )
    return res, "\n".join(md)


TOKENIZER_CONFIGS = {
    # this package's defaults (tokenizer_configs/*.yaml + ObjectTokenizerSettings): per-kind
    # preprocessing, losses weighted by reconstruction goals, ResidualVQ with k-means init and
    # dead-code expiry; angles as (cos, sin)
    "ours": {},
    # the ResidualFSQ option: 4 axes × 8 levels (4096 codes per level), 4 levels, with the
    # sliced-Wasserstein uniformity term that spreads the latent over the first-level grid
    "ours_fsq": {
        "quantizer": "rfsq",
        "fsq_levels": [8, 8, 8, 8],
        "num_quantizers": 4,
        "linear_skip": True,
        "linear_angles": True,
        "uniformity_weight": 10.0,
    },
    # feature groups (the configs' `groups:`, used by tokenizer_configs/event_groups.yaml): one
    # tokenizer per group with the package's defaults, the kinematics groups linear (their
    # `tokenizer:` sections); an object's tokens are its groups' levels one after the other
    "ours_groups": {},
    # the seeds' first setup: raw features, L1 loss, no k-means init, no dead-code expiry
    "seed_baseline": {
        "raw_features": True,
        "loss": "l1",
        "loss_weighting": "uniform",
        "kmeans_init": False,
        "threshold_ema_dead_code": 0.0,
        "rotation_trick": False,
        "linear_skip": False,
    },
}
TARGETS = "every level ≥ 90% used; pT ≤ 1% (relative); η, φ ≤ 0.005; discrete ≥ 99.9% exact; scores KS ≤ 0.01"


def bench_tokenizers(quick: bool, opts) -> tuple[dict, str]:
    """Object tokenizers: ours (RVQ and FSQ) vs the seed-style baseline, same data and budget,
    held-out events."""
    import torch

    from hep_event_models.config import load_object_config
    from hep_event_models.diagnostics import tokenizer_metrics
    from hep_event_models.generator import generate
    from hep_event_models.grouped_tokenizer import feature_groups, load_object_tokenizer
    from hep_event_models.scan import encoding_speed, summarize
    from hep_event_models.training.event_tokenizer import fit_grouped_object_tokenizer
    from hep_event_models.training.tokenizer import fit_object_tokenizer

    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    n_per = 10_000 if quick else opts.tokenizer_events

    def mix(prefix: str, seed: int) -> list[str]:  # one file of n_per events per process
        paths = []
        for i, proc in enumerate(("hzz4l", "zz4l", "ttbar", "dy")):
            path = WORK / f"{prefix}_{proc}_{n_per}.h5"
            if not path.exists():
                generate(proc, n_per, path, seed=seed + i, progress=False)
            paths.append(str(path))
        return paths

    files = mix("mix", 50)
    # held-out events for the metrics: generated independently (other seeds), so that rarer
    # object types bring enough objects to measure the usage of 4096-code levels
    held = mix("heldout", 150)
    steps = 60 if quick else opts.tokenizer_steps
    base = {"codebook_size": 512} if quick else {}
    configs = opts.tokenizer_configs.split(",")
    rows = []
    for obj in opts.objects.split(","):
        for cname in configs:
            settings = TOKENIZER_CONFIGS[cname]
            out = WORK / f"tok_{obj}_{cname}"
            torch.set_num_threads(opts.tokenizer_threads)
            fit = fit_grouped_object_tokenizer if cname == "ours_groups" else fit_object_tokenizer
            groups = list(feature_groups(load_object_config(obj))) if cname == "ours_groups" else None
            s = _reusable_fit(out, steps, opts.tokenizer_batch, groups) if opts.tokenizer_reuse else None
            if s is None:
                s = fit(
                    obj,
                    files,
                    out,
                    settings={**base, **settings},
                    max_steps=steps,
                    batch_size=opts.tokenizer_batch,
                    lr=opts.tokenizer_lr,
                    min_lr_ratio=0.01,
                    device=device,
                    checkpoint_every=0,
                    progress=False,
                    seed=0,
                )
            tok = load_object_tokenizer(out)
            real = _held_out_objects(tok.object_config, held, n_per)
            m = tokenizer_metrics(tok, real)
            row = {
                "object": obj,
                "config": cname,
                "quantizer": tok.settings.quantizer,
                "tokens_per_object": tok.num_quantizers,
                "bits_per_object": float(sum(np.log2(tok.codebook_sizes))),
                "steps": steps,
                "batch_size": opts.tokenizer_batch,
                "lr": opts.tokenizer_lr,
                "device": device,
                "train_seconds": s["seconds"],
                "fitted": s["fitted"] if "fitted" in s else datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "n_val_objects": len(real),
                **summarize(m),
                "features": m["features"],
                "levels": m["levels"],
            }
            feats = m["features"]
            disc = {k: f["exact_match"] for k, f in feats.items() if "exact_match" in f}
            ks = {k: f["ks"] for k, f in feats.items() if "ks" in f}
            row.update(_training_usage(tok, files, len(real)))
            row["worst_discrete"] = min(disc, key=disc.get) if disc else None
            row["worst_score"] = max(ks, key=ks.get) if ks else None
            if cname != "seed_baseline":
                torch.set_num_threads(2)  # the encoding target is set for 2 cores
                tok.to("cpu")
                row["encode_fast_backend"] = "fsq" if tok.settings.quantizer == "rfsq" else "faiss"
                if cname == "ours_groups":
                    row["groups"] = {g: t.num_quantizers for g, t in tok.groups.items()}
                row["encode_fast_per_s"] = encoding_speed(tok, real, "auto")
                row["encode_library_per_s"] = encoding_speed(tok, real[:20_000], "library", 20_000, 1)
                if torch.cuda.is_available():
                    tok.to("cuda")
                    row["encode_cuda_per_s"] = encoding_speed(tok, real, "auto", 1_000_000)
            rows.append(row)
            print(f"  {obj} {cname}: usage {row['usage']}, pT {row.get('pt_resolution')}", flush=True)

    for r in rows:
        r["run"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    # rows of (object, config) pairs not rerun now are kept from the previous results (each
    # row shows its own run date and budget), so a partial rerun does not drop figures
    prev = RESULTS / "tokenizers.json"
    if prev.exists():
        done = {(r["object"], r["config"]) for r in rows}
        old = [_old_tokenizer_row(r) for r in json.loads(prev.read_text())["rows"]]
        rows += [r for r in old if (r["object"], r["config"]) not in done]
        order = {o: i for i, o in enumerate(dict.fromkeys(r["object"] for r in rows))}
        rows.sort(key=lambda r: order[r["object"]])
    md = tokenizer_markdown(rows, quick, n_per)
    return {"rows": rows, "steps": steps, "device": device}, md


def _held_out_objects(cfg, files: list[str], events_per_file: int) -> np.ndarray:
    """Every real object ``(N, F)`` of the first ``events_per_file`` events of each file: the
    same number of events per process, so the held-out objects follow the training mix."""
    from hep_event_models.io.reader import EventReader

    out = []
    for f in files:
        for b in EventReader(f, selection=[cfg], scalars=(), max_events=events_per_file):
            c = b.collections[cfg.object]
            out.append(c.values[c.mask])
    return np.concatenate(out)


def _training_usage(tok, files: list[str], n_held_out: int) -> dict:
    """Per level, from the codes of every training object (the events not held out): the
    fraction of codes used (``train_usage``; a code unused there is dead) and the usage
    ``n_held_out`` objects are expected to show if they follow the training frequencies
    (``expected_usage``). Held-out usage well below the expectation means codes the model
    uses in training but the held-out data does not reach; near it, the sample's size."""
    from hep_event_models.training.tokenizer import training_objects

    counts = [np.zeros(k, dtype=np.int64) for k in tok.codebook_sizes]
    for values in training_objects(tok.object_config, files, val_every=20):
        codes = tok.encode(values)
        for q, cnt in enumerate(counts):
            cnt += np.bincount(codes[:, q], minlength=len(cnt))
    p = [c / max(1, int(c.sum())) for c in counts]
    return {
        "train_usage": [float((c > 0).mean()) for c in counts],
        "expected_usage": [float(np.mean(1.0 - (1.0 - pq) ** n_held_out)) for pq in p],
    }


def _reusable_fit(out: Path, steps: int, batch_size: int, groups: list[str] | None = None) -> dict | None:
    """The training summary of a finished fit in ``out`` with this budget and these feature
    ``groups`` (``--tokenizer-reuse``), with its date as ``fitted``; ``None`` where there is
    none (then the tokenizer is fitted)."""
    path = out / "training_summary.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    if list(s.get("groups", [])) != list(groups or []):
        return None
    runs = list(s["groups"].values()) if "groups" in s else [s]
    # lookup groups are not trained: no budget to match
    runs = [r for r in runs if r.get("model", {}).get("settings", {}).get("quantizer") != "lookup"]
    if any(r.get("steps") != steps or r.get("batch_size") != batch_size for r in runs):
        return None
    s["fitted"] = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d")
    return s


def _old_tokenizer_row(r: dict) -> dict:
    """A row of an earlier results file in the current format (ResidualVQ 4096 × 4 then)."""
    r = dict(r)
    if "run" not in r and r["config"] == "ours":  # the defaults of that run, not today's
        r["config"] = "ours (defaults then)"
    r.setdefault("quantizer", "rvq")
    r.setdefault("tokens_per_object", len(r["usage"]))
    r.setdefault("bits_per_object", 12.0 * len(r["usage"]))
    r.setdefault("lr", 1e-3)
    r.setdefault("run", "2026-11-22")
    r.setdefault("fitted", r["run"])
    if "encode_faiss_per_s" in r:
        r["encode_fast_per_s"], r["encode_fast_backend"] = r.pop("encode_faiss_per_s"), "faiss"
    return r


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def tokenizer_markdown(rows: list[dict], quick: bool, n_per: int) -> str:
    md = [
        f"{n_per:,} events per process (hzz4l, zz4l, ttbar, dy), every 20th event held out (never used for "
        "fitting); metrics on held-out objects: rows measured on 2026-11-29 or later (the `ours_groups` rows) "
        f"on every object of {4 * n_per:,} independently generated events ({n_per:,} per process, other seeds), "
        "earlier rows on up to 100,000 objects of the held-out 20th events; the budget "
        "(steps × batch, peak learning rate, "
        "cosine decay) is given per row. "
        "Configurations: `ours` = the shipped defaults (ResidualVQ, "
        f"{'512' if quick else '4096'} codes × 4 levels, codebook_dim 8), `ours_fsq` = ResidualFSQ (levels "
        "[8, 8, 8, 8] = 4096 codes × 4 levels, uniformity term), `ours_groups` = feature groups (the configs' "
        "`groups:`, as `tokenizer_configs/event_groups.yaml` uses them): one tokenizer per group with the same "
        "defaults, the kinematics group linear (4 levels), the others MLPs with the levels their config gives (2; "
        "jets' track shape and tracks' χ² 1), and the all-discrete groups (jets' n_trk + QG_nTracks, tracks' nDoF) "
        "lookup tables of the value tuples seen in fitting (`quantizer: lookup`, one exact token, no training); "
        "usage is listed group after group. `seed_baseline` = the seeds' first setup with "
        f"the same codebooks. Targets: {TARGETS}.",
        "",
        "| object | config | tokens (bits) | fitted (steps × batch, lr) | train s | held-out objects | usage per level "
        "(expected) | dead in training (worst level) | pT res (rel) | η res | φ res | worst discrete exact "
        "| worst score KS |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        exp = r.get("expected_usage")
        usage = " / ".join(f"{u:.0%}" for u in r["usage"]) + (
            " (" + " / ".join(f"{e:.0%}" for e in exp) + ")" if exp else ""
        )
        train = f"{1 - min(r['train_usage']):.1%}" if r.get("train_usage") else "–"
        wd = f"{r['worst_discrete']} {r['discrete_exact_min']:.4f}" if r["worst_discrete"] else "–"
        ws = f"{r['worst_score']} {r['score_ks_max']:.4f}" if r["worst_score"] else "–"
        md.append(
            f"| {r['object']} | {r['config']} | {r['tokens_per_object']} ({r['bits_per_object']:.0f}) "
            f"| {r['fitted']} ({r['steps']} × {r['batch_size']}, {r['lr']:g}) | {r['train_seconds']:.0f} "
            f"| {_fmt(r.get('n_val_objects'), ',')} | {usage} | {train} "
            f"| {_fmt(r.get('pt_resolution'), '.4f')} | {_fmt(r.get('eta_resolution'), '.4f')} "
            f"| {_fmt(r.get('phi_resolution'), '.4f')} | {wd} | {ws} |"
        )
    md += [
        "",
        "Usage is counted on the held-out objects: where they number fewer than a few times "
        "the 4096 codes (photons in this mix) it is limited by the sample, not by dead codes. In brackets "
        "(rows measured on 2026-11-29 or later), the usage the held-out sample is expected to show if it follows the "
        "codes' frequencies over all training objects; in the next column, the fraction of a level's codes no "
        "training object uses (dead codes, worst level): a held-out usage near its expectation with no dead "
        "codes is a healthy codebook whose rare codes the sample is too small to reach (e.g. jets with 40 "
        "tracks in a lookup level, whose rows are the value tuples that occurred in fitting).",
        "",
        "Encoding speed on 2 threads (preprocessing + encoder + every level), measured in the same run: the "
        "fast path (exact FAISS search for ResidualVQ, the fused rounding for ResidualFSQ; both tested to give "
        "the library's codes) against the library's own forward:",
        "",
        "| object | config | measured | fast path | fast objects/s | library forward objects/s | ratio "
        "| GPU objects/s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "encode_fast_per_s" in r:
            md.append(
                f"| {r['object']} | {r['config']} | {r['run']} | {r['encode_fast_backend']} "
                f"| {r['encode_fast_per_s']:,.0f} "
                f"| {r['encode_library_per_s']:,.0f} | {r['encode_fast_per_s'] / r['encode_library_per_s']:.0f}× "
                f"| {_fmt(r.get('encode_cuda_per_s'), ',.0f')} |"
            )
    if any(r["config"] == "ours + linear_skip (11-23)" for r in rows):
        md += ["", LINEAR_SKIP_NOTE]
    return "\n".join(md)


# what the kept rows of 2026-11-23 measured (rows of earlier runs stay in the table)
LINEAR_SKIP_NOTE = (
    "`ours + linear_skip (11-23)`: the ResidualVQ defaults of 2026-11-23 morning, with linear skip paths "
    "beside the encoder and decoder MLPs (`linear_skip: true` in the configs then). They made muons' φ 6×"
    " worse (0.155 against 0.027) and were reverted for ResidualVQ; the FSQ rows keep them. Ablation on "
    "muons, same budget, 2026-11-23: without the skip paths η 0.0255, φ 0.0394, pT 2.16%; without them "
    "and with angles as (cos φ, sin φ) only (the restored defaults, `linear_angles: false`) η 0.0276, φ "
    "0.0282, pT 1.85%, level usage 89% / 92% / 94% / 95%."
)


_TOKENIZE_CHILD = textwrap.dedent(
    """
    import json, shutil, sys
    from hep_event_models.tokenized import tokenize_dataset

    tok, data, out, nproc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    shutil.rmtree(out, ignore_errors=True)
    s = tokenize_dataset(tok, data, out, num_proc=nproc, rows_per_shard=int(sys.argv[5]), progress=False)
    print(json.dumps({k: v for k, v in s.items() if not isinstance(v, list)}))
    """
)


def _run_measuring_rss(cmd: list[str]) -> tuple[str, float, float | None]:
    """Run ``cmd``; return its stdout and the peaks (MiB) of its process tree's summed RSS and
    summed PSS. Summed RSS counts pages the processes share (the Python and torch libraries
    every spawned worker maps) once per process; PSS splits each shared page between its
    sharers, so summed PSS is the tree's real footprint (``None`` where the OS has no PSS)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak, peak_pss, tick = 0.0, None, 0
    while proc.poll() is None:
        try:
            tree = [p for p in (ps, *ps.children(recursive=True)) if p.is_running()]
            peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
            if tick % 5 == 0:  # PSS walks every mapping: once a second, not to slow the measured run
                pss = sum(getattr(p.memory_full_info(), "pss", float("nan")) for p in tree) / 2**20
                if pss == pss:  # not NaN
                    peak_pss = max(peak_pss or 0.0, pss)
        except psutil.Error:
            pass
        tick += 1
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return out, peak, peak_pss


def _bench_event_tokenizer(path: Path, data: str) -> None:
    """A full-size EventTokenizer (every object of event.yaml, 4096 codes × 4 levels, dim 8)
    with fitted preprocessing and k-means-initialised codebooks: encoding cost does not
    depend on how long the VQ-VAEs trained (exact search visits every code)."""
    import torch

    from hep_event_models.event_tokenizer import EventTokenizer, load_event_config
    from hep_event_models.object_tokenizer import ObjectTokenizer
    from hep_event_models.training.event_tokenizer import fit_context
    from hep_event_models.training.tokenizer import fit_preprocessor, validation_set

    torch.manual_seed(0)
    ev = load_event_config("event")
    objs = {}
    for name, cfg in ev["objects"].items():
        pre = fit_preprocessor(cfg, data, max_events=20_000, progress=False)
        t = ObjectTokenizer.from_fitted(cfg, pre, {})
        vals, mask = validation_set(cfg, data, 1, max_objects=10_000)
        x, m, tg = t.prepare(vals, mask)
        t.train()
        with torch.no_grad():
            t(x, m, tg)  # k-means initialisation of every level on real objects
        objs[name] = t.eval()
    EventTokenizer(objs, fit_context(ev["context"], data)).save_pretrained(path)


def bench_tokenize(quick: bool, opts=None) -> tuple[dict, str]:
    """HDF5 → Parquet end to end (read, encode every collection, assemble, write): speed and memory."""
    from hep_event_models.generator import generate

    sizes = (10_000, 50_000) if quick else (100_000, 1_000_000)
    files = {}
    for n in sizes:
        path = WORK / f"read_ttbar_{n}.h5"
        if not path.exists() or h5py.File(path, "r")["metadata"].attrs["n_events"] != n:
            generate("ttbar", n, path, seed=2, progress=False)
        files[n] = path
    tok_dir = WORK / "bench_event_tokenizer"
    if not (tok_dir / "tokenizer_config.json").exists():
        _bench_event_tokenizer(tok_dir, str(files[sizes[0]]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    runs = []
    # one process and every core, on both sizes: start-up (spawning workers that import torch)
    # weighs on the small run, so the large one shows the sustained multi-process rate
    plan = [(n, p) for n in sizes for p in dict.fromkeys((1, cores))]
    for n, nproc in plan:
        rows_per_shard = max(n // (2 * nproc), 1)  # at least two shards per process
        out, peak, peak_pss = _run_measuring_rss(
            [
                sys.executable,
                "-c",
                _TOKENIZE_CHILD,
                str(tok_dir),
                str(files[n]),
                str(WORK / f"tokenized_{n}_{nproc}"),
                str(nproc),
                str(rows_per_shard),
            ]
        )
        r = json.loads(out.strip().splitlines()[-1])
        r.update(n_input=n, num_proc=nproc, peak_rss_mib=peak, peak_pss_mib=peak_pss)
        r["events_per_s_per_process"] = r["events_per_s"] / nproc
        r["bytes_per_event"] = sum(f.stat().st_size for f in (WORK / f"tokenized_{n}_{nproc}").glob("*.parquet")) / max(
            r["events"], 1
        )
        runs.append(r)
        print(f"  {n:,} events, {nproc} proc: {r['objects_per_s']:,.0f} objects/s, {peak:.0f} MiB", flush=True)
    encoding = _collection_encoding_speeds(tok_dir, files[sizes[0]])
    single = [r for r in runs if r["num_proc"] == 1]
    rss_ratio = single[1]["peak_rss_mib"] / single[0]["peak_rss_mib"]
    multi = [r for r in runs if r["num_proc"] == cores] if cores > 1 else []
    multi_ratio = multi[1]["peak_rss_mib"] / multi[0]["peak_rss_mib"] if len(multi) == 2 else None
    best = max(runs, key=lambda r: r["objects_per_s"])
    objects_per_event = best["objects"] / best["events"]
    seeds_objects = 155e6  # the seeds' 27.9M-event set without tracks
    res = {
        "runs": runs,
        "rss_ratio_large_over_small": rss_ratio,
        "rss_ratio_large_over_small_all_cores": multi_ratio,
        "projected_hours_seeds_set": seeds_objects / best["objects_per_s"] / 3600,
        "projected_hours_seeds_set_with_tracks": 27.9e6 / best["events_per_s"] / 3600,
        "tokenizer": "every object of tokenizer_configs/event.yaml, 4096 codes x 4 levels, dim 8, FAISS search",
        "encoding": encoding,
    }
    md = [
        "ttbar events, every collection of `tokenizer_configs/event.yaml` (electrons, muons, taus, photons, MET, "
        "jets, tracks; 4096 codes × 4 levels, codebook_dim 8, exact FAISS search), Parquet (zstd) shards, "
        f"{objects_per_event:.1f} objects/event. Peak RSS is the whole process tree's, summed over processes "
        "(pages they share, like the torch libraries each spawned worker maps, counted once per process); peak "
        "PSS, the tree's footprint with shared pages split between their sharers.",
        "",
        "| events | processes | events/s | events/s per process | objects/s | tokens/event | bytes/event "
        "| peak RSS MiB | peak PSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        md.append(
            f"| {r['n_input']:,} | {r['num_proc']} | {r['events_per_s']:,.0f} | {r['events_per_s_per_process']:,.0f} "
            f"| {r['objects_per_s']:,.0f} | {r['tokens'] / r['events']:.0f} | {r['bytes_per_event']:.0f} "
            f"| {r['peak_rss_mib']:.0f} | {_fmt(r.get('peak_pss_mib'), '.0f')} |"
        )
    ratios = f"Peak RSS for {sizes[1]:,} events is {rss_ratio:.2f}× that for {sizes[0]:,} with one process"
    if multi_ratio is not None:
        ratios += f", {multi_ratio:.2f}× with {cores}"
    md += [
        "",
        ratios + ".",
        f"Projected time for the seeds' 27.9M-event set (≈155M objects without tracks) at the best rate: "
        f"**{res['projected_hours_seeds_set']:.1f} h** on this machine; with tracks (≈{objects_per_event:.0f} "
        f"objects/event as here) {res['projected_hours_seeds_set_with_tracks']:.1f} h.",
        "",
        "Encoding alone (preprocessing + encoder MLP + the exact 4-level search), per collection of the same "
        "tokenizer, 2 threads, ttbar objects, against the library's own forward (`ResidualVQ` in eval mode) "
        "measured in the same run:",
        "",
        "| collection | objects/s | library forward objects/s | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {e['fast_per_s']:,.0f} | {e['library_per_s']:,.0f} "
            f"| {e['fast_per_s'] / e['library_per_s']:.0f}× |"
            for name, e in encoding.items()
        ),
    ]
    return res, "\n".join(md)


def _collection_encoding_speeds(tok_dir: Path, data: Path) -> dict:
    """Objects/s of every collection's ``encode`` (FAISS) and of the library's forward."""
    import torch

    from hep_event_models.event_tokenizer import EventTokenizer, _collection_values
    from hep_event_models.scan import encoding_speed

    torch.set_num_threads(2)
    tok = EventTokenizer.from_pretrained(tok_dir)
    events = next(iter(tok.reader(str(data), chunk_size=50_000)))
    out = {}
    for name, t in tok.object_tokenizers.items():
        values, mask = _collection_values(events, name, t.feature_names)
        real = values[mask]
        out[name] = {
            "objects": len(real),
            "fast_per_s": encoding_speed(t, real, "faiss"),
            "library_per_s": encoding_speed(t, real[:20_000], "library", 20_000, 1),
        }
        print(f"  encode {name}: {out[name]['fast_per_s']:,.0f} objects/s", flush=True)
    return out


SECTIONS = {
    "generator": ("Event generator", bench_generator),
    "reader": ("HDF5 reader", bench_reader),
    "tokenizers": ("Object tokenizers", bench_tokenizers),
    "tokenize": ("HDF5 → Parquet tokenization", bench_tokenize),
    "convert": ("ROOT → HDF5 conversion (NanoAOD, PHYSLITE)", bench_convert),
    "models": ("Event models: headline task, label efficiency, throughput", bench_models),
    "hierarchy": ("Flat vs feature-group (hierarchical) event models", bench_hierarchy),
    "constituents": ("Constituent-enriched event models (jet constituents, gated residual)", bench_constituents),
    "models_groups": (
        "Event models with feature-group tokens and the hierarchical model: headline task",
        lambda quick, opts: bench_models(
            quick, opts, config="event_groups", object_pooling="attention", max_length=256
        ),
    ),
}


def assemble() -> str:
    parts = [
        "# Benchmark results",
        "",
        "Reproduce with `python benchmarks/run.py` (or `--only SECTION`). Each section states the machine it ran on.",
        "",
    ]
    for key, (title, _) in SECTIONS.items():
        j, m = RESULTS / f"{key}.json", RESULTS / f"{key}.md"
        if not (j.exists() and m.exists()):
            continue
        info = json.loads(j.read_text())
        parts += [
            f"## {title}",
            "",
            f"Machine: {_machine_line(info['machine'])}" + (" (quick run)" if info.get("quick") else ""),
            "",
            m.read_text().strip(),
            "",
        ]
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument(
        "--objects",
        default="jets,electrons,muons,photons,taus,tracks,met",
        help="object types for the tokenizer section",
    )
    ap.add_argument("--tokenizer-steps", type=int, default=2000, help="training steps per tokenizer")
    ap.add_argument("--tokenizer-batch", type=int, default=4096, help="objects per training step")
    ap.add_argument(
        "--tokenizer-threads",
        type=int,
        default=2,
        help="torch threads while training tokenizers (1 on a shared machine: oversubscribed threads crawl); "
        "encoding speed is always measured with 2",
    )
    ap.add_argument("--tokenizer-lr", type=float, default=3e-3, help="peak learning rate for tokenizers")
    ap.add_argument(
        "--tokenizer-configs",
        default=",".join(TOKENIZER_CONFIGS),
        help=f"tokenizer configurations to compare: {', '.join(TOKENIZER_CONFIGS)}",
    )
    ap.add_argument("--tokenizer-events", type=int, default=100_000, help="events per process for tokenizers")
    ap.add_argument(
        "--tokenizer-reuse",
        action="store_true",
        help="keep tokenizers already fitted in benchmarks/_work with the same steps and batch (their learning "
        "rate is not checked): only the held-out metrics and encoding speeds are measured again",
    )
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument(
        "--models-token-embedding",
        choices=("code", "id", "id+code"),
        default="code",
        help="models sections: how the event model embeds object tokens",
    )
    ap.add_argument(
        "--models-finetune-steps", type=int, default=None, help="models sections: steps per fine-tuning run"
    )
    ap.add_argument(
        "--models-pretrain-steps",
        type=int,
        default=None,
        help="models sections: masked-token pretraining steps (default: the demo's, 300 at scale 1)",
    )
    ap.add_argument(
        "--models-no-mass-readout",
        action="store_true",
        help="models sections: classifier without the type-set mass readout (HepEventConfig.mass_readout)",
    )
    ap.add_argument(
        "--models-pair-bias",
        action="store_true",
        help="models sections: pair-bias attention (HepEventConfig.pair_bias)",
    )
    ap.add_argument(
        "--models-kinematics-embedding",
        action="store_true",
        help="models sections: objects' decoded kinematics in their input embeddings "
        "(HepEventConfig.kinematics_embedding)",
    )
    ap.add_argument(
        "--models-mlm-code-logits",
        action="store_true",
        help="models sections: masked-token logits also from the codes' vectors (HepEventConfig.mlm_code_logits)",
    )
    ap.add_argument(
        "--models-label-seeds",
        type=int,
        default=3,
        help="models sections: fine-tuning runs per label budget (paired pretrained - scratch differences)",
    )
    ap.add_argument(
        "--models-classifier-pooling",
        choices=("cls", "mean"),
        default="cls",
        help="models sections: what the classification head reads (HepEventConfig.classifier_pooling)",
    )
    ap.add_argument(
        "--models-scale", type=float, default=1.0, help="demo scale of the models section (1: ~10 min on 2 cores)"
    )
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    WORK.mkdir(exist_ok=True)
    for key in args.only.split(","):
        title, fn = SECTIONS[key]
        print(f"== {title}", flush=True)
        res, md = fn(args.quick, args)
        res = {"machine": machine(), "quick": args.quick, **res}
        (RESULTS / f"{key}.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / f"{key}.md").write_text(md + "\n")
        print(md, flush=True)
    (HERE / "RESULTS.md").write_text(assemble())
    return 0


if __name__ == "__main__":
    sys.exit(main())
