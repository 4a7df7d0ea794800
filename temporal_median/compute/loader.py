"""How a worker runs the median kernels: an ahead-of-time library through ctypes, else numba's JIT.

The library (``kernels-x86-64-v3.so`` beside kernels.py, built by ``make kernels``, i.e.
``python -m temporal_median.compute.build``) holds the row kernels of kernels.py compiled by numba
for x86-64-v3 behind one C entry point: a fresh worker imports no numba (about 110 MiB of RSS and
0.3-0.5 s) and compiles nothing. It is used when it is there, built from the current sources and
runnable on this CPU; otherwise numba compiles the same kernels on first use. This module is the
library's C ABI, shared by both sides, and imports no numba.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.logs import get_logger
from temporal_median.base.methods import DEFAULT_METHOD, check_method
from temporal_median.compute.abi import (  # noqa: F401 - the ABI, re-exported for callers of the loader
    AOT_CPU,
    AOT_CPU_FLAGS,
    AOT_ENTRY,
    AOT_FEATURES,
    AOT_LIBRARY,
    AOT_SOURCE_SYMBOL,
    BAND_SCRATCH8_ROWS,
    BAND_SCRATCH16_ROWS,
    BLOCK,
    BUILD_COMMAND,
    LUM_SCRATCH_ROWS,
    METHOD_CODES,
    source_sha256,
)

log = get_logger("temporal_median.kernels")

_backend_lock = threading.Lock()
_backend = None  # the chosen _AotKernels or _JitKernels
_requested = "auto"


def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


class _AotKernels:
    """The ahead-of-time library (kernels-x86-64-v3.so), called through ctypes."""

    name = "aot"

    def __init__(self, path: Path | None = None) -> None:
        path = AOT_LIBRARY if path is None else path
        missing = AOT_CPU_FLAGS - _cpu_flags()
        if missing:
            raise OSError(f"this CPU lacks {', '.join(sorted(missing))} for {path.name}")
        library = ctypes.CDLL(str(path))
        # A char array of 64 hex digits and a NUL (not a char *: in_dll reads the symbol's bytes).
        built_from = (ctypes.c_char * 65).in_dll(library, AOT_SOURCE_SYMBOL).value.decode()
        if built_from != source_sha256():
            raise OSError(f"{path.name} was built from other kernel sources: rebuild it ({BUILD_COMMAND})")
        entry = getattr(library, AOT_ENTRY)
        entry.restype = None
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        entry.argtypes = [i64, ptr, i64, i64, i64, ptr, ptr, i64, i64, ptr, ptr, ptr, ptr]
        self._library, self._entry = library, entry

    def run(self, method: str, stack: np.ndarray, rgb: np.ndarray, count: np.ndarray, y_start: int, y_stop: int) -> None:
        n, _, height, width = stack.shape
        code = METHOD_CODES[method]
        if code == 0:
            wide = np.empty((n, BLOCK), np.uint16)
            small16 = np.empty((LUM_SCRATCH_ROWS, BLOCK), np.uint16)
            narrow = small8 = None
        else:
            wide = None
            small16 = np.empty((BAND_SCRATCH16_ROWS, BLOCK), np.uint16)
            narrow = np.empty((3, n, BLOCK), np.uint8)
            small8 = np.empty((BAND_SCRATCH8_ROWS, BLOCK), np.uint8)
        # ctypes releases the GIL for the call.
        self._entry(code, stack.ctypes.data, n, height, width, rgb.ctypes.data, count.ctypes.data,
                    y_start, y_stop, _address(wide), small16.ctypes.data, _address(narrow), _address(small8))


def _address(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


class _JitKernels:
    """numba's JIT (compiled on first use, or loaded from numba's cache)."""

    name = "jit"

    @property
    def _kernels(self) -> dict:
        from temporal_median.compute.kernels import KERNELS  # imports numba (0.3-0.5 s the first time)

        return KERNELS

    def run(self, method: str, stack: np.ndarray, rgb: np.ndarray, count: np.ndarray, y_start: int, y_stop: int) -> None:
        self._kernels[method](stack, rgb, count, y_start, y_stop)


def use_kernels(backend: str = "auto") -> str:
    """Choose the kernels: "aot" (the library, or OSError), "jit" (numba) or "auto" (the library
    when it loads, else numba). Returns the backend now in use; loaded on first use otherwise."""
    global _backend, _requested
    if backend not in ("auto", "aot", "jit"):
        raise InvalidRequest(f"unknown kernel backend {backend!r}: auto, aot or jit")
    with _backend_lock:
        previous = _requested, _backend
        _requested, _backend = backend, None
    try:
        return kernel_backend()
    except Exception:
        with _backend_lock:
            _requested, _backend = previous
        raise


def kernel_backend() -> str:
    """The backend in use ("aot" or "jit"), loading it if needed."""
    return loaded_kernels().name


def loaded_kernels():
    """The backend object in use (chosen on first call, as :func:`use_kernels` asked)."""
    global _backend
    backend = _backend
    if backend is not None:
        return backend
    with _backend_lock:
        if _backend is None:
            if _requested == "jit":
                _backend = _JitKernels()
            elif _requested == "aot":
                _backend = _AotKernels()
            else:
                try:
                    _backend = _AotKernels()
                except (OSError, AttributeError, ValueError) as exc:
                    # Slower cold starts, same results: worth a line in the logs, not a failure.
                    if AOT_LIBRARY.exists():
                        log.warning(f"kernels library unusable ({exc}); numba compiles the kernels instead")
                    _backend = _JitKernels()
        return _backend


def prepare(method: str = DEFAULT_METHOD) -> str:
    """Choose the kernels before reading (loading the ahead-of-time library takes milliseconds);
    returns the backend. numba, when it serves, still compiles on first use: compiling in a
    background thread during the reads held the GIL the reading threads need between ctypes
    calls and made a cached first tile 2 s slower, not faster."""
    check_method(method)
    return loaded_kernels().name
