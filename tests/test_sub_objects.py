"""Sub-objects (jet constituents, track hits): reader, sequence alignment, collator, model."""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest
import torch

from conftest import tiny_model_config
from hep_event_models import schema
from hep_event_models.collators import EventClassificationCollator, EventMLMCollator, pad_sub_objects
from hep_event_models.configuration_hep_event import HepEventConfig
from hep_event_models.generator import generate
from hep_event_models.io import EventFileError, EventReader
from hep_event_models.modeling_hep_event import (
    HepEventForMaskedLM,
    HepEventForSequenceClassification,
    object_structure,
)
from hep_event_models.subobjects import SUB_OBJECT_INPUTS, sub_object_columns, sub_object_inputs

CONST = schema.SUB_COLLECTIONS["jets_constituents"]
HITS = schema.SUB_COLLECTIONS["tracks_hits"]
SELECTION = {"jets": ["pt", "eta", "phi"], "tracks": ["pt", "eta", "phi"]}


@pytest.fixture(scope="module")
def sub_files(tmp_path_factory) -> dict[str, str]:
    """ttbar (b jets) and dy with sub-objects, and a dy file without."""
    d = tmp_path_factory.mktemp("sub")
    out = {}
    for name, proc, seed, subs in (("ttbar", "ttbar", 11, True), ("dy", "dy", 12, True), ("plain", "dy", 13, False)):
        path = d / f"{name}.h5"
        generate(proc, 600, path, seed=seed, chunk_size=600, progress=False, workers=1, sub_objects=subs)
        out[name] = str(path)
    return out


def test_reader_auto_detects_sub_objects_and_falls_back(sub_files):
    r = EventReader(sub_files["ttbar"], selection=SELECTION, sub_objects="auto", chunk_size=256)
    assert r.sub_objects == ["jets_constituents", "tracks_hits"]
    b = next(iter(r))
    c, h = b.sub_objects["jets_constituents"], b.sub_objects["tracks_hits"]
    assert c.values.shape == (256, 15, 50, len(CONST.fields)) and c.mask.shape == (256, 15, 50)
    assert h.values.shape == (256, 30, 30, len(HITS.fields))
    assert not (c.mask.any(-1) & ~b.collections["jets"].mask).any()
    assert (c.mask.any(-1) == b.collections["jets"].mask).mean() > 0.95  # nearly every jet has constituents
    assert (c.values[~c.mask] == 0).all()
    # take / concat keep them
    both = type(b).concat([b.take(np.arange(3)), b.take(np.arange(3, 5))])
    np.testing.assert_array_equal(both.sub_objects["jets_constituents"].values, c.values[:5])
    # only the parent collections asked for: no hits without tracks
    assert EventReader(sub_files["ttbar"], selection={"jets": ["pt"]}, sub_objects="auto").sub_objects == [
        "jets_constituents"
    ]
    # files without: objects only; a mix: a warning, objects only
    assert EventReader(sub_files["plain"], selection=SELECTION, sub_objects="auto").sub_objects == []
    with pytest.warns(UserWarning, match="only some of the files"):
        assert (
            EventReader([sub_files["dy"], sub_files["plain"]], selection=SELECTION, sub_objects="auto").sub_objects
            == []
        )
    # asked for explicitly where they are missing: an error naming file and group
    with pytest.raises(EventFileError, match=r"plain\.h5.*common/jets/constituents"):
        next(iter(EventReader(sub_files["plain"], selection=SELECTION, sub_objects=["jets_constituents"])))
    with pytest.raises(ValueError, match="parent collection 'tracks'"):
        EventReader(sub_files["ttbar"], selection={"jets": ["pt"]}, sub_objects=["tracks_hits"])
    # truncation of the sub-object axis keeps the leading ones
    rt = EventReader(
        sub_files["ttbar"],
        selection=SELECTION,
        sub_objects=["jets_constituents"],
        max_sub_objects={"jets_constituents": 4},
        chunk_size=256,
    )
    bt = next(iter(rt))
    np.testing.assert_array_equal(bt.sub_objects["jets_constituents"].mask, c.mask[..., :4])


@pytest.mark.parametrize("damage", ["nan", "orphan", "count"])
def test_reader_rejects_damaged_sub_objects(sub_files, tmp_path, damage):
    path = tmp_path / "bad.h5"
    shutil.copy(sub_files["dy"], path)
    with h5py.File(path, "r+") as f:
        mask = f[CONST.path_of("mask")][:]
        e, j, k = (int(x[0]) for x in np.nonzero(mask))
        if damage == "nan":
            pt = f[CONST.path_of("pt")][:]
            pt[e, j, k] = np.nan
            f[CONST.path_of("pt")][...] = pt
            key = CONST.path_of("pt")
        elif damage == "orphan":
            parent = f[schema.COLLECTIONS["jets"].path_of("mask")][:]
            empty = np.argwhere(~parent)[0]
            mask[empty[0], empty[1], 0] = True
            f[CONST.path_of("mask")][...] = mask
            n = f[CONST.path_of("n")][:]
            n[empty[0], empty[1]] = 1
            f[CONST.path_of("n")][...] = n
            key = CONST.path_of("mask")
        else:
            n = f[CONST.path_of("n")][:]
            n[e, j] += 1
            f[CONST.path_of("n")][...] = n
            key = CONST.path_of("mask")
    with pytest.raises(EventFileError, match=rf"bad\.h5.*{key}"):
        for _ in EventReader(str(path), selection=SELECTION, sub_objects="auto"):
            pass


def test_inputs_are_relative_to_the_parent(sub_files):
    b = next(iter(EventReader(sub_files["ttbar"], selection=SELECTION, sub_objects="auto", chunk_size=300)))
    x = sub_object_inputs(b, "jets_constituents")
    c, jets = b.sub_objects["jets_constituents"], b.collections["jets"]
    assert x.shape[-1] == len(SUB_OBJECT_INPUTS["jets_constituents"])
    frac = np.exp(x[..., 0]) * c.mask
    np.testing.assert_allclose(
        frac.sum(-1)[jets.mask] * jets.feature("pt")[jets.mask],
        (c.feature("pt") * c.mask).sum(-1)[jets.mask],
        rtol=1e-4,
    )
    assert np.abs(x[..., 2][c.mask]).max() <= np.pi / 0.2 + 1e-4  # Δφ wrapped
    np.testing.assert_array_equal(x[..., 3][c.mask], c.feature("charge")[c.mask])
    h = sub_object_inputs(b, "tracks_hits")
    hits = b.sub_objects["tracks_hits"]
    assert (h[..., 3][hits.mask] >= 0).all() and (h[..., 3][hits.mask] <= 1).all()
    assert (h[~hits.mask] == 0).all()


def test_columns_attach_to_their_objects_tokens(event_tokenizer, sub_files):
    tok = event_tokenizer
    b = next(iter(tok.reader(sub_files["ttbar"], chunk_size=200, sub_objects="auto")))
    assert list(b.sub_objects) == ["jets_constituents"]  # the test tokenizer has no tracks
    subtok = torch.zeros(16, dtype=torch.long)
    for name in tok.objects:
        subtok[schema.TYPE_IDS[name]] = len(tok.layout.object_blocks(name))
    jet_type = schema.TYPE_IDS["jets"]
    for max_length in (None, 40):
        enc = tok(b, padding=True, truncation=max_length is not None, max_length=max_length, return_tensors="pt")
        cols = sub_object_columns(
            tok, b, ["jets_constituents"], truncation=max_length is not None, max_length=max_length
        )
        rows = [
            dict(zip(cols, vals, strict=True)) for vals in zip(*(c.to_pylist() for c in cols.values()), strict=True)
        ]
        st = object_structure(enc["token_type_ids"], enc["attention_mask"], subtok)
        jets = b.collections["jets"]
        counts = b.sub_objects["jets_constituents"].mask.sum(-1)
        order = np.argsort(-np.where(jets.mask, jets.feature("pt"), -np.inf), axis=1, kind="stable")
        n_dropped = 0
        for i, row in enumerate(rows):
            owners = np.asarray(row["jets_constituents_owner"])
            starts = np.unique(owners)
            assert (enc["token_type_ids"][i, starts] == jet_type).all()
            assert (st.sub[i, starts] == 0).all()  # each owner is a jet's first token
            assert (np.diff(owners) >= 0).all()  # grouped, in sequence order
            kept = int((enc["token_type_ids"][i] == jet_type).sum()) // subtok[jet_type].item()
            n_dropped += int(jets.mask[i].sum()) - kept
            expect = counts[i, order[i, :kept]]
            got = [int((owners == s).sum()) for s in sorted(starts)]
            assert got == [int(x) for x in expect if x > 0]
        assert (n_dropped > 0) == (max_length is not None)


def test_pad_sub_objects_groups_rows_by_object():
    F = len(SUB_OBJECT_INPUTS["jets_constituents"])
    ex = [
        {
            "jets_constituents": np.ones((5, F)).tolist(),
            "jets_constituents_owner": [3, 3, 3, 7, 7],
            "tracks_hits": np.full((2, 5), 2.0).tolist(),
            "tracks_hits_owner": [20, 20],
        },
        {"jets_constituents": [], "jets_constituents_owner": [], "tracks_hits": [], "tracks_hits_owner": []},
    ]
    out = pad_sub_objects(ex, ["jets_constituents", "tracks_hits"])
    assert out["sub_features"].shape == (2, 3, 3, F)
    assert out["sub_owner"].tolist() == [[3, 7, 20], [-1, -1, -1]]
    assert out["sub_kind"].tolist()[0] == [0, 0, 1]
    assert out["sub_mask"].sum(-1).tolist() == [[3, 2, 2], [0, 0, 0]]
    assert float(out["sub_features"][0, 2, :2, 5].abs().sum()) == 0.0  # hits have 5 inputs: the 6th is padding
    assert pad_sub_objects([{"input_ids": [1]}], ["jets_constituents"]) == {}


def _tiny(tok, **kw) -> HepEventConfig:
    return tiny_model_config(tok, sub_objects=["jets_constituents", "tracks_hits"], num_labels=2, **kw)


def _batch(tok, files, n=64, max_length=None):
    from hep_event_models.tokenized import arrow_schema, encode_record_batch

    b = next(iter(tok.reader(files, chunk_size=n, sub_objects="auto")))
    rows = encode_record_batch(
        tok, b, arrow_schema(tok, sub_objects=list(b.sub_objects)), max_length, max_length is not None
    ).to_pylist()
    return rows


@pytest.mark.parametrize("pooling", [None, "attention"])
def test_model_reads_sub_objects_gates_save_load_and_fallback(event_tokenizer, sub_files, tmp_path, pooling):
    from transformers import AutoModelForSequenceClassification

    tok = event_tokenizer
    torch.manual_seed(0)
    model = HepEventForSequenceClassification(_tiny(tok, object_pooling=pooling)).eval()
    rows = _batch(tok, sub_files["ttbar"], 32, max_length=48)
    batch = EventClassificationCollator({2: 1, 3: 0}, sub_objects=model.config.sub_objects)(rows)
    assert batch["sub_features"].shape[:2] == batch["sub_owner"].shape and batch["sub_owner"].max() < 48
    with torch.no_grad():
        with_sub = model(**batch).logits
        plain = model(**{k: v for k, v in batch.items() if not k.startswith("sub_")}).logits
    assert with_sub.shape == (32, 2) and torch.isfinite(with_sub).all()
    assert not torch.allclose(with_sub, plain)  # the constituents change the prediction
    gates = model.bert.sub_object_gates(**batch)
    assert set(gates) == {"jets_constituents"} and 0.0 < gates["jets_constituents"] < 1.0
    model.save_pretrained(tmp_path / "m")
    back = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert back.config.sub_objects == ["jets_constituents", "tracks_hits"]
    with torch.no_grad():
        torch.testing.assert_close(back(**batch).logits, with_sub)
    # rows without sub-object columns (a file without them): objects only
    plain_rows = _batch(tok, sub_files["plain"], 8)
    assert "jets_constituents" not in plain_rows[0]
    b2 = EventClassificationCollator({2: 1, 3: 0}, sub_objects=model.config.sub_objects)(plain_rows)
    assert "sub_features" not in b2 and model(**b2).logits.shape == (8, 2)
    # owners that point past the sequence: an error, not a silent misalignment
    bad = dict(batch)
    bad["sub_owner"] = batch["sub_owner"].clone()
    bad["sub_owner"][0, 0] = batch["input_ids"].shape[1] + 3
    with pytest.raises(ValueError, match="past the sequence"):
        model(**bad)


def test_gated_pretraining_learns_from_constituents(event_tokenizer, sub_files):
    """A few MLM steps with constituents: the loss falls, gradients reach the sub-object encoder."""
    tok = event_tokenizer
    torch.manual_seed(0)
    model = HepEventForMaskedLM(_tiny(tok))
    collator = EventMLMCollator.from_config(model.config, seed=0)
    rows = _batch(tok, [sub_files["ttbar"], sub_files["dy"]], 128)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(12):
        batch = collator(rows[(step % 4) * 32 : (step % 4 + 1) * 32])
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        if step == 0:
            g = model.bert.sub_object_encoder.gate.weight.grad
            assert g is not None and float(g.abs().sum()) > 0
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_config_rejects_unknown_sub_objects():
    with pytest.raises(KeyError, match="unknown sub-object"):
        HepEventConfig(sub_objects=["jets_hits"])
    with pytest.raises(ValueError, match="sub_object_layers"):
        HepEventConfig(sub_objects=["jets_constituents"], sub_object_layers=0)


def test_tokenized_dataset_and_finetune_with_sub_objects(event_tokenizer_dir, sub_files, tmp_path):
    """tokenize (auto-detected columns) → fine-tune a constituent-enriched classifier → gates reported."""
    from transformers import TrainingArguments

    from hep_event_models.tokenized import load_tokenized, tokenize_dataset
    from hep_event_models.training.models import DataArguments, ModelArguments, finetune

    files = [sub_files["ttbar"], sub_files["dy"]]
    s = tokenize_dataset(event_tokenizer_dir, files, tmp_path / "tok", rows_per_shard=600, progress=False)
    assert s["sub_objects"] == ["jets_constituents"]
    ds = load_tokenized(tmp_path / "tok")
    assert {"jets_constituents", "jets_constituents_owner"} <= set(ds.column_names)
    row = ds[0]
    assert len(row["jets_constituents"]) == len(row["jets_constituents_owner"]) > 0
    assert len(row["jets_constituents"][0]) == len(SUB_OBJECT_INPUTS["jets_constituents"])
    # a rerun without sub-objects into the same directory refuses to mix shards
    with pytest.raises(ValueError, match="sub-objects"):
        tokenize_dataset(
            event_tokenizer_dir, files, tmp_path / "tok", rows_per_shard=600, progress=False, sub_objects=None
        )
    margs = ModelArguments(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        sub_objects=["jets_constituents"],
    )
    dargs = DataArguments(
        tokenizer=event_tokenizer_dir,
        train_data=str(tmp_path / "tok"),
        eval_data=str(tmp_path / "tok"),
        signal=["ttbar"],
        background=["dy"],
        max_eval_samples=200,
    )
    targs = TrainingArguments(
        output_dir=str(tmp_path / "ft"),
        max_steps=6,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        report_to=[],
        logging_steps=3,
        save_strategy="no",
        seed=0,
        use_cpu=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = finetune(margs, dargs, targs)
    assert not [w for w in caught if "does not hold them" in str(w.message)]  # no fallback: the data has them
    assert 0.0 < m["sub_object_gates"]["jets_constituents"] < 1.0
    assert m["eval_auc"] > 0.5


def test_both_kinds_reach_the_model_and_gates_stay_in_unit_interval():
    """Constituents (kind 0, 6 inputs) and hits (kind 1, 5 inputs) of different objects in one
    batch: both change the output, each only through its own objects, and every gate is in (0, 1)."""
    torch.manual_seed(0)
    jets, tracks = schema.TYPE_IDS["jets"], schema.TYPE_IDS["tracks"]
    blocks = [[16, 8, jets, 0], [24, 8, jets, 1], [32, 8, tracks, 0], [40, 8, tracks, 1]]
    for pooling in (None, "mean"):
        cfg = HepEventConfig(
            vocab_size=48,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_quantizers=2,
            token_blocks=blocks,
            object_pooling=pooling,
            num_labels=2,
            sub_objects=["jets_constituents", "tracks_hits"],
            hidden_dropout_prob=0.0,
        )
        model = HepEventForSequenceClassification(cfg).eval()
        # [CLS] jet jet [SEP] track [SEP]
        ids = torch.tensor([[1, 16, 24, 17, 25, 2, 32, 40, 2]])
        types = torch.tensor([[0, jets, jets, jets, jets, 0, tracks, tracks, 0]])
        base = {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids)}
        sub = {
            "sub_features": torch.randn(1, 2, 4, 6),
            "sub_mask": torch.ones(1, 2, 4, dtype=torch.bool),
            "sub_owner": torch.tensor([[1, 6]]),
            "sub_kind": torch.tensor([[0, 1]]),
        }
        with torch.no_grad():
            x0, *_ = model.bert.embed(**base)
            x1, _m, _t, gates = model.bert.embed(**base, **sub)
        assert ((gates > 0) & (gates < 1)).all()
        changed = (x1 - x0).abs().sum(-1)[0] > 0
        if pooling is None:  # per token: the first jet's two tokens and the track's two tokens
            assert changed.tolist() == [False, True, True, False, False, False, True, True, False]
        else:  # per unit: [CLS], jet, jet, [SEP], track, [SEP]
            assert changed.tolist() == [False, True, False, False, True, False]
        hits_only = dict(sub, sub_kind=torch.tensor([[0, 0]]))
        with torch.no_grad():
            x2, *_ = model.bert.embed(**base, **hits_only)
        assert not torch.allclose(x1, x2)  # the kind picks the input projection
