"""HepEvent models: Auto classes, whole-object masking, fingerprints, Trainer runs, BERT interop."""

import json

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

import hep_event_models  # noqa: F401  (registers the Auto classes)
from conftest import reload_identical
from hep_event_models import schema
from hep_event_models.cli import main
from hep_event_models.collators import EventClassificationCollator, EventMLMCollator
from hep_event_models.configuration_hep_event import HepEventConfig
from hep_event_models.modeling_hep_event import (
    HepEventForMaskedLM,
    HepEventForSequenceClassification,
    HepEventModel,
    check_vocabulary,
)
from hep_event_models.tokenized import load_tokenized

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def cpu_args(output_dir, **kwargs) -> TrainingArguments:
    """``TrainingArguments`` of these tests' small runs: CPU, no reporting, no checkpoints
    unless a test asks for them."""
    return TrainingArguments(
        output_dir=str(output_dir), **{"use_cpu": True, "report_to": "none", "save_strategy": "no", **kwargs}
    )


def _rows(token_data, n=32):
    ds = load_tokenized(token_data["dir"])
    return [ds[i] for i in range(0, 3 * n, 3)]


def test_auto_classes_save_load_identical(event_tokenizer, tmp_path):
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, num_labels=2)
    assert cfg.vocab_size == event_tokenizer.vocab_size and cfg.type_vocab_size == schema.TYPE_VOCAB_SIZE
    assert cfg.layout_fingerprint == event_tokenizer.layout_fingerprint
    torch.manual_seed(0)
    ids = torch.randint(schema.NUM_RESERVED_IDS, cfg.vocab_size, (3, 20))
    ids[:, 0] = schema.CLS_ID
    tt = torch.randint(0, 12, (3, 20))
    am = torch.ones_like(ids)
    am[2, 15:] = 0
    for cls, auto in (
        (HepEventForMaskedLM, AutoModelForMaskedLM),
        (HepEventForSequenceClassification, AutoModelForSequenceClassification),
        (HepEventModel, AutoModel),
    ):
        m = cls(cfg).eval()
        m.save_pretrained(tmp_path / cls.__name__)
        loaded = auto.from_pretrained(tmp_path / cls.__name__).eval()
        assert type(loaded) is cls
        with torch.no_grad():
            a = m(input_ids=ids, token_type_ids=tt, attention_mask=am)
            b = loaded(input_ids=ids, token_type_ids=tt, attention_mask=am)
        key = "last_hidden_state" if cls is HepEventModel else "logits"
        torch.testing.assert_close(a[key], b[key])
    saved = json.loads((tmp_path / "HepEventForSequenceClassification" / "config.json").read_text())
    assert saved["model_type"] == "hep_event" and "AutoModelForSequenceClassification" in saved["auto_map"]
    assert (tmp_path / "HepEventForSequenceClassification" / "modeling_hep_event.py").exists()
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "HepEventModel"), HepEventConfig)
    # the level embedding sees quantizer levels: object tokens 1..Q, special/context 0
    lv = HepEventModel(cfg).embeddings.token_level
    jets = event_tokenizer.layout.object_blocks("jets")
    assert lv[: schema.NUM_RESERVED_IDS].eq(0).all() and lv[jets[2].start] == 3 and lv[jets[0].stop - 1] == 1


def test_whole_object_masking(event_tokenizer, token_data):
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    rows = _rows(token_data, 64)
    coll = EventMLMCollator.from_config(cfg, mlm_probability=0.4, seed=1)
    blocks = torch.tensor(cfg.token_blocks)
    n_mask = n_rand = n_keep = 0
    for _ in range(5):
        batch = coll(rows)
        ids, labels, orig = batch["input_ids"], batch["labels"], coll_pad(rows)
        masked = labels != -100
        assert (masked.sum(1) > 0).all()
        # never special tokens or padding
        assert (orig[masked] >= schema.NUM_RESERVED_IDS).all()
        assert (labels[masked] == orig[masked]).all() and (ids[~masked] == orig[~masked]).all()
        for i in range(len(rows)):
            seq = orig[i].tolist()
            for p in range(len(seq)):
                b = _block(blocks, seq[p])
                if b is None or blocks[b, 3] != 0:
                    continue
                q = sum(1 for r in range(p, len(seq)) if _same_object(blocks, seq, p, r))
                # every level of an object is masked together, or none
                assert len(set(masked[i, p : p + q].tolist())) == 1
        sel = masked
        n_mask += int((ids[sel] == schema.MASK_ID).sum())
        same = ids[sel] == orig[sel]
        n_keep += int(same.sum())
        rnd = sel & (ids != schema.MASK_ID) & (ids != orig)
        n_rand += int(rnd.sum())
        # random replacements stay in the original token's (object type, level) block
        for a, b in zip(ids[rnd].tolist(), orig[rnd].tolist(), strict=True):
            assert _block(blocks, a) == _block(blocks, b)
    total = n_mask + n_rand + n_keep
    assert 0.72 < n_mask / total < 0.88 and 0.04 < n_rand / total < 0.16


def coll_pad(rows):
    from hep_event_models.collators import pad_examples

    return pad_examples(rows)["input_ids"]


def _block(blocks, tok_id):
    hit = ((blocks[:, 0] <= tok_id) & (tok_id < blocks[:, 0] + blocks[:, 1])).nonzero()
    return int(hit[0, 0]) if len(hit) else None


def _same_object(blocks, seq, start, r):
    b0, b = _block(blocks, seq[start]), _block(blocks, seq[r])
    return b is not None and blocks[b, 2] == blocks[b0, 2] and blocks[b, 3] == r - start


def test_vocabulary_and_fingerprint_mismatch_raise(event_tokenizer, token_data, tmp_path):
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    check_vocabulary(cfg, event_tokenizer)  # matching: no error
    bad = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    bad.vocab_size += 10
    with pytest.raises(ValueError, match="vocabulary"):
        check_vocabulary(bad, event_tokenizer)
    other = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    other.layout_fingerprint = "f" * 16
    with pytest.raises(ValueError, match="layout"):
        check_vocabulary(other, event_tokenizer)
    with pytest.raises(ValueError, match="layout"):
        check_vocabulary(other, dataset_info={"layout_fingerprint": event_tokenizer.layout_fingerprint})
    other2 = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    other2.tokenizer_fingerprint = "0" * 16
    with pytest.raises(ValueError, match="not the one the model was built for"):
        check_vocabulary(other2, event_tokenizer)
    # pretraining a model built for another tokenizer fails before training
    HepEventForMaskedLM(other).save_pretrained(tmp_path / "m")
    from hep_event_models.training.models import DataArguments, ModelArguments, pretrain

    with pytest.raises(ValueError, match="layout"):
        pretrain(
            ModelArguments(model_name_or_path=str(tmp_path / "m")),
            DataArguments(tokenizer=_tok_dir(event_tokenizer, tmp_path), train_data=token_data["dir"]),
            cpu_args(tmp_path / "o", max_steps=1),
        )


def _tok_dir(tok, tmp_path):
    d = tmp_path / "tok"
    if not (d / "tokenizer_config.json").exists():
        tok.save_pretrained(d)
    return str(d)


def test_short_pretraining_lowers_the_loss_and_resumes(event_tokenizer, token_data, tmp_path):
    from hep_event_models.training.models import DataArguments, ModelArguments, pretrain

    out = tmp_path / "pre"
    args = cpu_args(
        str(out),
        max_steps=160,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        warmup_steps=10,
        logging_steps=20,
        save_strategy="steps",
        save_steps=80,
        seed=0,
        dataloader_num_workers=0,
    )
    data = DataArguments(
        tokenizer=_tok_dir(event_tokenizer, tmp_path),
        train_data=token_data["dir"],
        eval_data=token_data["dir"],
        max_eval_samples=256,
    )
    model = ModelArguments(**SMALL)
    before = _mlm_eval_loss(event_tokenizer, token_data, None)
    metrics = pretrain(model, data, args)
    after = _mlm_eval_loss(event_tokenizer, token_data, out)
    # better than an untrained model, and near the code frequencies per block (160 small steps
    # reach that level: 5.19 against 5.17 at the time of writing; using the context to beat
    # it takes longer runs)
    unigram = _mlm_eval_loss(event_tokenizer, token_data, None, unigram=True)
    assert after < before - 0.15 and after < unigram + 0.05, (before, after, unigram)
    assert metrics["eval_loss"] < before
    # the same comparison, reported by pretrain on the eval events (256 of them)
    ctx = metrics["masked_token_context"]
    assert ctx["events"] == 256 and ctx["masked_tokens"] > 1000
    assert ctx["context_gain_nats"] == pytest.approx(ctx["unigram_nats"] - ctx["model_nats"])
    assert abs(ctx["model_nats"] - after) < 0.3 and abs(ctx["unigram_nats"] - unigram) < 0.3, (ctx, after, unigram)
    assert set(ctx["per_level"]) >= {"0", "1"}
    assert sum(v["masked_tokens"] for v in ctx["per_level"].values()) == ctx["masked_tokens"]
    assert "masked-token context gain" in (out / "README.md").read_text()  # the model card says it
    assert (out / "model.safetensors").exists() and (out / "tokenizer" / "tokenizer_config.json").exists()
    assert isinstance(AutoModelForMaskedLM.from_pretrained(out), HepEventForMaskedLM)
    # resume from the middle checkpoint: continues at step 80 → 160 without error
    args.resume_from_checkpoint = str(out / "checkpoint-80")
    pretrain(model, data, args)
    state = json.loads((out / "checkpoint-160" / "trainer_state.json").read_text())
    assert state["global_step"] == 160 and state["log_history"][0]["step"] == 20


def test_masked_token_context_matches_the_loss_and_hand_counted_frequencies(event_tokenizer, token_data):
    """``masked_token_context`` on one fixed batch: the model's nats are the forward loss of
    that batch, the unigram's the hand-counted code frequencies per block."""
    from hep_event_models.training.models import masked_token_context

    torch.manual_seed(0)
    model = HepEventForMaskedLM(HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)).eval()
    rows = _rows(token_data, 128)
    ctx = masked_token_context(
        model, rows, count_dataset=load_tokenized(token_data["dir"]), seed=5, max_events=128, batch_size=128
    )
    batch = EventMLMCollator.from_config(model.config, mlm_probability=0.3, seed=5)(rows)
    with torch.no_grad():
        loss = float(model(**batch).loss)
    assert ctx["events"] == 128 and ctx["masked_tokens"] == int((batch["labels"] != -100).sum())
    assert ctx["model_nats"] == pytest.approx(loss, abs=1e-4)
    hand = _mlm_eval_loss(event_tokenizer, token_data, None, unigram=True)  # same rows, seed and masks
    assert ctx["unigram_nats"] == pytest.approx(hand, abs=0.01)  # add-½ smoothing apart
    assert ctx["model_nats"] > ctx["unigram_nats"]  # an untrained model knows not even the frequencies
    for level in ctx["per_level"].values():
        assert level["context_gain_nats"] == pytest.approx(level["unigram_nats"] - level["model_nats"])
    # BERT's full softmax: the model's loss and the frequencies are both over every id
    full = HepEventForMaskedLM(HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, mlm_softmax="full")).eval()
    ctx_full = masked_token_context(full, rows, seed=5, max_events=128, batch_size=128)
    with torch.no_grad():
        assert ctx_full["model_nats"] == pytest.approx(float(full(**batch).loss), abs=1e-4)
    assert ctx_full["unigram_nats"] > ctx["unigram_nats"]  # every id competes, not just the block's


def _mlm_eval_loss(tok, token_data, model_dir, unigram=False):
    """Masked-token loss (softmax within each token's block) of a fixed masked batch; with
    ``unigram``, the same loss for code frequencies per block counted over the whole dataset."""
    torch.manual_seed(0)
    cfg = HepEventConfig.from_tokenizer(tok, **SMALL)
    m = HepEventForMaskedLM.from_pretrained(model_dir) if model_dir else HepEventForMaskedLM(cfg)
    m.eval()
    coll = EventMLMCollator.from_config(cfg, mlm_probability=0.3, seed=5)
    batch = coll(_rows(token_data, 128))
    if unigram:
        ids = np.concatenate([np.asarray(r) for r in load_tokenized(token_data["dir"])["input_ids"]])
        freq = np.bincount(ids, minlength=cfg.vocab_size).astype(float)
        labels = batch["labels"][batch["labels"] != -100].numpy()
        block = [next(b for b in cfg.token_blocks if b[0] <= lab < b[0] + b[1]) for lab in labels]
        p = [freq[lab] / freq[b[0] : b[0] + b[1]].sum() for lab, b in zip(labels, block, strict=True)]
        return float(-np.mean(np.log(p)))
    with torch.no_grad():
        return float(m(**batch).loss)


def test_finetune_binary_task_from_scratch_and_frozen(event_tokenizer, token_data, tmp_path):
    from hep_event_models.training.models import DataArguments, ModelArguments, finetune

    tokd = _tok_dir(event_tokenizer, tmp_path)
    data = DataArguments(
        tokenizer=tokd,
        train_data=token_data["dir"],
        eval_data=token_data["dir"],
        signal=["hzz4l"],
        background=["dy"],
        max_eval_samples=2000,
    )
    args = cpu_args(
        str(tmp_path / "ft"),
        max_steps=80,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        seed=0,
        logging_steps=20,
    )
    m = finetune(ModelArguments(**SMALL), data, args)
    assert m["eval_auc"] > 0.8, json.dumps(m)  # hzz4l vs dy: four leptons vs two
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert clf.config.id2label == {0: "background", 1: "signal"}
    # frozen backbone: only the head trains
    args.output_dir = str(tmp_path / "ft_frozen")
    args.max_steps = 5
    frozen = finetune(
        ModelArguments(model_name_or_path=str(tmp_path / "ft"), freeze_backbone=True, classifier_dropout=0.25),
        data,
        args,
    )
    head = sum(p.numel() for p in clf.classifier.parameters())
    assert frozen["trainable_parameters"] == head
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft_frozen").classifier[2].p == 0.25
    # the head's width and dropout from the command line, also from scratch
    args.output_dir = str(tmp_path / "ft_narrow")
    finetune(ModelArguments(**SMALL, classifier_hidden_size=8, classifier_dropout=0.5), data, args)
    narrow = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft_narrow").classifier
    assert narrow[0].out_features == 8 and narrow[3].in_features == 8 and narrow[2].p == 0.5


def test_classification_collator_maps_labels(token_data):
    rows = _rows(token_data, 8)
    labels = {r["label"] for r in rows}
    coll = EventClassificationCollator(
        {schema.PROCESS_IDS["hzz4l"]: 1, schema.PROCESS_IDS["zz4l"]: 0, schema.PROCESS_IDS["dy"]: 0}
    )
    b = coll(rows)
    assert b["labels"].tolist() == [int(r["label"] == schema.PROCESS_IDS["hzz4l"]) for r in rows]
    assert b["input_ids"].shape == b["attention_mask"].shape
    with pytest.raises(ValueError, match="not in the label map"):
        EventClassificationCollator({99: 1})(rows)
    assert labels


def test_stock_bert_trains_on_the_tokenized_dataset(event_tokenizer, token_data, tmp_path):
    """Users are not locked in: transformers' own BERT and collator work on our datasets."""
    tok = event_tokenizer
    ds = load_tokenized(token_data["dir"]).select(range(512))
    ds = ds.remove_columns(["event_index", "source_file", "label"])
    cfg = BertConfig(vocab_size=tok.vocab_size, type_vocab_size=schema.TYPE_VOCAB_SIZE, **SMALL)
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg)
    trainer = Trainer(
        model=model,
        args=cpu_args(
            str(tmp_path / "bert"),
            max_steps=20,
            per_device_train_batch_size=16,
            logging_steps=5,
            learning_rate=2e-3,
        ),
        train_dataset=ds,
        data_collator=DataCollatorForLanguageModeling(tokenizer=tok, mlm_probability=0.3),
    )
    out = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert np.isfinite(out.training_loss) and losses[-1] < losses[0]


def test_cli_pretrain_with_yaml_and_overrides(event_tokenizer, token_data, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "pre.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                **SMALL,
                "output_dir": str(tmp_path / "wrong"),
                "max_steps": 1000,
                "use_cpu": True,
                "report_to": "none",
                "per_device_train_batch_size": 8,
                "save_strategy": "no",
                "mlm_probability": 0.25,
            }
        )
    )
    out = tmp_path / "cli_pre"
    rc = main(
        [
            "pretrain",
            str(cfg),
            "--tokenizer",
            _tok_dir(event_tokenizer, tmp_path),
            "--train_data",
            token_data["dir"],
            "--output_dir",
            str(out),
            "--max_steps",
            "3",
        ]
    )
    assert rc == 0
    state = json.loads((out / "pretrain_metrics.json").read_text())
    assert state["train_loss"] > 0
    assert "pretrained model written" in capsys.readouterr().out
    assert isinstance(AutoModel.from_pretrained(out), HepEventModel)


def test_evaluate_with_baselines(event_tokenizer, token_data, tmp_path, capsys):
    from hep_event_models.training.models import DataArguments, ModelArguments, finetune

    tokd = _tok_dir(event_tokenizer, tmp_path)
    finetune(
        ModelArguments(**SMALL),
        DataArguments(tokenizer=tokd, train_data=token_data["dir"], signal=["hzz4l"], background=["dy"]),
        cpu_args(
            str(tmp_path / "clf"),
            max_steps=80,
            per_device_train_batch_size=32,
            learning_rate=1e-3,
            seed=0,
        ),
    )
    files = token_data["files"]
    rc = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "clf"),
            "--train-data",
            *files,
            "--test-data",
            *files,
            "--signal",
            "hzz4l",
            "--background",
            "zz4l",
            "dy",
            "--out",
            str(tmp_path / "ev"),
            "--max-train-events",
            "1500",
            "--max-test-events",
            "1000",
            "--quiet",
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for k in ("auc", "accuracy", "rejection_at_50", "gbdt_auc", "counts_auc"):
        assert np.isfinite(m[k]) and m[k] > 0
    assert 0 <= m["auc"] <= 1 and 0 <= m["accuracy"] <= 1
    # bootstrap spread of the test set: at most ~sqrt(1/(12·n_sig) + 1/(12·n_bkg)) ≈ 0.02 here
    # (far less for the GBDT, which separates these backgrounds almost perfectly)
    assert 0.001 < m["auc_std"] < 0.05 and 0 < m["gbdt_auc_std"] < m["auc_std"]
    assert m["per_background"]["all"]["model"]["auc_std"] == m["auc_std"]
    assert m["auc_minus_gbdt"] == pytest.approx(m["auc"] - m["gbdt_auc"]) and m["auc_minus_gbdt_std"] > 0
    # the classifier was trained on hzz4l vs dy: scored here, it separates them as it did in training
    assert m["per_background"]["dy"]["model"]["auc"] > 0.8
    assert m["per_background"]["dy"]["counts"]["auc"] > 0.8  # lepton counts alone separate most of it
    assert m["per_background"]["dy"]["gbdt"]["auc"] > 0.95
    # the GBDT on features decoded from the tokens: the tokens keep what separates dy
    assert m["per_background"]["dy"]["gbdt_decoded"]["auc"] > 0.9 and 0 < m["gbdt_decoded_auc"] <= 1
    assert m["per_background"]["zz4l"]["n_background"] == 1000
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 5000
    assert "AUC" in capsys.readouterr().out
    card = (tmp_path / "clf" / "README.md").read_text()
    assert "model-index" in card and "GBDT on continuous features" in card and event_tokenizer.fingerprint in card
    # the headline selection: four leptons in the Higgs window
    from hep_event_models.evaluation import evaluate_classifier

    w = evaluate_classifier(
        tmp_path / "clf", files, files, "hzz4l", ["zz4l"], tmp_path / "ev2", m4l_window=(115, 135), progress=False
    )
    assert w["n_test_signal"] > 500 and w["per_background"]["zz4l"]["n_background"] > 0
    # seed 003's protocol: baselines trained against dy only (as the model was), tested against both
    g = evaluate_classifier(
        tmp_path / "clf",
        files,
        files,
        "hzz4l",
        ["zz4l", "dy"],
        tmp_path / "ev3",
        train_backgrounds=["dy"],
        max_train_events=1500,
        max_test_events=1000,
        progress=False,
    )
    assert g["train_backgrounds"] == ["dy"] and g["n_train"] == 3000  # hzz4l + dy, no zz4l
    assert g["per_background"]["zz4l"]["n_background"] == 1000
    assert g["per_background"]["dy"]["gbdt"]["auc"] > 0.95


def test_ddp_two_processes_on_cpu(event_tokenizer, token_data, tmp_path):
    """torchrun with 2 CPU processes (gloo): Trainer runs distributed data parallel."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    small = [x for k, v in SMALL.items() for x in (f"--{k}", str(v))]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "hep_event_models.cli",
        "pretrain",
        "--tokenizer",
        _tok_dir(event_tokenizer, tmp_path),
        "--train_data",
        token_data["dir"],
        "--output_dir",
        str(out),
        "--max_steps",
        "3",
        "--use_cpu",
        "True",
        "--ddp_backend",
        "gloo",
        "--per_device_train_batch_size",
        "8",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--dataloader_num_workers",
        "0",
        *small,
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "pretrain_metrics.json").read_text())
    assert m["world_size"] == 2 and np.isfinite(m["train_loss"])
    assert isinstance(AutoModelForMaskedLM.from_pretrained(out), HepEventForMaskedLM)


def test_finetune_on_the_fly_from_hdf5_with_class_weights(event_tokenizer, token_data, tmp_path):
    """Training straight from HDF5 files (tokenized in the data pipeline), weighted classes."""
    from hep_event_models.training.models import DataArguments, ModelArguments, finetune

    data = DataArguments(
        tokenizer=_tok_dir(event_tokenizer, tmp_path),
        train_data=",".join(token_data["files"]),
        on_the_fly=True,
        signal=["hzz4l"],
        background=["dy", "zz4l"],
        class_weights=[1.0, 2.0],
    )
    args = cpu_args(
        str(tmp_path / "otf"),
        max_steps=6,
        per_device_train_batch_size=16,
        logging_steps=2,
        dataloader_num_workers=0,
    )
    m = finetune(ModelArguments(**SMALL), data, args)
    assert m["train_loss"] > 0 and np.isfinite(m["train_loss"])
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "otf")
    assert clf.config.class_weights == [1.0, 2.0]
    with pytest.raises(ValueError, match="class_weights needs 2 values"):
        finetune(ModelArguments(**SMALL), DataArguments(**{**data.__dict__, "class_weights": [1.0]}), args)


def test_pretrain_without_data_arguments_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="missing --tokenizer and --train_data"):
        main(["pretrain", "--output_dir", str(tmp_path / "x"), "--use_cpu", "True", "--report_to", "none"])


def test_mlm_head_on_masked_positions_only_matches_full_logits(event_tokenizer, token_data):
    """With labels the vocabulary projection runs on masked positions only: same loss and logits."""
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, mlm_softmax="full", **SMALL)
    m = HepEventForMaskedLM(cfg).eval()
    batch = EventMLMCollator.from_config(cfg, mlm_probability=0.3, seed=3)(_rows(token_data, 16))
    with torch.no_grad():
        fast = m(**batch)
        full = m(**batch, return_all_logits=True)
        bare = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    sel = batch["labels"] != -100
    assert fast.logits.shape == (int(sel.sum()), cfg.vocab_size)
    assert full.logits.shape == (*batch["input_ids"].shape, cfg.vocab_size) == bare.logits.shape
    torch.testing.assert_close(fast.logits, full.logits[sel])
    torch.testing.assert_close(fast.loss, full.loss)
    assert bare.loss is None and 0 < float(fast.loss) < 2 * np.log(cfg.vocab_size)


def test_block_softmax_mlm_loss_equals_the_softmax_restricted_to_each_labels_block(event_tokenizer, token_data):
    """The default MLM loss: softmax over the true token's (object type, level) id block only."""
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL)
    assert cfg.mlm_softmax == "block"
    torch.manual_seed(0)
    m = HepEventForMaskedLM(cfg).eval()
    batch = EventMLMCollator.from_config(cfg, mlm_probability=0.3, seed=5)(_rows(token_data, 16))
    with torch.no_grad():
        block = m(**batch)
        full = m(**batch, return_all_logits=True).logits
    sel = batch["labels"] != -100
    labels, logits = batch["labels"][sel], full[sel]
    # reference: for each masked token, log-softmax over the ids of its label's block only
    ref, blocks_seen = [], set()
    for lab, row in zip(labels.tolist(), logits, strict=True):
        start, size = next((b[0], b[1]) for b in cfg.token_blocks if b[0] <= lab < b[0] + b[1])
        blocks_seen.add(start)
        ref.append(-torch.log_softmax(row[start : start + size], 0)[lab - start])
    assert block.logits is None and len(blocks_seen) >= 4  # several object types and levels masked
    torch.testing.assert_close(block.loss, torch.stack(ref).mean(), rtol=1e-5, atol=1e-6)
    # an untrained model: near log(block size), well below log(vocab size)
    sizes = [b[1] for b in cfg.token_blocks]
    assert abs(float(block.loss) - np.log(np.mean(sizes))) < 1.0 < np.log(cfg.vocab_size) - float(block.loss)
    # gradients flow to the tied embeddings (the decoder weight) and the bias, for the blocks used
    m.train()
    m(**batch).loss.backward()
    g = m.get_output_embeddings().weight.grad
    assert g is not None and float(g[labels].abs().sum()) > 0
    with pytest.raises(ValueError, match="mlm_softmax"):
        HepEventConfig.from_tokenizer(event_tokenizer, mlm_softmax="sampled")


def test_code_vectors_sum_to_the_quantized_latent(event_tokenizer, samples):
    """The levels' code vectors of an object sum to what the quantizer hands its decoder."""
    from hep_event_models.io.reader import EventReader

    table = event_tokenizer.code_vectors()
    assert table.shape[0] == event_tokenizer.vocab_size and table.dtype == np.float32
    assert not table[: schema.NUM_RESERVED_IDS].any()
    for b in event_tokenizer.layout.blocks:
        if b.kind == "context":
            assert not table[b.start : b.stop].any()
    spaces = event_tokenizer.code_spaces()
    assert len(spaces) == sum(b.kind == "object" for b in event_tokenizer.layout.blocks)
    batch = next(iter(EventReader([samples["hzz4l"]], selection=event_tokenizer.object_configs(), chunk_size=200)))
    for name, (codes, mask) in event_tokenizer.encode_objects(batch).items():
        t = event_tokenizer.object_tokenizers[name]
        codes = codes[mask][:50]
        blocks = event_tokenizer.layout.object_blocks(name)
        summed = sum(table[blk.start + codes[:, q], : t.code_vectors()[0].shape[1]] for q, blk in enumerate(blocks))
        with torch.no_grad():
            expect = t.quantizer.get_output_from_indices(torch.from_numpy(codes)[None])[0]
            got = t.quantizer.project_out(torch.from_numpy(summed))
        torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["code", "id+code"])
def test_code_embeddings_save_load_and_errors(event_tokenizer, token_data, tmp_path, mode):
    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, num_labels=2, token_embedding=mode)
    assert cfg.code_dim == event_tokenizer.code_vectors().shape[1]
    rows = _rows(token_data, 8)
    batch = EventClassificationCollator()(rows)
    batch.pop("labels")
    m = HepEventForSequenceClassification(cfg).eval()
    with pytest.raises(ValueError, match="set_code_vectors"):
        m(**batch)
    with pytest.raises(ValueError, match="shape"):
        m.set_code_vectors(np.zeros((cfg.vocab_size, cfg.code_dim + 1), dtype=np.float32))
    m.set_code_vectors(event_tokenizer)
    emb = m.bert.embeddings.code_embeddings
    # an object id's embedding is W_space (s_block * v) + b_block
    jets = event_tokenizer.layout.object_blocks("jets")
    i = jets[1].start + 7
    k = int(emb.block_of[i])
    space = cfg.code_spaces[k - 1]
    want = (emb.code_table[i] * emb.scale[k]) @ emb.weight[space] + emb.bias[k]
    torch.testing.assert_close(emb(torch.tensor([[i, schema.CLS_ID]]))[0], torch.stack([want, torch.zeros_like(want)]))
    # every block starts at unit RMS
    rms = (emb.code_table[jets[-1].start : jets[-1].stop] * emb.scale[int(emb.block_of[jets[-1].start])]).pow(2).mean(0)
    torch.testing.assert_close(rms.sqrt(), torch.ones_like(rms), atol=1e-4, rtol=1e-4)
    loaded = reload_identical(m, batch, tmp_path / "m")
    torch.testing.assert_close(loaded.bert.embeddings.code_embeddings.code_table, emb.code_table)
    plain = HepEventForSequenceClassification(HepEventConfig.from_tokenizer(event_tokenizer, **SMALL))
    with pytest.raises(ValueError, match="by id"):
        plain.set_code_vectors(event_tokenizer)
    with pytest.raises(ValueError, match="code_dim"):
        HepEventConfig(vocab_size=cfg.vocab_size, token_blocks=cfg.token_blocks, token_embedding="code")
    with pytest.raises(ValueError, match="token_embedding"):
        HepEventConfig(token_embedding="values")


def test_finetune_with_code_embeddings_learns_and_pretrains(event_tokenizer, token_data, tmp_path):
    from hep_event_models.training.models import DataArguments, ModelArguments, finetune, pretrain

    tokd = _tok_dir(event_tokenizer, tmp_path)
    data = DataArguments(
        tokenizer=tokd, train_data=token_data["dir"], eval_data=token_data["dir"], max_eval_samples=1000
    )
    args = cpu_args(
        str(tmp_path / "pre"),
        max_steps=10,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        seed=0,
    )
    pretrain(ModelArguments(**SMALL, token_embedding="code"), data, args)
    assert not args.prediction_loss_only  # the caller's arguments are left as given
    # fine-tune on a held-out split of the training events, keeping the best checkpoint
    data.signal, data.background = ["hzz4l"], ["dy"]
    data.eval_data, data.validation_fraction = None, 0.2
    ft_args = cpu_args(
        str(tmp_path / "ft"),
        max_steps=60,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        seed=0,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="steps",
        save_steps=20,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="auc",
    )
    m = finetune(ModelArguments(model_name_or_path=str(tmp_path / "pre")), data, ft_args)
    assert m.get("eval_auc", 0) > 0.8, json.dumps(m)
    assert m["train_events_per_process"]["hzz4l"] + m["train_events_per_process"]["dy"] == 4800  # 80% of 6000
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert clf.config.token_embedding == "code" and bool(clf.bert.embeddings.code_embeddings.code_table.any())
    data.eval_data = token_data["dir"]
    with pytest.raises(ValueError, match="not both"):
        finetune(ModelArguments(**SMALL), data, ft_args)


def test_stratified_validation_split_keeps_every_label():
    import datasets

    from hep_event_models.training.models import _stratified_split

    ds = datasets.Dataset.from_dict({"label": [5] * 95 + [7] * 5, "x": list(range(100))})
    tr, va = _stratified_split(ds, 0.1, seed=0)
    assert sorted(va["label"]) == [5] * 10 + [7]  # a rare label still gets a validation row
    assert len(tr) == 89 and set(tr["x"]).isdisjoint(va["x"]) and len(set(tr["x"]) | set(va["x"])) == 100
    tr2, va2 = _stratified_split(ds, 0.1, seed=0)
    assert va2["x"] == va["x"] and tr2["x"] == tr["x"]  # deterministic


def test_bootstrap_auc_spread_matches_the_analytic_error():
    from hep_event_models.evaluation import bootstrap_auc

    rng = np.random.default_rng(0)
    y = np.repeat([1, 0], 1000)
    noise = rng.random(2000)
    scores = {"model": noise, "gbdt": noise.copy(), "counts": rng.random(2000)}
    r = bootstrap_auc(y, scores, n_boot=300, seed=1)
    # AUC of an uninformative score: std = sqrt((n1 + n2 + 1) / (12 n1 n2)) = 0.0129
    expected = np.sqrt(2001 / (12 * 1000 * 1000))
    for name in scores:
        assert r["std"][name] == pytest.approx(expected, rel=0.2)
    assert r["diff_std"]["model-gbdt"] == 0.0  # paired: identical scores never differ
    assert r["diff_std"]["model-counts"] == pytest.approx(np.sqrt(2) * expected, rel=0.25)
    with pytest.raises(ValueError, match="two signal"):
        bootstrap_auc(np.array([1, 0, 0]), {"model": np.zeros(3)})


@pytest.mark.parametrize("object_pooling", [None, "attention"])
def test_mean_pooling_head_reads_the_mean_of_valid_states(event_tokenizer, token_data, tmp_path, object_pooling):
    """classifier_pooling="mean": the head reads the mean final state of the valid tokens (units)
    but [CLS]; padding changes nothing; save/load is identical."""
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="classifier_pooling"):
        HepEventConfig(vocab_size=event_tokenizer.vocab_size, classifier_pooling="max")
    cfg = HepEventConfig.from_tokenizer(
        event_tokenizer, **SMALL, num_labels=2, classifier_pooling="mean", object_pooling=object_pooling
    )
    m = HepEventForSequenceClassification(cfg).eval()
    batch = EventClassificationCollator()(_rows(token_data, 8))
    batch.pop("labels")
    with torch.no_grad():
        out = m.bert(**batch, structure=m.bert.structure(batch["token_type_ids"], batch["attention_mask"]))
        states = out.last_hidden_state
        if object_pooling:
            valid = m.bert.structure(batch["token_type_ids"], batch["attention_mask"]).unit_mask.bool()
        else:
            valid = batch["attention_mask"].bool()
        want = torch.stack([states[b, 1:][valid[b, 1:]].mean(0) for b in range(len(states))])
        torch.testing.assert_close(
            m.event_state(
                states, batch["attention_mask"], m.bert.structure(batch["token_type_ids"], batch["attention_mask"])
            ),
            want,
        )
        logits = m(**batch).logits
        # 7 more padded positions: same logits
        pad = {k: torch.nn.functional.pad(v, (0, 7), value=0) for k, v in batch.items()}
        torch.testing.assert_close(m(**pad).logits, logits, rtol=1e-5, atol=1e-5)
        # a [CLS]-reading head gives other logits from the same weights
        m.config.classifier_pooling = "cls"
        assert not torch.allclose(m(**batch).logits, logits)
        m.config.classifier_pooling = "mean"
    loaded = reload_identical(m, batch, tmp_path / "m")
    assert loaded.config.classifier_pooling == "mean"


def test_code_logits_score_codes_by_their_vectors(event_tokenizer, token_data, tmp_path):
    """``mlm_code_logits``: each candidate's logit gains ``q_b(h) · φ(v_c)`` (by hand), the block
    loss equals the full logits' softmax restricted to the block, it starts as BERT's head and
    it saves and loads."""
    from hep_event_models.modeling_hep_event import HepEventCodeLogits

    cfg = HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, token_embedding="code", mlm_code_logits=True)
    torch.manual_seed(0)
    m = HepEventForMaskedLM(cfg)
    m.set_code_vectors(event_tokenizer)
    m.eval()
    batch = EventMLMCollator.from_config(cfg, mlm_probability=0.3, seed=5)(_rows(token_data, 16))
    with torch.no_grad():
        assert not m.code_logits.weight.any()  # zero at the start: BERT's head
        head, m.code_logits = m.code_logits, None
        plain = m(**batch).loss
        m.code_logits = head
        torch.testing.assert_close(m(**batch).loss, plain)
        m.code_logits.weight.normal_(0.0, 0.1)
        block = m(**batch)
        full = m(**batch, return_all_logits=True).logits
        states = m.bert(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
        h = m.cls.predictions.transform(states)
    sel = batch["labels"] != -100
    labels, logits, hs = batch["labels"][sel], full[sel], h[sel]
    objects = [b for b in cfg.token_blocks if b[3] >= 0]
    table = m.bert.embeddings.code_embeddings.code_table
    ref = []
    n_object = 0
    for lab, row, hrow in zip(labels.tolist(), logits, hs, strict=True):
        start, size, _t, level = next(b for b in cfg.token_blocks if b[0] <= lab < b[0] + b[1])
        ref.append(-torch.log_softmax(row[start : start + size], 0)[lab - start])
        bert = (hrow @ m.cls.predictions.decoder.weight[lab] + m.cls.predictions.decoder.bias[lab]).detach()
        if level < 0:  # a context token: no code vector, BERT's logit
            assert float(row[lab] - bert) == pytest.approx(0.0, abs=1e-5)
            continue
        # the code term of this label's own code, by hand: Gaussian bumps on standardised coordinates
        k = [b[0] for b in objects].index(start)
        v = table[start : start + size].double()
        z = ((v[lab - start] - v.mean(0)) / v.std(0))[:, None]
        centres = torch.linspace(-2, 2, cfg.mlm_code_bins).double()
        bumps = torch.exp(-0.5 * ((z - centres) / (4 / (cfg.mlm_code_bins - 1))) ** 2)
        want = hrow.double() @ m.code_logits.weight[k].detach().double() @ bumps.flatten()
        assert float(row[lab] - bert) == pytest.approx(float(want), abs=1e-4)
        n_object += 1
    assert n_object > 20
    torch.testing.assert_close(block.loss, torch.stack(ref).mean(), rtol=1e-5, atol=1e-5)
    assert float((block.loss - plain).abs()) > 1e-3  # the term changes the prediction
    feats = HepEventCodeLogits(cfg).features(table[objects[0][0] : objects[0][0] + objects[0][1]])
    assert feats.shape == (objects[0][1], cfg.code_dim * cfg.mlm_code_bins)
    m.save_pretrained(tmp_path / "m")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).loss, block.loss)
    with pytest.raises(ValueError, match="mlm_code_logits"):
        HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, mlm_code_logits=True)  # token_embedding "id"


def test_backbone_learning_rate_ratio_splits_the_optimizer(event_tokenizer, tmp_path):
    """``backbone_learning_rate_ratio``: the encoder trains at ratio × the learning rate, the head
    at the full rate, with weight decay kept as the Trainer groups it; the scheduler scales both."""
    from hep_event_models.training.models import _classification_trainer

    model = HepEventForSequenceClassification(HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, num_labels=2))
    args = cpu_args(tmp_path, learning_rate=1e-3, weight_decay=0.01, max_steps=10, warmup_steps=0)
    trainer = _classification_trainer(0.1, model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    backbone = {id(p) for p in model.bert.parameters()}
    seen = set()
    for g in trainer.optimizer.param_groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= backbone or not ids & backbone  # never mixed
        assert g["lr"] == pytest.approx(1e-4 if ids <= backbone else 1e-3)
        assert g["weight_decay"] in (0.0, 0.01)
        seen |= ids
    assert seen == {id(p) for p in model.parameters() if p.requires_grad}
    assert {g["weight_decay"] for g in trainer.optimizer.param_groups} == {0.0, 0.01}
    trainer.optimizer.step()  # no gradients: a no-op, in the order the scheduler expects
    trainer.lr_scheduler.step()
    lrs = sorted({g["lr"] for g in trainer.optimizer.param_groups})
    assert len(lrs) == 2 and lrs[1] / lrs[0] == pytest.approx(10.0)
    plain = _classification_trainer(1.0, model=model, args=args)
    plain.create_optimizer()
    assert {g["lr"] for g in plain.optimizer.param_groups} == {1e-3}
