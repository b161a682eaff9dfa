"""Physics-aware event models: kinematics decoded inside the model, ParT pair bias, mass readout."""

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import hep_event_models  # noqa: F401  (registers the Auto classes)
from conftest import reload_identical
from hep_event_models import schema
from hep_event_models.collators import EventClassificationCollator
from hep_event_models.configuration_hep_event import HepEventConfig
from hep_event_models.modeling_hep_event import HepEventForMaskedLM, HepEventForSequenceClassification, pair_features
from hep_event_models.tokenized import load_tokenized

SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _batch(token_data, n=24):
    ds = load_tokenized(token_data["dir"])
    batch = EventClassificationCollator()([ds[i] for i in range(0, 300 * n, 300)])
    batch.pop("labels")
    return batch


def _model(tok, **kw):
    m = HepEventForSequenceClassification(
        HepEventConfig.from_tokenizer(tok, **{**SMALL, **kw}, num_labels=2, pair_bias=True, mass_readout=True)
    )
    m.set_tokenizer_weights(tok)
    return m.eval()


def _four_vectors(pt, eta, phi, mass):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px**2 + py**2 + pz**2 + mass**2), px, py, pz], axis=-1)


def test_kinematics_decoded_in_the_model_equal_the_tokenizer_decode(event_tokenizer, token_data):
    m = _model(event_tokenizer)
    batch = _batch(token_data)
    ids = batch["input_ids"]
    dec = event_tokenizer.decode(ids.numpy(), batch["attention_mask"].numpy())
    with torch.no_grad():
        st = m.bert.structure(batch["token_type_ids"], batch["attention_mask"])
        kin = m.bert.kinematics(ids, st)
    total, leptons = np.zeros((ids.shape[0], 4)), np.zeros((ids.shape[0], 4))
    names = [s["object"] for s in m.config.kinematics["objects"]]
    assert names == ["electrons", "muons", "met", "jets"]
    for name in names:
        c = dec.collections[name]
        sel = (st.unit_types == schema.TYPE_IDS[name]) & kin.valid
        assert int(sel.sum()) == int(c.mask.sum()) > 0, name
        pt = c.feature("pt")[c.mask]
        phi = c.feature("phi")[c.mask]
        # objects in sequence order on both sides: row-major (event, position)
        np.testing.assert_allclose(kin.pt[sel].numpy(), pt, rtol=1e-4, atol=1e-4)
        dphi = np.angle(np.exp(1j * (kin.phi[sel].numpy() - phi)))
        assert np.abs(dphi).max() < 1e-4, name
        if name == "met":  # no η or mass: η = 0, m = 0
            assert not kin.eta[sel].any() and not kin.mass[sel].any()
            eta, mass = np.zeros_like(pt), np.zeros_like(pt)
        else:
            eta = c.feature("eta")[c.mask]
            np.testing.assert_allclose(kin.eta[sel].numpy(), eta, atol=1e-4)
            mass = c.feature("mass")[c.mask] if name == "jets" else np.zeros_like(pt)
            np.testing.assert_allclose(kin.mass[sel].numpy(), mass, rtol=1e-3, atol=1e-3)
        rows = np.nonzero(c.mask)[0]
        np.add.at(total, rows, _four_vectors(pt, eta, phi, mass))
        if name in ("electrons", "muons"):
            np.add.at(leptons, rows, _four_vectors(pt, eta, phi, mass))
    # the mass readout: the mass of all objects (last set) and of electrons + muons (m_4l
    # for four-lepton events), as summed by hand from the tokenizer's decode
    ro = m.mass_readout
    with torch.no_grad():
        got, has = ro.masses(st.unit_types, kin)
    sets = [tuple(np.nonzero(r)[0]) for r in ro.member.numpy()]
    for members, want4 in ((tuple(range(len(names))), total), ((0, 1), leptons)):
        want = np.sqrt(np.maximum(want4[:, 0] ** 2 - (want4[:, 1:] ** 2).sum(-1), 0.0))
        heavy = want > 1.0  # (float32 cancellation blurs masses near 0 GeV)
        assert heavy.sum() >= 5 and want.max() > 100.0
        np.testing.assert_allclose(got[:, sets.index(members)].numpy()[heavy], want[heavy], rtol=2e-3)
    assert len(sets) == 4 + 6 + 1 and bool(has[:, -1].all())
    with torch.no_grad():
        assert m.mass_readout(st.unit_types, kin).shape == (ids.shape[0], SMALL["hidden_size"])


def test_mass_readout_pairs_are_the_leading_objects_pair_masses(event_tokenizer, token_data):
    """``mass_readout_pairs=K``: after the type sets, every pair of the K highest-pT objects of
    each type, equal to the pair masses summed by hand from the tokenizer's decode."""
    torch.manual_seed(0)
    k = 3
    m = _model(event_tokenizer, mass_readout_pairs=k)
    batch = _batch(token_data)
    ids = batch["input_ids"]
    dec = event_tokenizer.decode(ids.numpy(), batch["attention_mask"].numpy())
    ro = m.mass_readout
    with torch.no_grad():
        st = m.bert.structure(batch["token_type_ids"], batch["attention_mask"])
        kin = m.bert.kinematics(ids, st)
        got, has = ro.masses(st.unit_types, kin)
        assert m.mass_readout(st.unit_types, kin).shape == (ids.shape[0], SMALL["hidden_size"])
    names = [s["object"] for s in m.config.kinematics["objects"]]
    n_sets = len(ro.member)
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert got.shape == (ids.shape[0], n_sets + len(names) * len(pairs)) == has.shape
    checked = 0
    for t, name in enumerate(names):
        c = dec.collections[name]
        feats = {f: c.feature(f) for f in ("pt", "phi")}
        mass = c.feature("mass") if name == "jets" else np.zeros_like(feats["pt"])
        eta = np.zeros_like(feats["pt"]) if name == "met" else c.feature("eta")
        p4 = _four_vectors(feats["pt"], eta, feats["phi"], mass)
        for b in range(ids.shape[0]):
            objs = np.nonzero(c.mask[b])[0]
            objs = objs[np.argsort(-feats["pt"][b, objs], kind="stable")][:k]
            for q, (i, j) in enumerate(pairs):
                col = n_sets + t * len(pairs) + q
                if j >= len(objs):
                    assert not bool(has[b, col]), (name, b, i, j)
                    continue
                p = p4[b, objs[i]] + p4[b, objs[j]]
                want = np.sqrt(max(p[0] ** 2 - (p[1:] ** 2).sum(), 0.0))
                assert bool(has[b, col])
                if want > 1.0:
                    np.testing.assert_allclose(float(got[b, col]), want, rtol=2e-3)
                    checked += 1
    assert checked >= 20
    with pytest.raises(ValueError, match="mass_readout_pairs"):
        HepEventConfig(mass_readout_pairs=1)


def test_pair_bias_sits_between_objects_only(event_tokenizer, token_data):
    m = _model(event_tokenizer)
    batch = _batch(token_data, 8)
    ids, types, att = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    with torch.no_grad():
        for lin in m.bert.pair_bias.mlp:  # a bias far from 0 everywhere it applies
            if isinstance(lin, torch.nn.Linear):
                lin.bias.fill_(1.0)
        st = m.bert.structure(types, att)
        mask = m.bert.attention_bias(ids, st, att)
        kin = m.bert.kinematics(ids, st)
    B, L = ids.shape
    assert mask.shape == (B, SMALL["num_attention_heads"], L, L)
    lowest = torch.finfo(mask.dtype).min
    assert bool((mask.masked_select(~att.bool()[:, None, None, :].expand_as(mask)) == lowest).all())
    real = att.bool()[:, None, None, :].expand_as(mask)
    obj = st.in_object & kin.valid.gather(1, st.unit)
    pair = obj[:, :, None] & obj[:, None, :] & (st.unit[:, :, None] != st.unit[:, None, :])
    pair = pair[:, None].expand_as(mask)
    assert bool((mask[real & pair] != 0).all())
    assert bool((mask[real & ~pair] == 0).all())  # [CLS], [SEP], context, the same object
    # a masked object gets no kinematics and no bias
    b = int(torch.nonzero(st.in_object.sum(1) > 8)[0])
    pos = int(torch.nonzero(st.in_object[b])[0])
    masked = ids.clone()
    masked[b, pos] = schema.MASK_ID
    with torch.no_grad():
        kin2 = m.bert.kinematics(masked, st)
        mask2 = m.bert.attention_bias(masked, st, att)
    u = int(st.unit[b, pos])
    assert bool(kin.valid[b, u]) and not bool(kin2.valid[b, u])
    keys = att[b].bool()
    assert not bool(mask2[b, :, pos][:, keys].any()) and not bool(mask2[b, :, keys][:, :, pos].any())
    # pair features: ln m² of two decoded objects, by hand
    i, j = torch.nonzero(kin.valid[b])[:2, 0].tolist()
    f = pair_features(kin)[b, i, j]
    p = (kin.p4[b, i] + kin.p4[b, j]).double()
    assert f[3].item() == pytest.approx(float(torch.log(p[0] ** 2 - (p[1:] ** 2).sum())), rel=1e-3)


def test_physics_model_saves_loads_and_fails_clearly(event_tokenizer, token_data, tmp_path):
    with pytest.raises(ValueError, match="kinematics"):
        HepEventConfig(vocab_size=event_tokenizer.vocab_size, pair_bias=True)
    batch = _batch(token_data, 8)
    bare = HepEventForSequenceClassification(
        HepEventConfig.from_tokenizer(event_tokenizer, **SMALL, num_labels=2, mass_readout=True)
    )
    with pytest.raises(ValueError, match="set_kinematics"):
        bare(**batch)
    m = _model(event_tokenizer)
    loaded = reload_identical(m, batch, tmp_path / "m")
    kin = loaded.bert.kinematics
    assert bool(kin.ready) and not any(p.requires_grad for p in kin.parameters())
    torch.testing.assert_close(kin.code_table, m.bert.kinematics.code_table)
    # the frozen decoders are the tokenizer's
    jets = [s["object"] for s in loaded.config.kinematics["objects"]].index("jets")
    for k, v in event_tokenizer.object_tokenizers["jets"].decoder.state_dict().items():
        torch.testing.assert_close(kin.decoders[jets].state_dict()[k], v)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["pair_bias"] is True
    plain = HepEventForMaskedLM(HepEventConfig.from_tokenizer(event_tokenizer, **SMALL))
    with pytest.raises(ValueError, match="does not decode"):
        plain.set_kinematics(event_tokenizer)


def test_finetune_with_pair_bias_and_mass_readout(event_tokenizer_dir, token_data, tmp_path):
    from transformers import TrainingArguments

    from hep_event_models.training.models import DataArguments, ModelArguments, finetune, pretrain

    data = DataArguments(tokenizer=event_tokenizer_dir, train_data=token_data["dir"], eval_data=token_data["dir"])
    data.max_eval_samples = 600
    args = dict(use_cpu=True, report_to="none", save_strategy="no", per_device_train_batch_size=32, seed=0)
    pre = TrainingArguments(output_dir=str(tmp_path / "pre"), max_steps=4, learning_rate=1e-3, **args)
    pretrain(ModelArguments(**SMALL, pair_bias=True), data, pre)
    data.signal, data.background = ["hzz4l"], ["dy"]
    ft = TrainingArguments(output_dir=str(tmp_path / "ft"), max_steps=150, learning_rate=2e-3, **args)
    m = finetune(ModelArguments(model_name_or_path=str(tmp_path / "pre"), mass_readout=True), data, ft)
    assert m["eval_auc"] > 0.8 and m["eval_loss"] < 0.5, json.dumps(m)  # ln 2 = 0.69 at the start
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert clf.config.pair_bias and clf.config.mass_readout and bool(clf.bert.kinematics.ready)
    # training left the tokenizer's decoders untouched
    from hep_event_models.event_tokenizer import EventTokenizer

    tok = EventTokenizer.from_pretrained(event_tokenizer_dir)
    k = [s["object"] for s in clf.config.kinematics["objects"]].index("muons")
    for name, v in tok.object_tokenizers["muons"].decoder.state_dict().items():
        torch.testing.assert_close(clf.bert.kinematics.decoders[k].state_dict()[name], v)


def test_hierarchical_model_with_pair_bias_and_mass_readout(event_tokenizer, token_data):
    m = _model(event_tokenizer, object_pooling="attention")
    batch = _batch(token_data, 8)

    def states():
        return m.bert(**batch).last_hidden_state

    with torch.no_grad():
        m.bert.pair_bias.mlp[-1].bias.copy_(torch.tensor([3.0, -3.0]))  # a bias far from 0
        st = m.bert.structure(batch["token_type_ids"], batch["attention_mask"])
        mask = m.bert.attention_bias(batch["input_ids"], st, st.unit_mask)
        logits = m(**batch).logits
        before = states()
    U = st.unit_mask.shape[1]
    assert mask.shape == (8, SMALL["num_attention_heads"], U, U)  # one position per object
    assert logits.shape == (8, 2) and bool(torch.isfinite(logits).all())
    assert before.shape[:2] == (8, U)
    # the bias reaches the objects' states: zeroing it changes them
    with torch.no_grad():
        m.bert.pair_bias.mlp[-1].weight.zero_()
        m.bert.pair_bias.mlp[-1].bias.zero_()
        obj = st.unit_is_object & st.unit_mask.bool()
        assert (states() - before)[obj].abs().max() > 1e-3


def test_kinematics_stay_float32_under_bf16(event_tokenizer, token_data, tmp_path):
    """bf16 (cast, autocast, or loaded with dtype) leaves the decoded physics at float32 precision."""
    m = _model(event_tokenizer)
    batch = _batch(token_data, 8)
    with torch.no_grad():
        st = m.bert.structure(batch["token_type_ids"], batch["attention_mask"])
        want = m.bert.kinematics(batch["input_ids"], st)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = m.bert.kinematics(batch["input_ids"], st)
        m.save_pretrained(tmp_path / "m")
        m.to(torch.bfloat16)
        assert m.classifier[0].weight.dtype == torch.bfloat16
        kin = m.bert.kinematics
        assert {t.dtype for t in [*kin.parameters(), kin.code_table]} == {torch.float32}
        cast = kin(batch["input_ids"], st)
        assert m(**batch).logits.dtype == torch.bfloat16  # the rest of the model runs in bf16
        loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
        assert loaded.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
        lk = loaded.bert.kinematics
        assert {t.dtype for t in [*lk.parameters(), lk.code_table]} == {torch.float32}
        from_dtype = lk(batch["input_ids"], st)
    for got in (auto, cast, from_dtype):
        assert got.p4.dtype == torch.float32
        torch.testing.assert_close(got.p4, want.p4, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(got.pt, want.pt, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("pooling", [None, "attention"])
def test_kinematics_embedding_reaches_visible_objects_only(event_tokenizer, token_data, tmp_path, pooling):
    from hep_event_models.modeling_hep_event import HepEventKinematicsEmbedding

    m = HepEventForSequenceClassification(
        HepEventConfig.from_tokenizer(
            event_tokenizer, **SMALL, num_labels=2, kinematics_embedding=True, object_pooling=pooling
        )
    )
    m.set_tokenizer_weights(event_tokenizer)
    m.eval()
    batch = _batch(token_data, 8)
    ids, types, att = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    with torch.no_grad():
        st = m.bert.structure(types, att)
        kin = m.bert.kinematics(ids, st)
        # the inputs, by hand: ln pT, eta, cos phi, sin phi, ln(1 + m), (px, py, pz, E) / 100 GeV
        f = HepEventKinematicsEmbedding.features(kin)
        b, u = (int(i) for i in torch.nonzero(kin.valid & (kin.mass > 1.0))[0])  # a jet
        pt, eta, phi, mass = (float(t[b, u]) for t in (kin.pt, kin.eta, kin.phi, kin.mass))
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
        want = [np.log(pt), eta, np.cos(phi), np.sin(phi), np.log1p(mass), px / 100, py / 100, pz / 100, e / 100]
        np.testing.assert_allclose(f[b, u].numpy(), want, rtol=1e-4, atol=1e-5)
        assert not bool(f[~kin.valid].any())

        def kinematics_part(input_ids):
            """What the kinematics embedding adds to the encoder's input, (B, N) max |.|."""
            with_kin = m.bert.embed(input_ids, types, att)[0]
            last = m.bert.kinematics_embedding.mlp[-1]
            saved = (last.weight.clone(), last.bias.clone())
            last.weight.zero_()
            last.bias.zero_()
            without = m.bert.embed(input_ids, types, att)[0]
            last.weight.copy_(saved[0])
            last.bias.copy_(saved[1])
            return (with_kin - without).abs().amax(-1)

        # exactly the positions of objects with decoded kinematics: never [CLS], [SEP], context, padding
        if pooling is None:
            want_changed = st.in_object & kin.valid.gather(1, st.unit)
        else:
            want_changed = st.unit_is_object & kin.valid
        assert bool(((kinematics_part(ids) > 1e-6) == want_changed).all()) and int(want_changed.sum()) > 10
        # one token of the jet masked: the whole jet gets no kinematics, the other objects keep theirs
        own = st.in_object[b] & (st.unit[b] == u)
        masked = ids.clone()
        masked[b, int(torch.nonzero(own)[0])] = schema.MASK_ID
        assert not bool(m.bert.kinematics(masked, st).valid[b, u])
        part = kinematics_part(masked)[b]
        if pooling is None:
            assert float(part[own].max()) == 0.0 and bool((part[~own] > 1e-6).eq(want_changed[b][~own]).all())
        else:
            others = torch.arange(part.shape[0]) != u
            assert float(part[u]) == 0.0 and bool((part[others] > 1e-6).eq(want_changed[b][others]).all())
    loaded = reload_identical(m, batch, tmp_path / "m")
    assert loaded.config.kinematics_embedding and bool(loaded.bert.kinematics.ready)


def test_pretrain_and_finetune_with_kinematics_embedding(event_tokenizer_dir, token_data, tmp_path):
    from transformers import TrainingArguments

    from hep_event_models.training.models import DataArguments, ModelArguments, finetune, pretrain

    data = DataArguments(tokenizer=event_tokenizer_dir, train_data=token_data["dir"], eval_data=token_data["dir"])
    data.max_eval_samples = 600
    args = dict(use_cpu=True, report_to="none", save_strategy="no", per_device_train_batch_size=32, seed=0)
    pre = TrainingArguments(output_dir=str(tmp_path / "pre"), max_steps=4, learning_rate=1e-3, **args)
    metrics = pretrain(ModelArguments(**SMALL, kinematics_embedding=True), data, pre)
    assert np.isfinite(metrics["eval_loss"])
    mlm = HepEventForMaskedLM.from_pretrained(tmp_path / "pre")
    assert mlm.config.kinematics_embedding and bool(mlm.bert.kinematics.ready)
    assert not any(p.requires_grad for p in mlm.bert.kinematics.parameters())
    data.signal, data.background = ["hzz4l"], ["dy"]
    ft = TrainingArguments(output_dir=str(tmp_path / "ft"), max_steps=100, learning_rate=2e-3, **args)
    m = finetune(ModelArguments(model_name_or_path=str(tmp_path / "pre"), mass_readout=True), data, ft)
    assert m["eval_auc"] > 0.8, json.dumps(m)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert clf.config.kinematics_embedding and clf.config.mass_readout
    # the classifier's kinematics embedding started from the pretrained one (a fresh init
    # would be uncorrelated with it) and trained on
    a, b = (x.bert.kinematics_embedding.mlp[0].weight.detach().flatten() for x in (mlm, clf))
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.5 and not torch.equal(a, b)


def test_fourier_mass_readout_init_is_smooth_and_survives_save_load(event_tokenizer, tmp_path):
    """``mass_readout_init="fourier"``: every set's table starts as the sin/cos basis of the
    bin's ln m position (neighbouring bins close, unlike the independent random rows), and a
    saved model loads its trained table, not a fresh basis."""
    torch.manual_seed(0)
    m = _model(event_tokenizer, mass_readout_init="fourier", mass_readout_pairs=2)
    ro = m.mass_readout
    w = ro.table.weight.detach().view(-1, ro.bins, ro.DIM)
    u = torch.linspace(0, 1, ro.bins)
    torch.testing.assert_close(w[0, :, 0], torch.sin(2 * math.pi * u), atol=1e-5, rtol=0)
    torch.testing.assert_close(w[-1, :, 15], torch.cos(2 * math.pi * 128 * u), atol=1e-4, rtol=0)
    assert torch.equal(w[0], w[-1])
    step = (w[:, 1:] - w[:, :-1]).norm(dim=-1).mean()
    rough = _model(event_tokenizer).mass_readout.table.weight.view(-1, ro.bins, ro.DIM)
    rough_step = (rough[:, 1:] - rough[:, :-1]).norm(dim=-1).mean() / rough.norm(dim=-1).mean()
    assert step / w.norm(dim=-1).mean() < 0.6 * rough_step
    with torch.no_grad():
        ro.table.weight.add_(0.25)
    m.save_pretrained(tmp_path)
    again = HepEventForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(again.mass_readout.table.weight, ro.table.weight)
    with pytest.raises(ValueError, match="mass_readout_init"):
        HepEventConfig(mass_readout_init="uniform")
