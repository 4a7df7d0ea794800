"""Building the ahead-of-time kernels library (temporal_median.compute.build): only where it can be checked."""

from __future__ import annotations

import subprocess
import sys

from temporal_median.compute import build as kernel_build


def test_without_a_compiler_nothing_is_built_and_make_goes_on(tmp_path):
    out = tmp_path / "kernels.so"
    result = subprocess.run(
        [sys.executable, "-m", "temporal_median.compute.build", "--out", str(out), "--cc", "no-such-cc"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not built: no C compiler 'no-such-cc'" in result.stdout and "numba" in result.stdout
    assert not out.exists()


def test_another_architecture_is_refused_with_its_name(monkeypatch):
    monkeypatch.setattr(kernel_build.platform, "machine", lambda: "aarch64")
    assert "aarch64" in kernel_build.cannot_build()


def test_a_cpu_without_x86_64_v3_cannot_vouch_for_the_library(monkeypatch):
    monkeypatch.setattr(kernel_build, "_cpu_flags", lambda: frozenset({"sse2"}))
    assert "avx2" in kernel_build.cannot_build()
