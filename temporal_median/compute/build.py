"""Builds the ahead-of-time kernels library: numba compiles kernels.py's row kernels for x86-64-v3.

``make kernels`` (``python -m temporal_median.compute.build``) writes ``kernels-x86-64-v3.so``
beside kernels.py: a plain shared library (C ABI, no numba, LLVM or Python inside) exporting
kernel_loader.AOT_ENTRY and the SHA-256 of the sources it was built from. Needs numba, and a C
compiler to link (x86-64 Linux).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from temporal_median.compute import kernels
from temporal_median.compute.loader import (
    AOT_CPU,
    AOT_CPU_FLAGS,
    AOT_ENTRY,
    AOT_FEATURES,
    AOT_LIBRARY,
    AOT_SOURCE_SYMBOL,
    BAND_SCRATCH8_ROWS,
    BAND_SCRATCH16_ROWS,
    BLOCK,
    LUM_SCRATCH_ROWS,
    METHOD_CODES,
    _AotKernels,
    _cpu_flags,
    source_sha256,
)

# What the compiled code references only on numba's error paths (never taken: no allocation,
# no exception in these kernels); the library gets aborting stubs for them.
_RUNTIME_PREFIXES = ("Py", "_Py", "NRT_", "numba_")


def _entry_point():
    from numba import carray, cfunc, types

    u8p, u16p, i64 = types.CPointer(types.uint8), types.CPointer(types.uint16), types.int64
    signature = types.void(i64, u8p, i64, i64, i64, u8p, u16p, i64, i64, u16p, u16p, u8p, u8p)

    @cfunc(signature, nopython=True, error_model="numpy")
    def tm_median_rows(method, stack_p, n, h, w, rgb_p, count_p, y_start, y_stop, wide_p, small16_p, narrow_p, small8_p):
        stack = carray(stack_p, (n, 3, h, w))
        rgb = carray(rgb_p, (3, h, w))
        count = carray(count_p, (h, w))
        if method == 0:
            wide = carray(wide_p, (n, BLOCK))
            small16 = carray(small16_p, (LUM_SCRATCH_ROWS, BLOCK))
            kernels._luminance_rows(stack, rgb, count, y_start, y_stop, wide, small16)
        else:
            narrow = carray(narrow_p, (3, n, BLOCK))
            small16 = carray(small16_p, (BAND_SCRATCH16_ROWS, BLOCK))
            small8 = carray(small8_p, (BAND_SCRATCH8_ROWS, BLOCK))
            kernels._per_band_rows(stack, rgb, count, y_start, y_stop, narrow, small16, small8)

    return tm_median_rows


def _compile_library(out: Path, cc: str) -> None:
    """Compile the entry point in this process (numba targeting AOT_CPU) and link ``out``."""
    import llvmlite.binding as ll

    entry = _entry_point()
    module = ll.parse_assembly(entry._library.get_llvm_str())
    module.get_function(entry.native_name).name = AOT_ENTRY
    module.verify()
    stubs = []
    for function in module.functions:
        if function.is_declaration and function.name.startswith(_RUNTIME_PREFIXES):
            stubs.append(f"void {function.name}(void) {{ abort(); }}")
    for variable in module.global_variables:
        if variable.is_declaration and variable.name.startswith(_RUNTIME_PREFIXES):
            stubs.append(f"void *{variable.name} = 0;")
    machine = ll.Target.from_triple(module.triple).create_target_machine(
        cpu=AOT_CPU, features=AOT_FEATURES, opt=3, reloc="pic", codemodel="default"
    )
    with tempfile.TemporaryDirectory(prefix="tm-kernels-") as tmp:
        obj = os.path.join(tmp, "kernels.o")
        with open(obj, "wb") as f:
            f.write(machine.emit_object(module))
        stub = os.path.join(tmp, "stubs.c")
        with open(stub, "w") as f:
            f.write("#include <stdlib.h>\n")
            f.write(f'const char {AOT_SOURCE_SYMBOL}[] = "{source_sha256()}";\n')
            f.write("\n".join(stubs) + "\n")
        tmp_out = os.path.join(tmp, out.name)
        # -Bsymbolic: the stubs, not the host process's symbols of the same names, serve the library.
        subprocess.run([cc, "-O2", "-fPIC", "-shared", "-Wl,-Bsymbolic", "-o", tmp_out, obj, stub], check=True)
        os.replace(tmp_out, out)


def build_library(out: Path | str = AOT_LIBRARY, *, cc: str = "cc") -> Path:
    """Build the ahead-of-time library (x86-64 Linux; needs a C compiler to link, numba to compile).

    numba is run in a fresh interpreter told to target AOT_CPU (it reads its target at import),
    then the library is loaded and checked against the JIT kernels on random stacks.

    Returns
    -------
    pathlib.Path
        The library written.
    """
    out = Path(out).resolve()
    env = dict(os.environ, NUMBA_CPU_NAME=AOT_CPU, NUMBA_CPU_FEATURES=AOT_FEATURES)
    # Never serve or fill the JIT cache with code for another CPU.
    env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="tm-kernels-cache-")
    code = (
        "from pathlib import Path; from temporal_median.compute.build import _compile_library; "
        f"_compile_library(Path({str(out)!r}), {cc!r})"
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(Path(__file__).resolve().parents[2]))
    finally:
        shutil.rmtree(env["NUMBA_CACHE_DIR"], ignore_errors=True)
    verify_library(out)
    return out


def cannot_build(cc: str = "cc") -> str | None:
    """Why the library cannot be built and verified here, or None when it can.

    It is x86-64 Linux code, linked by a C compiler, and checked by running it: a machine of
    another kind, without a compiler, or whose CPU lacks x86-64-v3 cannot make a library it
    could vouch for (the median then runs numba's JIT, same results, slower cold starts).
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the library is x86-64 Linux code and this is {platform.system()} {platform.machine()}"
    if shutil.which(cc) is None:
        return f"no C compiler {cc!r} to link it (set CC)"
    missing = AOT_CPU_FLAGS - _cpu_flags()
    if missing:
        return f"this CPU lacks {', '.join(sorted(missing))}, so it could not check the library"
    return None


def verify_library(path: Path) -> None:
    """Load the library at ``path`` and check it against the JIT kernels on random stacks
    (odd widths, T from 1 to 300, both methods); AssertionError naming the first difference."""
    import numpy as np

    library = _AotKernels(path)
    rng = np.random.default_rng(20)
    for shape in ((1, 3, 2, 5), (37, 3, 5, 130), (300, 3, 2, 70)):
        stack = rng.choice(np.array([0, 1, 2, 100, 127, 128, 200, 254, 255], np.uint8), size=shape)
        height, width = shape[2:]
        for method in METHOD_CODES:
            got = np.zeros((3, height, width), np.uint8), np.zeros((height, width), np.uint16)
            want = np.zeros((3, height, width), np.uint8), np.zeros((height, width), np.uint16)
            library.run(method, stack, *got, 0, height)
            kernels.KERNELS[method](stack, *want, 0, height)
            for a, b in zip(got, want):
                assert np.array_equal(a, b), f"{path.name} differs from the JIT kernels ({method}, stack {shape})"


if __name__ == "__main__":  # pragma: no cover - build tool
    import argparse

    parser = argparse.ArgumentParser(prog="python -m temporal_median.compute.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(AOT_LIBRARY))
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = parser.parse_args()
    reason = cannot_build(args.cc)
    if reason:
        # Not an error: everything works without the library, only cold starts are slower.
        print(f"kernels library not built: {reason}; the median compiles its kernels with numba instead")
        sys.exit(0)
    path = build_library(args.out, cc=args.cc)
    print(f"{path} ({path.stat().st_size} bytes) for {AOT_CPU}, source {source_sha256()[:12]}")
