"""LookupTokenizer: exact tokens for groups of discrete features (``quantizer: lookup``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hep_event_models.config import ObjectConfig, config_dir, load_object_config
from hep_event_models.grouped_tokenizer import load_object_tokenizer
from hep_event_models.io.reader import EventReader
from hep_event_models.lookup_tokenizer import LookupTokenizer
from hep_event_models.object_tokenizer import ObjectTokenizer
from hep_event_models.training.tokenizer import fit_object_tokenizer, held_out


def _jets_group(names, **tokenizer) -> ObjectConfig:
    jets = load_object_config(config_dir() / "jets.yaml")
    feats = [f.to_dict() for f in jets.features if f.name in names]
    tok = {"quantizer": "lookup", **tokenizer}
    return ObjectConfig.from_dict({"object": "jets", "features": feats, "tokenizer": tok})


def _objects(cfg: ObjectConfig, path: str, train: bool) -> np.ndarray:
    """Real objects ``(N, F)`` of the training (or held-out) events of ``path``."""
    out = []
    for b in EventReader(path, selection=[cfg], scalars=()):
        c = b.collections[cfg.object]
        ev = held_out(b.event_index, 20)
        keep = c.mask & (~ev if train else ev)[:, None]
        out.append(c.values[keep])
    return np.concatenate(out).astype(np.float64)


@pytest.fixture(scope="module")
def counts_dir(samples, tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("lookup") / "counts"
    fit_object_tokenizer(_jets_group(["n_trk", "QG_nTracks"]), samples["ttbar"], d, progress=False)
    return str(d)


def test_lookup_table_is_the_training_tuples_and_round_trips_exactly(counts_dir, samples):
    cfg = _jets_group(["n_trk", "QG_nTracks"])
    tok = load_object_tokenizer(counts_dir)
    assert isinstance(tok, LookupTokenizer)
    train = _objects(cfg, samples["ttbar"], train=True)
    distinct, n = np.unique(train, axis=0, return_counts=True)
    assert tok.codebook_sizes == [len(distinct)] and 50 < len(distinct) < 1000
    np.testing.assert_array_equal(tok.table.numpy(), distinct)  # rows sorted by value
    np.testing.assert_array_equal(tok.counts.numpy(), n)  # each row's training occurrences
    summary = json.loads((Path(counts_dir) / "training_summary.json").read_text())
    assert summary["steps"] == 0 and summary["final"]["table_rows"] == len(distinct)
    assert (Path(counts_dir) / "model.safetensors").exists()

    # every training object: its own row back, bit for bit
    codes = tok.encode(train)
    assert codes.shape == (len(train), 1) and codes.dtype == np.int64
    np.testing.assert_array_equal(tok.decode(codes), train)
    np.testing.assert_array_equal(distinct[codes[:, 0]], train)
    # held-out objects whose tuple was seen in training are exact too
    held = _objects(cfg, samples["ttbar"], train=False)
    seen = (held[:, None, :] == distinct[None]).all(-1).any(-1)
    assert seen.mean() > 0.99
    np.testing.assert_array_equal(tok.contains(held), seen)
    assert summary["final"]["val_in_table"] == pytest.approx(seen.mean())
    np.testing.assert_array_equal(tok.decode(tok.encode(held[seen])), held[seen])


def test_lookup_padded_input_nearest_fallback_and_bad_input(counts_dir):
    tok = load_object_tokenizer(counts_dir)
    table = tok.table.numpy()
    # padded (B, M, F) with a mask: -1 on padding, decoded to 0
    vals = np.zeros((2, 3, 2), dtype=np.float32)
    vals[0, :2] = table[[0, 5]]
    vals[1, 0] = table[-1]
    mask = np.array([[True, True, False], [True, False, False]])
    codes = tok.encode(vals, mask)
    assert codes.shape == (2, 3, 1)
    np.testing.assert_array_equal(codes[..., 0], [[0, 5, -1], [len(table) - 1, -1, -1]])
    np.testing.assert_array_equal(tok.decode(codes)[mask], vals[mask])
    assert (tok.decode(codes)[~mask] == 0).all()
    # a tuple outside the table: the nearest row in model space (standardised counts)
    far = table[np.argmax(table[:, 0])].copy()
    odd = np.array([[far[0] + 40.0, far[1]], [table[3, 0] + 0.5, table[3, 1]]])
    got = tok.decode(tok.encode(odd))
    np.testing.assert_array_equal(got[0], far)
    z = tok.preprocessor.forward(odd[1:])
    vec = tok.code_vectors()[0]
    np.testing.assert_array_equal(got[1], table[np.argmin(((vec - z) ** 2).sum(1))])
    with pytest.raises(ValueError, match="non-finite"):
        tok.encode(np.array([[np.nan, 3.0]]))
    with pytest.raises(ValueError, match="outside the lookup table"):
        tok.decode(np.array([[len(table)]]))


def test_lookup_capacity_min_count_and_save_load(samples, tmp_path):
    cfg = _jets_group(["n_trk", "QG_nTracks"], codebook_size=16)
    fit_object_tokenizer(cfg, samples["ttbar"], tmp_path / "small", progress=False)
    tok = load_object_tokenizer(tmp_path / "small")
    train = _objects(cfg, samples["ttbar"], train=True)
    rows, n = np.unique(train, axis=0, return_counts=True)
    top = rows[np.argsort(-n, kind="stable")[:16]]
    assert tok.codebook_sizes == [16]
    np.testing.assert_array_equal(tok.table.numpy(), np.unique(top, axis=0))
    assert tok.counts.sum() == np.sort(n)[::-1][:16].sum()

    # a run's quantizer setting (e.g. the demo's rfsq) does not turn a lookup group into another kind
    fit_object_tokenizer(
        _jets_group(["n_trk", "QG_nTracks"], lookup_min_count=5),
        samples["ttbar"],
        tmp_path / "mc",
        settings={"quantizer": "rfsq", "codebook_size": 4096},
        progress=False,
    )
    assert load_object_tokenizer(tmp_path / "mc").codebook_sizes == [int((n >= 5).sum())]

    # save/load: same table, same codes; the state dict carries the table (fingerprints see it)
    tok.save_pretrained(tmp_path / "again")
    back = LookupTokenizer.from_pretrained(tmp_path / "again")
    np.testing.assert_array_equal(back.table.numpy(), tok.table.numpy())
    np.testing.assert_array_equal(back.counts.numpy(), tok.counts.numpy())
    np.testing.assert_array_equal(back.encode(train[:500]), tok.encode(train[:500]))
    assert {"table", "counts"} <= set(back.state_dict())


def test_lookup_rejects_continuous_features_and_is_not_an_object_tokenizer(samples, tmp_path):
    with pytest.raises(ValueError, match=r"discrete features only.*QG_tracksWidth"):
        fit_object_tokenizer(_jets_group(["n_trk", "QG_tracksWidth"]), samples["ttbar"], tmp_path / "x", progress=False)
    cfg = _jets_group(["n_trk"])
    from hep_event_models.preprocessing import ObjectPreprocessor

    pre = ObjectPreprocessor(cfg)
    pre.partial_fit(np.array([[1.0], [2.0]]))
    pre.finalize()
    with pytest.raises(ValueError, match="LookupTokenizer"):
        ObjectTokenizer(cfg.to_dict(), pre.to_dict(), {"quantizer": "lookup"})
