"""Pretraining and fine-tuning with ``transformers.Trainer`` (``pretrain`` / ``finetune``).

Arguments come as three dataclasses parsed by ``HfArgumentParser`` from a YAML or JSON file
(``training/*.yaml``) and/or command-line flags: ``ModelArguments`` (the encoder's size, or a
pretrained model to start from), ``DataArguments`` (tokenizer, data, masking, labels) and
``transformers.TrainingArguments`` (steps, batch size, learning rate, checkpoints,
``deepspeed``, ...). Data is either a tokenized dataset directory (``tokenize`` output,
Parquet or Arrow) or HDF5 files tokenized on the fly (``DataArguments.on_the_fly``).
Tokenizer, dataset and model fingerprints are checked before training starts.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ModelArguments:
    """The encoder (ignored when starting from ``model_name_or_path``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "pretrained model directory or Hub id"})
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    use_level_embeddings: bool = True
    object_pooling: str | None = field(
        default=None,
        metadata={
            "help": "hierarchical model (seed 004): pool each object's sub-tokens with an inner transformer, "
            "'mean' or 'attention' (default: the flat model)"
        },
    )
    inner_layers: int = field(default=1, metadata={"help": "layers of the inner per-object transformer"})
    sub_objects: list[str] = field(
        default_factory=list,
        metadata={
            "help": "constituent-enriched model (seed 004): sub-object collections read next to the tokens, "
            "e.g. jets_constituents tracks_hits (data without them: objects only)"
        },
    )
    sub_object_layers: int = field(default=1, metadata={"help": "layers of the sub-object transformer"})
    token_embedding: str = field(
        default="code",
        metadata={
            "help": "object tokens embedded by 'code' (a learned map of the tokenizer's code vector; default), "
            "'id' (BERT's free vector per id, which lets a classifier memorise small training sets) or 'id+code'"
        },
    )
    pair_bias: bool = field(
        default=False,
        metadata={
            "help": "physics-aware attention (ParT): a per-head bias from the pair features (ln ΔR, ln kT, ln z, "
            "ln m²) of objects decoded from their tokens inside the model"
        },
    )
    kinematics_embedding: bool = field(
        default=False,
        metadata={
            "help": "add every object's kinematics (ln pT, eta, cos/sin phi, ln(1+m), px, py, pz, E), decoded from "
            "its tokens, to its input embedding (masked objects get none)"
        },
    )
    mlm_code_logits: bool = field(
        default=False,
        metadata={
            "help": "pretraining: score every candidate code of a masked token also by a smooth function of its "
            "code vector, which every masked token of its block trains (needs token_embedding code)"
        },
    )
    mass_readout: bool = field(
        default=False,
        metadata={
            "help": "fine-tuning: give the classifier the invariant masses of the event's object types and type "
            "pairs, decoded from the tokens (e.g. m(e + mu) = m_4l)"
        },
    )
    mass_readout_pairs: int = field(
        default=0,
        metadata={
            "help": "fine-tuning, with --mass_readout: also the masses of every pair of the K leading objects of "
            "each type (the Z candidates of 4e and 4mu events); 0: none"
        },
    )
    mass_readout_init: str = field(
        default="normal",
        metadata={
            "help": "fine-tuning, with --mass_readout: how the mass tables start, 'normal' (independent random "
            "rows per bin) or 'fourier' (a smooth multi-scale sin/cos basis of ln m)"
        },
    )
    classifier_pooling: str = field(
        default="cls",
        metadata={
            "help": "fine-tuning: what the head reads, 'cls' (the [CLS] state) or 'mean' (the mean final state of "
            "the event's tokens, which masked-object pretraining trains)"
        },
    )
    classifier_dropout: float | None = field(
        default=None,
        metadata={"help": "fine-tuning: dropout of the head's hidden layer (default: hidden_dropout_prob)"},
    )
    classifier_hidden_size: int | None = field(
        default=None, metadata={"help": "fine-tuning: width of the head's hidden layer (default: hidden_size)"}
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "fine-tuning: train only the head"})
    backbone_learning_rate_ratio: float = field(
        default=1.0,
        metadata={
            "help": "fine-tuning: the encoder's learning rate as a fraction of --learning_rate (the head and "
            "the mass readout keep the full rate); below 1 a pretrained backbone adapts more gently"
        },
    )


@dataclass
class DataArguments:
    """Tokenizer, data and task."""

    tokenizer: str = field(default=None, metadata={"help": "EventTokenizer directory or Hub id"})
    train_data: str = field(
        default=None, metadata={"help": "tokenized dataset directory, or HDF5 glob(s) with on_the_fly"}
    )
    eval_data: str | None = field(default=None, metadata={"help": "held-out data (same forms as train_data)"})
    on_the_fly: bool = field(default=False, metadata={"help": "train_data/eval_data are HDF5 files: tokenize as we go"})
    max_length: int | None = field(default=None, metadata={"help": "truncate sequences (on the fly only)"})
    mlm_probability: float = field(default=0.3, metadata={"help": "fraction of objects masked in pretraining"})
    signal: list[str] = field(default_factory=list, metadata={"help": "fine-tuning: processes labelled 1"})
    background: list[str] = field(default_factory=list, metadata={"help": "fine-tuning: processes labelled 0"})
    class_weights: list[float] = field(default_factory=list, metadata={"help": "fine-tuning: loss weight per class"})
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    validation_fraction: float = field(
        default=0.0,
        metadata={
            "help": "fine-tuning without eval_data: hold out this fraction of the labelled training events "
            "as the evaluation set (pair with --eval_strategy steps --load_best_model_at_end True "
            "--metric_for_best_model auc to keep the best model)"
        },
    )


def parse_args(argv: list[str] | None = None):
    """``(ModelArguments, DataArguments, TrainingArguments)`` from a YAML/JSON file and flags.

    ``argv``: ``[config.yaml] [--flag value ...]``; flags override the file.
    """
    import yaml
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    argv = list(argv or [])
    base: dict = {}
    if argv and not argv[0].startswith("-"):
        path = Path(argv.pop(0))
        text = path.read_text()
        base = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(base, dict):
            raise ValueError(f"{path}: expected a mapping of argument names to values")
    # the file's values become flags placed before the command line's, so the command line wins
    file_flags: list[str] = []
    for k, v in base.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            if v:
                file_flags += [f"--{k}", *map(str, v)]
        else:
            file_flags += [f"--{k}", json.dumps(v) if isinstance(v, dict) else str(v)]
    return parser.parse_args_into_dataclasses(args=file_flags + argv)


def _require_data(data_args: DataArguments) -> None:
    missing = [f"--{k}" for k in ("tokenizer", "train_data") if not getattr(data_args, k)]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)} (in the YAML file or on the command line)")


def _label_map(data_args: DataArguments) -> dict[int, int] | None:
    from .. import schema

    if not data_args.signal and not data_args.background:
        return None
    out = {}
    for cls, names in ((1, data_args.signal), (0, data_args.background)):
        for n in names:
            if n not in schema.PROCESS_IDS:
                raise ValueError(f"unknown process {n!r}; known: {list(schema.PROCESS_IDS)}")
            out[schema.PROCESS_IDS[n]] = cls
    return out


def load_training_data(spec: str, tokenizer, data_args: DataArguments, config=None, max_samples: int | None = None):
    """A ``datasets`` dataset from a tokenized directory or (on the fly) from HDF5 files."""
    from ..modeling_hep_event import check_vocabulary
    from ..tokenized import dataset_fingerprint, load_tokenized, on_the_fly_dataset

    wanted = list(getattr(config, "sub_objects", None) or [])
    if data_args.on_the_fly:
        files = spec.split(",")
        have = tokenizer.reader(files, sub_objects="auto").sub_objects if wanted else []
        _warn_missing_sub_objects(wanted, have, spec)
        ds = on_the_fly_dataset(
            tokenizer,
            files,
            max_length=data_args.max_length,
            truncation=data_args.max_length is not None,
            sub_objects=[k for k in wanted if k in have],
        )
        return ds.shuffle(seed=0, buffer_size=10_000).take(max_samples) if max_samples else ds
    info = dataset_fingerprint(spec)
    if config is not None:
        check_vocabulary(config, dataset_info=info)
    _warn_missing_sub_objects(wanted, info.get("sub_objects") or [], spec)
    ds = load_tokenized(spec, tokenizer=tokenizer)
    if max_samples and max_samples < len(ds):
        # a random subset: shards are ordered by file, and files often hold one process each
        ds = ds.shuffle(seed=0).select(range(max_samples))
    return ds


def _warn_missing_sub_objects(wanted: list[str], have: list[str], spec: str) -> None:
    missing = [k for k in wanted if k not in have]
    if missing:
        warnings.warn(
            f"the model reads sub-objects {missing}, but {spec} does not hold them: it trains on objects only there",
            stacklevel=3,
        )


def sub_object_gate_report(model, dataset, collator, n_batches: int = 4, batch_size: int = 64) -> dict[str, float]:
    """Mean gate per sub-collection (``HepEventModel.sub_object_gates``) over the first
    ``n_batches`` batches of ``dataset``: how much constituent/hit information the model uses."""
    import torch

    bert = getattr(model, "bert", model)
    if getattr(bert, "sub_object_encoder", None) is None or dataset is None:
        return {}
    sums: dict[str, list[float]] = {}
    rows = []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for row in dataset:
        rows.append(row)
        if len(rows) == batch_size:
            batch = {k: v.to(device) for k, v in collator(rows).items() if isinstance(v, torch.Tensor)}
            for k, g in bert.sub_object_gates(**batch).items():
                sums.setdefault(k, []).append(g)
            rows = []
            n_batches -= 1
            if n_batches == 0:
                break
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def masked_token_context(
    model,
    dataset,
    count_dataset=None,
    mlm_probability: float = 0.3,
    max_events: int = 2_000,
    count_events: int = 20_000,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """How much of the event around a masked object a ``HepEventForMaskedLM`` uses: its
    masked-token loss against the marginal (unigram) baseline, in nats per masked token.

    The unigram baseline predicts a masked token from the frequency of its id within its id
    block (within every id for ``config.mlm_softmax == "full"``), counted over
    ``count_events`` events of ``count_dataset`` (default ``dataset``; add-½ smoothing). Both
    are evaluated on the masked tokens of ``max_events`` events of ``dataset``, masked by an
    ``EventMLMCollator`` seeded with ``seed`` (every model gets the same masks). Events are a
    random subset (drawn with ``seed``, in dataset order) of a dataset with a length (tokenized
    datasets are ordered by file, often one process per file), else its first events.
    ``context_gain_nats = unigram_nats - model_nats``: 0 means the model has learnt the code
    frequencies and nothing of the event; a model worse than the frequencies is negative.

    Returns ``{"events", "masked_tokens", "model_nats", "unigram_nats", "context_gain_nats",
    "per_level": {level: same keys but events}}``, levels ``"0"``, ``"1"``, … for object
    tokens and ``"context"`` for event-context tokens.
    """
    import torch

    from ..collators import EventMLMCollator, _block_tables

    cfg = model.config
    block_of, starts, sizes, levels = _block_tables(cfg.token_blocks, cfg.vocab_size)
    counts = np.zeros(cfg.vocab_size, dtype=np.float64)
    for row in _sample_rows(count_dataset if count_dataset is not None else dataset, count_events, seed):
        counts += np.bincount(np.asarray(row["input_ids"], dtype=np.int64), minlength=cfg.vocab_size)
    if cfg.mlm_softmax == "block":
        seg_start, seg_size = starts.numpy(), sizes.numpy()
        seg_total = np.array([counts[a : a + n].sum() for a, n in zip(seg_start, seg_size, strict=True)])
    collator = EventMLMCollator.from_config(cfg, mlm_probability=mlm_probability, seed=seed)
    device = next(model.parameters()).device
    model_lp, uni_lp, level_of = [], [], []

    def score(rows: list[dict]) -> None:
        batch = {k: v.to(device) for k, v in collator(rows).items() if isinstance(v, torch.Tensor)}
        labels = batch.pop("labels")
        model_lp.append(model.masked_token_log_probs(labels=labels, **batch).cpu().numpy())
        lab = labels[labels != -100].cpu()
        blk = block_of[lab].numpy()
        c = counts[lab.numpy()] + 0.5
        if cfg.mlm_softmax == "block":
            uni_lp.append(np.log(c / (seg_total[blk] + 0.5 * seg_size[blk])))
        else:
            uni_lp.append(np.log(c / (counts.sum() + 0.5 * cfg.vocab_size)))
        level_of.append(levels[blk].numpy())

    was_training = model.training
    model.eval()
    rows, seen = [], 0
    for row in _sample_rows(dataset, max_events, seed):
        rows.append(row)
        seen += 1
        if len(rows) == batch_size:
            score(rows)
            rows = []
    if rows:
        score(rows)
    model.train(was_training)
    m, u, lv = (np.concatenate(x) if x else np.zeros(0) for x in (model_lp, uni_lp, level_of))

    def summary(sel) -> dict:
        n = int(sel.sum())
        mn, un = (float(-m[sel].mean()), float(-u[sel].mean())) if n else (float("nan"), float("nan"))
        return {"masked_tokens": n, "model_nats": mn, "unigram_nats": un, "context_gain_nats": un - mn}

    out = {"events": seen, **summary(np.ones(len(m), dtype=bool))}
    out["per_level"] = {("context" if k < 0 else str(int(k))): summary(lv == k) for k in sorted(set(lv.tolist()))}
    return out


def _sample_rows(dataset, n: int, seed: int):
    """``n`` rows of ``dataset``: a random subset, in dataset order, of one with a length (a
    ``datasets.Dataset`` or a list); the first ``n`` of an iterable one."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        idx = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n])
        return dataset.select(idx) if hasattr(dataset, "select") else [dataset[int(i)] for i in idx]
    return itertools.islice(dataset, n)


def _trainer_args(training_args, **changes):
    """A copy of ``training_args`` for our Trainers (the caller's object is left as given)."""
    import copy

    args = copy.copy(training_args)
    args.remove_unused_columns = False  # the collators read the raw columns
    for k, v in changes.items():
        setattr(args, k, v)
    return args


def _resume_arg(training_args):
    r = training_args.resume_from_checkpoint
    if r in (None, "", "False", "false"):
        return None
    if r in (True, "True", "true", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
        return last  # None: nothing to resume, start fresh
    return r


def _encoder_kwargs(model_args: ModelArguments) -> dict:
    return {
        "hidden_size": model_args.hidden_size,
        "num_hidden_layers": model_args.num_hidden_layers,
        "num_attention_heads": model_args.num_attention_heads,
        "intermediate_size": model_args.intermediate_size,
        "max_position_embeddings": model_args.max_position_embeddings,
        "hidden_dropout_prob": model_args.hidden_dropout_prob,
        "attention_probs_dropout_prob": model_args.attention_probs_dropout_prob,
        "use_level_embeddings": model_args.use_level_embeddings,
        "object_pooling": model_args.object_pooling or None,
        "inner_layers": model_args.inner_layers,
        "sub_objects": list(model_args.sub_objects) or None,
        "sub_object_layers": model_args.sub_object_layers,
        "token_embedding": model_args.token_embedding,
        "pair_bias": model_args.pair_bias,
        "kinematics_embedding": model_args.kinematics_embedding,
        "mlm_code_logits": model_args.mlm_code_logits,
    }


def loss_history():
    """A ``transformers.TrainerCallback`` that keeps ``(step, loss)`` of every logging step in
    its ``history`` list (for reports and tests); pass it in ``callbacks=``."""
    from transformers import TrainerCallback

    class LossHistory(TrainerCallback):
        def __init__(self):
            self.history: list[tuple[int, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.history.append((int(state.global_step), float(logs["loss"])))

    return LossHistory()


def pretrain(model_args: ModelArguments, data_args: DataArguments, training_args, callbacks=None) -> dict:
    """Masked-token pretraining of ``HepEventForMaskedLM`` with whole-object masking.

    Saves the model (and a copy of the tokenizer in ``output_dir/tokenizer``) to
    ``training_args.output_dir``; returns train (and eval) metrics and, from the main process,
    ``masked_token_context`` (the masked-token loss against the code frequencies, on the eval
    set or else the training set). ``callbacks``: extra ``transformers.TrainerCallback``
    objects (e.g. ``loss_history()``).
    """
    import torch
    from transformers import Trainer
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ..collators import EventMLMCollator
    from ..configuration_hep_event import HepEventConfig
    from ..event_tokenizer import EventTokenizer
    from ..modeling_hep_event import HepEventForMaskedLM, check_vocabulary

    _require_data(data_args)
    torch.manual_seed(training_args.seed)
    tok = EventTokenizer.from_pretrained(data_args.tokenizer)
    if model_args.model_name_or_path:
        model = HepEventForMaskedLM.from_pretrained(model_args.model_name_or_path)
    else:
        model = HepEventForMaskedLM(HepEventConfig.from_tokenizer(tok, **_encoder_kwargs(model_args)))
        model.set_tokenizer_weights(tok)
    check_vocabulary(model.config, tok)
    train = load_training_data(data_args.train_data, tok, data_args, model.config, data_args.max_train_samples)
    evald = (
        load_training_data(data_args.eval_data, tok, data_args, model.config, data_args.max_eval_samples)
        if data_args.eval_data
        else None
    )
    collator = EventMLMCollator.from_config(model.config, mlm_probability=data_args.mlm_probability)
    trainer = Trainer(
        model=model,
        # evaluation needs the loss only: gathering (masked tokens × vocabulary) logits would not fit
        args=_trainer_args(training_args, prediction_loss_only=True),
        train_dataset=train,
        eval_dataset=evald,
        data_collator=collator,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=_resume_arg(training_args))
    trainer.save_model()
    metrics = dict(result.metrics)
    if evald is not None:
        metrics.update(trainer.evaluate())
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    metrics["world_size"] = training_args.world_size
    gates = sub_object_gate_report(model, evald if evald is not None else train, collator)
    if gates:
        metrics["sub_object_gates"] = gates
    if trainer.is_world_process_zero():
        # the masked-token loss means little alone: against the code frequencies it says
        # whether the backbone has learnt anything of the event around a masked object
        if is_deepspeed_zero3_enabled():  # the weights are partitioned over the processes
            warnings.warn(
                "DeepSpeed ZeRO-3: masked_token_context is not computed here; load the saved model and call "
                "hep_event_models.training.models.masked_token_context(model, dataset)",
                stacklevel=2,
            )
        else:
            metrics["masked_token_context"] = masked_token_context(
                model,
                evald if evald is not None else train,
                count_dataset=train,
                mlm_probability=data_args.mlm_probability,
                seed=training_args.seed,
            )
        tok.save_pretrained(Path(training_args.output_dir) / "tokenizer")
        _write_json(Path(training_args.output_dir) / "pretrain_metrics.json", metrics)
        _write_card(trainer.model, metrics, data_args, training_args.output_dir)
    return metrics


def finetune(model_args: ModelArguments, data_args: DataArguments, training_args, callbacks=None) -> dict:
    """Train ``HepEventForSequenceClassification``: from scratch, from a pretrained backbone
    (``model_name_or_path``), or with the backbone frozen (``freeze_backbone``).
    ``callbacks``: extra ``transformers.TrainerCallback`` objects.

    Classes: ``signal``/``background`` process lists give a binary task; without them the
    process ids are the classes. Returns train (and eval) metrics, with ROC AUC and accuracy.
    """
    import datasets
    import torch

    from .. import schema
    from ..collators import EventClassificationCollator
    from ..configuration_hep_event import HepEventConfig
    from ..event_tokenizer import EventTokenizer
    from ..modeling_hep_event import HepEventForSequenceClassification, check_vocabulary

    _require_data(data_args)
    torch.manual_seed(training_args.seed)
    tok = EventTokenizer.from_pretrained(data_args.tokenizer)
    label_map = _label_map(data_args)
    num_labels = 2 if label_map else len(schema.PROCESS_IDS)
    names = ["background", "signal"] if label_map else list(schema.PROCESS_IDS)
    extra = {
        "num_labels": num_labels,
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }
    if data_args.class_weights:
        if len(data_args.class_weights) != num_labels:
            raise ValueError(f"class_weights needs {num_labels} values, got {data_args.class_weights}")
        extra["class_weights"] = list(data_args.class_weights)
    if model_args.mass_readout:
        extra["mass_readout"] = True
        extra["mass_readout_pairs"] = model_args.mass_readout_pairs
        extra["mass_readout_init"] = model_args.mass_readout_init
    extra["classifier_pooling"] = model_args.classifier_pooling
    for key in ("classifier_dropout", "classifier_hidden_size"):  # also over a pretrained backbone
        if getattr(model_args, key) is not None:
            extra[key] = getattr(model_args, key)
    if model_args.model_name_or_path:
        if model_args.mass_readout:  # a head on a backbone pretrained without kinematics: give it the spec
            base = HepEventConfig.from_pretrained(model_args.model_name_or_path)
            if not base.kinematics:
                extra["kinematics"] = HepEventConfig.from_tokenizer(tok, mass_readout=True).kinematics
        model = HepEventForSequenceClassification.from_pretrained(model_args.model_name_or_path, **extra)
    else:
        cfg = HepEventConfig.from_tokenizer(tok, **_encoder_kwargs(model_args), **extra)
        model = HepEventForSequenceClassification(cfg)
    model.set_tokenizer_weights(tok)
    check_vocabulary(model.config, tok)
    if model_args.freeze_backbone:
        for p in model.bert.parameters():
            p.requires_grad = False

    def prepare(spec, n):
        ds = load_training_data(spec, tok, data_args, model.config, n)
        if label_map:
            keep = set(label_map)
            ds = ds.filter(lambda r: r["label"] in keep)
        return ds

    train = prepare(data_args.train_data, data_args.max_train_samples)
    evald = prepare(data_args.eval_data, data_args.max_eval_samples) if data_args.eval_data else None
    if data_args.validation_fraction:
        if evald is not None:
            raise ValueError("give eval_data or validation_fraction, not both")
        if not 0 < data_args.validation_fraction < 1 or not isinstance(train, datasets.Dataset):
            raise ValueError(
                f"validation_fraction must be in (0, 1) and needs a tokenized (not on-the-fly) training set; "
                f"got {data_args.validation_fraction} for {data_args.train_data}"
            )
        train, evald = _stratified_split(train, data_args.validation_fraction, training_args.seed)
    collator = EventClassificationCollator(label_map, sub_objects=model.config.sub_objects or ())
    ratio = float(model_args.backbone_learning_rate_ratio)
    if not ratio > 0:
        raise ValueError(f"backbone_learning_rate_ratio must be > 0, got {ratio} (use --freeze_backbone True instead)")
    if ratio != 1.0 and training_args.deepspeed:
        warnings.warn(
            "backbone_learning_rate_ratio applies to the Trainer's optimizer; a DeepSpeed config with its own "
            "optimizer ignores it",
            stacklevel=2,
        )
    trainer = _classification_trainer(
        ratio,
        model=model,
        args=_trainer_args(training_args),
        train_dataset=train,
        eval_dataset=evald,
        data_collator=collator,
        compute_metrics=classification_metrics,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=_resume_arg(training_args))
    trainer.save_model()
    metrics = dict(result.metrics)
    if evald is not None:
        metrics.update(trainer.evaluate())
    metrics["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    metrics["world_size"] = training_args.world_size
    gates = sub_object_gate_report(model, evald if evald is not None else train, collator)
    if gates:
        metrics["sub_object_gates"] = gates
    if isinstance(train, datasets.Dataset):  # a streamed (on-the-fly) dataset is not counted
        ids, counts = np.unique(np.asarray(train["label"]), return_counts=True)
        names_of = {v: k for k, v in schema.PROCESS_IDS.items()}
        metrics["train_events_per_process"] = {
            names_of.get(int(i), str(int(i))): int(c) for i, c in zip(ids, counts, strict=True)
        }
    if trainer.is_world_process_zero():
        tok.save_pretrained(Path(training_args.output_dir) / "tokenizer")
        _write_json(Path(training_args.output_dir) / "finetune_metrics.json", metrics)
        _write_card(trainer.model, metrics, data_args, training_args.output_dir)
    return metrics


def _stratified_split(ds, fraction: float, seed: int):
    """``(train, validation)``: ``fraction`` of each label's rows (at least one of every label
    with two or more rows) held out, so the validation AUC always exists."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(ds["label"])
    val = []
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        n = max(1, round(fraction * len(rows))) if len(rows) > 1 else 0
        val.append(rng.permutation(rows)[:n])
    val = np.sort(np.concatenate(val))
    keep = np.setdiff1d(np.arange(len(labels)), val)
    return ds.select(rng.permutation(keep)), ds.select(val)


def classification_metrics(eval_pred) -> dict:
    """Accuracy and ROC AUC (binary: signal score; multi-class: one-vs-rest macro)."""
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    logits, labels = eval_pred
    prob = softmax(np.asarray(logits), axis=-1)
    labels = np.asarray(labels)
    out = {"accuracy": float((prob.argmax(-1) == labels).mean())}
    present = np.unique(labels)
    if len(present) < 2:  # one class only in this evaluation set: no AUC
        return out
    if prob.shape[1] == 2:
        out["auc"] = float(roc_auc_score(labels, prob[:, 1]))
    else:
        p = prob[:, present] / prob[:, present].sum(1, keepdims=True)
        out["auc"] = float(roc_auc_score(labels, p, multi_class="ovr", labels=present))
    return out


def _classification_trainer(backbone_lr_ratio: float = 1.0, **kwargs):
    """A ``transformers.Trainer`` whose optimizer gives the encoder (``model.bert``) the
    learning rate × ``backbone_lr_ratio`` and every other parameter (head, mass readout) the
    full rate; the scheduler scales both alike."""
    from transformers import Trainer

    class ClassificationTrainer(Trainer):
        def create_optimizer(self, model=None):
            opt = super().create_optimizer(model)
            if backbone_lr_ratio == 1.0 or getattr(self, "_backbone_lr_done", False):
                return opt
            inner = getattr(opt, "optimizer", opt)  # accelerate's wrapper, when there is one
            backbone = {id(p) for p in (model or self.model).bert.parameters()}
            groups = []
            for g in inner.param_groups:
                rest = {k: v for k, v in g.items() if k != "params"}
                for params, ratio in (
                    ([p for p in g["params"] if id(p) not in backbone], 1.0),
                    ([p for p in g["params"] if id(p) in backbone], backbone_lr_ratio),
                ):
                    if params:
                        groups.append({**rest, "params": params, "lr": g["lr"] * ratio})
            inner.param_groups.clear()
            for g in groups:
                inner.add_param_group(g)
            self._backbone_lr_done = True
            return opt

    return ClassificationTrainer(**kwargs)


def _write_card(model, metrics: dict, data_args: DataArguments, out_dir) -> None:
    from ..cards import event_model_card

    event_model_card(model, training={**metrics, "data": data_args.train_data}).save(Path(out_dir) / "README.md")


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    tmp.replace(path)
