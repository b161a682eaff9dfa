"""Writing converted steps: whole HDF5 chunks, deflated in parallel, behind the conversion.

``uproot`` steps have any number of events; ``AlignedWriter`` buffers them into whole
chunks of ``EventWriter.chunk_events`` events (the remainder waits for the next step),
deflates the chunks on a thread pool (``zlib`` releases the GIL) and writes them with
``EventWriter.append_compressed`` from a background thread, so reading and converting the
next step overlaps with compressing the previous one. Profiling showed gzip compression
in the writer taking over half of the conversion time when done inline. At most one step
waits while another is written, so memory stays bounded by about two steps.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..io.writer import CompressedBatch, EventWriter, compress_batch


class AlignedWriter:
    """Feed ``EventWriter`` (gzip, no shuffle) with batches of any size, in the background.

    Args:
        writer: an open ``EventWriter`` with gzip compression and no shuffle.
        threads: compression threads (default: the CPUs this process may use).
    """

    def __init__(self, writer: EventWriter, threads: int | None = None):
        if writer.compression != "gzip" or writer.shuffle:
            raise ValueError("AlignedWriter needs an EventWriter with gzip compression and no shuffle")
        self.writer = writer
        self.chunk = writer.chunk_events
        n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(max_workers=threads or n_cpu)
        self.level = writer.compression_opts or 1
        self.pending: list[dict[str, np.ndarray]] = []
        self.pending_n = 0
        self.n_events = 0
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="convert-writer", daemon=True)
        self._thread.start()

    # -- producer side --------------------------------------------------------------------
    def append(self, batch: Mapping[str, np.ndarray]) -> None:
        """Queue one converted step (``{dataset path: array}``, events along axis 0)."""
        self._check()
        n = len(next(iter(batch.values())))
        if n == 0:
            return
        self.pending.append(dict(batch))
        self.pending_n += n
        whole = (self.pending_n // self.chunk) * self.chunk
        if whole:
            self._emit(whole)

    def close(self) -> None:
        """Write the remainder, wait for the background writes, re-raise their errors."""
        try:
            if self.pending_n:
                self._emit(self.pending_n)
            self._put(None)
            self._thread.join()
            self._check()
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop the background thread without writing what is pending."""
        self.pending, self.pending_n = [], 0
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=60)
            except queue.Full:
                pass
            self._thread.join(timeout=60)
        self.pool.shutdown(wait=True)

    def _emit(self, n: int) -> None:
        joined = (
            self.pending[0]
            if len(self.pending) == 1
            else {k: np.concatenate([b[k] for b in self.pending]) for k in self.pending[0]}
        )
        out = {k: v[:n] for k, v in joined.items()}
        rest = self.pending_n - n
        self.pending = [{k: v[n:] for k, v in joined.items()}] if rest else []
        self.pending_n = rest
        self.n_events += n
        self._put(out)

    def _put(self, item) -> None:
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    # -- background side --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue  # drain after an error
            try:
                parts = list(
                    self.pool.map(lambda kv: compress_batch({kv[0]: kv[1]}, self.chunk, self.level), batch.items())
                )
                n = len(next(iter(batch.values())))
                arrays = {k: v for cb in parts for k, v in cb.arrays.items()}
                self.writer.append_compressed(CompressedBatch(n, self.chunk, arrays))
            except BaseException as e:  # re-raised in the producer
                self._error = e
