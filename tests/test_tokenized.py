"""Tokenized datasets: Parquet/Arrow shards, datasets round trip, resume, fingerprints, CLI."""

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hep_event_models.cli import main
from hep_event_models.event_tokenizer import EventTokenizer
from hep_event_models.io import EventBatch
from hep_event_models.tokenized import (
    FingerprintMismatchError,
    load_tokenized,
    on_the_fly_dataset,
    tokenize_dataset,
)


def _reference_rows(tok, files):
    """Direct tokenization of every event, keyed by (file name, row)."""
    out = {}
    for f in files:
        ev = EventBatch.concat(list(tok.reader(f, chunk_size=4096)))
        enc = tok(ev, return_tensors=None)
        for i in range(len(ev)):
            out[(Path(f).name, int(ev.event_index[i]))] = (enc["input_ids"][i], enc["token_type_ids"][i], ev.labels[i])
    return out


@pytest.fixture(scope="module")
def small_files(samples, tmp_path_factory):
    """Two small files (3,000 dy and 2,000 hzz4l events) to tokenize."""
    from hep_event_models.generator import generate

    d = tmp_path_factory.mktemp("tokfiles")
    a, b = d / "dy.h5", d / "hzz4l.h5"
    generate("dy", 3000, a, seed=11, progress=False, workers=1)
    generate("hzz4l", 2000, b, seed=12, progress=False, workers=1)
    return [str(a), str(b)]


def test_parquet_round_trip_through_datasets(event_tokenizer, event_tokenizer_dir, small_files, tmp_path):
    tok = event_tokenizer
    out = tmp_path / "pq"
    s = tokenize_dataset(event_tokenizer_dir, small_files, out, rows_per_shard=1200, chunk_size=500, progress=False)
    assert s["events"] == 5000 and len(s["shards_written"]) == 3 + 2 and not s["shards_skipped"]
    assert (out / "dataset_manifest.json").exists()
    assert not list(out.glob(".*tmp"))
    # narrow types and the fingerprint in the schema
    sch = pq.read_schema(next(out.glob("*.parquet")))
    assert str(sch.field("input_ids").type) == "list<element: uint16>"
    assert str(sch.field("token_type_ids").type) == "list<element: int8>"
    assert str(sch.field("label").type) == "int16"
    md = json.loads(sch.metadata[b"hep_event_models"])
    assert md["tokenizer_fingerprint"] == tok.fingerprint and md["layout_fingerprint"] == tok.layout_fingerprint
    ref = _reference_rows(tok, small_files)
    ds = load_tokenized(out, tokenizer=tok)
    assert len(ds) == 5000
    for row in ds.select(range(0, 5000, 97)):
        ids, types, label = ref[(row["source_file"], row["event_index"])]
        assert row["input_ids"] == ids and row["token_type_ids"] == types and row["label"] == label
        assert row["attention_mask"] == [1] * len(ids)
    assert set(ds["label"]) == {3, 0}  # dy, hzz4l
    # streaming through datasets' own parquet loader
    st = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train", streaming=True)
    first = next(iter(st))
    assert first["input_ids"] == ref[(first["source_file"], first["event_index"])][0]


def test_arrow_format_loads_from_disk(event_tokenizer_dir, event_tokenizer, small_files, tmp_path):
    out = tmp_path / "ar"
    tokenize_dataset(event_tokenizer_dir, small_files[:1], out, fmt="arrow", rows_per_shard=1000, progress=False)
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 3000 and ds.features["input_ids"].feature.dtype == "uint16"
    ref = _reference_rows(event_tokenizer, small_files[:1])
    row = ds[1234]
    assert row["input_ids"] == ref[(row["source_file"], row["event_index"])][0]


def test_interrupted_tokenize_resumes_to_identical_output(event_tokenizer_dir, small_files, tmp_path):
    full = tmp_path / "full"
    tokenize_dataset(event_tokenizer_dir, small_files, full, rows_per_shard=1000, progress=False)
    part = tmp_path / "part"
    tokenize_dataset(event_tokenizer_dir, small_files, part, rows_per_shard=1000, progress=False)
    # simulate a crash: two shards missing, one half-written temporary left behind
    shards = sorted(p.name for p in part.glob("*.parquet"))
    (part / shards[1]).rename(part / f".{shards[1]}.tmp")
    (part / shards[3]).unlink()
    (part / "dataset_manifest.json").unlink()
    s = tokenize_dataset(event_tokenizer_dir, small_files, part, rows_per_shard=1000, progress=False)
    assert sorted(s["shards_written"]) == [shards[1], shards[3]] and len(s["shards_skipped"]) == len(shards) - 2
    assert sorted(p.name for p in part.glob("*.parquet")) == shards and not list(part.glob(".*"))
    for name in shards:
        assert pq.read_table(part / name).equals(pq.read_table(full / name))
    assert (part / "dataset_manifest.json").exists()
    # two processes (this one and a spawned worker with its own tokenizer) write the same
    # shards as one process, and this process's thread count is restored afterwards
    multi = tmp_path / "multi"
    threads = torch.get_num_threads()
    s = tokenize_dataset(event_tokenizer_dir, small_files, multi, rows_per_shard=1000, num_proc=2, progress=False)
    assert torch.get_num_threads() == threads
    assert sorted(s["shards_written"]) == shards and s["events"] == 5000
    for name in shards:
        assert pq.read_table(multi / name).equals(pq.read_table(full / name))
    assert (multi / "dataset_manifest.json").read_text() == (full / "dataset_manifest.json").read_text()


def test_file_level_sharding_across_jobs(event_tokenizer_dir, small_files, tmp_path):
    out = tmp_path / "jobs"
    s0 = tokenize_dataset(event_tokenizer_dir, small_files, out, shard_index=0, num_shards=2, progress=False)
    assert s0["events"] == 3000 and not (out / "dataset_manifest.json").exists()
    s1 = tokenize_dataset(event_tokenizer_dir, small_files, out, shard_index=1, num_shards=2, progress=False)
    assert s1["events"] == 2000 and (out / "dataset_manifest.json").exists()
    assert len(load_tokenized(out)) == 5000


def test_fingerprint_mismatch_raises(event_tokenizer_dir, event_tokenizer, small_files, tmp_path):
    out = tmp_path / "fp"
    tokenize_dataset(event_tokenizer_dir, small_files[:1], out, progress=False)
    other = EventTokenizer.from_pretrained(event_tokenizer_dir)
    t = other.object_tokenizers["jets"]
    with __import__("torch").no_grad():
        next(t.decoder.parameters()).add_(0.01)
    other._fingerprint = None
    assert other.fingerprint != event_tokenizer.fingerprint
    with pytest.raises(FingerprintMismatchError, match="not by this tokenizer"):
        load_tokenized(out, tokenizer=other)
    with pytest.raises(FingerprintMismatchError, match="not by this one"):
        tokenize_dataset(other, small_files[:1], out, progress=False)
    with pytest.raises(FingerprintMismatchError, match="layout"):
        load_tokenized(out, layout_fingerprint="0" * 16)


def test_on_the_fly_dataset_matches_files(event_tokenizer_dir, event_tokenizer, small_files):
    import torch

    ds = on_the_fly_dataset(event_tokenizer_dir, small_files, chunk_size=700)
    ref = _reference_rows(event_tokenizer, small_files)
    n = 0
    for row in ds:
        assert row["input_ids"] == ref[(row["source_file"], row["event_index"])][0]
        n += 1
    assert n == 5000
    # DataLoader workers each take their own files
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    seen = {(r["source_file"], int(r["event_index"])) for r in loader}
    assert len(seen) == 5000


def test_cli_fit_event_tokenizer_tokenize_and_push(samples, small_files, tmp_path, capsys, monkeypatch):
    from hep_event_models.config import config_dir

    cfg = tmp_path / "event.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "objects": {"muons": str(config_dir() / "muons.yaml"), "met": str(config_dir() / "met.yaml")},
                "context": [{"name": "mu", "bins": 10}],  # range fitted from the data
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "tok"
    args = ["fit-tokenizer", "--config", str(cfg), "--data", samples["dy"], "--out", str(out), "--max-steps", "5"]
    args += ["--batch-size", "256", "--set", "codebook_size=16", "--set", "num_quantizers=2", "--quiet"]
    assert main(args) == 0
    tok = EventTokenizer.from_pretrained(out)
    assert tok.objects == ["muons", "met"] and tok.vocab_size == 16 + 10 + 2 * 2 * 16
    lo, hi = tok.context[0].range
    assert 0 <= lo < 20 and 40 < hi < 120
    assert (out / "fits" / "muons" / "training_summary.json").exists()
    # a second run reuses the finished fits; --object-tokenizer assembles one fitted elsewhere
    assert main([*args, "--object-tokenizer", f"met={out / 'fits' / 'met'}"]) == 0
    summary = json.loads((out / "fit_summary.json").read_text())
    assert summary["fitted"] == [] and summary["assembled"] == {"met": str(out / "fits" / "met")}
    assert EventTokenizer.from_pretrained(out).fingerprint == tok.fingerprint
    capsys.readouterr()
    ds_out = tmp_path / "ds"
    rc = main(["tokenize", "--tokenizer", str(out), "--data", *small_files, "--out", str(ds_out), "--quiet"])
    assert rc == 0 and "tokenized 5,000 events" in capsys.readouterr().out
    assert json.loads((ds_out / "tokenize_summary-0-of-1.json").read_text())["events"] == 5000
    assert main(["tokenize", "--tokenizer", str(out), "--data", *small_files, "--out", str(ds_out), "--quiet"]) == 0
    assert "0 new shard(s)" in capsys.readouterr().out
    # push through the CLI (Hub calls recorded, no network)
    import huggingface_hub

    calls = []
    for name in ("create_repo", "create_branch", "upload_folder", "create_tag"):
        monkeypatch.setattr(
            huggingface_hub.HfApi, name, lambda self, *a, _n=name, **k: calls.append((_n, k.get("revision")))
        )
    assert main(["push", str(out), "--repo-id", "me/tok", "--revision", "dev"]) == 0
    assert calls == [("create_repo", None), ("create_branch", None), ("upload_folder", "dev")]
    assert np.isfinite(tok.context[0].centre(np.arange(10))).all()


def test_tokenize_with_m4l_selection(event_tokenizer_dir, event_tokenizer, small_files, tmp_path):
    """--m4l-window keeps exactly the four-lepton events in the window, and is recorded."""
    from hep_event_models import physics

    out = tmp_path / "sel"
    window = (115.0, 135.0)
    s = tokenize_dataset(event_tokenizer_dir, small_files, out, chunk_size=700, progress=False, m4l_window=window)
    expected = set()
    for f in small_files:
        ev = EventBatch.concat(list(event_tokenizer.reader(f, chunk_size=4096)))
        fl = physics.four_lepton(ev)
        keep = fl.valid & (fl.m4l > window[0]) & (fl.m4l < window[1])
        expected |= {(Path(f).name, int(i)) for i in ev.event_index[keep]}
    ds = load_tokenized(out, tokenizer=event_tokenizer)
    got = set(zip(ds["source_file"], ds["event_index"], strict=True))
    # hzz4l events pass often, dy (two leptons) never
    assert got == expected and s["events"] == len(expected) > 300
    assert all(n == "hzz4l.h5" for n, _ in got)
    manifest = json.loads((out / "dataset_manifest.json").read_text())
    assert manifest["selection"] == s["selection"] == "four leptons, 115 < m4l < 135 GeV"
    # the same tokens as without the selection, for the events it keeps
    ref = _reference_rows(event_tokenizer, small_files)
    for row in ds.select(range(0, len(ds), 50)):
        assert row["input_ids"] == list(ref[(row["source_file"], row["event_index"])][0])
    # a rerun into the same directory with another selection refuses to mix shards
    with pytest.raises(FingerprintMismatchError, match="selection"):
        tokenize_dataset(event_tokenizer_dir, small_files, out, progress=False)
