"""Exactness of the luminance and per-band median kernels against a brute-force reference."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from temporal_median.base.errors import InvalidRequest
from temporal_median.compute import loader as kernel_loader
from temporal_median.compute.median import (
    DEFAULT_METHOD,
    METHODS,
    MedianResult,
    check_method,
    compute_median,
    luminance_median,
    per_band_median,
)

# ------------------------------------------------------------------------------------------
# Brute force: the course definitions written as directly as possible, one pixel at a time.
# ------------------------------------------------------------------------------------------


def brute_force(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(luminance rgb, per-band rgb, count) of a small stack, by sorting Python lists."""
    n_samples, _, height, width = stack.shape
    lum = np.zeros((3, height, width), np.uint8)
    per_band = np.zeros((3, height, width), np.uint8)
    count = np.zeros((height, width), np.uint16)
    for y in range(height):
        for x in range(width):
            samples = [tuple(int(v) for v in stack[t, :, y, x]) for t in range(n_samples)]
            valid = [(t, s) for t, s in enumerate(samples) if all(0 < v < 255 for v in s)]
            count[y, x] = len(valid)
            if not valid:
                continue
            ordered = sorted(valid, key=lambda item: (sum(item[1]), item[0]))
            lum[:, y, x] = ordered[len(ordered) // 2][1]
            for band in range(3):
                # median_low + median_high keeps integers: floor of the mean of the two middles.
                values = [s[band] for _, s in valid]
                per_band[band, y, x] = (statistics.median_low(values) + statistics.median_high(values)) // 2
    return lum, per_band, count


def assert_matches_brute_force(stack: np.ndarray) -> None:
    lum, per_band, count = brute_force(stack)
    got_lum = luminance_median(stack)
    got_pb = per_band_median(stack)
    np.testing.assert_array_equal(got_lum.count, count)
    np.testing.assert_array_equal(got_pb.count, count)
    np.testing.assert_array_equal(got_lum.rgb, lum)
    np.testing.assert_array_equal(got_pb.rgb, per_band)


def make_stack(samples: list[tuple[int, int, int]]) -> np.ndarray:
    """A (T, 3, 1, 1) stack from one pixel's samples in acquisition order."""
    return np.array(samples, np.uint8).reshape(len(samples), 3, 1, 1)


# ------------------------------------------------------------------------------------------
# Property test: random small stacks where 0, 255, 1, 254 and luminance ties are frequent.
# ------------------------------------------------------------------------------------------

# Few distinct values make equal R+G+B sums (ties) common, with the validity limits around.
_VALUES = st.sampled_from([0, 1, 2, 3, 100, 101, 102, 127, 128, 253, 254, 255])


@st.composite
def stacks(draw):
    n_samples = draw(st.integers(1, 40))
    height = draw(st.integers(1, 3))
    width = draw(st.integers(1, 5))
    return draw(hnp.arrays(np.uint8, (n_samples, 3, height, width), elements=_VALUES))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_random_stacks_match_brute_force(stack):
    assert_matches_brute_force(stack)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 30), st.just(3), st.just(2), st.integers(1, 140))))
def test_any_values_and_partial_blocks_match_brute_force(stack):
    # Widths beyond one block of pixels and arbitrary values: the block tail must be handled.
    assert_matches_brute_force(stack)


# ------------------------------------------------------------------------------------------
# Named edge cases.
# ------------------------------------------------------------------------------------------


def test_all_invalid_gives_black_and_zero_count():
    stack = make_stack([(0, 10, 10), (255, 255, 255), (10, 0, 10), (10, 10, 255)])
    for func in (luminance_median, per_band_median):
        result = func(stack)
        assert result.rgb[:, 0, 0].tolist() == [0, 0, 0]
        assert result.count[0, 0] == 0


def test_single_valid_sample_is_returned():
    stack = make_stack([(0, 0, 0), (40, 50, 60), (255, 1, 1)])
    for func in (luminance_median, per_band_median):
        result = func(stack)
        assert result.rgb[:, 0, 0].tolist() == [40, 50, 60]
        assert result.count[0, 0] == 1


def test_luminance_ties_resolved_by_acquisition_index():
    # All four have R+G+B = 30; index count // 2 = 2 of the stable order is the third acquired.
    stack = make_stack([(10, 10, 10), (5, 5, 20), (20, 5, 5), (1, 1, 28)])
    assert luminance_median(stack).rgb[:, 0, 0].tolist() == [20, 5, 5]


def test_luminance_tie_after_lower_samples():
    # Sorted: (1,1,1)@1, then ties at 30 in order @0, @2, @3 -> index 2 is the tie acquired at 2.
    stack = make_stack([(10, 10, 10), (1, 1, 1), (5, 5, 20), (20, 5, 5)])
    assert luminance_median(stack).rgb[:, 0, 0].tolist() == [5, 5, 20]


def test_odd_count_takes_the_middle():
    stack = make_stack([(50, 60, 70), (10, 20, 30), (90, 80, 70)])
    assert luminance_median(stack).rgb[:, 0, 0].tolist() == [50, 60, 70]
    assert per_band_median(stack).rgb[:, 0, 0].tolist() == [50, 60, 70]


def test_even_count_luminance_takes_upper_middle_and_per_band_floors_the_mean():
    stack = make_stack([(10, 20, 31), (40, 50, 60), (13, 22, 30), (90, 90, 90)])
    # Sums 61, 150, 65, 270 -> sorted 61, 65, 150, 270 -> index 2 = (40, 50, 60).
    assert luminance_median(stack).rgb[:, 0, 0].tolist() == [40, 50, 60]
    # R: 10 13 40 90 -> (13+40)//2 = 26; G: 20 22 50 90 -> 36; B: 30 31 60 90 -> 45.
    assert per_band_median(stack).rgb[:, 0, 0].tolist() == [26, 36, 45]


def test_t_equals_one():
    stack = np.array([[[[5, 0]], [[6, 7]], [[7, 8]]]], np.uint8)  # (1, 3, 1, 2)
    for func in (luminance_median, per_band_median):
        result = func(stack)
        assert result.rgb[:, 0, 0].tolist() == [5, 6, 7]
        assert result.rgb[:, 0, 1].tolist() == [0, 0, 0]
        assert result.count.tolist() == [[1, 0]]


def test_values_1_and_254_are_valid():
    stack = make_stack([(1, 1, 1), (254, 254, 254), (1, 254, 1)])
    assert luminance_median(stack).count[0, 0] == 3
    assert luminance_median(stack).rgb[:, 0, 0].tolist() == [1, 254, 1]
    assert per_band_median(stack).rgb[:, 0, 0].tolist() == [1, 254, 1]


def test_more_than_255_samples_count_does_not_wrap():
    rng = np.random.default_rng(7)
    stack = rng.integers(1, 255, size=(300, 3, 2, 3), dtype=np.uint8)
    stack[:20, :, 0, 0] = 0  # 280 valid at (0, 0)
    for func in (luminance_median, per_band_median):
        result = func(stack)
        assert result.count.dtype == np.uint16
        assert result.count[0, 0] == 280
        assert result.count[1, 2] == 300
    assert_matches_brute_force(stack)


def test_thousand_samples():
    rng = np.random.default_rng(8)
    stack = rng.choice(np.array([0, 1, 100, 101, 254, 255], np.uint8), size=(1100, 3, 1, 2))
    assert_matches_brute_force(stack)


def test_non_contiguous_stack():
    rng = np.random.default_rng(3)
    big = rng.choice(np.array([0, 5, 6, 7, 200, 255], np.uint8), size=(12, 3, 6, 10))
    view = big[::2, :, 1::2, ::-1]  # every second scene, odd rows, mirrored columns
    assert not view.flags.c_contiguous
    assert_matches_brute_force(view)
    np.testing.assert_array_equal(luminance_median(view).rgb, luminance_median(np.ascontiguousarray(view)).rgb)


def test_out_writes_into_slices_of_a_whole_tile():
    rng = np.random.default_rng(4)
    stack = rng.choice(np.array([0, 3, 4, 90, 91, 255], np.uint8), size=(9, 3, 8, 7))
    for method in METHODS:
        rgb = np.full((3, 8, 7), 77, np.uint8)
        count = np.full((8, 7), 999, np.uint16)
        for y0 in (0, 3, 6):  # row strips, as the I/O layer reads them
            strip = (rgb[:, y0:y0 + 3], count[y0:y0 + 3])
            result = compute_median(stack[:, :, y0:y0 + 3], method, out=strip)
            assert result.rgb is strip[0] and result.count is strip[1]
        whole = compute_median(stack, method)
        np.testing.assert_array_equal(rgb, whole.rgb)
        np.testing.assert_array_equal(count, whole.count)


def test_compute_median_dispatches_and_defaults_to_luminance():
    stack = make_stack([(10, 200, 10), (100, 100, 100), (60, 60, 60)])
    assert DEFAULT_METHOD == "luminance"
    # Sums 220, 300, 180 -> sorted 180, 220, 300 -> index 1: an observed colour, unlike per-band.
    assert compute_median(stack).rgb[:, 0, 0].tolist() == [10, 200, 10]
    assert compute_median(stack, "per-band").rgb[:, 0, 0].tolist() == [60, 100, 60]
    assert isinstance(compute_median(stack), MedianResult)


def test_empty_window_gives_empty_result():
    result = luminance_median(np.zeros((3, 3, 0, 4), np.uint8))
    assert result.rgb.shape == (3, 0, 4) and result.count.shape == (0, 4)


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


def test_bad_method_names_the_valid_ones():
    with pytest.raises(InvalidRequest, match=r"'median'.*luminance, per-band"):
        check_method("median")
    with pytest.raises(InvalidRequest, match="luminance, per-band"):
        compute_median(np.ones((1, 3, 1, 1), np.uint8), "mean")
    assert check_method("per-band") == "per-band"


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (np.ones((2, 3, 4, 4), np.uint16), "dtype uint8, got uint16"),
        (np.ones((2, 4, 4, 4), np.uint8), r"shape \(T, 3, h, w\), got \(2, 4, 4, 4\)"),
        (np.ones((3, 4, 4), np.uint8), r"shape \(T, 3, h, w\), got \(3, 4, 4\)"),
        (np.ones((0, 3, 4, 4), np.uint8), "1 to 65535 samples, got T=0"),
        ([[[[1]]]], "numpy array, got list"),
    ],
)
def test_bad_stack_is_invalid_request(stack, message):
    for method in METHODS:
        with pytest.raises(InvalidRequest, match=message):
            compute_median(stack, method)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ((np.zeros((3, 4, 5), np.uint8), np.zeros((4, 4), np.uint16)), r"out rgb must be uint8 of shape \(3, 4, 4\)"),
        ((np.zeros((3, 4, 4), np.uint8), np.zeros((4, 4), np.uint8)), r"out count must be uint16 of shape \(4, 4\)"),
        (np.zeros((3, 4, 4), np.uint8), r"out must be a pair \(rgb, count\)"),
    ],
)
def test_bad_out_is_invalid_request(out, message):
    with pytest.raises(InvalidRequest, match=message):
        luminance_median(np.ones((2, 3, 4, 4), np.uint8), out=out)


# ------------------------------------------------------------------------------------------
# Backends: the ahead-of-time library (kernels-x86-64-v3.so) and numba's JIT run one source.
# ------------------------------------------------------------------------------------------


def _aot_available() -> bool:
    try:
        kernel_loader._AotKernels()
    except OSError:
        return False
    return True


@pytest.fixture
def restore_backend():
    from temporal_median.compute import median

    yield median
    median.use_kernels("auto")


@pytest.mark.skipif(not _aot_available(), reason="no current ahead-of-time kernels library for this CPU")
@pytest.mark.parametrize("shape", [(1, 3, 2, 5), (7, 3, 3, 64), (40, 3, 5, 129), (300, 3, 2, 70)])
def test_ahead_of_time_and_jit_kernels_agree(restore_backend, shape):
    median = restore_backend
    rng = np.random.default_rng(sum(shape))
    stack = rng.choice(np.array([0, 1, 2, 100, 101, 127, 128, 200, 254, 255], np.uint8), size=shape)
    results = {}
    for backend in ("aot", "jit"):
        assert median.use_kernels(backend) == backend
        results[backend] = [compute_median(stack, method) for method in METHODS]
    for aot, jit in zip(results["aot"], results["jit"]):
        np.testing.assert_array_equal(aot.rgb, jit.rgb)
        np.testing.assert_array_equal(aot.count, jit.count)


def test_without_the_library_the_jit_serves(restore_backend, monkeypatch, tmp_path):
    median = restore_backend
    monkeypatch.setattr(kernel_loader, "AOT_LIBRARY", tmp_path / "missing.so")
    assert median.use_kernels("auto") == "jit"
    with pytest.raises(OSError):
        median.use_kernels("aot")
    with pytest.raises(InvalidRequest):
        median.use_kernels("fast")
    # A failed choice leaves the previous one in place.
    assert median.kernel_backend() == "jit"
    assert_matches_brute_force(make_stack([(10, 20, 30), (0, 5, 5), (40, 40, 40)]))


def test_a_shipped_library_is_current():
    """The library beside kernels.py, when there, was built from these sources (else: make kernels)."""
    library = kernel_loader.AOT_LIBRARY
    if not library.exists() or kernel_loader.AOT_CPU_FLAGS - kernel_loader._cpu_flags():
        pytest.skip("no ahead-of-time kernels library here, or not for this CPU")
    kernel_loader._AotKernels()  # raises OSError naming the rebuild command when stale


@pytest.mark.skipif(not _aot_available(), reason="no current ahead-of-time kernels library for this CPU")
def test_a_library_built_from_other_sources_is_refused_and_the_jit_serves(restore_backend, monkeypatch):
    median = restore_backend
    monkeypatch.setattr(kernel_loader, "source_sha256", lambda: "0" * 64)
    with pytest.raises(OSError, match="make kernels"):
        median.use_kernels("aot")
    assert median.use_kernels("auto") == "jit"

