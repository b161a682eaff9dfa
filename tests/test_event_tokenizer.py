"""EventTokenizer: layout, sequences, truncation, decode, persistence, Hub, collators."""

import json
import shutil

import numpy as np
import pytest
import torch

from hep_event_models import physics, schema
from hep_event_models.event_tokenizer import EventTokenizer
from hep_event_models.io import EventBatch

OBJECTS = ["electrons", "muons", "met", "jets"]


def _events(tok, path, n=256):
    return EventBatch.concat(list(tok.reader(path, chunk_size=n, max_events=n)))


def test_layout_blocks_and_vocabulary(event_tokenizer, tmp_path):
    tok = event_tokenizer
    lay = tok.layout
    assert tok.objects == OBJECTS
    # contiguous, non-overlapping blocks after the reserved ids
    start = schema.NUM_RESERVED_IDS
    for b in lay.blocks:
        assert b.start == start
        start = b.stop
    assert start == tok.vocab_size == len(tok) == schema.NUM_RESERVED_IDS + 50 + 4 * 3 * 256
    assert [b.name for b in lay.blocks[:1]] == ["mu"]
    assert tok.pad_token_id == 0 and tok.cls_token_id == 1 and tok.sep_token_id == 2 and tok.mask_token_id == 3
    # readable strings are exact both ways
    ids = list(range(tok.vocab_size))
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[:5] == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    assert toks[schema.NUM_RESERVED_IDS] == "event_mu_0"
    assert tok.convert_ids_to_tokens(lay.object_blocks("jets")[2].start + 7) == "jets_q2_7"
    assert tok.convert_tokens_to_ids(toks) == ids
    assert tok.convert_tokens_to_ids("nonsense") == tok.unk_token_id
    # the saved WordLevel tokenizer.json agrees
    from tokenizers import Tokenizer

    tok.save_pretrained(tmp_path / "t")
    wl = Tokenizer.from_file(str(tmp_path / "t" / "tokenizer.json"))
    assert wl.encode("[CLS] event_mu_3 jets_q0_5 [SEP]").ids == tok.convert_tokens_to_ids(
        ["[CLS]", "event_mu_3", "jets_q0_5", "[SEP]"]
    )


def test_sequence_structure(event_tokenizer, samples):
    tok = event_tokenizer
    ev = _events(tok, samples["ttbar"])
    enc = tok(ev, return_tensors=None)  # ragged lists
    codes = tok.encode_objects(ev)
    for i in range(len(ev)):
        ids = np.asarray(enc["input_ids"][i])
        types = np.asarray(enc["token_type_ids"][i])
        assert ids[0] == tok.cls_token_id and types[0] == 0
        assert types[1] == schema.TYPE_IDS["event"] and tok.convert_ids_to_tokens(int(ids[1])).startswith("event_mu_")
        assert (ids == tok.sep_token_id).sum() == len(OBJECTS)
        assert ids[-1] == tok.sep_token_id
        assert enc["attention_mask"][i] == [1] * len(ids)
        # objects of each collection in order, Q tokens each, between the [SEP]s
        segments = np.split(ids[2:], np.nonzero(ids[2:] == tok.sep_token_id)[0] + 1)
        for name, seg in zip(OBJECTS, segments, strict=False):
            c, m = codes[name]
            body = seg[:-1]
            blocks = tok.layout.object_blocks(name)
            expect = (c[i][m[i]] + np.array([b.start for b in blocks])).reshape(-1)
            np.testing.assert_array_equal(body, expect)
            assert (types[np.isin(ids, body)] == schema.TYPE_IDS[name]).all()
    # objects are pT-ordered: the decoded order follows the input order, which is pT-descending
    back = tok.decode(enc["input_ids"])
    pt = back.collections["jets"].feature("pt")
    m = back.collections["jets"].mask
    lead = ev.collections["jets"].feature("pt")
    assert (lead[:, :-1] >= lead[:, 1:])[ev.collections["jets"].mask[:, 1:]].all()
    assert m.sum() == ev.collections["jets"].mask.sum()
    assert np.isfinite(pt[m]).all()


def test_padding_and_tensor_options(event_tokenizer, samples):
    tok = event_tokenizer
    ev = _events(tok, samples["hzz4l"], 64)
    pt = tok(ev, padding=True, return_tensors="pt")
    assert isinstance(pt["input_ids"], torch.Tensor) and pt["input_ids"].dtype == torch.int64
    lengths = pt["attention_mask"].sum(1)
    assert pt["input_ids"].shape[1] == int(lengths.max())
    assert (pt["input_ids"][pt["attention_mask"] == 0] == tok.pad_token_id).all()
    npy = tok(ev, padding="max_length", max_length=200, return_tensors="np")
    assert npy["input_ids"].shape == (64, 200)
    np.testing.assert_array_equal(npy["input_ids"][:, : pt["input_ids"].shape[1]], pt["input_ids"].numpy())
    mult = tok(ev, padding=True, pad_to_multiple_of=16, return_tensors="np")
    assert mult["input_ids"].shape[1] % 16 == 0
    with pytest.raises(ValueError, match="different lengths"):
        tok(ev, padding=False, return_tensors="pt")
    sp = tok(ev, padding=True, return_special_tokens_mask=True, return_tensors="np")
    np.testing.assert_array_equal(sp["special_tokens_mask"], (sp["input_ids"] < schema.NUM_RESERVED_IDS).astype(int))
    assert tok.get_special_tokens_mask([1, 20, 2, 0]) == [1, 0, 1, 1]


def test_truncation_drops_whole_objects_from_the_end(event_tokenizer, samples):
    tok = event_tokenizer
    ev = _events(tok, samples["ttbar"], 128)
    full = tok(ev, return_tensors=None)
    cut = tok(ev, truncation=True, max_length=24, return_tensors=None)
    q = 3
    for f, c in zip(full["input_ids"], cut["input_ids"], strict=True):
        assert len(c) <= 24
        assert c.count(tok.sep_token_id) == len(OBJECTS) and c[0] == tok.cls_token_id
        if len(f) <= 24:
            assert c == f
            continue
        # the kept sequence is the full one with whole objects removed from the back collections
        segs_f = _segments(f, tok)
        segs_c = _segments(c, tok)
        for sf, sc in zip(segs_f, segs_c, strict=True):
            assert len(sc) % q == 0 and sc == sf[: len(sc)]  # leading objects kept, in order
        dropped = [len(sf) - len(sc) for sf, sc in zip(segs_f, segs_c, strict=True)]
        # removal starts at the last collection: an earlier one loses objects only if all later ones are empty
        for k in range(len(dropped) - 1):
            if dropped[k]:
                assert all(len(s) == 0 for s in segs_c[k + 1 :])
    with pytest.raises(ValueError, match="shorter than the fixed tokens"):
        tok(ev, truncation=True, max_length=4)


def _segments(ids, tok):
    body = ids[2:]  # after [CLS] and the context token
    out, cur = [], []
    for t in body:
        if t == tok.sep_token_id:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return out


def test_object_and_separate_modes(event_tokenizer, samples):
    tok = event_tokenizer
    ev = _events(tok, samples["dy"], 32)
    full = tok(ev, return_tensors=None)
    one = tok(ev, mode="object", collection="muons", return_tensors=None)
    sep = tok(ev, mode="separate", padding=True, return_tensors="pt")
    assert set(sep) == set(OBJECTS)
    for i in range(len(ev)):
        mu = _segments(full["input_ids"][i], tok)[OBJECTS.index("muons")]
        assert one["input_ids"][i] == full["input_ids"][i][:2] + mu + [tok.sep_token_id]
        row = sep["muons"]["input_ids"][i][sep["muons"]["attention_mask"][i] == 1].tolist()
        assert row == one["input_ids"][i]
    with pytest.raises(ValueError, match="collection"):
        tok(ev, mode="object")


def test_decode_reproduces_objects_and_masses(event_tokenizer, samples):
    tok = event_tokenizer
    ev = _events(tok, samples["hzz4l"], 2000)
    enc = tok(ev, padding=True, return_tensors="pt")
    back = tok.decode(enc["input_ids"], enc["attention_mask"])
    codes = tok.encode_objects(ev)
    for name in OBJECTS:
        c, m = codes[name]
        b = back.collections[name]
        # exactly what the object tokenizer decodes from the same codes
        ref = tok.object_tokenizers[name].decode(c[m])
        np.testing.assert_allclose(b.values[b.mask], ref, rtol=1e-6, atol=1e-6)
        assert b.mask.sum() == m.sum()
    # within the tokenizer's measured resolution (recorded at fit time on held-out events)
    diag = tok.metadata["diagnostics"]["muons"]
    orig = ev.collections["muons"]
    dec = back.collections["muons"]
    w = min(orig.values.shape[1], dec.values.shape[1])
    both = orig.mask[:, :w] & dec.mask[:, :w]
    rel = dec.feature("pt")[:, :w][both] / orig.feature("pt")[:, :w][both] - 1
    iqr = np.subtract(*np.percentile(rel, [75, 25])) / 1.349
    assert iqr < 2.0 * diag["pt_resolution"] + 1e-3
    exact = (dec.feature("charge")[:, :w][both] == orig.feature("charge")[:, :w][both]).mean()
    assert exact >= diag["discrete_exact_min"] - 0.01 and exact > 0.97
    # context at the bin centre
    mu, mu_back = ev.scalars["event/mu"], back.scalars["event/mu"]
    assert np.all(np.abs(mu - mu_back) <= 1.0 + 1e-9)  # 50 bins over [0, 100]: half-width 1
    # derived physics survives: the Higgs peak in m_4l
    m4, m4b = physics.four_lepton(ev), physics.four_lepton(back)
    ok = m4.valid & m4b.valid
    assert m4.valid.mean() > 0.2 and ok.mean() > 0.9 * m4.valid.mean()  # charges and flavours survive
    assert abs(np.median(m4b.m4l[ok]) - np.median(m4.m4l[ok])) < 5.0
    # per event, m_4l moves by about the lepton pT resolution of this small tokenizer
    assert np.median(np.abs(m4b.m4l[ok] / m4.m4l[ok] - 1)) < 0.75 * diag["pt_resolution"]


def test_decode_handles_malformed_sequences(event_tokenizer):
    tok = event_tokenizer
    b0 = tok.layout.object_blocks("jets")
    good = [tok.cls_token_id, b0[0].start + 1, b0[1].start + 2, b0[2].start + 3, tok.sep_token_id]
    broken = [tok.cls_token_id, b0[0].start + 1, b0[1].start + 2, tok.sep_token_id]
    with pytest.warns(UserWarning, match="incomplete"):
        back = tok.decode([good, broken])
    assert back.collections["jets"].mask.tolist() == [[True], [False]]
    single = tok.decode(good)  # one flat sequence is one event
    assert single.collections["jets"].mask.tolist() == [[True]]
    np.testing.assert_array_equal(single.collections["jets"].values[0, 0], back.collections["jets"].values[0, 0])
    assert np.isnan(back.scalars["event/mu"]).all()
    with pytest.raises(ValueError, match="outside"):
        tok.decode([[tok.vocab_size + 5]])


def test_save_load_ids_identical_and_version_checks(event_tokenizer, samples, tmp_path):
    tok = event_tokenizer
    ev = _events(tok, samples["ttbar"], 128)
    tok.save_pretrained(tmp_path / "tok")
    files = {p.relative_to(tmp_path / "tok").as_posix() for p in (tmp_path / "tok").rglob("*") if p.is_file()}
    assert {"tokenizer_config.json", "tokenizer.json", "README.md", "objects/jets/model.safetensors"} <= files
    assert not any(".tmp" in f or f.startswith(".") for f in files)
    loaded = EventTokenizer.from_pretrained(tmp_path / "tok")
    a = tok(ev, padding=True, return_tensors="np")
    b = loaded(ev, padding=True, return_tensors="np")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert loaded.fingerprint == tok.fingerprint and loaded.layout_fingerprint == tok.layout_fingerprint
    card = (tmp_path / "tok" / "README.md").read_text()
    assert tok.fingerprint in card and "library_name: hep_event_models" in card and "| jets |" in card
    # a newer format is refused with a clear message
    cfg_path = tmp_path / "tok" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99 is not supported"):
        EventTokenizer.from_pretrained(tmp_path / "tok")
    # weights that do not match the recorded fingerprint are refused
    cfg_path.write_text(json.dumps(cfg))
    shutil.copy(tmp_path / "tok" / "objects" / "muons" / "config.json", tmp_path / "muons_config.json")
    from safetensors.torch import load_file, save_file

    w = load_file(tmp_path / "tok" / "objects" / "jets" / "model.safetensors")
    k = next(k for k in w if k.startswith("decoder"))
    w[k] = w[k] + 1.0
    save_file(w, tmp_path / "tok" / "objects" / "jets" / "model.safetensors")
    with pytest.raises(ValueError, match="fingerprint"):
        EventTokenizer.from_pretrained(tmp_path / "tok")


def test_push_to_hub_sends_files_and_revision(event_tokenizer, monkeypatch):
    import huggingface_hub

    calls = []

    def record(name):
        def f(self, *args, **kwargs):
            entry = {"call": name, "args": args, **kwargs}
            if name == "upload_folder":
                root = kwargs["folder_path"]
                import pathlib

                entry["files"] = sorted(
                    p.relative_to(root).as_posix() for p in pathlib.Path(root).rglob("*") if p.is_file()
                )
                entry["config"] = json.loads((pathlib.Path(root) / "tokenizer_config.json").read_text())
            calls.append(entry)
            return "https://hub.example/commit/abc"

        return f

    for name in ("create_repo", "create_branch", "upload_folder", "create_tag"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, record(name))
    tok = event_tokenizer
    tok.push_to_hub("org/hep-tok", revision="v1.0", commit_message="first", tag="release-1")
    names = [c["call"] for c in calls]
    assert names == ["create_repo", "create_branch", "upload_folder", "create_tag"]
    assert calls[1]["branch"] == "v1.0"
    up = calls[2]
    assert up["revision"] == "v1.0" and up["commit_message"] == "first" and up["repo_id"] == "org/hep-tok"
    assert up["config"]["tokenizer_fingerprint"] == tok.fingerprint
    assert {"tokenizer_config.json", "tokenizer.json", "README.md"} <= set(up["files"])
    assert {f"objects/{n}/{x}" for n in OBJECTS for x in ("config.json", "model.safetensors")} <= set(up["files"])
    assert calls[3]["tag"] == "release-1" and calls[3]["revision"] == "v1.0"
    # main needs no branch
    calls.clear()
    tok.push_to_hub("org/hep-tok")
    assert [c["call"] for c in calls] == ["create_repo", "upload_folder"]


def test_load_by_repo_id_and_revision_from_hub_cache(event_tokenizer, tmp_path, monkeypatch):
    """The Hub cache layout (models--org--name/snapshots/<commit>, refs/<revision>) loads offline."""
    tok = event_tokenizer
    cache = tmp_path / "hub"
    repo = cache / "models--org--hep-tok"
    commit = "0123456789abcdef0123456789abcdef01234567"
    tok.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "v1.0").write_text(commit)
    loaded = EventTokenizer.from_pretrained("org/hep-tok", revision="v1.0", cache_dir=cache, local_files_only=True)
    assert loaded.fingerprint == tok.fingerprint
    with pytest.raises(Exception, match=r"(?i)revision|snapshot|cache|find"):
        EventTokenizer.from_pretrained("org/hep-tok", revision="v2.0", cache_dir=cache, local_files_only=True)


def test_works_with_transformers_collator(event_tokenizer, samples):
    from transformers import DataCollatorForLanguageModeling

    tok = event_tokenizer
    ev = _events(tok, samples["dy"], 16)
    enc = tok(ev, return_tensors=None)
    rows = [{k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in range(16)]
    torch.manual_seed(0)
    coll = DataCollatorForLanguageModeling(tokenizer=tok, mlm=True, mlm_probability=0.3)
    batch = coll(rows)
    assert batch["input_ids"].shape == batch["labels"].shape
    special = batch["labels"] == -100
    orig = tok.pad(rows, return_tensors="pt")["input_ids"]
    # special tokens and padding are never chosen for prediction
    assert (special | (orig >= schema.NUM_RESERVED_IDS)).all()
    assert ((batch["labels"] != -100) & (orig < schema.NUM_RESERVED_IDS)).sum() == 0
