import json
import tracemalloc

import h5py
import numpy as np
import pytest

from hep_event_models import schema
from hep_event_models.config import load_object_config
from hep_event_models.generator import generate, generate_batch
from hep_event_models.io import EventBatch, EventFileError, EventReader, EventWriter, read_metadata, write_events
from hep_event_models.io.writer import required_keys


def _read_all(path, **kw) -> EventBatch:
    return EventBatch.concat(list(EventReader(path, **kw)))


def test_write_read_round_trip(tmp_path):
    batch = generate_batch("ttbar", 500, seed=3)
    path = write_events(tmp_path / "rt.h5", batch, metadata=schema.default_metadata(0, process="ttbar"))
    with h5py.File(path) as f:
        for key, arr in batch.items():
            np.testing.assert_array_equal(f[key][:], arr, err_msg=key)
        assert f["common/jets/pt"].compression == "gzip"
        assert f["common/jets/pt"].chunks[0] > 1
        assert set(required_keys()) <= {k for k in batch}
    md = read_metadata(path)
    assert md["n_events"] == 500 and md["format_version"] == schema.FORMAT_VERSION
    assert md["max_objects"]["jets"] == 15 and md["common_iso_cone"] == pytest.approx(0.3)

    cfgs = [load_object_config("jets"), load_object_config("muons"), load_object_config("met")]
    got = _read_all(path, selection=cfgs, scalars=["event/mu", "event/pvz"], chunk_size=128)
    assert len(got) == 500
    jets = got.collections["jets"]
    assert jets.values.shape == (500, 15, 14) and jets.values.dtype == np.float32
    np.testing.assert_array_equal(jets.mask, batch["common/jets/mask"])
    np.testing.assert_allclose(jets.feature("GN2_pb"), batch["atlas/jets/GN2_pb"])
    np.testing.assert_allclose(jets.feature("n_trk"), batch["common/jets/n_trk"])
    assert got.collections["met"].values.shape == (500, 1, 3)
    np.testing.assert_allclose(got.collections["met"].feature("pt")[:, 0], batch["common/met/pt"])
    np.testing.assert_allclose(got.scalars["event/mu"], batch["common/event/mu"])
    assert (got.labels == schema.PROCESS_IDS["ttbar"]).all()
    np.testing.assert_array_equal(got.event_index, np.arange(500))
    assert set(got.source_file) == {str(path)}


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "crash.h5"
    batch = generate_batch("dy", 100, seed=1)
    with pytest.raises(RuntimeError, match="boom"):
        with EventWriter(target) as w:
            w.append(batch)
            assert not target.exists()  # only a temporary name exists while writing
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_incomplete_or_inconsistent_batches(tmp_path):
    batch = generate_batch("dy", 50, seed=1)
    partial = {k: v for k, v in batch.items() if k != "atlas/jets/GN2_pb"}
    with pytest.raises(ValueError, match=r"lacks schema keys.*atlas/jets/GN2_pb"):
        write_events(tmp_path / "a.h5", partial)
    bad = dict(batch)
    bad["common/jets/pt"] = bad["common/jets/pt"][:10]
    with pytest.raises(ValueError, match="disagree on the number of events"):
        write_events(tmp_path / "b.h5", bad)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------
# validation: every error names file, group and key
# --------------------------------------------------------------------------------------
def _mutate(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f, key, data):
    del f[key]
    f.create_dataset(key, data=data)


def _expect_error(path, pattern, **kw):
    with pytest.raises(EventFileError, match=pattern) as exc:
        _read_all(path, **kw)
    assert str(path) in str(exc.value)
    return exc.value


def test_missing_group(small_file):
    _mutate(small_file, lambda f: f.__delitem__("atlas/jets"))
    err = _expect_error(small_file, r"atlas/jets: missing group", selection=[load_object_config("jets")])
    assert err.problems[0].key == "atlas/jets"


def test_missing_key(small_file):
    _mutate(small_file, lambda f: f.__delitem__("common/jets/eta"))
    _expect_error(small_file, r"common/jets: missing key 'eta'", selection={"jets": ["pt", "eta"]})


def test_wrong_shape(small_file):
    _mutate(small_file, lambda f: _replace(f, "common/jets/pt", f["common/jets/pt"][:, :10]))
    _expect_error(small_file, r"common/jets/pt: shape \(2000, 10\), expected \(2000, 15\)", selection={"jets": ["pt"]})


def test_wrong_dtype(small_file):
    _mutate(small_file, lambda f: _replace(f, "common/jets/mask", f["common/jets/mask"][:].astype(np.float32)))
    _expect_error(small_file, r"common/jets/mask: dtype float32, expected a bool type", selection={"jets": ["pt"]})
    # integer-coded flags are fine, floats are not
    _mutate(small_file, lambda f: _replace(f, "common/jets/mask", f["common/jets/mask"][:].astype(bool)))
    _mutate(small_file, lambda f: _replace(f, "atlas/electrons/LHTight", f["atlas/electrons/LHTight"][:].astype(bool)))
    assert len(_read_all(small_file, selection={"electrons": ["LHTight"]})) == 2000
    _mutate(small_file, lambda f: _replace(f, "atlas/electrons/LHTight", f["atlas/electrons/LHTight"][:] * 1.0))
    _expect_error(small_file, r"atlas/electrons/LHTight: dtype float64", selection={"electrons": ["LHTight"]})


def test_mask_disagrees_with_n(small_file):
    def bump(f):
        n = f["common/jets/n"][:]
        n[1234] += 1
        f["common/jets/n"][:] = n

    _mutate(small_file, bump)
    _expect_error(
        small_file,
        r"common/jets/mask: mask disagrees with common/jets/n .*event 1234",
        selection={"jets": ["pt"]},
        chunk_size=500,
    )


def test_unpacked_mask(small_file):
    def unpack(f):
        m = f["common/jets/mask"][:]
        i = int(np.flatnonzero(m[:, 0] & ~m[:, 1])[0])
        m[i, 0], m[i, 1] = False, True
        f["common/jets/mask"][:] = m

    _mutate(small_file, unpack)
    _expect_error(small_file, r"not packed at the front", selection={"jets": ["pt"]})


def test_nan_in_real_object_but_not_in_padding(small_file):
    with h5py.File(small_file, "r+") as f:
        mask = f["common/jets/mask"][:]
        pt = f["common/jets/pt"][:]
        pad = np.argwhere(~mask)[0]
        pt[tuple(pad)] = np.nan
        f["common/jets/pt"][:] = pt
    assert len(_read_all(small_file, selection={"jets": ["pt"]})) == 2000  # NaN in padding is harmless
    with h5py.File(small_file, "r+") as f:
        real = np.argwhere(mask)[3]
        pt[tuple(real)] = np.inf
        f["common/jets/pt"][:] = pt
    _expect_error(
        small_file, rf"common/jets/pt: NaN/inf in 1 real objects \(first: event {real[0]}\)", selection={"jets": ["pt"]}
    )


def test_nan_in_event_scalar(small_file):
    def poison(f):
        v = f["common/met/pt"][:]
        v[17] = np.nan
        f["common/met/pt"][:] = v

    _mutate(small_file, poison)
    _expect_error(small_file, r"common/met/pt: NaN/inf in 1 events \(first: event 17\)", selection={"met": ["pt"]})


def test_unknown_format_version(small_file):
    _mutate(small_file, lambda f: f["metadata"].attrs.__setitem__("format_version", "7.1"))
    _expect_error(small_file, r"metadata.format_version: unknown format_version '7.1'")


def test_empty_file(small_file, tmp_path):
    _mutate(small_file, lambda f: f["metadata"].attrs.__setitem__("n_events", 0))
    _expect_error(small_file, r"empty file")
    bare = tmp_path / "bare.h5"
    h5py.File(bare, "w").close()
    _expect_error(bare, r"metadata: missing group")


def test_not_hdf5(tmp_path):
    p = tmp_path / "junk.h5"
    p.write_text("not hdf5")
    _expect_error(p, r"cannot open as HDF5")


# --------------------------------------------------------------------------------------
# streaming features
# --------------------------------------------------------------------------------------
def test_chunks_truncation_and_limits(samples):
    r = EventReader(samples["ttbar"], selection={"jets": ["pt", "eta"]}, chunk_size=3000, max_objects={"jets": 4})
    sizes = [len(b) for b in r]
    assert sizes == [3000, 3000, 3000, 1000]
    assert len(r) == 10_000
    b = next(iter(r))
    assert b.collections["jets"].values.shape == (3000, 4, 2)
    with h5py.File(samples["ttbar"]) as f:
        np.testing.assert_allclose(b.collections["jets"].feature("pt"), f["common/jets/pt"][:3000, :4])
    assert sum(len(b) for b in EventReader(samples["ttbar"], chunk_size=4000, max_events=5500)) == 5500


def test_glob_list_and_sharding(samples, tmp_path):
    files = sorted(samples.values())
    pattern = str(tmp_path.parent / "*" / "*.h5")
    r_all = EventReader(files, selection={"met": ["pt"]})
    shards = [EventReader(files, selection={"met": ["pt"]}, shard_index=i, num_shards=2) for i in range(2)]
    assert sorted(shards[0].files + shards[1].files) == files
    assert not set(shards[0].files) & set(shards[1].files)
    assert len(shards[0]) + len(shards[1]) == len(r_all) == sum([20_000, 20_000, 20_000, 10_000])
    assert set(files) <= set(EventReader(pattern, selection={"met": ["pt"]}).files)
    with pytest.raises(FileNotFoundError, match="no files match"):
        EventReader(str(tmp_path / "nothing*.h5"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        EventReader(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="shard_index"):
        EventReader(files, shard_index=2, num_shards=2)


def test_shuffle_is_deterministic_and_complete(samples):
    files = [samples["dy"], samples["ttbar"]]

    def order(seed, epoch=0):
        r = EventReader(files, selection={"met": ["pt"]}, chunk_size=1000, shuffle_buffer=5000, seed=seed)
        r.set_epoch(epoch)
        out = []
        for b in r:
            assert len(b) <= 1000
            out.append(np.stack([b.file_index, b.event_index], 1))
        return np.concatenate(out)

    a, b, c, d = order(1), order(1), order(2), order(1, epoch=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert len(a) == 30_000
    assert len({tuple(x) for x in a}) == 30_000  # every event exactly once
    labels = {0: schema.PROCESS_IDS["dy"], 1: schema.PROCESS_IDS["ttbar"]}
    # labels travel with their events through the buffer
    r = EventReader(files, selection={"met": ["pt"]}, chunk_size=1000, shuffle_buffer=5000, seed=1)
    for batch in r:
        expect = np.vectorize(labels.get)(batch.file_index)
        np.testing.assert_array_equal(batch.labels, expect)


def test_label_from_metadata_when_no_truth(small_file):
    _mutate(small_file, lambda f: f.__delitem__("truth/process"))
    assert (_read_all(small_file, selection={"met": ["pt"]}).labels == schema.PROCESS_IDS["dy"]).all()
    _mutate(small_file, lambda f: f["metadata"].attrs.__delitem__("process"))
    assert (_read_all(small_file, selection={"met": ["pt"]}).labels == schema.UNLABELLED).all()


def test_reading_keeps_memory_flat(tmp_path):
    """Peak memory while streaming is set by the chunk, not by the file size."""
    small, large = tmp_path / "small.h5", tmp_path / "large.h5"
    generate("dy", 5_000, small, seed=1, chunk_size=5_000, progress=False, workers=1)
    generate("dy", 40_000, large, seed=1, chunk_size=20_000, progress=False, workers=1)

    def peak(path):
        tracemalloc.start()
        n = 0
        for b in EventReader(path, selection=None, scalars=["event/mu"], chunk_size=2_500):
            n += len(b)
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return n, p

    n_s, p_small = peak(small)
    n_l, p_large = peak(large)
    assert (n_s, n_l) == (5_000, 40_000)
    assert p_large < 1.2 * p_small
    with h5py.File(large) as f:
        raw = sum(f[k].size * f[k].dtype.itemsize for k in required_keys())
    assert p_large < raw / 4  # far below what loading the file would take


def test_metadata_attributes_complete(samples):
    md = read_metadata(samples["hzz4l"])
    for a in schema.METADATA_ATTRS:
        assert a in md, a
    assert md["process"] == "hzz4l" and md["label_names"][0] == "hzz4l"
    assert json.loads(json.dumps(md["pt_cuts"]))["muons"] == 5.0


def test_reader_row_range(small_file):
    r = EventReader(small_file, chunk_size=64, rows=(100, 350))
    idx = np.concatenate([b.event_index for b in r])
    np.testing.assert_array_equal(idx, np.arange(100, 350))
    assert len(r) == 250
    # stop beyond the file is clipped; an empty range reads nothing
    assert len(EventReader(small_file, rows=(1900, 5000))) == 100
    assert sum(len(b) for b in EventReader(small_file, rows=(10, 10))) == 0
    with pytest.raises(ValueError, match="rows"):
        EventReader(small_file, rows=(5, 2))
