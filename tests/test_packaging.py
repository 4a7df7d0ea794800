"""Each function imports with only what its requirements.txt installs (plus the core beside it)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Importable names of the project's runtime packages, keyed by their requirement name.
MODULES = {
    "functions-framework": "functions_framework",
    "numpy": "numpy",
    "numba": "numba",
    "rasterio": "rasterio",
    "google-cloud-storage": "google.cloud.storage",
    "google-cloud-pubsub": "google.cloud.pubsub_v1",
    "cloudevents": "cloudevents",
    "pystac-client": "pystac_client",
    "simpy": "simpy",
    "matplotlib": "matplotlib",
    "pillow": "PIL",
}

# The core modules each function's code paths import lazily (after main.py is loaded).
LAZY = {
    "fanout": ["temporal_median.raster.read", "temporal_median.scenes.stac", "temporal_median.job.layout", "temporal_median.plan.plan",
               "pystac_client", "google.cloud.pubsub_v1"],
    "median": ["temporal_median.compute.tile", "temporal_median.compute.area", "temporal_median.raster.mask",
               "temporal_median.compute.median"],
    "mosaic": ["temporal_median.assembly.vrt", "temporal_median.assembly.cog", "temporal_median.assembly.catalog",
               "temporal_median.assembly.timelapse", "temporal_median.plan.timeline"],
}

# Blocks the given modules (and their submodules), then imports main.py as the runtime does,
# from the function's own directory where the symlinked core package sits, then the lazy imports.
IMPORT_WITH_BLOCKED = r"""
import importlib, importlib.abc, importlib.util, sys
lazy = sys.argv[2].split(",") if sys.argv[2] else []
blocked = set(sys.argv[3:])
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"{name} is not in this function's requirements.txt")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("main", sys.argv[1] + "/main.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for name in lazy:
    importlib.import_module(name)
"""


def requirements(function: str) -> set[str]:
    lines = (ROOT / "functions" / function / "requirements.txt").read_text().splitlines()
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip())
    return names


@pytest.mark.parametrize("function", ["fanout", "median", "mosaic"])
def test_function_imports_with_only_its_requirements(function):
    wanted = requirements(function)
    assert wanted <= set(MODULES), f"unknown requirement in functions/{function}/requirements.txt"
    blocked = [module for name, module in MODULES.items() if name not in wanted]
    directory = ROOT / "functions" / function
    assert (directory / "temporal_median" / "__init__.py").exists(), "the core package must sit beside main.py"
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_BLOCKED, str(directory), ",".join(LAZY[function]), *blocked],
        capture_output=True, text=True, cwd="/", timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_missing_requirement_is_caught():
    # As if mosaic's requirements.txt lacked rasterio: its lazy import of the assembler fails.
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_BLOCKED, str(ROOT / "functions" / "mosaic"), ",".join(LAZY["mosaic"]),
         "rasterio"],
        capture_output=True, text=True, cwd="/", timeout=120,
    )
    assert result.returncode != 0 and "rasterio is not in this function's requirements.txt" in result.stderr
