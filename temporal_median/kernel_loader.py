"""How a worker runs the median kernels: an ahead-of-time library through ctypes, else numba's JIT.

The library (``kernels-x86-64-v3.so`` beside kernels.py, built by ``make kernels``, i.e.
``python -m temporal_median.kernel_build``) holds the row kernels of kernels.py compiled by numba
for x86-64-v3 behind one C entry point: a fresh worker imports no numba (about 110 MiB of RSS and
0.3-0.5 s) and compiles nothing. It is used when it is there, built from the current sources and
runnable on this CPU; otherwise numba compiles the same kernels on first use. This module is the
library's C ABI, shared by both sides, and imports no numba.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from pathlib import Path

import numpy as np

from .errors import InvalidRequest
from .logs import get_logger
from .methods import DEFAULT_METHOD, check_method

log = get_logger("temporal_median.kernels")

#: Pixels handled together along a row by every kernel pass.
BLOCK = 64
#: Scratch rows of the luminance kernel after its (T, BLOCK) luminances, all uint16.
LUM_SCRATCH_ROWS = 9
#: Scratch rows of the per-band kernel: uint16 ones, then uint8 ones after its (3, T, BLOCK) values.
BAND_SCRATCH16_ROWS = 5
BAND_SCRATCH8_ROWS = 4
#: The library's ``method`` argument.
METHOD_CODES = {"luminance": 0, "per-band": 1}

#: The portable target: LLVM's x86-64-v3 level (AVX2, BMI1/2, FMA, MOVBE, LZCNT, F16C), which
#: every x86 server CPU since 2015 has, Cloud Run's included.
AOT_CPU = "x86-64-v3"
AOT_FEATURES = (
    "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+popcnt,"
    "+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"
)
#: /proc/cpuinfo flags a CPU needs to run the library (lzcnt is "abm", lahf/sahf "lahf_lm").
AOT_CPU_FLAGS = frozenset(
    ("abm", "avx", "avx2", "bmi1", "bmi2", "cx16", "f16c", "fma", "lahf_lm", "movbe", "popcnt", "sse4_1", "sse4_2",
     "ssse3", "xsave")
)
AOT_LIBRARY = Path(__file__).with_name(f"kernels-{AOT_CPU}.so")
#: void tm_median_rows(int64 method, uint8 *stack, int64 n, int64 h, int64 w, uint8 *rgb,
#:                     uint16 *count, int64 y_start, int64 y_stop, uint16 *wide,
#:                     uint16 *small16, uint8 *narrow, uint8 *small8)
#: method 0 = luminance (wide: T x BLOCK uint16, small16: LUM_SCRATCH_ROWS x BLOCK), 1 = per-band
#: (small16: BAND_SCRATCH16_ROWS x BLOCK, narrow: 3 x T x BLOCK uint8, small8: BAND_SCRATCH8_ROWS
#: x BLOCK). Arrays are C-contiguous; the caller owns all memory.
AOT_ENTRY = "tm_median_rows"
#: A char[65] in the library: source_sha256() of what it was built from.
AOT_SOURCE_SYMBOL = "tm_median_source_sha256"
BUILD_COMMAND = "make kernels"
#: What the compiled code is made of: a library built from other sources is stale. The loader's
#: own code is not (editing it needs no rebuild); the ABI's values are.
_SOURCES = ("kernels.py", "kernel_build.py")


def source_sha256() -> str:
    """SHA-256 of what the library is compiled from: kernels.py, kernel_build.py and the ABI's values."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    abi = (BLOCK, LUM_SCRATCH_ROWS, BAND_SCRATCH16_ROWS, BAND_SCRATCH8_ROWS, METHOD_CODES, AOT_CPU, AOT_FEATURES,
           AOT_ENTRY, AOT_SOURCE_SYMBOL)
    digest.update(repr(abi).encode())
    return digest.hexdigest()


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
        from .kernels import KERNELS  # imports numba (0.3-0.5 s the first time)

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
