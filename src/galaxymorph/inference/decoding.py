"""Decoding beside the network: the inputs, walked once, -> decoded batches in input order.

The inputs are walked once, in the calling process, and cut into chunks; each chunk goes to a
pool of decoding processes, at most ``workers * PREFETCH`` chunks ahead of the network (flat
memory over a survey of millions), and the batches come back in submission order. The walk
counts the inputs as it goes, so the progress bar needs no second walk.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from galaxymorph.errors import GalaxymorphError
from galaxymorph.inference.batches import View, decode_batch
from galaxymorph.inference.sources import InputPlan, Item
from galaxymorph.processes import die_with_parent

#: Chunks in flight per decoding process: enough to hide one slow image, little memory.
PREFETCH = 4

_plan: InputPlan | None = None
_views: list[View] = []


class Walk:
    """One pass over ``items`` in chunks, leaving out the keys in ``skip``; ``count`` (inputs
    taken) and ``skipped`` are final once ``done``."""

    def __init__(self, items: Iterable[Item], skip: set[str] | None = None):
        self._items, self._skip = items, skip or set()
        self.count = self.skipped = 0
        self.done = False

    def chunks(self, size: int) -> Iterator[list[Item]]:
        batch: list[Item] = []
        for item in self._items:
            if self._skip and item.key in self._skip:
                self.skipped += 1
                continue
            self.count += 1
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
        self.done = True
        if batch:
            yield batch


#: A decoded chunk: keys, per-item error text ("" when it decoded), uint8 arrays per view.
Decoded = tuple


def decoded_batches(plan: InputPlan, views: list[View], chunks: Iterable[list[Item]],
                    workers: int, prefetch: int = PREFETCH) -> Iterator[Decoded]:
    """Decode ``chunks`` in ``workers`` processes (``0``: here, one after the other)."""
    if workers <= 0:
        for chunk in chunks:
            yield _as_arrays(decode_batch(plan, chunk, views))
        return
    # fork: decoders start in milliseconds and inherit the opened inputs (h5 files, catalogs).
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(plan, views))
    window: deque[Future] = deque()
    try:
        for chunk in chunks:
            window.append(pool.submit(_decode, chunk))
            if len(window) >= workers * prefetch:
                yield _result(window.popleft())
        while window:
            yield _result(window.popleft())
    finally:
        for f in window:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _as_arrays(decoded: tuple) -> Decoded:
    # numpy, not torch tensors, through the pipe: tensors travel as shared-memory segments that
    # the receiving process keeps mapped for a while (resident memory grows over a long run).
    keys, errors, *tensors = decoded
    return (keys, errors, *(t.numpy() for t in tensors))


def _result(future: Future) -> Decoded:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise GalaxymorphError("a decoding process died (killed, or out of memory); rerun with "
                               "--resume to continue, or with fewer --workers") from exc


def _init_worker(plan: InputPlan, views: list[View]) -> None:
    global _plan, _views
    _plan, _views = plan, views
    # A decoder never outlives predict: after a kill -9 of the parent it would otherwise keep
    # its memory for good, hence SIGKILL.
    die_with_parent(signal.SIGKILL)
    # predict turns SIGTERM/SIGINT into a clean stop in the parent, which then shuts the pool
    # down; a decoder interrupted mid-chunk would only break the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread per decoder: torch's resize with several threads per process is slower on
    # small images and oversubscribes the cores the network needs.
    torch.set_num_threads(1)
    # Below the network's priority: decoding is a small share of the work, and a decoder that
    # pre-empts an intra-op thread stalls all of them (measured: +8% images/s on 2 cores).
    with contextlib.suppress(AttributeError, OSError):  # os.nice is POSIX-only
        os.nice(10)


def _decode(chunk: list[Item]) -> Decoded:
    assert _plan is not None
    return _as_arrays(decode_batch(_plan, chunk, _views))
