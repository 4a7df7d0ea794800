"""The cost estimate: usage priced line by line with the one table of list prices."""

import pytest

from temporal_median.base.settings import Settings
from temporal_median.base.units import memory_gib
from temporal_median.job.cost import PRICES, Usage


def granule(seconds_per_window: float) -> Usage:
    """The course's job: 121 windows of 216 scenes, median 1 vCPU / 2 GiB, mosaic 2 vCPU / 4 GiB."""
    return Usage(
        windows=121, scenes=216, median_seconds=121 * seconds_per_window, median_cpu=1, median_gib=2,
        mosaic_seconds=12, mosaic_cpu=2, mosaic_gib=4, input_reads=2 * 216 * 121,
        bytes_read=22 * 10**9, message_bytes=121 * 13_100,
    )


def test_each_line_is_usage_times_its_list_price():
    estimate = granule(10).estimate()
    usage, usd = estimate["usage"], estimate["usd"]
    assert usage["vcpu_seconds"] == 121 * 10 * 1 + 12 * 2
    assert usage["gib_seconds"] == 121 * 10 * 2 + 12 * 4
    assert usd["cpu"] == round(usage["vcpu_seconds"] * PRICES["vcpu_second"], 6)
    assert usd["memory"] == round(usage["gib_seconds"] * PRICES["gib_second"], 6)
    assert usd["class_b"] == round(usage["class_b_operations"] * PRICES["class_b_operation"], 6)
    assert usage["class_b_operations"] > 2 * 216 * 121 and usage["class_a_operations"] > 2 * 121
    assert estimate["usd_total"] == pytest.approx(sum(usd.values()), abs=1e-5)


def test_cost_grows_with_the_seconds_a_window_takes_and_prices_can_be_overridden():
    assert granule(30).estimate()["usd_total"] > granule(10).estimate()["usd_total"]
    free_cpu = granule(10).estimate({"vcpu_second": 0.0})
    assert free_cpu["usd"]["cpu"] == 0 and free_cpu["prices"]["vcpu_second"] == 0


@pytest.mark.parametrize("text, gib", [("2Gi", 2.0), ("512Mi", 0.5), ("16Gi", 16.0), ("1G", 1e9 / 2**30)])
def test_memory_sizes_as_cloud_run_writes_them(text, gib):
    assert memory_gib(text) == gib


@pytest.mark.parametrize("text", ["2GB", "", "-1Gi", "Gi", "0Mi"])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(ValueError):
        memory_gib(text)


def test_instance_sizes_come_from_the_environment():
    settings = Settings.from_env({"TM_MEDIAN_CPU": "2", "TM_MEDIAN_MEMORY": "1Gi", "TM_MOSAIC_MEMORY": "8Gi"})
    assert (settings.median_cpu, settings.median_memory_gib, settings.mosaic_cpu, settings.mosaic_memory_gib) == (2, 1.0, 2, 8.0)
