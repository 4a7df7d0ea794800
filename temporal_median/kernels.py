"""The numba kernels of the temporal median: branch-free per-pixel selection, blocks of 64 pixels."""

from __future__ import annotations

import numpy as np
from numba import njit

#: Pixels handled together along a row. The selection passes run over a whole block at once
#: (x innermost), so each inner loop has a constant trip count LLVM turns into SIMD code, and
#: the ``T`` cache lines of one band read per block are reused by neighbouring pixels.
_BLOCK = 64
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
#: Passes are only called from the kernels: no Python wrapper to compile.
_PASS_JIT = dict(_JIT, no_cpython_wrapper=True)


@njit(**_PASS_JIT)
def _gather_luminance(stack, y, x0, nx, lum, valid_n):  # pragma: no cover - compiled
    """lum[t, x] = R+G+B of valid samples, _LUM_INVALID otherwise; valid_n[x] = #valid."""
    for x in range(_BLOCK):
        valid_n[x] = 0
    for t in range(stack.shape[0]):
        red = stack[t, 0, y, x0:x0 + nx]
        green = stack[t, 1, y, x0:x0 + nx]
        blue = stack[t, 2, y, x0:x0 + nx]
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
    for t in range(stack.shape[0]):
        red = stack[t, 0, y, x0:x0 + nx]
        green = stack[t, 1, y, x0:x0 + nx]
        blue = stack[t, 2, y, x0:x0 + nx]
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
        for x in range(_BLOCK):
            if hits[x] > rank[x]:
                hi[x] = mid[x]
                le_hi[x] = hits[x]
            else:
                lo[x] = mid[x] + 1
                le_lo[x] = hits[x]


@njit(**_PASS_JIT)
def _pick_tied(lum, value, rank, seen, pick):  # pragma: no cover - compiled
    """pick[x] = acquisition index of the rank[x]-th sample (0-based) with lum == value[x]."""
    for x in range(_BLOCK):
        seen[x] = 0
        pick[x] = 0
    for t in range(lum.shape[0]):
        row = lum[t]
        for x in range(_BLOCK):
            same = row[x] == value[x]
            pick[x] = t if (same & (seen[x] == rank[x])) else pick[x]
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
            out[x] = v if ((v > value[x]) & (v < out[x])) else out[x]


@njit(**_JIT)
def _luminance_kernel(stack, rgb, count, y_start, y_stop):  # pragma: no cover - compiled
    n_samples = stack.shape[0]
    width = stack.shape[3]
    lum = np.empty((n_samples, _BLOCK), np.uint16)
    # Separate 1-D arrays: rows of one 2-D array would be typed non-contiguous and the passes
    # would not vectorise.
    valid_n = np.empty(_BLOCK, np.uint16)
    rank = np.empty(_BLOCK, np.uint16)
    lo = np.empty(_BLOCK, np.uint16)
    hi = np.empty(_BLOCK, np.uint16)
    below = np.empty(_BLOCK, np.uint16)
    le_hi = np.empty(_BLOCK, np.uint16)
    mid = np.empty(_BLOCK, np.uint16)
    hits = np.empty(_BLOCK, np.uint16)
    pick = np.empty(_BLOCK, np.uint16)
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


@njit(**_JIT)
def _per_band_kernel(stack, rgb, count, y_start, y_stop):  # pragma: no cover - compiled
    n_samples = stack.shape[0]
    width = stack.shape[3]
    vals = np.empty((3, n_samples, _BLOCK), np.uint8)
    valid_n = np.empty(_BLOCK, np.uint16)
    rank = np.empty(_BLOCK, np.uint16)
    le_lo = np.empty(_BLOCK, np.uint16)
    le_hi = np.empty(_BLOCK, np.uint16)
    hits = np.empty(_BLOCK, np.uint16)
    lo = np.empty(_BLOCK, np.uint8)
    hi = np.empty(_BLOCK, np.uint8)
    mid = np.empty(_BLOCK, np.uint8)
    above = np.empty(_BLOCK, np.uint8)
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


KERNELS = {"luminance": _luminance_kernel, "per-band": _per_band_kernel}
