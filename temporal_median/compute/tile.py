"""Computing a tile: every scene's window read in block-aligned chunks, the median, the tile COG."""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Sequence

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.grid import RasterGrid, Window
from temporal_median.base.methods import DEFAULT_METHOD, check_method
from temporal_median.base.settings import usable_cores
from temporal_median.compute.composites import Composites, TileStats  # noqa: F401 - TileStats re-exported
from temporal_median.raster.gdal import forget_remote_files_on_transient, gdal_env, read_threads
from temporal_median.raster.mask import check_masks, read_masked
from temporal_median.raster.read import (
    ReadCheck,
    Reference,
    check_urls,
    check_window,
    check_window_type,
    probe,
    read_scene,
    shutdown,
    wait_all,
)
from temporal_median.raster.write import check_dest


class _BufferPool:
    """Read buffers kept between compute_tile calls of one process.

    A warm instance computes tile after tile; a fresh 648 MiB buffer per tile costs about 0.3 s
    of page faults here, a reused one nothing. Each call takes its own buffers, so concurrent
    calls never share one. The pool keeps at most CHUNK_BYTES, or the one buffer a window of
    blocks bigger than that needed, never more.
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            fitting = [i for i, b in enumerate(self._free) if b.size >= nbytes]
            if fitting:
                # By index: list.remove would compare arrays element by element.
                return self._free.pop(min(fitting, key=lambda i: self._free[i].size))
            # Nothing fits: drop what is kept before allocating, so peak memory is one set.
            self._free.clear()
        buffer = np.empty(nbytes, np.uint8)
        _fault_in(buffer)
        return buffer

    def give(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._free.append(buffer)
            self._free.sort(key=lambda b: b.size, reverse=True)
            limit = max(CHUNK_BYTES, self._free[0].size)
            while sum(b.size for b in self._free) > limit:
                self._free.pop()


def _fault_in(buffer: np.ndarray) -> None:
    """Touch every page of a new buffer, on all cores, before anything reads into it.

    Faulting the pages inside the reads instead made a fresh instance's first 216-scene read
    0.4-1.3 s slower than the next (the decoders' own mmap/munmap churn contends with the page
    faults), against about 0.1 s for this pass. numpy releases the GIL for the strided writes.
    """
    flat = buffer.reshape(-1)
    parts = max(1, min(usable_cores(), flat.size >> 26))  # pieces of at least 64 MiB
    bounds = [flat.size * i // parts // 4096 * 4096 for i in range(parts)] + [flat.size]
    pieces = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    if len(pieces) == 1:
        pieces[0][::4096] = 0
        return
    with ThreadPoolExecutor(len(pieces), thread_name_prefix="tm-fault") as pool:
        list(pool.map(lambda piece: piece.__setitem__(slice(None, None, 4096), 0), pieces))


#: Bytes of the read buffers (T, 3, rows, cols) of compute_tile: chunks are cut to fit it, and
#: a second buffer, reading the next chunk while the median of the current one runs, is used
#: only when two fit. A chunk is never smaller than one block of every scene (GDAL decodes
#: whole blocks: cutting one would decode it twice), so a year of scenes (216) over a 1024
#: window with 1024-pixel input blocks needs 648 MiB whatever the budget. The budget is that,
#: so such a window is one chunk whatever the block size: with 512-pixel blocks, two 324 MiB
#: strips took 11% longer (1.50 s vs 1.33 s here; each scene opened twice, and the median of
#: the first strip waited for the second's reads) for the same peak as 1024-pixel blocks need.
CHUNK_BYTES = 216 * 3 * 1024 * 1024

#: GDAL's block cache while compute_tile reads, unless GDAL_CACHEMAX is set. A scene is open
#: only while its window is read, and closing it drops its blocks, so the cache never holds more
#: than the blocks being decoded (2 threads x one 1024 x 1024 RGB block = 6 MB).
READ_CACHE_BYTES = 16 << 20

_BUFFERS = _BufferPool()


def _trim_heap() -> None:
    """glibc's malloc_trim(0): return free heap memory (all arenas) to the system; best effort."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def read_env():
    """gdal_env for reading windows: a small block cache unless the user set one."""
    if "GDAL_CACHEMAX" in os.environ:
        return gdal_env()
    return gdal_env(GDAL_CACHEMAX=READ_CACHE_BYTES)


@forget_remote_files_on_transient
def read_window(
    urls: Sequence[str], window: Window, *, max_workers: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read ``window`` of every scene into a (T, 3, h, w) uint8 stack.

    Parameters
    ----------
    urls : sequence of str
        Scenes in acquisition order.
    window : Window
        Must lie inside the scenes.
    max_workers : int, optional
        Reading threads (GDAL decodes without the GIL); default :func:`read_threads`.
    out : numpy.ndarray, optional
        C-contiguous (T, 3, h, w) uint8 array to fill.

    Returns
    -------
    numpy.ndarray
        ``out`` if given, else a new array.

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable, NoInputs, InvalidRequest
        As in :func:`inspect_inputs`; InputMismatch also when the window is outside.
    """
    urls = check_urls(urls)
    check_window_type(window)
    shape = (len(urls), 3, window.height, window.width)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidRequest(f"out must be a writeable C-contiguous uint8 array of shape {shape}")
    with read_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-read")
        stack.callback(shutdown, pool)
        grid = probe(urls[0], None).grid
        check_window(window, grid, urls[0])
        check = ReadCheck(Reference.of(grid, f"the first scene {urls[0]}"), None)
        box = (window.col_off, window.row_off, window.width, window.height)
        wait_all([pool.submit(read_scene, url, box, out[t], check) for t, url in enumerate(urls)])
    return out


def _spans(offset: int, length: int, step: int) -> list[tuple[int, int]]:
    """Cut [offset, offset + length) at absolute multiples of ``step``; relative (start, stop) pairs."""
    spans, start = [], offset
    while start < offset + length:
        stop = min(offset + length, (start // step + 1) * step)
        spans.append((start - offset, stop - offset))
        start = stop
    return spans


def plan_chunks(window: Window, block: tuple, n_scenes: int, budget: int | None = None) -> list[tuple]:
    """Block-aligned chunks ``(r0, r1, c0, c1)`` (window-relative) that compute_tile reads at once.

    Chunks are whole-width row strips of as many source block rows as fit ``budget`` bytes of
    (T, 3, rows, width); when even one block row does not fit, the strip is cut into runs of
    whole blocks. Every cut falls on a block edge, so no block is decoded twice. ``budget``
    defaults to :data:`CHUNK_BYTES`.
    """
    budget = CHUNK_BYTES if budget is None else budget
    block_h, block_w = block
    row_bytes = n_scenes * 3 * window.width
    rows_fit = budget // max(1, row_bytes)
    if rows_fit >= block_h:
        step_h, step_w = block_h * (rows_fit // block_h), window.col_off + window.width + block_w
    else:
        cols_fit = budget // max(1, n_scenes * 3 * block_h)
        step_h, step_w = block_h, block_w * max(1, cols_fit // block_w)
    # Offsets are absolute so that cuts land on the source's block grid.
    row_spans = _spans(window.row_off, window.height, step_h)
    col_spans = _spans(window.col_off, window.width, step_w)
    return [(r0, r1, c0, c1) for r0, r1 in row_spans for c0, c1 in col_spans]



@forget_remote_files_on_transient
def compute_tile(
    urls: Sequence[str],
    window: Window,
    dest_path: str,
    *,
    method: str = DEFAULT_METHOD,
    max_workers: int | None = None,
    expected: RasterGrid | None = None,
    periods: Sequence = (),
    masks: Sequence[str] | None = None,
    exclude: Sequence[int] = (),
) -> TileStats:
    """Read ``window`` of every scene, take the temporal median and write it as a tile COG.

    Scenes are read in block-aligned chunks (see :func:`plan_chunks`) into preallocated
    buffers; the next chunk is read while the median of the current one runs, so memory stays
    bounded (about 2 x ``CHUNK_BYTES``) whatever the number of scenes.

    Parameters
    ----------
    urls : sequence of str
        Scenes in acquisition order (ties in the median go to the earlier scene).
    window : Window
        The tile's window in the scenes.
    dest_path : str
        Local path of the tile COG; written to a temporary file and renamed into place.
    method : str
        ``"luminance"`` or ``"per-band"``.
    max_workers : int, optional
        Reading threads; default :func:`read_threads`.
    expected : RasterGrid, optional
        The grid every scene must have (e.g. from the job manifest); default: the first scene's.
    periods : sequence of (name, first, stop, path), optional
        Periods' composites, each the median of the run ``urls[first:stop]`` written to ``path``,
        from the same reads (see :class:`~temporal_median.compute.composites.Composites`).
    masks : sequence of str, optional
        One classification raster per scene (e.g. Sentinel-2's SCL); samples whose class is in
        ``exclude`` are dropped (see :func:`~temporal_median.raster.warp.read_mask`).
    exclude : sequence of int
        The classes dropped.

    Returns
    -------
    TileStats

    Raises
    ------
    InputMismatch, InputUnreadable, StorageUnavailable, NoInputs, InvalidRequest
        As in :func:`read_window`, plus InvalidRequest on an unknown method.
    """
    check_method(method)
    urls = check_urls(urls)
    check_window_type(window)
    check_dest(dest_path)
    masks = check_masks(masks, urls)
    from temporal_median.compute.median import prepare  # the kernels: imported only by the function that needs them

    # Choose the kernels now: an unusable library is known before anything is read.
    prepare(method)

    n = len(urls)
    composites = Composites(window, n, periods)
    seconds_read = 0.0
    t_start = time.perf_counter()
    with read_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-read")
        stack.callback(shutdown, pool)
        # The reference grid comes from the manifest or the first scene; every other scene is
        # checked against it by the same open that reads its first chunk.
        if expected is not None:
            reference = Reference.of(expected, "the expected grid")
        else:
            reference = Reference.of(probe(urls[0], window).grid, f"the first scene {urls[0]}")
        grid = reference.grid
        check_window(window, grid, urls[0])
        check = ReadCheck(reference, window)

        chunks = plan_chunks(window, grid.block, n, CHUNK_BYTES)
        largest = max(n * 3 * (r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in chunks)
        # Read ahead into a second buffer only when both fit the budget (on a CPU-bound reader
        # the overlap buys little).
        double = len(chunks) > 1 and 2 * largest <= CHUNK_BYTES
        buffers = [_BUFFERS.take(largest) for _ in range(2 if double else 1)]
        for buffer in buffers:
            stack.callback(_BUFFERS.give, buffer)
        def submit(index: int) -> tuple[np.ndarray, list[Future]]:
            r0, r1, c0, c1 = chunks[index]
            flat = buffers[index % len(buffers)]
            chunk_stack = flat[: n * 3 * (r1 - r0) * (c1 - c0)].reshape(n, 3, r1 - r0, c1 - c0)
            box = (window.col_off + c0, window.row_off + r0, c1 - c0, r1 - r0)
            first = check if index == 0 else None
            if masks is None:
                futures = [pool.submit(read_scene, url, box, chunk_stack[t], first) for t, url in enumerate(urls)]
            else:
                futures = [pool.submit(read_masked, url, masks[t], exclude, grid, box, chunk_stack[t], first)
                           for t, url in enumerate(urls)]
            return chunk_stack, futures

        pending = submit(0)
        first_futures = pending[1]
        seconds_read += time.perf_counter() - t_start
        for index, (r0, r1, c0, c1) in enumerate(chunks):
            t0 = time.perf_counter()
            chunk_stack, futures = pending
            wait_all(futures)
            if len(buffers) > 1 and index + 1 < len(chunks):
                pending = submit(index + 1)
            # Hand the decoders' freed buffers back to the system before the median and the write
            # allocate theirs: with 1024-pixel input blocks the read buffer alone is 648 of 768 MiB.
            _trim_heap()
            t1 = time.perf_counter()
            composites.add(chunk_stack, method, r0, r1, c0, c1)
            if len(buffers) == 1 and index + 1 < len(chunks):
                pending = submit(index + 1)
            seconds_read += t1 - t0
        bytes_read = sum(future.result() for future in first_futures)

    # Compress on every core (the others idle now): 30-32 ms instead of 39-47 ms for a 1024
    # tile on 2 cores, for about 20 MiB of compression buffers; not when the read buffer
    # (kept for the next tile) already takes more than half the memory budget.
    return composites.write(dest_path, grid, bytes_read, seconds_read,
                            threads="ALL_CPUS" if 2 * largest <= CHUNK_BYTES else None)


