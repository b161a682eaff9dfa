"""The whole chain on the built-in generator, with a report: ``hep-event-models demo --out DIR``.

Stages (each a library call that also exists as its own subcommand):

1. ``generate``  H→ZZ*→4ℓ, ZZ*→4ℓ, tt̄ and Z/γ*→ℓℓ training and test files, plus ZZ*→4ℓ
   generated inside a truth m_4ℓ window around 125 GeV (the inclusive sample has only ≈2% of
   its events there) for the headline task.
2. ``fit-tokenizer``  every object tokenizer of ``tokenizer_configs/event.yaml`` and the
   event-context binning → an ``EventTokenizer``.
3. ``diagnose``  codebook usage and feature fidelity of every object tokenizer on held-out
   events; m_ℓℓ and m_4ℓ before and after tokenize → decode on the test files.
4. ``tokenize``  the training files to Parquet: every event (pretraining, inclusive task) and
   the headline selection (four leptons, 115 < m_4ℓ < 135 GeV).
5. ``pretrain``  masked-token pretraining on every training event (no labels).
6. ``finetune``  the headline task (hzz4l vs zz4l in the window) at several label budgets,
   from scratch and from the pretrained backbone; the inclusive task (hzz4l vs zz4l, every
   event) from the pretrained backbone.
7. ``evaluate``  test-set ROC AUC, accuracy and rejection of every classifier, with the GBDT
   (continuous features, same label budget) and counts-only baselines in the same run; the
   inclusive classifier is also tested against tt̄ and Z/γ* (seed 003's generalisation test).
8. ``report``  ``DIR/report.md``, ``DIR/report.html`` (self-contained), PNG plots, and every
   number behind them in ``DIR/results.json``.

``scale`` multiplies event counts and training steps (1: about ten minutes on two CPU cores;
larger on better hardware). The run is resumable: finished stages are recorded in
``DIR/demo_state.json`` with their results and skipped when the command is run again with
the same settings; the stages' own outputs are written atomically.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__

STATE_FILE = "demo_state.json"
RESULTS_FILE = "results.json"
HEADLINE_WINDOW = (115.0, 135.0)
# truth-level window for generating the ZZ* background of the headline task: wider than the
# reconstructed window, so resolution tails migrate in and out as they would in an analysis
ZZ_TRUTH_WINDOW = (105.0, 145.0)
PROCESSES = ("hzz4l", "zz4l", "ttbar", "dy")
# signal hzz4l against zz4l: the headline task (in the m4l window) and the inclusive one; the
# inclusive model and its baselines are then tested against every background (seed 003's
# generalisation protocol: trained against ZZ*, tested also against ttbar and Drell-Yan)
TRAIN_BACKGROUNDS = ("zz4l",)
MASS_READOUT_PAIRS = 4
MASS_READOUT_INIT = "fourier"
INCLUSIVE_TEST_BACKGROUNDS = ("zz4l", "ttbar", "dy")


@dataclass
class DemoSettings:
    """Sizes of a demo run; ``from_scale`` derives them from one number.

    Event counts are per process and file; steps are optimizer steps. Model sizes are those
    of ``HepEventConfig`` (a small BERT).
    """

    scale: float = 1.0
    seed: int = 0
    device: str = "cpu"
    train_events: int = 20_000
    test_events: int = 10_000
    tokenizer_steps: int = 300
    tokenizer_batch: int = 2048
    tokenizer_lr: float = 3e-3
    tokenizer_min_lr_ratio: float = 0.01
    # ResidualFSQ ([8, 8, 8, 8] × 4 levels, the same 4096 × 4 token layout as the shipped
    # ResidualVQ) at the 2-core CPU budget: a training step costs ~1/30 of a 4096-code
    # ResidualVQ step there, and at equal wall time it decodes sharper (README, Object
    # tokenizers); with the linear skip paths and linear φ input, which help FSQ (and hurt
    # ResidualVQ's φ, so they are not the defaults); MLP encoders and decoders also for the
    # feature groups whose configs ask for linear ones (a linear map into FSQ's bounded grid
    # decoded muons' pT at 33%, where the linear ResidualVQ kinematics reach 0.1%)
    tokenizer_settings: dict | None = field(
        default_factory=lambda: {
            "quantizer": "rfsq",
            "fsq_levels": [8, 8, 8, 8],
            "linear_skip": True,
            "linear_angles": True,
            "num_layers": 2,
            "decoder_layers": 3,
        }
    )
    diagnose_objects: int = 10_000
    mass_check_events: int = 10_000
    max_length: int = 128
    hidden_size: int = 96
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 192
    pretrain_steps: int = 300
    finetune_steps: int = 150
    # the inclusive task's one fine-tuning run (54k training events, 1:2 signal:background):
    # 150 steps left it at 0.66 against ZZ* with every test event in one class; 500 give
    # 0.836 (GBDT 0.852) for 50 s more (2026-12-03, flat tokens, scale 1)
    inclusive_steps: int = 500
    # code embeddings learn slowly at 3e-4: 150 steps at 1e-3 gave headline AUC 0.561 against
    # 0.53-0.54 at 3e-4 (flat BERT, 10k labels, 2026-11-23)
    finetune_lr: float = 1e-3
    batch_size: int = 32
    label_budgets: tuple[int, ...] = (1000, 3000, 10_000)
    # fine-tuning runs per label budget and start (seeds seed, seed + 1, ...: labelled subset,
    # validation split, initialisation, batch order); the curve reports means and the paired
    # pretrained − scratch difference. At 1k labels the subset moves the AUC by ±0.03 while
    # pretrained − scratch on the same subset ranges from −0.013 to +0.007 (5 seeds, 2026-11-29).
    label_seeds: int = 1
    # None: the flat BERT; "mean" / "attention": the hierarchical model (HepEventConfig.object_pooling)
    object_pooling: str | None = None
    # object tokens embedded from their code vectors (HepEventConfig.token_embedding): a free
    # vector per id lets the classifier memorise the few thousand labelled headline events
    token_embedding: str = "code"
    # physics-aware attention from the objects' decoded kinematics (HepEventConfig.pair_bias);
    # off: on the headline task (1000 steps, 10k labels) it gave 0.721 with the mass readout
    # against 0.722 without, at ~25% more training time
    pair_bias: bool = False
    # every object's decoded kinematics added to its input embedding (HepEventConfig.kinematics_embedding)
    kinematics_embedding: bool = False
    # masked-token logits also from the candidate codes' vectors (HepEventConfig.mlm_code_logits)
    mlm_code_logits: bool = False
    # the classifier sees the invariant masses of the event's object types and type pairs
    # (HepEventConfig.mass_readout): headline AUC 0.544 -> 0.722 (1000 steps, 10k labels,
    # GBDT on the objects' features 0.649; 2026-11-29)
    mass_readout: bool = True
    # with the mass readout: the masses of every pair of the K leading objects of each type
    # (HepEventConfig.mass_readout_pairs; the Z candidates of 4e and 4μ events) and mass
    # tables that start as a smooth sin/cos basis of ln m (HepEventConfig.mass_readout_init).
    # On the demo's own pipeline (flat tokens, 150 steps, seeds 0-2, 2026-12-05) 4 pairs +
    # fourier raise the headline AUC from pretrained at 10k labels from 0.718 to 0.769 and
    # from scratch at 1k from 0.665 to 0.717; on the feature-group pipeline at 1k (1,000
    # steps, scratch, 2026-12-04) from 0.807 to 0.820 (pairs alone 0.803, fourier alone 0.796)
    mass_readout_pairs: int = MASS_READOUT_PAIRS
    mass_readout_init: str = MASS_READOUT_INIT
    # what the classification head reads (HepEventConfig.classifier_pooling)
    classifier_pooling: str = "cls"
    # fine-tuning holds out this fraction of the labelled events and keeps the model with the
    # best validation AUC (evaluated ten times per run); 0: the last model
    validation_fraction: float = 0.1

    @classmethod
    def from_scale(cls, scale: float = 1.0, seed: int = 0, device: str = "cpu", **overrides) -> DemoSettings:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")

        def n(x: float, lo: int = 1) -> int:
            return max(lo, round(x * scale))

        s = cls(
            scale=scale,
            seed=seed,
            device=device,
            train_events=n(20_000, 500),
            test_events=n(10_000, 500),
            tokenizer_steps=n(300, 5),
            pretrain_steps=n(300, 5),
            finetune_steps=n(150, 5),
            inclusive_steps=n(500, 5),
            diagnose_objects=n(10_000, 500),
            mass_check_events=n(10_000, 500),
            label_budgets=tuple(sorted({n(b, 50) if b > 1000 else min(1000, n(b, 50)) for b in (1000, 3000, 10_000)})),
        )
        for k, v in overrides.items():
            if not hasattr(s, k):
                raise ValueError(f"unknown demo setting {k!r}")
            setattr(s, k, tuple(v) if k == "label_budgets" else v)
        if s.label_seeds < 1:
            raise ValueError(f"label_seeds must be >= 1, got {s.label_seeds}")
        return s


# -- small helpers ----------------------------------------------------------------------------------
def machine_info() -> dict:
    """The machine a run used: CPU model, cores, memory, GPU, Python and package versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        mem = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": mem,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hep_event_models": __version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(m: dict) -> str:
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB{gpu}, Python {m['python']}, torch {m['torch']}"


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _peak_and_width(m: np.ndarray, window: tuple[float, float]) -> dict:
    """Median and IQR/1.349 of the masses inside ``window`` (GeV)."""
    w = m[(m > window[0]) & (m < window[1])]
    if len(w) < 10:
        return {"n": len(w), "median": None, "width": None}
    q25, q50, q75 = np.percentile(w, [25, 50, 75])
    return {"n": len(w), "median": float(q50), "width": float((q75 - q25) / 1.349)}


def _residual_stats(orig: np.ndarray, dec: np.ndarray) -> dict:
    d = dec - orig
    if len(d) == 0:
        return {"n": 0, "bias": None, "resolution": None}
    q25, q50, q75 = np.percentile(d, [25, 50, 75])
    return {"n": len(d), "bias": float(q50), "resolution": float((q75 - q25) / 1.349)}


class _Stages:
    """Runs stages once: results are recorded in ``demo_state.json`` and reused on a rerun."""

    def __init__(self, out: Path, settings: DemoSettings, progress: bool, config: str):
        self.out = out
        self.path = out / STATE_FILE
        self.progress = progress
        self.settings = _json_roundtrip({**asdict(settings), "config": str(config)})
        if self.path.exists():
            state = json.loads(self.path.read_text())
            if state.get("settings") != self.settings:
                raise ValueError(
                    f"{out} holds a demo run with other settings ({state.get('settings')}); "
                    "use another --out directory or --force to start over"
                )
        else:
            state = {"settings": self.settings, "stages": {}}
        self.state = state

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        done = self.state["stages"].get(name)
        if done is not None:
            if self.progress:
                print(f"[demo] {name}: done in an earlier run ({done['seconds']:.0f} s), skipped")
            return done["result"]
        if self.progress:
            print(f"[demo] {name} ...", flush=True)
        t = time.perf_counter()
        result = _json_roundtrip(fn())
        sec = time.perf_counter() - t
        self.state["stages"][name] = {"seconds": sec, "result": result}
        _atomic_json(self.path, self.state)
        if self.progress:
            print(f"[demo] {name}: {sec:.0f} s", flush=True)
        return result

    @property
    def timings(self) -> dict[str, float]:
        return {k: v["seconds"] for k, v in self.state["stages"].items()}


def _json_roundtrip(obj):
    return json.loads(json.dumps(obj, default=_json_default))


def _training_args(
    out_dir: Path, s: DemoSettings, steps: int, lr: float, progress: bool, warmup: int, best_by: str | None = None
):
    """``best_by``: evaluate ten times during training and keep the model with the best
    ``eval_<best_by>`` (early stopping on the validation split)."""
    from transformers import TrainingArguments

    every = max(1, steps // 10)
    best = (
        dict(
            eval_strategy="steps",
            eval_steps=every,
            save_strategy="steps",
            save_steps=every,
            save_only_model=True,
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model=best_by,
            greater_is_better=True,
        )
        if best_by
        else dict(save_strategy="no")
    )
    return TrainingArguments(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=256,
        learning_rate=lr,
        warmup_steps=warmup,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        logging_steps=every,
        seed=s.seed,
        data_seed=s.seed,
        use_cpu=s.device == "cpu",
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not progress,
        **best,
    )


def _mean_length(dataset_dir: Path) -> float:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n = tokens = 0
    for f in sorted(dataset_dir.glob("*.parquet")):
        col = pq.read_table(f, columns=["input_ids"]).column("input_ids")
        lengths = pc.list_value_length(col)
        tokens += int(pc.sum(lengths).as_py() or 0)
        n += len(lengths)
    return tokens / n if n else 0.0


# -- stages ------------------------------------------------------------------------------------------
def _generate(out: Path, s: DemoSettings, progress: bool) -> dict:
    from .generator import generate

    files = {}
    for split, n_ev, seed_off in (("train", s.train_events, 0), ("test", s.test_events, 1000)):
        d = out / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        jobs = [(p, None, p) for p in PROCESSES] + [("zz4l", ZZ_TRUTH_WINDOW, "zz4l_m4l")]
        for i, (proc, window, stem) in enumerate(jobs):
            path = d / f"{stem}.h5"
            if not path.exists():  # written atomically: present means complete
                summary = generate(
                    proc, n_ev, path, seed=s.seed * 10_000 + seed_off + i, mass_window=window, progress=progress
                )
            else:
                summary = {"n_events": n_ev, "seconds": 0.0}
            files[f"{split}/{stem}"] = {
                "file": str(path.relative_to(out)),
                "process": proc,
                "truth_m4l_window": window,
                "events": summary["n_events"],
                "seconds": summary["seconds"],
            }
    return files


def _files(out: Path, split: str, stems) -> list[str]:
    return [str(out / "data" / split / f"{x}.h5") for x in stems]


def _fit(out: Path, s: DemoSettings, config: str, progress: bool) -> dict:
    from .training.event_tokenizer import fit_event_tokenizer

    tok = fit_event_tokenizer(
        config,
        _files(out, "train", [*PROCESSES, "zz4l_m4l"]),
        out / "tokenizer",
        max_steps=s.tokenizer_steps,
        batch_size=s.tokenizer_batch,
        lr=s.tokenizer_lr,
        min_lr_ratio=s.tokenizer_min_lr_ratio,
        warmup_steps=max(1, s.tokenizer_steps // 10),
        seed=s.seed,
        device=s.device,
        settings=s.tokenizer_settings,
        diagnose_objects=0,  # the diagnose stage does it, with plots
        progress=progress,
    )
    fits = {}
    for name in tok.objects:
        summ = json.loads((out / "tokenizer" / "fits" / name / "training_summary.json").read_text())
        if "groups" in summ:  # feature groups: one fit per group
            first = next(iter(summ["groups"].values()))
            fits[name] = {
                "seconds": summ["seconds"],
                "steps": first["steps"],
                "settings": first["model"]["settings"],
                "groups": {g: v["model"]["settings"]["num_quantizers"] for g, v in summ["groups"].items()},
            }
        else:
            fits[name] = {"seconds": summ["seconds"], "steps": summ["steps"], "settings": summ["model"]["settings"]}
    return {
        "objects": tok.objects,
        "vocab_size": tok.vocab_size,
        "fingerprint": tok.fingerprint,
        "codebook_sizes": {n: t.codebook_sizes for n, t in tok.object_tokenizers.items()},
        "fits": fits,
    }


def _diagnose(out: Path, s: DemoSettings, progress: bool) -> dict:
    from tqdm.auto import tqdm

    from .diagnostics import diagnose
    from .event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(out / "tokenizer")
    data = _files(out, "train", [*PROCESSES, "zz4l_m4l"])
    res = {}
    for name, t in tqdm(tok.object_tokenizers.items(), desc="diagnose", disable=not progress):
        m = diagnose(t, data, out / "diagnostics" / name, max_objects=s.diagnose_objects)
        res[name] = {
            "n_objects": m["n_objects"],
            "levels": m["levels"],
            "features": m["features"],
            "plots": [f"diagnostics/{name}/{p}" for p in m.get("plots", [])],
        }
    return res


def _mass_closure(out: Path, s: DemoSettings, progress: bool) -> dict:
    """m_4ℓ (hzz4l, zz4l) and m_ℓℓ (dy) of test events before and after tokenize → decode."""
    from . import physics
    from .event_tokenizer import EventTokenizer
    from .io.reader import EventBatch

    tok = EventTokenizer.from_pretrained(out / "tokenizer")
    res = {}
    for stem in ("hzz4l", "zz4l_m4l", "dy"):
        batches, n = [], 0
        for b in tok.reader(_files(out, "test", [stem]), chunk_size=4096):
            batches.append(b)
            n += len(b)
            if n >= s.mass_check_events:
                break
        ev = EventBatch.concat(batches).take(np.arange(min(n, s.mass_check_events)))
        enc = tok(ev, padding=True, return_tensors="np")  # no truncation: every lepton survives
        back = tok.decode(enc["input_ids"], enc["attention_mask"])
        entry = {"events": len(ev)}
        if stem == "dy":
            m0, v0 = physics.dilepton_mass(ev)
            m1, v1 = physics.dilepton_mass(back)
            both = v0 & v1
            entry.update(
                quantity="m_ll",
                valid_original=int(v0.sum()),
                valid_decoded=int(v1.sum()),
                kept_fraction=float(both.sum() / max(1, v0.sum())),
                original=_peak_and_width(m0[v0], (80.0, 100.0)),
                decoded=_peak_and_width(m1[v1], (80.0, 100.0)),
                residual=_residual_stats(m0[both], m1[both]),
            )
            arrays = (m0[both], m1[both], np.linspace(60, 120, 61), "m_ll [GeV]", "Z/γ*→ℓℓ: m_ll")
        else:
            f0, f1 = physics.four_lepton(ev), physics.four_lepton(back)
            both = f0.valid & f1.valid
            entry.update(
                quantity="m_4l",
                valid_original=int(f0.valid.sum()),
                valid_decoded=int(f1.valid.sum()),
                kept_fraction=float(both.sum() / max(1, f0.valid.sum())),
                original=_peak_and_width(f0.m4l[f0.valid], HEADLINE_WINDOW),
                decoded=_peak_and_width(f1.m4l[f1.valid], HEADLINE_WINDOW),
                residual=_residual_stats(f0.m4l[both], f1.m4l[both]),
                m12_residual=_residual_stats(f0.m12[both], f1.m12[both]),
                m34_residual=_residual_stats(f0.m34[both], f1.m34[both]),
            )
            title = "H→ZZ*→4ℓ: m_4ℓ" if stem == "hzz4l" else "ZZ*→4ℓ (truth window): m_4ℓ"
            arrays = (f0.m4l[both], f1.m4l[both], np.linspace(100, 150, 51), "m_4ℓ [GeV]", title)
        from .report import plot_mass_closure

        plot = out / "plots" / f"mass_{stem}.png"
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot_mass_closure(*arrays, plot)
        entry["plot"] = str(plot.relative_to(out))
        res[stem] = entry
    return res


def _tokenize(out: Path, s: DemoSettings, progress: bool) -> dict:
    from .tokenized import tokenize_dataset

    res = {}
    jobs = (
        ("all", [*PROCESSES, "zz4l_m4l"], None),
        ("headline", ["hzz4l", "zz4l_m4l"], HEADLINE_WINDOW),
    )
    for name, stems, window in jobs:
        d = out / "tokens" / name
        summ = tokenize_dataset(
            out / "tokenizer",
            _files(out, "train", stems),
            d,
            max_length=s.max_length,
            truncation=True,
            progress=progress,
            m4l_window=window,
        )
        summ["mean_tokens_per_event"] = _mean_length(d)
        res[name] = summ
    return res


def _pretrain(out: Path, s: DemoSettings, progress: bool) -> dict:
    from .training.models import DataArguments, ModelArguments, loss_history, pretrain

    margs = ModelArguments(
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size,
        max_position_embeddings=s.max_length,
        object_pooling=s.object_pooling,
        token_embedding=s.token_embedding,
        pair_bias=s.pair_bias,
        kinematics_embedding=s.kinematics_embedding,
        mlm_code_logits=s.mlm_code_logits,
    )
    dargs = DataArguments(tokenizer=str(out / "tokenizer"), train_data=str(out / "tokens" / "all"))
    targs = _training_args(out / "models" / "pretrain", s, s.pretrain_steps, 5e-4, progress, s.pretrain_steps // 10)
    log = loss_history()
    metrics = pretrain(margs, dargs, targs, callbacks=[log])
    mean_len = _mean_length(out / "tokens" / "all")
    samples = s.pretrain_steps * s.batch_size
    return {
        "metrics": metrics,
        "loss_curve": log.history,
        "loss_first": log.history[0][1] if log.history else None,
        "loss_last": log.history[-1][1] if log.history else None,
        "mean_tokens_per_event": mean_len,
        # padded positions are not counted: tokens the model actually reads
        "tokens_per_second": samples * mean_len / metrics["train_runtime"],
        "events_per_second": samples / metrics["train_runtime"],
    }


def _finetune_one(
    out: Path,
    s: DemoSettings,
    name: str,
    data: str,
    backgrounds: list[str],
    budget: int | None,
    pretrained: bool,
    progress: bool,
    steps: int | None = None,
) -> dict:
    """``steps``: fine-tuning steps (default ``s.finetune_steps``)."""
    from .training.models import DataArguments, ModelArguments, finetune

    steps = steps or s.finetune_steps

    margs = ModelArguments(
        model_name_or_path=str(out / "models" / "pretrain") if pretrained else None,
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size,
        max_position_embeddings=s.max_length,
        object_pooling=s.object_pooling,
        token_embedding=s.token_embedding,
        pair_bias=s.pair_bias,
        kinematics_embedding=s.kinematics_embedding,
        mass_readout=s.mass_readout,
        mass_readout_pairs=s.mass_readout_pairs,
        mass_readout_init=s.mass_readout_init,
        classifier_pooling=s.classifier_pooling,
    )
    dargs = DataArguments(
        tokenizer=str(out / "tokenizer"),
        train_data=str(out / "tokens" / data),
        signal=["hzz4l"],
        background=list(backgrounds),
        max_train_samples=budget,
        validation_fraction=s.validation_fraction,
    )
    best_by = "auc" if s.validation_fraction else None
    targs = _training_args(out / "models" / name, s, steps, s.finetune_lr, progress, steps // 10, best_by=best_by)
    metrics = finetune(margs, dargs, targs)
    for ckpt in (out / "models" / name).glob("checkpoint-*"):  # only there to pick the best model
        shutil.rmtree(ckpt)
    return metrics


def _evaluate_one(
    out: Path, s: DemoSettings, model: str, headline: bool, gbdt_events: int | None, progress: bool
) -> dict:
    from .evaluation import evaluate_classifier

    if headline:
        train = _files(out, "train", ["hzz4l", "zz4l_m4l"])
        test = _files(out, "test", ["hzz4l", "zz4l_m4l"])
        bkgs, window = list(TRAIN_BACKGROUNDS), HEADLINE_WINDOW
    else:
        train = _files(out, "train", PROCESSES)
        test = _files(out, "test", PROCESSES)
        bkgs, window = list(INCLUSIVE_TEST_BACKGROUNDS), None
    r = evaluate_classifier(
        out / "models" / model,
        train,
        test,
        "hzz4l",
        bkgs,
        out / "eval" / model,
        m4l_window=window,
        train_backgrounds=list(TRAIN_BACKGROUNDS),
        max_train_events=gbdt_events or s.train_events,
        max_test_events=s.test_events,
        seed=s.seed,
        progress=progress,
    )
    r["roc_plot"] = f"eval/{model}/roc.png"
    return r


def _strip_roc(r: dict) -> dict:
    """Metrics without the ROC point lists (those stay in ``eval/<model>/metrics.json``)."""
    out = {k: v for k, v in r.items() if k != "per_background"}
    out["per_background"] = {
        b: {k: ({kk: vv for kk, vv in v.items() if kk != "roc"} if isinstance(v, dict) else v) for k, v in e.items()}
        for b, e in r["per_background"].items()
    }
    return out


def _label_budget(out: Path, s: DemoSettings, st: _Stages, budget: int, progress: bool) -> dict:
    """Fine-tune from scratch and from the pretrained backbone on ``budget`` labelled headline
    events, ``s.label_seeds`` times (seeds ``s.seed + k``), and evaluate: one row of the
    label-efficiency curve. AUCs are means over the seeds; ``gain`` is the mean paired
    pretrained − scratch difference (same labelled events, split and seed) and ``gain_se`` its
    standard error; ``*_eval`` hold the first seed's full evaluations."""
    row: dict = {"labelled_events": budget, "seeds": [s.seed + k for k in range(s.label_seeds)]}
    runs: dict = {"scratch": [], "pretrained": []}
    for k in range(s.label_seeds):
        sk = replace(s, seed=s.seed + k)
        for kind in ("scratch", "pretrained"):
            name = f"headline_{kind}_{budget}" + (f"_seed{s.seed + k}" if k else "")
            ft = st.run(
                f"finetune {name}",
                lambda n=name, p=kind == "pretrained", sk=sk: _finetune_one(
                    out, sk, n, "headline", TRAIN_BACKGROUNDS, budget, p, progress
                ),
            )
            ev = st.run(
                f"evaluate {name}",
                lambda n=name, sk=sk: _strip_roc(_evaluate_one(out, sk, n, True, budget // 2, progress)),
            )
            runs[kind].append(ev)
            if k == 0:
                row[f"{kind}_eval"] = ev
                row.setdefault("finetune", {})[kind] = ft
    for kind, evs in runs.items():
        row[f"{kind}_aucs"] = [e["auc"] for e in evs]
        row[f"{kind}_auc"] = float(np.mean(row[f"{kind}_aucs"]))
    for key in ("gbdt_auc", "gbdt_decoded_auc", "counts_auc"):  # per seed: the same labelled events
        row[key] = float(np.mean([e[key] for e in runs["pretrained"]]))
    gains = np.subtract(row["pretrained_aucs"], row["scratch_aucs"])
    row["gain"] = float(gains.mean())
    row["gain_se"] = float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else None
    return row


# -- the pipeline --------------------------------------------------------------------------------------
def run_demo(
    out_dir: str | Path,
    scale: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    config: str = "event",
    force: bool = False,
    progress: bool = True,
    **overrides,
) -> dict:
    """Run generate → fit tokenizers → diagnose → tokenize → pretrain → fine-tune → evaluate
    → report in ``out_dir`` (module doc). Returns the content of ``results.json``.

    Args:
        scale: multiplies event counts and training steps (1: ≈10 minutes on 2 CPU cores).
        device: ``cpu`` or ``cuda`` for tokenizer and model training.
        config: the event tokenizer config (shipped name or path).
        force: start over, discarding the record of finished stages (generated files and
            finished tokenizer fits in ``out_dir`` are still reused).
        overrides: ``DemoSettings`` fields, e.g. ``tokenizer_steps=50`` (tests use tiny runs).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = DemoSettings.from_scale(scale, seed=seed, device=device, **overrides)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    if force:
        (out / STATE_FILE).unlink(missing_ok=True)
    torch.manual_seed(seed)
    t_start = time.perf_counter()
    st = _Stages(out, s, progress, config)
    gen = st.run("generate", lambda: _generate(out, s, progress))
    fit = st.run("fit tokenizers", lambda: _fit(out, s, config, progress))
    diag = st.run("diagnose tokenizers", lambda: _diagnose(out, s, progress))
    mass = st.run("physics after decode", lambda: _mass_closure(out, s, progress))
    toks = st.run("tokenize", lambda: _tokenize(out, s, progress))
    pre = st.run("pretrain", lambda: _pretrain(out, s, progress))
    curve = [_label_budget(out, s, st, budget, progress) for budget in s.label_budgets]
    incl_ft = st.run(
        "finetune inclusive",
        lambda: _finetune_one(
            out, s, "inclusive", "all", TRAIN_BACKGROUNDS, None, True, progress, steps=s.inclusive_steps
        ),
    )
    incl = st.run("evaluate inclusive", lambda: _strip_roc(_evaluate_one(out, s, "inclusive", False, None, progress)))
    results = {
        "hep_event_models": __version__,
        "machine": machine_info(),
        "settings": asdict(s),
        "wall_seconds": sum(st.timings.values()),
        "this_invocation_seconds": time.perf_counter() - t_start,
        "timings": st.timings,
        "data": gen,
        "tokenizer": fit,
        "diagnostics": diag,
        "physics_after_decode": mass,
        "tokenized": toks,
        "pretrain": pre,
        "label_efficiency": curve,
        "headline": curve[-1]["pretrained_eval"],
        "inclusive": {"finetune": incl_ft, "evaluation": incl},
    }
    from .demo_report import write_demo_report

    t = time.perf_counter()
    files = write_demo_report(out, results)
    results["timings"]["report"] = time.perf_counter() - t
    results["report"] = files
    _atomic_json(out / RESULTS_FILE, results)
    return results


__all__ = ["DemoSettings", "machine_info", "run_demo"]
