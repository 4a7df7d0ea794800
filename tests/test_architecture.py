"""The architecture: import-linter's contracts, no import circles, modules a reader can hold in mind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
#: The packages held to the size rule (tests and bench aside).
SIZED = ("temporal_median", "localcloud", "temporal_median_cli", "terraform_checks")
MAX_LINES = 400
#: What each function must not load before its first real piece of work (cold starts).
KEPT_OUT = {
    "fanout": ("rasterio", "numba", "pystac_client", "temporal_median.raster.read"),
    "median": ("rasterio", "numba", "temporal_median.compute.tile", "temporal_median.scenes.stac"),
    "mosaic": ("rasterio", "numba", "temporal_median.assembly.cog", "temporal_median.scenes.stac"),
}


def test_import_linter_contracts_are_kept():
    # The layers and the cores' independence, as pyproject.toml's [tool.importlinter] states them.
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_no_module_of_the_core_imports_its_importer_back():
    graph = grimp.build_graph("temporal_median")
    circles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer < imported and graph.find_shortest_chain(importer=imported, imported=importer)
    )
    assert circles == []


def test_modules_stay_under_the_size_a_reader_holds_in_mind():
    long = {
        str(path.relative_to(ROOT)): n
        for package in SIZED
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_module_says_what_it_is_in_its_first_line():
    bare = [
        str(path.relative_to(ROOT))
        for package in SIZED
        for path in (ROOT / package).rglob("*.py")
        if not path.read_text().lstrip().startswith('"""')
    ]
    assert bare == []


@pytest.mark.parametrize("function", sorted(KEPT_OUT))
def test_cold_start_imports_keep_the_heavy_modules_out(function):
    # main.py imported as the runtime imports it, from the function's own directory.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('main', 'main.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(','.join(m for m in {KEPT_OUT[function]!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "functions" / function, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
