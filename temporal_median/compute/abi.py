"""The kernels library's C ABI: block and scratch sizes, the entry point, the target CPU, the source hash.

Shared by kernels.py (which compiles against it), build.py (which links it) and loader.py (which
calls it); it imports neither numba nor the kernels, so the three import it and never each other
in a circle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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
_SOURCES = ("kernels.py", "build.py")


def source_sha256() -> str:
    """SHA-256 of what the library is compiled from: kernels.py, build.py and the ABI's values."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    abi = (BLOCK, LUM_SCRATCH_ROWS, BAND_SCRATCH16_ROWS, BAND_SCRATCH8_ROWS, METHOD_CODES, AOT_CPU, AOT_FEATURES,
           AOT_ENTRY, AOT_SOURCE_SYMBOL)
    digest.update(repr(abi).encode())
    return digest.hexdigest()
