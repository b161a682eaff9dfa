"""Evaluation of event classifiers against baselines in the same run (``evaluate``).

On held-out HDF5 events of the signal and background processes:

- the token model's score (``HepEventForSequenceClassification``: P(signal));
- a gradient-boosted classifier (scikit-learn ``HistGradientBoostingClassifier``) on the
  continuous features of the leading objects of every collection, trained on the training
  files: what the tokens have to match;
- a counts-only classifier on object multiplicities: how much the sequence length and
  type ids alone give away (seed 003).

Metrics: ROC AUC, accuracy (at score 0.5), background rejection 1/ε_B at 50% signal
efficiency, per background process and combined, plus ``roc.png``. An optional m_4ℓ
window (four reconstructed leptons, ATLAS-style pairing) defines the headline task.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import physics, schema
from .io.reader import EventBatch, EventReader, expand_files
from .subobjects import sub_object_columns

LEADING = {"electrons": 4, "muons": 4, "taus": 2, "photons": 2, "met": 1, "jets": 4, "tracks": 4}
CONTINUOUS = (schema.STANDARD, schema.LOG_STANDARD, schema.ANGLE, schema.QUANTILE, schema.SCORE)


def select_events(batch: EventBatch, m4l_window: tuple[float, float] | None) -> np.ndarray:
    """Events passing the selection: all, or four leptons with m_4ℓ in the window."""
    if m4l_window is None:
        return np.ones(len(batch), dtype=bool)
    fl = physics.four_lepton(batch)
    return fl.valid & (fl.m4l > m4l_window[0]) & (fl.m4l < m4l_window[1])


def continuous_features(batch: EventBatch, configs) -> np.ndarray:
    """``(B, F)`` continuous features of the leading objects (NaN where absent)."""
    cols = []
    for cfg in configs:
        c = batch.collections[cfg.object]
        k = min(LEADING.get(cfg.object, 2), c.values.shape[1])
        names = [f.name for f in cfg.features if f.kind in CONTINUOUS]
        for j in range(k):
            for n in names:
                v = c.feature(n)[:, j].astype(np.float64)
                cols.append(np.where(c.mask[:, j], v, np.nan))
    return np.stack(cols, axis=1)


def decoded_events(tok, batch: EventBatch, chunk: int = 8192) -> EventBatch:
    """``batch`` tokenized and decoded back to objects (physical units), in chunks of events."""
    parts = []
    for s in range(0, len(batch), chunk):
        enc = tok(batch.take(np.arange(s, min(s + chunk, len(batch)))), padding=True, return_tensors="np")
        dec = tok.decode(enc["input_ids"], enc["attention_mask"])
        for k, c in dec.collections.items():  # pad to the input's width, so that chunks concatenate
            width = batch.collections[k].values.shape[1]
            extra = width - c.values.shape[1]
            if extra > 0:
                c.values = np.pad(c.values, ((0, 0), (0, extra), (0, 0)))
                c.mask = np.pad(c.mask, ((0, 0), (0, extra)))
        parts.append(dec)
    return EventBatch.concat(parts)


def count_features(batch: EventBatch, configs) -> np.ndarray:
    """``(B, n_collections)`` object multiplicities."""
    return np.stack([batch.collections[c.object].mask.sum(axis=1) for c in configs], axis=1).astype(np.float64)


def roc_metrics(y: np.ndarray, score: np.ndarray) -> dict:
    """AUC, accuracy at 0.5, rejection at 50% signal efficiency, and the ROC curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(y)) < 2:
        raise ValueError("need both signal and background events to compute a ROC curve")
    fpr, tpr, _ = roc_curve(y, score)
    eff_b = float(np.interp(0.5, tpr, fpr))
    return {
        "auc": float(roc_auc_score(y, score)),
        "accuracy": float(((score > 0.5) == (y == 1)).mean()),
        "rejection_at_50": float(1.0 / eff_b) if eff_b > 0 else float("inf"),
        "roc": {"fpr": fpr[:: max(1, len(fpr) // 200)].tolist(), "tpr": tpr[:: max(1, len(tpr) // 200)].tolist()},
    }


def bootstrap_auc(y: np.ndarray, scores: dict[str, np.ndarray], n_boot: int = 200, seed: int = 0) -> dict:
    """Statistical spread of test-set AUCs: resample signal and background events with
    replacement (``n_boot`` times, each class keeping its size) and recompute every AUC on the
    same resampled events, so differences between scores are paired.

    Returns ``{"std": {name: std of its AUC}, "diff_std": {"model-<name>": std of
    AUC_model - AUC_name}}``, the differences for every other score when one is named
    ``"model"`` (else ``diff_std`` is empty).
    """
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    sig, bkg = np.nonzero(y == 1)[0], np.nonzero(y != 1)[0]
    if len(sig) < 2 or len(bkg) < 2:
        raise ValueError("need at least two signal and two background events to bootstrap AUCs")
    names = list(scores)
    aucs = np.empty((n_boot, len(names)))
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(sig, len(sig)), rng.choice(bkg, len(bkg))])
        for j, n in enumerate(names):
            aucs[i, j] = roc_auc_score(y[idx], scores[n][idx])
    out = {"std": {n: float(aucs[:, j].std(ddof=1)) for j, n in enumerate(names)}, "diff_std": {}}
    if "model" in names:
        m = names.index("model")
        for j, n in enumerate(names):
            if j != m:
                out["diff_std"][f"model-{n}"] = float((aucs[:, m] - aucs[:, j]).std(ddof=1))
    return out


def _read(
    files, tok, selection, limits: dict[int, int], seed: int, progress: bool, sub_keys=(), max_length=None
) -> tuple[EventBatch, list[dict]]:
    """Selected events of the processes in ``limits``, at most ``limits[pid]`` each (streaming),
    and per event its sub-object rows for ``sub_keys`` (``subobjects.sub_object_columns``,
    aligned with sequences truncated to ``max_length``; kept ragged, not as padded arrays)."""
    reader = EventReader(
        files,
        selection=tok.object_configs(),
        scalars=[c.key for c in tok.context],
        chunk_size=4096,
        sub_objects=list(sub_keys),
    )
    batches, have, sub_rows = [], dict.fromkeys(limits, 0), []
    for b in reader.progress("read events", progress):
        keep = select_events(b, selection) & np.isin(b.labels, list(limits))
        idx = []
        for pid, lim in limits.items():
            ids = np.nonzero(keep & (b.labels == pid))[0][: max(0, lim - have[pid])]
            have[pid] += len(ids)
            idx.append(ids)
        idx = np.sort(np.concatenate(idx))
        if len(idx):
            b = b.take(idx)
            if sub_keys:
                cols = sub_object_columns(tok, b, sub_keys, truncation=max_length is not None, max_length=max_length)
                sub_rows += pa.RecordBatch.from_pydict(cols).to_pylist()
                b.sub_objects = {}
            batches.append(b)
        if all(have[p] >= limits[p] for p in limits):
            break
    missing = [schema.PROCESS_NAMES.get(p, p) for p, n in have.items() if n == 0]
    if missing:
        raise ValueError(f"no selected events of {missing} in {files}")
    return EventBatch.concat(batches), sub_rows


def model_scores(
    model, tok, batch: EventBatch, signal_class: int = 1, batch_size: int = 512, sub_rows: list[dict] | None = None
) -> np.ndarray:
    """P(signal) of every event of ``batch`` from a sequence classifier; ``sub_rows``: each
    event's sub-object columns for a constituent-enriched model (``_read``)."""
    import torch

    from .collators import pad_sub_objects

    model.eval()
    max_len = model.config.max_position_embeddings
    out = []
    for s in range(0, len(batch), batch_size):
        part = batch.take(np.arange(s, min(s + batch_size, len(batch))))
        enc = dict(tok(part, padding=True, truncation=True, max_length=max_len, return_tensors="pt"))
        if sub_rows:
            enc.update(pad_sub_objects(sub_rows[s : s + batch_size], model.config.sub_objects))
        with torch.no_grad():
            logits = model(**{k: v.to(model.device) for k, v in enc.items()}).logits
        out.append(torch.softmax(logits.float(), dim=-1)[:, signal_class].cpu().numpy())
    return np.concatenate(out)


def evaluate_classifier(
    model_dir: str | Path,
    train_data,
    test_data,
    signal: str,
    backgrounds: list[str],
    out_dir: str | Path,
    m4l_window: tuple[float, float] | None = None,
    tokenizer: str | Path | None = None,
    train_backgrounds: list[str] | None = None,
    max_train_events: int = 50_000,
    max_test_events: int = 20_000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Evaluate a classifier and the two baselines; write ``metrics.json`` and ``roc.png``.

    Args:
        model_dir: ``HepEventForSequenceClassification`` directory (its tokenizer is read
            from ``model_dir/tokenizer`` unless ``tokenizer`` is given).
        train_data, test_data: HDF5 files (any processes; events are picked by label).
        signal, backgrounds: process names; metrics per background and combined.
        m4l_window: keep only four-lepton events with m_4ℓ inside (GeV).
        train_backgrounds: the backgrounds the baselines are trained against (default:
            ``backgrounds``). Give those the model was fine-tuned against, so model and
            baselines see the same training task: with ``["zz4l"]`` and test backgrounds
            zz4l, ttbar and dy this is seed 003's generalisation protocol (trained against
            ZZ*, tested against backgrounds never seen in training).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from transformers import AutoModelForSequenceClassification

    from .event_tokenizer import EventTokenizer
    from .modeling_hep_event import check_vocabulary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = EventTokenizer.from_pretrained(tokenizer or Path(model_dir) / "tokenizer")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    check_vocabulary(model.config, tok)
    sig_id = schema.PROCESS_IDS[signal]
    bkg_ids = [schema.PROCESS_IDS[b] for b in backgrounds]
    train_bkgs = list(backgrounds if train_backgrounds is None else train_backgrounds)
    train_bkg_ids = [schema.PROCESS_IDS[b] for b in train_bkgs]
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    signal_class = 1 if id2label.get(1) == "signal" else sig_id

    def by_process(files, ids, limit, sub_keys=()):
        limits = dict.fromkeys([sig_id, *ids], limit)
        max_len = model.config.max_position_embeddings
        return _read(expand_files(files), tok, m4l_window, limits, seed, progress, sub_keys, max_len)

    train, _ = by_process(train_data, train_bkg_ids, max_train_events)
    test, test_sub = by_process(test_data, bkg_ids, max_test_events, model.config.sub_objects or ())
    configs = tok.object_configs()
    y_train = (train.labels == sig_id).astype(int)
    y_test = (test.labels == sig_id).astype(int)
    scores = {}
    scores["model"] = model_scores(model, tok, test, signal_class, sub_rows=test_sub)
    # the same GBDT on features decoded from the tokens: what the tokens keep of the physics,
    # apart from what the model makes of them
    dec_train, dec_test = (decoded_events(tok, b) for b in (train, test))
    baselines = (
        ("gbdt", continuous_features, train, test),
        ("counts", count_features, train, test),
        ("gbdt_decoded", continuous_features, dec_train, dec_test),
    )
    for name, feats, b_train, b_test in baselines:
        x_train, x_test = feats(b_train, configs), feats(b_test, configs)
        # columns with fewer than two distinct values carry nothing (and break the binning on
        # small samples, e.g. a fourth tau present in one event)
        keep = [j for j in range(x_train.shape[1]) if len(np.unique(x_train[np.isfinite(x_train[:, j]), j])) > 1]
        # early stopping (on a 10% validation split) only where the training set is large enough
        clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=seed, early_stopping="auto")
        clf.fit(x_train[:, keep], y_train)
        scores[name] = clf.predict_proba(x_test[:, keep])[:, 1]
    results = {
        "signal": signal,
        "backgrounds": backgrounds,
        "train_backgrounds": train_bkgs,
        "m4l_window": m4l_window,
        "n_train": len(train),
        "n_test_signal": int(y_test.sum()),
        "per_background": {},
    }
    for bname, bid in [("all", None), *zip(backgrounds, bkg_ids, strict=True)]:
        keep = (y_test == 1) | ((test.labels == bid) if bid is not None else (y_test == 0))
        entry = {k: roc_metrics(y_test[keep], s[keep]) for k, s in scores.items()}
        entry["n_background"] = int((keep & (y_test == 0)).sum())
        results["per_background"][bname] = entry
    allb = results["per_background"]["all"]
    # the test set's statistical spread (bootstrap): a model/baseline difference smaller than
    # its spread is not a difference
    spread = bootstrap_auc(y_test, scores, seed=seed)
    for k, sd in spread["std"].items():
        allb[k]["auc_std"] = sd
    results.update(
        auc_std=spread["std"]["model"],
        gbdt_auc_std=spread["std"]["gbdt"],
        auc_minus_gbdt=allb["model"]["auc"] - allb["gbdt"]["auc"],
        auc_minus_gbdt_std=spread["diff_std"]["model-gbdt"],
    )
    results.update(
        auc=allb["model"]["auc"],
        accuracy=allb["model"]["accuracy"],
        rejection_at_50=allb["model"]["rejection_at_50"],
        gbdt_auc=allb["gbdt"]["auc"],
        counts_auc=allb["counts"]["auc"],
        gbdt_decoded_auc=allb["gbdt_decoded"]["auc"],
    )
    _plot_roc(allb, out / "roc.png", f"{signal} vs {', '.join(backgrounds)}")
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    # the model's card gets the evaluation (and its model-index entries)
    from .cards import event_model_card

    train_metrics = Path(model_dir) / "finetune_metrics.json"
    training = json.loads(train_metrics.read_text()) if train_metrics.exists() else None
    event_model_card(model, training=training, evaluation=results).save(Path(model_dir) / "README.md")
    return results


def _plot_roc(entry: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, label in (
        ("model", "token model"),
        ("gbdt", "GBDT, continuous features"),
        ("gbdt_decoded", "GBDT, features decoded from tokens"),
        ("counts", "counts only"),
    ):
        if name not in entry:
            continue
        r = entry[name]
        tpr, fpr = np.asarray(r["roc"]["tpr"]), np.asarray(r["roc"]["fpr"])
        ok = fpr > 0
        ax.plot(tpr[ok], 1 / fpr[ok], label=f"{label} (AUC {r['auc']:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background rejection 1/ε_B")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
