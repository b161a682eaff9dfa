"""Feature-group tokenization and the hierarchical (object-pooling) model (seed 004)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_model_config
from hep_event_models.config import ObjectConfig, config_dir, load_object_config
from hep_event_models.grouped_tokenizer import GroupedObjectTokenizer, feature_groups, load_object_tokenizer
from hep_event_models.lookup_tokenizer import LookupTokenizer

GROUP_SETTINGS = {"codebook_size": 128, "hidden_dim": 64, "decoder_hidden_dim": 128}


def _flat_met(d) -> str:
    """The shipped MET config without its ``groups:`` section, written to ``d``."""
    met = yaml.safe_load((config_dir() / "met.yaml").read_text())
    met.pop("groups")
    path = d / "met_flat.yaml"
    path.write_text(yaml.safe_dump(met, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def grouped_dir(samples, tmp_path_factory) -> str:
    """An EventTokenizer with muons and jets as feature groups (met stays flat: its config
    here has no ``groups:``)."""
    from hep_event_models.training.event_tokenizer import fit_event_tokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("grouped")
    cfg = {
        "feature_groups": True,
        "objects": {
            "muons": str(config_dir() / "muons.yaml"),
            "met": _flat_met(d),
            "jets": str(config_dir() / "jets.yaml"),
        },
        "context": [{"name": "mu", "group": "event", "bins": 50, "range": [0.0, 100.0]}],
    }
    (d / "event.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    fit_event_tokenizer(
        d / "event.yaml",
        [samples["hzz4l"], samples["ttbar"]],
        d / "tok",
        settings=GROUP_SETTINGS,
        max_steps=250,
        batch_size=1024,
        lr=3e-3,
        progress=False,
        diagnose_objects=2000,
    )
    return str(d / "tok")


# -- config parsing -------------------------------------------------------------------------
def test_shipped_configs_define_groups_covering_every_feature():
    for name in ("electrons", "muons", "taus", "photons", "jets", "tracks"):
        cfg = load_object_config(name)
        groups = feature_groups(cfg)
        assert "kinematics" in groups, name
        covered = [f for g in groups.values() for f in g.feature_names]
        assert sorted(covered) == sorted(cfg.feature_names), name
        assert groups["kinematics"].feature_names[:3] == ["pt", "eta", "phi"]
        # linear kinematics tokenizers (ObjectTokenizerSettings.num_layers); MLPs elsewhere
        assert groups["kinematics"].extra["tokenizer"] == {"num_layers": 0, "decoder_layers": 0}, name
        assert all(g.extra["tokenizer"].get("num_layers", 2) > 0 for n, g in groups.items() if n != "kinematics")
    jets = feature_groups(load_object_config("jets"))
    assert list(jets) == ["kinematics", "counts", "shape", "btag"]
    # the tagger scores: two levels, an encoder with one hidden layer (jets.yaml)
    assert jets["btag"].extra["tokenizer"] == {"num_quantizers": 2, "num_layers": 1}
    # the all-discrete groups are lookup tables (exact tokens)
    assert jets["counts"].extra["tokenizer"] == {"quantizer": "lookup"}
    assert feature_groups(load_object_config("tracks"))["hits"].extra["tokenizer"] == {"quantizer": "lookup"}
    met = feature_groups(load_object_config("met"))
    assert list(met) == ["kinematics"] and met["kinematics"].feature_names == ["pt", "phi", "sumet"]


def _cfg(groups) -> ObjectConfig:
    return ObjectConfig.from_dict(
        {"object": "met", "features": ["pt", "phi", "sumet"], "groups": groups}, origin="test.yaml"
    )


def test_bad_groups_raise_with_the_feature_named():
    with pytest.raises(ValueError, match=r"\['sumet'\] are in no group"):
        feature_groups(_cfg({"a": ["pt", "phi"]}))
    with pytest.raises(ValueError, match="'phi' is in groups 'a' and 'b'"):
        feature_groups(_cfg({"a": ["pt", "phi"], "b": ["phi", "sumet"]}))
    with pytest.raises(ValueError, match=r"names \['eta'\]"):
        feature_groups(_cfg({"a": ["pt", "phi", "sumet", "eta"]}))
    with pytest.raises(ValueError, match="unknown keys"):
        feature_groups(_cfg({"a": {"features": ["pt", "phi", "sumet"], "levels": 2}}))


# -- grouped tokenizers -------------------------------------------------------------------
def test_grouped_event_tokenizer_layout_and_tokens(grouped_dir):
    from hep_event_models.event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(grouped_dir)
    jets = tok.object_tokenizers["jets"]
    assert isinstance(jets, GroupedObjectTokenizer)
    assert jets.group_levels == {"kinematics": 4, "counts": 1, "shape": 1, "btag": 2}
    assert tok.num_quantizers == {"muons": 6, "met": 4, "jets": 8}
    assert not isinstance(tok.object_tokenizers["met"], GroupedObjectTokenizer)
    # the counts group is a lookup table of the (n_trk, QG_nTracks) pairs, at most 128 rows here
    counts = jets.groups["counts"]
    assert isinstance(counts, LookupTokenizer) and 50 < counts.codebook_sizes[0] <= 128
    # every (object, group, level) owns a block: 6 + 4 + 7 blocks of 128 codes, the counts
    # table and 50 context bins
    assert tok.vocab_size == 16 + 50 + 17 * 128 + counts.codebook_sizes[0]
    b = tok.layout.object_blocks("jets")[6]
    assert tok.convert_ids_to_tokens(b.start + 5) == "jets_btag_q0_5"
    assert tok.convert_tokens_to_ids("muons_id_iso_q1_3") == tok.layout.object_blocks("muons")[5].start + 3


def test_grouped_tokenizer_round_trip_and_save_load(grouped_dir, samples, tmp_path):
    from hep_event_models.event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(grouped_dir)
    events = next(iter(tok.reader(samples["hzz4l"], chunk_size=400)))
    enc = tok(events, padding=True, return_tensors="np")
    tok.save_pretrained(tmp_path / "again")
    tok2 = EventTokenizer.from_pretrained(tmp_path / "again")
    assert tok2.fingerprint == tok.fingerprint
    card = (tmp_path / "again" / "README.md").read_text()
    rows = tok.object_tokenizers["jets"].groups["counts"].codebook_sizes[0]
    assert f"counts 1 lookup level × {rows} rows, shape 1 levels × 128 codes" in card
    np.testing.assert_array_equal(tok2(events, padding=True, return_tensors="np")["input_ids"], enc["input_ids"])
    # each muon is 6 consecutive tokens of type 5: kinematics q0..q3 then id_iso q0..q1
    mu = events.collections["muons"]
    n_mu = mu.mask.sum(axis=1)
    assert ((enc["token_type_ids"] == 5).sum(axis=1) == 6 * n_mu).all()
    back = tok.decode(enc["input_ids"], enc["attention_mask"])
    bm = back.collections["muons"]
    assert bm.features == mu.features
    np.testing.assert_array_equal(bm.mask.sum(axis=1), n_mu)
    # decoded muons (pT-ordered) against the originals sorted the same way
    pt = np.where(mu.mask, mu.values[..., 0], -np.inf)
    order = np.argsort(-pt, axis=1, kind="stable")
    orig = np.take_along_axis(mu.values, order[..., None], axis=1)[mu.mask[np.arange(len(mu.mask))[:, None], order]]
    dec = bm.values[bm.mask]
    charge = mu.features.index("charge")
    assert np.mean(dec[:, charge] == orig[:, charge]) > 0.99  # discrete: exact
    rel_pt = np.median(np.abs(dec[:, 0] / orig[:, 0] - 1))
    assert rel_pt < 0.1, rel_pt
    # jets' counts come back from the lookup table: exact wherever the pair is one of its rows
    jets, bj = events.collections["jets"], back.collections["jets"]
    cols = [jets.features.index(n) for n in ("n_trk", "QG_nTracks")]
    pt = np.where(jets.mask, jets.values[..., 0], -np.inf)
    order = np.argsort(-pt, axis=1, kind="stable")
    rows = np.arange(len(order))[:, None]
    orig = np.take_along_axis(jets.values, order[..., None], axis=1)[jets.mask[rows, order]][:, cols]
    table = tok.object_tokenizers["jets"].groups["counts"].table.numpy()
    known = (orig[:, None, :] == table[None]).all(-1).any(-1)
    assert known.mean() > 0.95
    np.testing.assert_array_equal(bj.values[bj.mask][:, cols][known], orig[known])


def test_grouped_object_tokenizer_alone(grouped_dir, samples):
    from hep_event_models.diagnostics import tokenizer_metrics
    from hep_event_models.io.reader import EventReader

    t = load_object_tokenizer(f"{grouped_dir}/objects/jets")
    assert isinstance(t, GroupedObjectTokenizer)
    b = next(iter(EventReader(samples["ttbar"], selection=[t.object_config], chunk_size=500)))
    c = b.collections["jets"]
    codes = t.encode(c.values, c.mask)
    assert codes.shape == (*c.mask.shape, 8)
    assert (codes[~c.mask] == -1).all() and (codes[c.mask] >= 0).all()
    # group columns: the kinematics codes are the kinematics tokenizer's own
    kin = t.groups["kinematics"]
    cols = [t.feature_names.index(f) for f in kin.feature_names]
    np.testing.assert_array_equal(codes[..., :4], kin.encode(c.values[..., cols], c.mask))
    m = tokenizer_metrics(t, c.values[c.mask])
    assert len(m["levels"]) == 8
    assert set(m["features"]) == set(t.feature_names)
    assert m["features"]["n_trk"]["exact_match"] > 0.5
    with pytest.raises(ValueError, match="levels"):
        t.decode(codes[..., :4])


def test_diagnose_a_grouped_tokenizer_directory(grouped_dir, samples, tmp_path):
    from hep_event_models.diagnostics import diagnose

    m = diagnose(f"{grouped_dir}/objects/muons", samples["hzz4l"], tmp_path, max_objects=3000, plots=True)
    assert [lv["level"] for lv in m["levels"]] == list(range(6))
    assert m["features"]["charge"]["exact_match"] > 0.99
    assert set(m["tokenizer"]["groups"]) == {"kinematics", "id_iso"}
    assert (tmp_path / "diagnostics.json").exists() and (tmp_path / "codebook_usage.png").exists()


# -- hierarchical model ------------------------------------------------------------------
def _tiny_config(tok, pooling, **kw):
    return tiny_model_config(tok, object_pooling=pooling, **kw)


def test_object_structure_follows_type_ids():
    from hep_event_models.modeling_hep_event import object_structure

    per = torch.zeros(12, dtype=torch.long)
    per[5], per[7] = 3, 2  # muons: 3 sub-tokens, met: 2
    # [CLS] ctx  mu mu mu  mu mu mu  [SEP] met met [SEP] [PAD] [PAD]
    types = torch.tensor([[0, 10, 5, 5, 5, 5, 5, 5, 0, 7, 7, 0, 0, 0]])
    att = torch.tensor([[1] * 12 + [0, 0]])
    st = object_structure(types, att, per)
    assert st.unit.tolist() == [[0, 1, 2, 2, 2, 3, 3, 3, 4, 5, 5, 6, 7, 7]]
    assert st.sub.tolist() == [[0, 0, 0, 1, 2, 0, 1, 2, 0, 0, 1, 0, 0, 0]]
    assert st.unit_types.tolist() == [[0, 10, 5, 5, 0, 7, 0, 0]]
    assert st.unit_mask.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]
    assert st.unit_is_object.tolist() == [[False, False, True, True, False, True, False, False]]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_hierarchical_model_save_load_padding_and_masking(grouped_dir, samples, tmp_path, pooling):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from hep_event_models import HepEventForMaskedLM, HepEventForSequenceClassification
    from hep_event_models.collators import EventMLMCollator
    from hep_event_models.event_tokenizer import EventTokenizer

    torch.manual_seed(0)
    tok = EventTokenizer.from_pretrained(grouped_dir)
    events = next(iter(tok.reader(samples["ttbar"], chunk_size=8)))
    enc = tok(events, padding=True, return_tensors="pt")
    cfg = _tiny_config(tok, pooling)
    clf = HepEventForSequenceClassification(cfg).eval()
    keys = ("input_ids", "token_type_ids", "attention_mask")
    logits = clf(**{k: enc[k] for k in keys}).logits
    # the outer encoder runs over units: one per object
    st = clf.bert.structure(enc["token_type_ids"], enc["attention_mask"])
    n_obj = sum(events.collections[n].mask.sum(axis=1) for n in ("muons", "met", "jets"))
    np.testing.assert_array_equal(st.unit_mask.sum(1).numpy(), 1 + 1 + 3 + n_obj)  # CLS, mu, 3 SEP
    # one event alone, without padding: same logits
    n0 = int(enc["attention_mask"][0].sum())
    alone = clf(**{k: enc[k][:1, :n0] for k in keys}).logits
    torch.testing.assert_close(alone, logits[:1], atol=1e-5, rtol=1e-4)
    clf.save_pretrained(tmp_path / "clf")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    assert again.config.object_pooling == pooling
    torch.testing.assert_close(again(**{k: enc[k] for k in keys}).logits, logits)
    with pytest.raises(ValueError, match="token_type_ids"):
        clf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])

    mlm = HepEventForMaskedLM(cfg)
    coll = EventMLMCollator.from_config(cfg, seed=0, mlm_probability=0.4)
    rows = [{k: enc[k][i][enc["attention_mask"][i].bool()].tolist() for k in keys[:2]} for i in range(8)]
    batch = coll(rows)
    # [MASK] tokens keep their object's structure: units come from type ids, not ids
    st_masked = mlm.bert.structure(batch["token_type_ids"], batch["attention_mask"])
    torch.testing.assert_close(st_masked.unit, mlm.bert.structure(enc["token_type_ids"], enc["attention_mask"]).unit)
    out = mlm(**batch)
    assert torch.isfinite(out.loss) and out.logits is None
    full = mlm(**{k: batch[k] for k in keys})
    assert full.logits.shape == (*batch["input_ids"].shape, cfg.vocab_size)
    mlm.save_pretrained(tmp_path / "mlm")
    mlm2 = AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm")
    mlm.eval(), mlm2.eval()
    torch.testing.assert_close(mlm2(**batch).loss, mlm(**batch).loss)


def test_hierarchical_pretraining_lowers_the_loss(grouped_dir, samples):
    """300 small steps on CPU: the MLM loss falls below an untrained model's, to the level of
    the code frequencies per block (as the flat model's test: beating that takes longer runs)."""
    from hep_event_models import HepEventForMaskedLM
    from hep_event_models.collators import EventMLMCollator
    from hep_event_models.event_tokenizer import EventTokenizer

    torch.manual_seed(0)
    tok = EventTokenizer.from_pretrained(grouped_dir)
    events = next(iter(tok.reader(samples["ttbar"], chunk_size=2048)))
    enc = tok(events)
    rows = [{"input_ids": a, "token_type_ids": b} for a, b in zip(enc["input_ids"], enc["token_type_ids"], strict=True)]
    cfg = _tiny_config(tok, "attention", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HepEventForMaskedLM(cfg)
    coll = EventMLMCollator.from_config(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    eval_batch = coll(rows[:256])
    model.eval()
    with torch.no_grad():
        before = float(model(**eval_batch).loss)
    model.train()
    g = np.random.default_rng(0)
    for _ in range(300):
        batch = coll([rows[i] for i in g.integers(256, len(rows), 32)])
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(model(**eval_batch).loss)
    ids = np.concatenate([np.asarray(r) for r in enc["input_ids"]])
    freq = np.bincount(ids, minlength=cfg.vocab_size).astype(float)
    labels = eval_batch["labels"][eval_batch["labels"] != -100].numpy()
    block = [next(b for b in cfg.token_blocks if b[0] <= lab < b[0] + b[1]) for lab in labels]
    unigram = -np.mean(
        np.log([freq[lab] / freq[b[0] : b[0] + b[1]].sum() for lab, b in zip(labels, block, strict=True)])
    )
    assert after < before - 0.15 and after < unigram + 0.05, (before, after, unigram)


def test_flat_model_gives_masked_tokens_their_level(grouped_dir, samples):
    """Levels come from the object structure, so a [MASK] keeps the level of the token it hides."""
    from hep_event_models import HepEventModel, schema
    from hep_event_models.event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(grouped_dir)
    events = next(iter(tok.reader(samples["ttbar"], chunk_size=16)))
    enc = tok(events, padding=True, return_tensors="pt")
    emb = HepEventModel(_tiny_config(tok, None)).embeddings
    ids, types = enc["input_ids"], enc["token_type_ids"]
    levels = emb.levels(ids, types)
    torch.testing.assert_close(levels, emb.token_level[ids])  # unmasked: the ids' own levels
    obj = emb.token_level[ids] > 0
    masked = torch.where(obj, torch.full_like(ids, schema.MASK_ID), ids)
    torch.testing.assert_close(emb.levels(masked, types), levels)
    assert levels[obj].max() == 8  # jets: 8 sub-tokens
    assert (emb.levels(masked, None)[obj] == 0).all()  # without type ids only the ids are known


def test_cli_fits_a_grouped_object_tokenizer_and_resumes(small_file, tmp_path, capsys):
    from hep_event_models.cli import main

    args = [
        "fit-tokenizer",
        "--config",
        "muons",
        "--data",
        small_file,
        "--out",
        str(tmp_path / "mu"),
        "--max-steps",
        "20",
        "--batch-size",
        "256",
        "--eval-every",
        "10",
        "--quiet",
        "--feature-groups",
        "--set",
        "codebook_size=16",
        "--set",
        "hidden_dim=16",
        "--set",
        "decoder_hidden_dim=32",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "wrote grouped muons tokenizer" in out and "kinematics (4 levels" in out and "id_iso (2 levels" in out
    t = load_object_tokenizer(tmp_path / "mu")
    assert isinstance(t, GroupedObjectTokenizer) and t.codebook_sizes == [16] * 6
    # --resume keeps finished groups: same weights
    before = {k: v.clone() for k, v in t.state_dict().items()}
    assert main([*args, "--resume"]) == 0
    after = load_object_tokenizer(tmp_path / "mu").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="no feature groups"):
        main(
            [
                "fit-tokenizer",
                "--config",
                _flat_met(tmp_path),
                "--data",
                small_file,
                "--out",
                str(tmp_path / "met"),
                "--max-steps",
                "5",
                "--quiet",
                "--feature-groups",
            ]
        )


def test_code_embeddings_with_feature_groups(grouped_dir, samples, tmp_path):
    """Each feature group is its own code space; its levels' vectors sum to its latent."""
    from transformers import AutoModelForSequenceClassification

    from hep_event_models import HepEventForSequenceClassification
    from hep_event_models.event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(grouped_dir)
    spaces = tok.code_spaces()
    # muons: kinematics (4 levels) and id_iso (2); met: one space (4); jets: kinematics (4),
    # counts (1, a lookup table), shape (1) and btag (2)
    assert spaces == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 5, 6, 6]
    table = tok.code_vectors()
    jets = tok.object_tokenizers["jets"]
    events = next(iter(tok.reader(samples["ttbar"], chunk_size=64)))
    codes, mask = tok.encode_objects(events)["jets"]
    codes = codes[mask][:20]
    blocks = tok.layout.object_blocks("jets")
    g = jets.groups["btag"]  # levels 6 and 7 of the jets' sub-tokens
    summed = sum(table[blocks[q].start + codes[:, q], : g.code_vectors()[0].shape[1]] for q in (6, 7))
    with torch.no_grad():
        want = g.quantizer.get_output_from_indices(torch.from_numpy(codes[:, 6:8])[None])[0]
        torch.testing.assert_close(g.quantizer.project_out(torch.from_numpy(summed)), want, atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    for pooling in (None, "attention"):
        clf = HepEventForSequenceClassification(_tiny_config(tok, pooling, token_embedding="code")).eval()
        clf.set_code_vectors(tok)
        enc = tok(events, padding=True, return_tensors="pt")
        logits = clf(**enc).logits
        clf.save_pretrained(tmp_path / str(pooling))
        again = AutoModelForSequenceClassification.from_pretrained(tmp_path / str(pooling)).eval()
        torch.testing.assert_close(again(**enc).logits, logits)
