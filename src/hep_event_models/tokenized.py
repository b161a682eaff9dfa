"""Tokenized datasets: HDF5 events → sharded Parquet/Arrow token files, and on the fly.

``tokenize_dataset`` (``hep-event-models tokenize``) streams events through an
``EventTokenizer`` and writes shards with the columns

==================  =====================  ==============================================
column              type                   meaning
==================  =====================  ==============================================
``input_ids``       list<uint16 | int32>   token ids (uint16 when the vocabulary fits)
``token_type_ids``  list<int8>             DESIGN §4 type ids
``attention_mask``  list<int8>             all ones (rows are not padded; collators pad)
``event_index``     int64                  row of the event in its HDF5 file
``source_file``     string                 HDF5 file name
``label``           int16                  process id (``schema.PROCESS_IDS``), -1 unlabelled
``<key>``           list<list<float32>>    optional sub-object inputs (``subobjects``), e.g.
                                           ``jets_constituents``: one row per constituent
``<key>_owner``     list<int32>            position of the first token of each row's object
==================  =====================  ==============================================

and the tokenizer's fingerprints in the Arrow schema metadata (key ``hep_event_models``).

Selection: ``m4l_window=(lo, hi)`` keeps only events with four reconstructed leptons in two
same-flavour opposite-sign pairs and ``lo < m_4ℓ < hi`` GeV (``physics.four_lepton``), the
headline analysis selection; it is recorded in the shard metadata and the manifest, and a
rerun with another selection refuses to mix its shards with the existing ones.

Shards: every input file is cut into parts of ``rows_per_shard`` events; a shard is named
``<file stem>-<path hash>-<part>-of-<parts>.parquet`` (or ``.arrow``), written under a
temporary name and renamed when complete. A rerun skips finished shards (after checking
they come from the same tokenizer), so an interrupted job resumes where it stopped.
``shard_index``/``num_shards`` split the input *files* between independent jobs (a batch
system); when the last shard of the whole plan exists, the job that wrote it adds
``dataset_manifest.json`` (and, for Arrow, the ``state.json``/``dataset_info.json`` that
``datasets.load_from_disk`` reads).

Parquet output loads with ``datasets.load_dataset("parquet", data_files=f"{out}/*.parquet",
streaming=True)``; Arrow output with ``datasets.load_from_disk(out)``. ``load_tokenized``
does either and checks the fingerprint against a tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .io.reader import EventReader, expand_files
from .memory import release_memory
from .subobjects import SUB_OBJECT_INPUTS, arrow_fields, sub_object_columns

META_KEY = b"hep_event_models"
MANIFEST = "dataset_manifest.json"
FORMATS = ("parquet", "arrow")


class FingerprintMismatchError(ValueError):
    """A dataset, tokenizer or model come from different tokenizers."""


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one input file, written to ``name``."""

    file: str
    start: int
    stop: int
    name: str


def plan_shards(files: list[str], events_per_file: list[int], rows_per_shard: int, fmt: str) -> list[Shard]:
    """Deterministic shard plan for ``files`` (one or more shards per file)."""
    out = []
    for f, n in zip(files, events_per_file, strict=True):
        stem = Path(f).stem
        h = hashlib.sha256(str(Path(f).resolve()).encode()).hexdigest()[:8]
        parts = max(1, -(-n // rows_per_shard))
        for p in range(parts):
            out.append(
                Shard(
                    f, p * rows_per_shard, min(n, (p + 1) * rows_per_shard), f"{stem}-{h}-{p:05d}-of-{parts:05d}.{fmt}"
                )
            )
    return out


def selection_label(m4l_window: tuple[float, float] | None) -> str | None:
    """The selection as recorded in shard metadata (``None``: every event)."""
    if m4l_window is None:
        return None
    lo, hi = (float(x) for x in m4l_window)
    if not lo < hi:
        raise ValueError(f"m4l_window needs lo < hi, got {m4l_window}")
    return f"four leptons, {lo:g} < m4l < {hi:g} GeV"


def arrow_schema(tokenizer, selection: str | None = None, sub_objects: Sequence[str] = ()) -> pa.Schema:
    """Schema of tokenized shards, with the tokenizer's fingerprints (and the event
    selection, if any) as metadata; ``sub_objects`` adds their columns (``subobjects``)."""
    id_type = pa.uint16() if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else pa.int32()
    meta = {
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "layout_fingerprint": tokenizer.layout_fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "objects": tokenizer.objects,
        "format": "hep_event_models.tokenized/1",
        "selection": selection,
        "sub_objects": list(sub_objects),
    }
    return pa.schema(
        [
            ("input_ids", pa.list_(id_type)),
            ("token_type_ids", pa.list_(pa.int8())),
            ("attention_mask", pa.list_(pa.int8())),
            ("event_index", pa.int64()),
            ("source_file", pa.string()),
            ("label", pa.int16()),
            *arrow_fields(sub_objects),
        ],
        metadata={META_KEY: json.dumps(meta).encode()},
    )


def encode_record_batch(tokenizer, events, schema_: pa.Schema, max_length=None, truncation=False) -> pa.RecordBatch:
    """Tokenize one ``EventBatch`` into an Arrow record batch of ragged rows."""
    enc = tokenizer(events, padding=True, truncation=truncation, max_length=max_length, return_tensors="np")
    att = enc["attention_mask"].astype(bool)
    lengths = att.sum(axis=1)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    id_type = schema_.field("input_ids").type.value_type
    # np.dtype("uint16") from the Arrow type's name: to_pandas_dtype() would import pandas (0.5 s)
    ids = pa.ListArray.from_arrays(offsets, pa.array(enc["input_ids"][att].astype(np.dtype(str(id_type)))))
    types = pa.ListArray.from_arrays(offsets, pa.array(enc["token_type_ids"][att].astype(np.int8)))
    ones = pa.ListArray.from_arrays(offsets, pa.array(np.ones(int(lengths.sum()), dtype=np.int8)))
    names = np.asarray([os.path.basename(f) for f in events.files], dtype=object)[events.file_index]
    keys = [k for k in SUB_OBJECT_INPUTS if k in schema_.names]
    subs = sub_object_columns(tokenizer, events, keys, truncation=truncation, max_length=max_length)
    return pa.RecordBatch.from_arrays(
        [
            ids,
            types,
            ones,
            pa.array(events.event_index.astype(np.int64)),
            pa.array(names, type=pa.string()),
            pa.array(events.labels.astype(np.int16)),
            *(subs[name].cast(schema_.field(name).type) for name, _ in arrow_fields(keys)),
        ],
        schema=schema_,
    )


def shard_metadata(path: str | Path) -> dict:
    """The ``hep_event_models`` metadata of a Parquet or Arrow shard."""
    path = Path(path)
    if path.suffix == ".parquet":
        md = pq.read_schema(path).metadata or {}
    else:
        with pa.OSFile(str(path), "rb") as fh:
            md = pa.ipc.open_stream(fh).schema.metadata or {}
    if META_KEY not in md:
        raise FingerprintMismatchError(f"{path}: not a hep_event_models token shard (no {META_KEY.decode()} metadata)")
    return json.loads(md[META_KEY])


@dataclass(frozen=True)
class _ShardTarget:
    """Where and how a tokenize job writes its shards: the output directory, the Arrow
    schema, the format (``"parquet"`` or ``"arrow"``) and the encoding options
    (``chunk_size``, ``max_length``, ``truncation``, ``m4l_window``). Picklable, for workers."""

    out: Path
    schema: pa.Schema
    fmt: str
    opts: dict


def _write_shard(tokenizer, shard: Shard, target: _ShardTarget) -> dict:
    out, schema_, fmt, opts = target.out, target.schema, target.fmt, target.opts
    final = out / shard.name
    tmp = out / f".{shard.name}.tmp"
    reader = tokenizer.reader(
        shard.file,
        chunk_size=opts["chunk_size"],
        rows=(shard.start, shard.stop),
        sub_objects=[k for k in SUB_OBJECT_INPUTS if k in schema_.names],
    )
    n_events = n_tokens = 0
    try:
        if fmt == "parquet":
            writer = pq.ParquetWriter(str(tmp), schema_, compression="zstd")
        else:
            sink = pa.OSFile(str(tmp), "wb")
            writer = pa.ipc.new_stream(sink, schema_)
        with writer:
            for events in reader:
                if opts.get("m4l_window") is not None:
                    from .evaluation import select_events

                    keep = np.nonzero(select_events(events, opts["m4l_window"]))[0]
                    if len(keep) == 0:
                        continue
                    events = events.take(keep)
                rb = encode_record_batch(tokenizer, events, schema_, opts["max_length"], opts["truncation"])
                writer.write_batch(rb)
                n_events += rb.num_rows
                n_tokens += len(rb.column(0).values)
                del rb, events
                release_memory()  # flat memory over millions of events (see memory.py)
        if fmt == "arrow":
            sink.close()
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"shard": shard.name, "events": n_events, "tokens": n_tokens}


_WORKER_TOKENIZER: dict = {}


def _init_worker(tokenizer_dir: str, device: str | None, threads: int) -> None:
    """Pool initializer: thread counts and one tokenizer per worker process (not per shard)."""
    import torch

    from .event_tokenizer import EventTokenizer

    torch.set_num_threads(threads)
    _limit_faiss_threads(threads)
    _WORKER_TOKENIZER["tokenizer"] = EventTokenizer.from_pretrained(tokenizer_dir, device=device or "cpu")


def _worker(shard: Shard, target: _ShardTarget) -> dict:
    return _write_shard(_WORKER_TOKENIZER["tokenizer"], shard, target)


def _tokenize_in_processes(
    tokenizer, tok_dir: str, device: str | None, todo: list[Shard], target: _ShardTarget, num_proc: int, progress: bool
) -> list[dict]:
    """Write the shards ``todo`` to ``target`` with ``num_proc`` processes: this one (with
    ``tokenizer``) and ``num_proc - 1`` spawned workers (each loading ``tok_dir`` on
    ``device``), each taking the next shard when it is free.

    This process works too rather than waiting on ``num_proc`` workers: it has imported torch
    and loaded the tokenizer already, and an idle copy of those (~0.4 GiB) would add to the
    job's memory for nothing. Its share runs in a thread, so that the main thread can hand
    the next shard to a worker the moment it is free (the heavy parts, torch, FAISS, Arrow
    and zstd, release the GIL). Threads are split evenly between the processes.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

    import torch

    nproc = min(num_proc, len(todo))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // nproc)
    pending = list(reversed(todo))  # pop() takes the next shard in plan order
    results, in_pool, here = [], set(), set()
    bar = tqdm(total=len(todo), desc="tokenize", unit="shard", disable=not progress)
    saved_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        # spawn, not fork: forking a process whose torch/OpenMP thread pools are running can hang
        with (
            ProcessPoolExecutor(
                max_workers=nproc - 1,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(tok_dir, device, threads),
            ) as pool,
            ThreadPoolExecutor(max_workers=1) as local,
        ):
            while pending or in_pool or here:
                # one shard per worker at a time: a queued shard would be out of reach of
                # whichever process frees up first
                while pending and len(in_pool) < nproc - 1:
                    in_pool.add(pool.submit(_worker, pending.pop(), target))
                if pending and not here:
                    here.add(local.submit(_write_shard_here, tokenizer, pending.pop(), target, threads))
                done, _ = wait(in_pool | here, return_when=FIRST_COMPLETED)
                for f in done:
                    results.append(f.result())
                    bar.update()
                in_pool -= done
                here -= done
    finally:
        bar.close()
        torch.set_num_threads(saved_threads)
    return results


def _write_shard_here(tokenizer, shard: Shard, target: _ShardTarget, threads: int) -> dict:
    """``_write_shard`` in a thread of this process, with FAISS held to ``threads``."""
    _limit_faiss_threads(threads)
    return _write_shard(tokenizer, shard, target)


def _limit_faiss_threads(threads: int) -> None:
    """FAISS's OpenMP thread count for the calling thread (a per-thread setting)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover
        return
    faiss.omp_set_num_threads(threads)


def tokenize_dataset(
    tokenizer,
    data,
    out_dir: str | Path,
    fmt: str = "parquet",
    num_proc: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    rows_per_shard: int = 250_000,
    chunk_size: int = 8192,
    max_length: int | None = None,
    truncation: bool = False,
    progress: bool = True,
    device: str | None = None,
    m4l_window: tuple[float, float] | None = None,
    sub_objects: str | Sequence[str] | None = "auto",
) -> dict:
    """Tokenize HDF5 events into sharded Parquet or Arrow files (module doc).

    Args:
        tokenizer: an ``EventTokenizer`` directory (or Hub id), or an ``EventTokenizer``
            (``num_proc > 1`` needs a directory: workers load their own copy).
        data: HDF5 files (path, glob or list).
        out_dir: output directory.
        fmt: ``"parquet"`` or ``"arrow"``.
        num_proc: processes writing shards: this one and ``num_proc - 1`` spawned workers.
        shard_index, num_shards: this job's share of the input files (``files[i::n]``).
        rows_per_shard: events per output shard.
        device: where the encoders and the code search run (``"cuda"``: torch matmul search
            on the GPU instead of FAISS on the CPU); ``None`` leaves the tokenizer where it is
            (a directory loads to the CPU).
        m4l_window: keep only four-lepton events with ``lo < m_4ℓ < hi`` GeV (module doc);
            the tokenizer must include electrons and muons with pt, eta, phi and charge.
        sub_objects: sub-object columns to add (``subobjects``: jet constituents, track
            hits, attached to their objects' tokens): ``"auto"`` (default): those of the
            tokenizer's collections that every input file holds; a list of keys
            (required); ``None``: none.

    Returns:
        summary: events, tokens, shards written and skipped, seconds, events/s and objects/s.
    """
    from .event_tokenizer import EventTokenizer

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    tok_dir = None
    if isinstance(tokenizer, (str, Path)):
        tok_dir = str(tokenizer)
        tokenizer = EventTokenizer.from_pretrained(tokenizer)
    if device is not None:
        tokenizer.to(device)
    selection = selection_label(m4l_window)
    if m4l_window is not None:
        missing = [o for o in ("electrons", "muons") if o not in tokenizer.objects]
        if missing:
            raise ValueError(f"an m4l selection needs the tokenizer to include {missing} (it has {tokenizer.objects})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_files = expand_files(data)
    probe = EventReader(all_files, selection=tokenizer.object_configs(), sub_objects=sub_objects)
    counts = probe.events_per_file()
    subs = probe.sub_objects
    plan = plan_shards(all_files, counts, rows_per_shard, fmt)
    mine = set(all_files[shard_index::num_shards])
    todo, skipped = [], []
    for s in plan:
        if s.file not in mine:
            continue
        if (out / s.name).exists():
            md = shard_metadata(out / s.name)
            if md.get("tokenizer_fingerprint") != tokenizer.fingerprint:
                raise FingerprintMismatchError(
                    f"{out / s.name}: written by tokenizer {md.get('tokenizer_fingerprint')}, not by this one "
                    f"({tokenizer.fingerprint}); use another output directory"
                )
            if md.get("selection") != selection:
                raise FingerprintMismatchError(
                    f"{out / s.name}: written with selection {md.get('selection')!r}, not {selection!r}; "
                    "use another output directory"
                )
            if md.get("sub_objects", []) != subs:
                raise FingerprintMismatchError(
                    f"{out / s.name}: written with sub-objects {md.get('sub_objects', [])}, not {subs}; "
                    "use another output directory"
                )
            skipped.append(s.name)
        else:
            todo.append(s)
    opts = {
        "chunk_size": chunk_size,
        "max_length": max_length,
        "truncation": truncation,
        "m4l_window": None if m4l_window is None else tuple(float(x) for x in m4l_window),
    }
    target = _ShardTarget(out, arrow_schema(tokenizer, selection, subs), fmt, opts)
    t0 = time.perf_counter()
    results = []
    if num_proc > 1 and len(todo) > 1:
        if tok_dir is None:
            raise ValueError("num_proc > 1 needs the tokenizer as a directory (workers load their own copy)")
        results = _tokenize_in_processes(tokenizer, tok_dir, device, todo, target, num_proc, progress)
    else:
        for s in tqdm(todo, desc="tokenize", unit="shard", disable=not progress):
            results.append(_write_shard(tokenizer, s, target))
    seconds = time.perf_counter() - t0
    n_events = sum(r["events"] for r in results)
    n_tokens = sum(r["tokens"] for r in results)
    n_special = n_events * (1 + len(tokenizer.context) + len(tokenizer.objects))
    q = np.mean(list(tokenizer.num_quantizers.values()))
    summary = {
        "events": n_events,
        "tokens": n_tokens,
        "objects": round((n_tokens - n_special) / q) if n_events else 0,
        "shards_written": [r["shard"] for r in results],
        "shards_skipped": skipped,
        "seconds": seconds,
        "events_per_s": n_events / seconds if seconds > 0 and n_events else None,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "format": fmt,
        "selection": selection,
        "sub_objects": subs,
    }
    summary["objects_per_s"] = summary["objects"] / seconds if seconds > 0 and n_events else None
    if all((out / s.name).exists() for s in plan):
        _finalize(out, plan, tokenizer, fmt, selection, subs)
    return summary


def _finalize(
    out: Path, plan: list[Shard], tokenizer, fmt: str, selection: str | None = None, subs: Sequence[str] = ()
) -> None:
    """Manifest (and ``datasets`` state for Arrow) once every shard of the plan exists."""
    names = [s.name for s in plan]
    manifest = {
        "format": fmt,
        "shards": names,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "layout_fingerprint": tokenizer.layout_fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "source_files": sorted({os.path.basename(s.file) for s in plan}),
        "selection": selection,
        "sub_objects": list(subs),
    }
    if fmt == "arrow":
        from datasets import Features

        feats = Features.from_arrow_schema(arrow_schema(tokenizer, selection, subs))
        state = {
            "_data_files": [{"filename": n} for n in names],
            "_fingerprint": tokenizer.fingerprint + hashlib.sha256("".join(names).encode()).hexdigest()[:8],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {"description": "hep_event_models tokenized events", "features": feats.to_dict()}
        _atomic_write(out / "state.json", json.dumps(state, indent=2))
        _atomic_write(out / "dataset_info.json", json.dumps(info, indent=2))
    _atomic_write(out / MANIFEST, json.dumps(manifest, indent=2))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def dataset_fingerprint(path: str | Path) -> dict:
    """Fingerprints of a tokenized dataset directory (from its manifest or first shard)."""
    p = Path(path)
    if (p / MANIFEST).exists():
        return json.loads((p / MANIFEST).read_text())
    shards = sorted(p.glob("*.parquet")) + sorted(p.glob("*.arrow"))
    if not shards:
        raise FileNotFoundError(f"{p}: no tokenized shards (*.parquet, *.arrow)")
    return shard_metadata(shards[0])


def check_compatible(
    dataset_info: dict, tokenizer=None, layout_fingerprint: str | None = None, where: str = ""
) -> None:
    """Raise ``FingerprintMismatchError`` when a dataset was not made by ``tokenizer`` (or layout)."""
    if tokenizer is not None and dataset_info.get("tokenizer_fingerprint") != tokenizer.fingerprint:
        raise FingerprintMismatchError(
            f"{where}: dataset was tokenized by {dataset_info.get('tokenizer_fingerprint')}, "
            f"not by this tokenizer ({tokenizer.fingerprint})"
        )
    if layout_fingerprint is not None and dataset_info.get("layout_fingerprint") != layout_fingerprint:
        raise FingerprintMismatchError(
            f"{where}: dataset layout {dataset_info.get('layout_fingerprint')} differs from the model's "
            f"({layout_fingerprint}): tokens would mean different things"
        )


def load_tokenized(path: str | Path, tokenizer=None, streaming: bool = False, layout_fingerprint: str | None = None):
    """Load a tokenized dataset directory with ``datasets`` (Parquet: ``load_dataset``;
    Arrow: ``load_from_disk``), after checking it against ``tokenizer`` / ``layout_fingerprint``."""
    import datasets

    p = Path(path)
    info = dataset_fingerprint(p)
    check_compatible(info, tokenizer, layout_fingerprint, where=str(p))
    if (p / "state.json").exists():
        ds = datasets.load_from_disk(str(p))
        return ds.to_iterable_dataset() if streaming else ds
    files = sorted(str(f) for f in p.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{p}: no Parquet shards, and no Arrow state.json")
    return datasets.load_dataset("parquet", data_files=files, split="train", streaming=streaming)


# -- on the fly ---------------------------------------------------------------------------------
_WORKER_TOKENIZERS: dict[str, object] = {}


def _generate(files: list[str], tokenizer, chunk_size: int, max_length, truncation: bool, sub_objects=()):
    from .event_tokenizer import EventTokenizer

    if isinstance(tokenizer, str):
        if tokenizer not in _WORKER_TOKENIZERS:
            _WORKER_TOKENIZERS[tokenizer] = EventTokenizer.from_pretrained(tokenizer)
        tokenizer = _WORKER_TOKENIZERS[tokenizer]
    schema_ = arrow_schema(tokenizer, sub_objects=sub_objects)
    for events in tokenizer.reader(files, chunk_size=chunk_size, sub_objects=list(sub_objects)):
        rows = encode_record_batch(tokenizer, events, schema_, max_length, truncation).to_pylist()
        release_memory()
        yield from rows


def on_the_fly_dataset(
    tokenizer,
    data,
    chunk_size: int = 1024,
    max_length: int | None = None,
    truncation=False,
    sub_objects: str | Sequence[str] | None = "auto",
):
    """A ``datasets.IterableDataset`` that reads HDF5 and tokenizes as it goes.

    Yields the same columns as ``tokenize_dataset`` (``sub_objects`` as there: by default
    the sub-object columns of whatever sub-objects every file holds). Input files are its shards: a
    ``DataLoader`` with ``num_workers=k`` gives each worker its own files (at most one worker
    per file), and each worker loads the tokenizer once (pass a directory for that).
    ``shuffle(seed, buffer_size)`` shuffles file order and rows through a buffer.
    """
    import datasets

    from .event_tokenizer import EventTokenizer

    tok_obj = tokenizer if isinstance(tokenizer, EventTokenizer) else EventTokenizer.from_pretrained(tokenizer)
    files = expand_files(data)
    subs = tok_obj.reader(files, sub_objects=sub_objects).sub_objects
    feats = datasets.Features.from_arrow_schema(arrow_schema(tok_obj, sub_objects=subs))
    return datasets.IterableDataset.from_generator(
        _generate,
        features=feats,
        gen_kwargs={
            "files": files,
            "tokenizer": str(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer,
            "chunk_size": chunk_size,
            "max_length": max_length,
            "truncation": truncation,
            "sub_objects": tuple(subs),  # a tuple: datasets shards over the lists in gen_kwargs (the files)
        },
    )


__all__ = [
    "FingerprintMismatchError",
    "check_compatible",
    "dataset_fingerprint",
    "load_tokenized",
    "on_the_fly_dataset",
    "plan_shards",
    "tokenize_dataset",
]
