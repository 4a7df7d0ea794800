"""Per-pixel temporal medians of a (T, 3, h, w) uint8 stack: validation, layout, threads, results."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.methods import DEFAULT_METHOD, METHODS, check_method  # noqa: F401 - re-exported
from temporal_median.base.settings import usable_cores
from temporal_median.compute.loader import kernel_backend, loaded_kernels, prepare, use_kernels  # noqa: F401 - re-exported

#: Largest T: per-pixel counts are uint16.
MAX_SAMPLES = 65535
#: Bytes of a non-contiguous stack copied at once into a contiguous strip.
_STRIP_BYTES = 64 << 20
#: Rows per task handed to the thread pool.
_CHUNK_ROWS = 16


@dataclass(frozen=True)
class MedianResult:
    """The composite of one stack.

    Attributes
    ----------
    rgb : numpy.ndarray
        (3, h, w) uint8; pixels without any valid sample are (0, 0, 0).
    count : numpy.ndarray
        (h, w) uint16: number of valid samples per pixel.
    """

    rgb: np.ndarray
    count: np.ndarray




# --------------------------------------------------------------------------------------------
# Python entry points: validation, layout handling, output arrays.
# --------------------------------------------------------------------------------------------


def _check_stack(stack: np.ndarray) -> np.ndarray:
    if not isinstance(stack, np.ndarray):
        raise InvalidRequest(f"stack must be a numpy array, got {type(stack).__name__}")
    if stack.dtype != np.uint8:
        raise InvalidRequest(f"stack must have dtype uint8, got {stack.dtype}")
    if stack.ndim != 4 or stack.shape[1] != 3:
        raise InvalidRequest(f"stack must have shape (T, 3, h, w), got {stack.shape}")
    if not 1 <= stack.shape[0] <= MAX_SAMPLES:
        raise InvalidRequest(f"stack must hold 1 to {MAX_SAMPLES} samples, got T={stack.shape[0]}")
    return stack


def _check_out(out, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    if out is None:
        return np.empty((3, height, width), np.uint8), np.empty((height, width), np.uint16)
    try:
        rgb, count = out
    except (TypeError, ValueError):
        raise InvalidRequest("out must be a pair (rgb, count) of numpy arrays") from None
    for name, arr, shape, dtype in (
        ("rgb", rgb, (3, height, width), np.uint8),
        ("count", count, (height, width), np.uint16),
    ):
        if not isinstance(arr, np.ndarray):
            raise InvalidRequest(f"out {name} must be a numpy array, got {type(arr).__name__}")
        if arr.shape != shape or arr.dtype != dtype:
            raise InvalidRequest(
                f"out {name} must be {np.dtype(dtype).name} of shape {shape}, got {arr.dtype} of shape {arr.shape}"
            )
        if not arr.flags.writeable:
            raise InvalidRequest(f"out {name} is read-only")
    return rgb, count


def _threads() -> int:
    # NUMBA_NUM_THREADS (default: the usable cores) sizes the pool, as it would numba's own.
    value = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return usable_cores()


def _call(method: str, stack: np.ndarray, rgb: np.ndarray, count: np.ndarray) -> None:
    """Run ``kernel`` over all rows of a C-contiguous stack, in row chunks on a thread pool.

    The kernels release the GIL; plain threads cost no compile time, unlike numba's
    ``parallel=True`` which more than doubles it (cold start matters more than the pool).
    Many small chunks keep both cores busy when a neighbour process steals one.
    """
    kernel = loaded_kernels().run
    height = stack.shape[2]
    threads = min(_threads(), height)
    if threads == 1:
        kernel(method, stack, rgb, count, 0, height)
        return
    rows = max(1, min(_CHUNK_ROWS, -(-height // threads)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="median") as pool:
        futures = [
            pool.submit(kernel, method, stack, rgb, count, y0, min(height, y0 + rows)) for y0 in range(0, height, rows)
        ]
        for future in futures:
            future.result()


def _run(method: str, stack: np.ndarray, out) -> MedianResult:
    _check_stack(stack)
    n_samples, _, height, width = stack.shape
    rgb, count = _check_out(out, height, width)
    if height == 0 or width == 0:
        return MedianResult(rgb, count)
    # The kernels are compiled for C-contiguous arrays only (one specialisation each keeps cold
    # start short); other layouts go through bounded contiguous copies, never a whole-stack copy.
    direct_out = rgb.flags.c_contiguous and count.flags.c_contiguous
    if stack.flags.c_contiguous:
        if direct_out:
            _call(method, stack, rgb, count)
        else:
            tmp_rgb = np.empty((3, height, width), np.uint8)
            tmp_count = np.empty((height, width), np.uint16)
            _call(method, stack, tmp_rgb, tmp_count)
            rgb[...] = tmp_rgb
            count[...] = tmp_count
        return MedianResult(rgb, count)
    rows = max(1, _STRIP_BYTES // max(1, n_samples * 3 * width))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        strip = np.ascontiguousarray(stack[:, :, y0:y1, :])
        strip_rgb = np.empty((3, y1 - y0, width), np.uint8)
        strip_count = np.empty((y1 - y0, width), np.uint16)
        _call(method, strip, strip_rgb, strip_count)
        rgb[:, y0:y1, :] = strip_rgb
        count[y0:y1, :] = strip_count
    return MedianResult(rgb, count)


def luminance_median(stack: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None) -> MedianResult:
    """Per-pixel luminance median: the RGB of the middle valid sample ordered by (R+G+B, time).

    A sample is valid when none of its bands is 0 (nodata) or 255 (saturated). The valid
    samples of a pixel are sorted by (R+G+B, acquisition index) and the one at index
    ``count // 2`` is output whole, so the result is always an observed colour.

    Parameters
    ----------
    stack : numpy.ndarray
        (T, 3, h, w) uint8, samples in acquisition order, 1 <= T <= 65535. Any memory layout.
    out : tuple of numpy.ndarray, optional
        Preallocated ``(rgb, count)``: (3, h, w) uint8 and (h, w) uint16, possibly views into
        bigger arrays. Written in place and wrapped in the result.

    Returns
    -------
    MedianResult
        ``rgb`` is (0, 0, 0) where a pixel has no valid sample; ``count`` is its valid samples.

    Raises
    ------
    InvalidRequest
        If ``stack`` or ``out`` has the wrong type, shape or dtype.
    """
    return _run("luminance", stack, out)


def per_band_median(stack: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None) -> MedianResult:
    """Per-pixel, per-band median over the valid samples.

    Validity is as in :func:`luminance_median`. Each band's values over the valid samples are
    ranked separately; with an even count the output is the floor of the mean of the two
    middle values.

    Parameters
    ----------
    stack : numpy.ndarray
        (T, 3, h, w) uint8, samples in acquisition order, 1 <= T <= 65535. Any memory layout.
    out : tuple of numpy.ndarray, optional
        Preallocated ``(rgb, count)`` as in :func:`luminance_median`.

    Returns
    -------
    MedianResult
        ``rgb`` is 0 in every band where a pixel has no valid sample.

    Raises
    ------
    InvalidRequest
        If ``stack`` or ``out`` has the wrong type, shape or dtype.
    """
    return _run("per-band", stack, out)


def compute_median(stack: np.ndarray, method: str = DEFAULT_METHOD, out=None) -> MedianResult:
    """Median of ``stack`` by ``method``, one of :data:`METHODS`.

    Parameters
    ----------
    stack : numpy.ndarray
        (T, 3, h, w) uint8 in acquisition order.
    method : str
        ``"luminance"`` (default) or ``"per-band"``.
    out : tuple of numpy.ndarray, optional
        Preallocated ``(rgb, count)``.

    Returns
    -------
    MedianResult

    Raises
    ------
    InvalidRequest
        On an unknown method or a bad stack or ``out``.
    """
    return _run(check_method(method), stack, out)
