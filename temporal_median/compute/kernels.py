"""The numba kernels of the temporal median: branch-free per-pixel selection, blocks of 64 pixels.

Run just in time by numba (``cache=True``) or compiled ahead of time into a plain library by
kernel_build.py; kernel_loader.py picks one.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from temporal_median.compute.abi import (
    BAND_SCRATCH8_ROWS,
    BAND_SCRATCH16_ROWS,
    BLOCK,
    LUM_SCRATCH_ROWS,
)

#: Pixels handled together along a row (abi.BLOCK). The selection passes run over a whole
#: block at once (x innermost), so each inner loop has a constant trip count LLVM turns into SIMD
#: code, and the ``T`` cache lines of one band read per block are reused by neighbouring pixels.
_BLOCK = BLOCK
#: Luminance of an invalid sample: above every valid R+G+B (<= 762), so counting never sees it.
_LUM_INVALID = 1023
#: Binary-search steps that shrink [0, 1023] to one luminance value, and [0, 255] to one band value.
_LUM_STEPS = 10
_BAND_STEPS = 8

# --------------------------------------------------------------------------------------------
# Kernels. A kernel call handles a range of rows; a row is cut into blocks of _BLOCK pixels and
# every pass loops over the samples (outer) and the block's pixels (inner, constant length), so
# LLVM vectorises it across pixels. Selection is a per-pixel binary search on the value: "how
# many valid samples are <= mid?" is one branch-free counting pass, so 10 passes find the k-th
# luminance and 8 the k-th band value, with O(T * _BLOCK) scratch and no sort.
# Each pass is its own small function: compiled alone, each vectorises reliably (one big
# function defeated LLVM's alias analysis and ran twice as slow), and each compiles fast.
# --------------------------------------------------------------------------------------------

_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: Blocks ahead that the gathers prefetch. A block reads T x 3 cache lines, one per scene and
#: band, 3 MB apart: too many streams for the hardware prefetchers, so a 216-scene window ran
#: ~45% slower from memory than from cache. Two blocks ahead into L2 hides it (measured 1 and 4 too).
_PREFETCH_BLOCKS = 2


@intrinsic
def _prefetch(typingctx, row, index):  # pragma: no cover - compiled
    """Hint the CPU to fetch ``row[index]`` (a 1-D array) into L2 (x86 prefetcht1): never faults."""

    def codegen(context, builder, signature, args):
        row_value, index_value = args
        array = context.make_array(signature.args[0])(context, builder, row_value)
        address = builder.bitcast(builder.gep(array.data, [index_value]), ir.IntType(8).as_pointer())
        pointer_type = ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.VoidType(), [pointer_type, ir.IntType(32), ir.IntType(32), ir.IntType(32)])
        prefetch = builder.module.declare_intrinsic("llvm.prefetch", [pointer_type], function_type)
        i32 = ir.IntType(32)
        # (address, read, locality 2 = L2, data cache)
        builder.call(prefetch, [address, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(row, index), codegen


@njit(nogil=True, error_model="numpy", no_cpython_wrapper=True, cache=True, inline="always")
def _ahead(stack, y, x0):  # pragma: no cover - compiled
    """(row, column) of the block _PREFETCH_BLOCKS ahead of (y, x0), wrapping to the next row."""
    width = stack.shape[3]
    x = x0 + _PREFETCH_BLOCKS * _BLOCK
    if x >= width:
        x = min(x - width, width - 1)
        y = min(y + 1, stack.shape[2] - 1)
    return y, x
#: Passes are only called from the kernels: no Python wrapper to compile.
_PASS_JIT = dict(_JIT, no_cpython_wrapper=True)


@njit(**_PASS_JIT)
def _gather_luminance(stack, y, x0, nx, lum, valid_n):  # pragma: no cover - compiled
    """lum[t, x] = R+G+B of valid samples, _LUM_INVALID otherwise; valid_n[x] = #valid."""
    for x in range(_BLOCK):
        valid_n[x] = 0
    y_ahead, x_ahead = _ahead(stack, y, x0)
    for t in range(stack.shape[0]):
        red = stack[t, 0, y, x0:x0 + nx]
        green = stack[t, 1, y, x0:x0 + nx]
        blue = stack[t, 2, y, x0:x0 + nx]
        _prefetch(stack[t, 0, y_ahead], x_ahead)
        _prefetch(stack[t, 1, y_ahead], x_ahead)
        _prefetch(stack[t, 2, y_ahead], x_ahead)
        row = lum[t]
        for x in range(nx, _BLOCK):
            row[x] = _LUM_INVALID
        for x in range(nx):
            # uint8 wrap: v - 1 < 254 exactly when 1 <= v <= 254.
            ok = (
                (np.uint8(red[x] - np.uint8(1)) < 254)
                & (np.uint8(green[x] - np.uint8(1)) < 254)
                & (np.uint8(blue[x] - np.uint8(1)) < 254)
            )
            total = np.uint16(red[x]) + np.uint16(green[x]) + np.uint16(blue[x])
            row[x] = total if ok else _LUM_INVALID
            valid_n[x] += ok


@njit(**_PASS_JIT)
def _gather_bands(stack, y, x0, nx, vals, valid_n):  # pragma: no cover - compiled
    """vals[b, t, x] = band b of valid samples, 255 (above any valid value) otherwise."""
    for x in range(_BLOCK):
        valid_n[x] = 0
    y_ahead, x_ahead = _ahead(stack, y, x0)
    for t in range(stack.shape[0]):
        red = stack[t, 0, y, x0:x0 + nx]
        green = stack[t, 1, y, x0:x0 + nx]
        blue = stack[t, 2, y, x0:x0 + nx]
        _prefetch(stack[t, 0, y_ahead], x_ahead)
        _prefetch(stack[t, 1, y_ahead], x_ahead)
        _prefetch(stack[t, 2, y_ahead], x_ahead)
        out_r = vals[0, t]
        out_g = vals[1, t]
        out_b = vals[2, t]
        for x in range(nx, _BLOCK):
            out_r[x] = 255
            out_g[x] = 255
            out_b[x] = 255
        for x in range(nx):
            r = red[x]
            g = green[x]
            b = blue[x]
            ok = (np.uint8(r - np.uint8(1)) < 254) & (np.uint8(g - np.uint8(1)) < 254) & (np.uint8(b - np.uint8(1)) < 254)
            out_r[x] = r if ok else np.uint8(255)
            out_g[x] = g if ok else np.uint8(255)
            out_b[x] = b if ok else np.uint8(255)
            valid_n[x] += ok


@njit(**_PASS_JIT)
def _count_le(vals, mid, hits):  # pragma: no cover - compiled
    """hits[x] = #{t : vals[t, x] <= mid[x]}."""
    n_samples = vals.shape[0]
    for x in range(_BLOCK):
        hits[x] = 0
    # Four samples per trip: the counters go through memory once per four compares, not once
    # per compare (the store-to-load round trip on hits was the bottleneck).
    quads = n_samples - n_samples % 4
    for t in range(0, quads, 4):
        row0 = vals[t]
        row1 = vals[t + 1]
        row2 = vals[t + 2]
        row3 = vals[t + 3]
        for x in range(_BLOCK):
            m = mid[x]
            hits[x] += np.uint16(row0[x] <= m) + np.uint16(row1[x] <= m) + np.uint16(row2[x] <= m) + np.uint16(row3[x] <= m)
    for t in range(quads, n_samples):
        row = vals[t]
        for x in range(_BLOCK):
            hits[x] += row[x] <= mid[x]


@njit(**_PASS_JIT)
def _select(vals, rank, lo, hi, le_lo, le_hi, mid, hits, steps):  # pragma: no cover - compiled
    """Binary search per pixel for the rank-th smallest value (0-based) in [lo, hi].

    On return lo[x] is that value, le_lo[x] = #(values < it) and le_hi[x] = #(values <= it).
    The caller sets lo, hi, le_lo = #(values < lo) and le_hi = #(values <= hi).
    """
    for _ in range(steps):
        for x in range(_BLOCK):
            mid[x] = (np.uint16(lo[x]) + np.uint16(hi[x])) >> 1
        _count_le(vals, mid, hits)
        # Branch-free (selects, not jumps): the outcome differs pixel by pixel, so branches
        # mispredict and block vectorisation.
        for x in range(_BLOCK):
            above = hits[x] > rank[x]
            m = mid[x]
            h = hits[x]
            hi[x] = m if above else hi[x]
            le_hi[x] = h if above else le_hi[x]
            lo[x] = lo[x] if above else m + 1
            le_lo[x] = le_lo[x] if above else h


@njit(**_PASS_JIT)
def _pick_tied(lum, value, rank, seen, pick):  # pragma: no cover - compiled
    """pick[x] = acquisition index of the rank[x]-th sample (0-based) with lum == value[x]."""
    for x in range(_BLOCK):
        seen[x] = 0
        pick[x] = 0
    for t in range(lum.shape[0]):
        row = lum[t]
        index = np.uint16(t)
        for x in range(_BLOCK):
            # Exactly one sample per pixel has seen == rank among the tied ones: adding
            # index * hit (arithmetic, not a conditional store) vectorises; a select on pick
            # compiled to scalar branches, 30x slower.
            same = np.uint16(row[x] == value[x])
            hit = same & np.uint16(seen[x] == rank[x])
            pick[x] += index * hit
            seen[x] += same


@njit(**_PASS_JIT)
def _smallest_above(vals, value, out):  # pragma: no cover - compiled
    """out[x] = smallest vals[t, x] above value[x] (255 when none)."""
    for x in range(_BLOCK):
        out[x] = 255
    for t in range(vals.shape[0]):
        row = vals[t]
        for x in range(_BLOCK):
            v = row[x]
            candidate = v if v > value[x] else np.uint8(255)
            out[x] = min(out[x], candidate)


# --------------------------------------------------------------------------------------------
# Row kernels: rows [y_start, y_stop) of a (T, 3, h, w) C-contiguous uint8 stack into rgb
# (3, h, w) uint8 and count (h, w) uint16, with caller-provided scratch, so that the same code
# serves the JIT entry points below (which allocate it) and the ahead-of-time library (whose
# caller passes it: no allocation, hence no numba runtime, inside).
# --------------------------------------------------------------------------------------------

@njit(**_PASS_JIT)
def _luminance_rows(stack, rgb, count, y_start, y_stop, lum, small):  # pragma: no cover - compiled
    """lum: (T, _BLOCK) uint16; small: (LUM_SCRATCH_ROWS, _BLOCK) uint16 (rows are 1-D C arrays)."""
    n_samples = stack.shape[0]
    width = stack.shape[3]
    valid_n = small[0]
    rank = small[1]
    lo = small[2]
    hi = small[3]
    below = small[4]
    le_hi = small[5]
    mid = small[6]
    hits = small[7]
    pick = small[8]
    for y in range(y_start, y_stop):
        for x0 in range(0, width, _BLOCK):
            nx = min(_BLOCK, width - x0)
            _gather_luminance(stack, y, x0, nx, lum, valid_n)
            # v = the k-th smallest luminance, k = n // 2, and below = #(lum < v).
            for x in range(_BLOCK):
                rank[x] = valid_n[x] >> 1
                lo[x] = 0
                hi[x] = _LUM_INVALID
                below[x] = 0
                le_hi[x] = n_samples
            _select(lum, rank, lo, hi, below, le_hi, mid, hits, _LUM_STEPS)
            # Stable tie-break: the wanted sample is the (k - below)-th, in acquisition order,
            # of those whose luminance is v.
            for x in range(_BLOCK):
                rank[x] -= below[x]
            _pick_tied(lum, lo, rank, hits, pick)
            for x in range(nx):
                count[y, x0 + x] = valid_n[x]
                if valid_n[x] == 0:
                    rgb[0, y, x0 + x] = 0
                    rgb[1, y, x0 + x] = 0
                    rgb[2, y, x0 + x] = 0
                else:
                    t = pick[x]
                    rgb[0, y, x0 + x] = stack[t, 0, y, x0 + x]
                    rgb[1, y, x0 + x] = stack[t, 1, y, x0 + x]
                    rgb[2, y, x0 + x] = stack[t, 2, y, x0 + x]


@njit(**_PASS_JIT)
def _per_band_rows(stack, rgb, count, y_start, y_stop, vals, small16, small8):  # pragma: no cover - compiled
    """vals: (3, T, _BLOCK) uint8; small16: (BAND_SCRATCH16_ROWS, _BLOCK) uint16; small8: (BAND_SCRATCH8_ROWS, _BLOCK) uint8."""
    n_samples = stack.shape[0]
    width = stack.shape[3]
    valid_n = small16[0]
    rank = small16[1]
    le_lo = small16[2]
    le_hi = small16[3]
    hits = small16[4]
    lo = small8[0]
    hi = small8[1]
    mid = small8[2]
    above = small8[3]
    for y in range(y_start, y_stop):
        for x0 in range(0, width, _BLOCK):
            nx = min(_BLOCK, width - x0)
            _gather_bands(stack, y, x0, nx, vals, valid_n)
            for band in range(3):
                bvals = vals[band]
                # Lower middle v1 = the k1-th smallest, k1 = (n - 1) // 2.
                for x in range(_BLOCK):
                    rank[x] = (valid_n[x] - 1) >> 1 if valid_n[x] > 0 else 0
                    lo[x] = 0
                    hi[x] = 255
                    le_lo[x] = 0
                    le_hi[x] = n_samples
                _select(bvals, rank, lo, hi, le_lo, le_hi, mid, hits, _BAND_STEPS)
                # Upper middle v2 (index n // 2): v1 again when more than n // 2 samples are
                # <= v1, else the smallest value above v1.
                _smallest_above(bvals, lo, above)
                for x in range(nx):
                    n = valid_n[x]
                    if n == 0:
                        rgb[band, y, x0 + x] = 0
                    else:
                        v1 = np.uint16(lo[x])
                        v2 = v1 if le_hi[x] > (n >> 1) else np.uint16(above[x])
                        rgb[band, y, x0 + x] = (v1 + v2) >> 1
            for x in range(nx):
                count[y, x0 + x] = valid_n[x]


# JIT entry points: compiled on first use (or loaded from numba's cache) for C-contiguous
# arrays only, the one layout median.py passes.


@njit(**_JIT)
def _luminance_kernel(stack, rgb, count, y_start, y_stop):  # pragma: no cover - compiled
    lum = np.empty((stack.shape[0], _BLOCK), np.uint16)
    small = np.empty((LUM_SCRATCH_ROWS, _BLOCK), np.uint16)
    _luminance_rows(stack, rgb, count, y_start, y_stop, lum, small)


@njit(**_JIT)
def _per_band_kernel(stack, rgb, count, y_start, y_stop):  # pragma: no cover - compiled
    vals = np.empty((3, stack.shape[0], _BLOCK), np.uint8)
    small16 = np.empty((BAND_SCRATCH16_ROWS, _BLOCK), np.uint16)
    small8 = np.empty((BAND_SCRATCH8_ROWS, _BLOCK), np.uint8)
    _per_band_rows(stack, rgb, count, y_start, y_stop, vals, small16, small8)


KERNELS = {"luminance": _luminance_kernel, "per-band": _per_band_kernel}
