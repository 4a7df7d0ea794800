"""Computing a tile: every scene's window read in block-aligned chunks, the median, the tile COG."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from .errors import InvalidRequest
from .gdal import forget_remote_files_on_transient, gdal_env, gdal_error, read_threads
from .grid import RasterGrid, Window
from .inputs import (
    Reference,
    SceneFacts,
    check_urls,
    check_window,
    check_window_type,
    open_scene,
    probe,
    scene_facts,
    shutdown,
    wait_all,
)
from .methods import DEFAULT_METHOD, check_method
from .writing import check_dest, write_tile


class _BufferPool:
    """Read buffers kept between compute_tile calls of one process, at most CHUNK_BYTES in all.

    A warm instance computes tile after tile; a fresh 340 MB buffer per tile costs about 0.2 s
    of page faults here, a reused one nothing. Each call takes its own buffers, so concurrent
    calls never share one.
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
        return np.empty(nbytes, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._free.append(buffer)
            self._free.sort(key=lambda b: b.size, reverse=True)
            while sum(b.size for b in self._free) > CHUNK_BYTES:
                self._free.pop()


#: Bytes of the read buffers (T, 3, rows, cols) of compute_tile: chunks are cut to fit it, and
#: a second buffer, reading the next chunk while the median of the current one runs, is used
#: only when two fit. 216 scenes x 512 rows x 1024 columns (340 MB) is one chunk.
CHUNK_BYTES = 384 << 20

_BUFFERS = _BufferPool()


@dataclass(frozen=True)
class TileStats:
    """What computing one tile cost.

    Attributes
    ----------
    window : Window
        The tile's window in the scenes.
    valid_fraction : float
        Fraction of the tile's pixels with at least one valid sample.
    bytes_read : int
        Estimate of the bytes fetched: compressed sizes of the source blocks intersecting the
        window, summed over scenes (0 where the format does not tell).
    seconds_read, seconds_median, seconds_write : float
        Wall time the calling thread spent opening and waiting for reads, in the median
        kernel, and writing the COG. Reads overlap the median, so reading time hidden behind
        the median is not counted in ``seconds_read``.
    """

    window: Window
    valid_fraction: float
    bytes_read: int
    seconds_read: float
    seconds_median: float
    seconds_write: float

    def to_dict(self) -> dict:
        """A JSON-safe dict, for logs and tile records."""
        return {
            "window": self.window.as_list(),
            "valid_fraction": self.valid_fraction,
            "bytes_read": self.bytes_read,
            "seconds_read": round(self.seconds_read, 4),
            "seconds_median": round(self.seconds_median, 4),
            "seconds_write": round(self.seconds_write, 4),
        }


@dataclass(frozen=True)
class _Check:
    """What a first read checks a scene against, and the tile's window (for its byte count)."""

    reference: Reference
    window: Window | None


def _read_into(url: str, window, out: np.ndarray, check: _Check | None = None) -> SceneFacts | None:
    """Read ``window`` of ``url`` into ``out`` (3, h, w); the dataset lives only for this read.

    With ``check``, the scene is checked against the reference before anything is read (one
    open serves both), and its facts are returned.
    """
    with rasterio.Env():
        with open_scene(url) as ds:
            scene = None
            if check is not None:
                scene = scene_facts(ds, check.window)
                check.reference.check(scene, url)
            try:
                ds.read(indexes=[1, 2, 3], window=window, out=out)
            except (RasterioError, OSError) as exc:
                raise gdal_error(exc, url, f"read window {window.flatten()}") from exc
            return scene


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
    with gdal_env(), ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=read_threads(urls, max_workers), thread_name_prefix="tm-read")
        stack.callback(shutdown, pool)
        grid = probe(urls[0], None).grid
        check_window(window, grid, urls[0])
        check = _Check(Reference.of(grid, f"the first scene {urls[0]}"), None)
        rio_window = window.to_rasterio()
        wait_all([pool.submit(_read_into, url, rio_window, out[t], check) for t, url in enumerate(urls)])
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
    from .median import compute_median  # numba: imported only by the function that needs it

    n = len(urls)
    seconds_read = seconds_median = 0.0
    t_start = time.perf_counter()
    with gdal_env(), ExitStack() as stack:
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
        check = _Check(reference, window)

        chunks = plan_chunks(window, grid.block, n, CHUNK_BYTES)
        largest = max(n * 3 * (r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in chunks)
        # Read ahead into a second buffer only when both fit the budget: on a CPU-bound reader
        # the overlap buys little, and a 216-scene strip is 340 MB.
        double = len(chunks) > 1 and 2 * largest <= CHUNK_BYTES
        buffers = [_BUFFERS.take(largest) for _ in range(2 if double else 1)]
        for buffer in buffers:
            stack.callback(_BUFFERS.give, buffer)
        rgb = np.zeros((3, window.height, window.width), np.uint8)
        count = np.zeros((window.height, window.width), np.uint16)

        def submit(index: int) -> tuple[np.ndarray, list[Future]]:
            r0, r1, c0, c1 = chunks[index]
            flat = buffers[index % len(buffers)]
            chunk_stack = flat[: n * 3 * (r1 - r0) * (c1 - c0)].reshape(n, 3, r1 - r0, c1 - c0)
            rio_window = RioWindow(window.col_off + c0, window.row_off + r0, c1 - c0, r1 - r0)
            first = check if index == 0 else None
            futures = [pool.submit(_read_into, url, rio_window, chunk_stack[t], first) for t, url in enumerate(urls)]
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
            t1 = time.perf_counter()
            compute_median(chunk_stack, method, out=(rgb[:, r0:r1, c0:c1], count[r0:r1, c0:c1]))
            t2 = time.perf_counter()
            if len(buffers) == 1 and index + 1 < len(chunks):
                pending = submit(index + 1)
            seconds_read += t1 - t0
            seconds_median += t2 - t1
        bytes_read = sum(future.result().window_bytes for future in first_futures)

    t0 = time.perf_counter()
    write_tile(dest_path, rgb, count, grid.window_transform(window), grid.crs, profile="tile")
    seconds_write = time.perf_counter() - t0
    return TileStats(
        window=window,
        valid_fraction=float(np.count_nonzero(count)) / count.size,
        bytes_read=bytes_read,
        seconds_read=seconds_read,
        seconds_median=seconds_median,
        seconds_write=seconds_write,
    )


