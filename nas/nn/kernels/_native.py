"""Building and loading the compiled kernels (``_bconv.c``) through ctypes.

``./setup.sh`` builds ``_bconv.so`` beside this file (``python -m nas.nn.kernels.build``): plain C
with OpenMP, one translation unit, its AVX-512 and AVX2 functions compiled for those targets by
function attributes and chosen at run time, so one build runs on any x86-64 CPU (and on other
CPUs the portable path). Where no compiler is found the package falls back to the PyTorch
reference with one warning.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE / "_bconv.c"
LIBRARY = HERE / "_bconv.so"
PATHS = {"portable": 0, "avx2": 1, "avx512": 2}


def build(quiet: bool = False) -> Path:
    """Compile ``_bconv.c`` into ``_bconv.so`` (atomically); raises RuntimeError on failure."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH; install gcc to build the kernels")
    partial = LIBRARY.with_suffix(".so.partial")
    # -ffp-contract=off: no fused multiply-add, so every path rounds as the reference does
    command = [
        compiler,
        "-O3",
        "-ffp-contract=off",
        "-fPIC",
        "-shared",
        "-fopenmp",
        str(SOURCE),
        "-o",
        str(partial),
    ]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"building the kernels failed: {' '.join(command)}\n{out.stderr}")
    partial.replace(LIBRARY)
    if not quiet:
        print(f"built {LIBRARY}", file=sys.stderr)
    return LIBRARY


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built now if absent or older than the source; None (after one
    warning) where they cannot be built or loaded."""
    try:
        if not LIBRARY.is_file() or LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime:
            build(quiet=True)
        lib = ctypes.CDLL(str(LIBRARY))
    except (RuntimeError, OSError) as e:
        warnings.warn(
            f"binary conv kernels unavailable ({str(e).splitlines()[0]}); using the PyTorch "
            "reference path (slow). Run ./setup.sh with gcc installed to build them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p
    lib.bconv_paths.restype = i
    lib.bconv_set_threads.argtypes = [i]
    lib.bconv_forward.restype = i
    lib.bconv_forward.argtypes = [ctypes.c_char_p]  # conv_args_t, packed by binary_conv2d
    q = ctypes.c_int64
    lib.bconv_pack.argtypes = [i, f, i, i, i, i, q, f, f, i, p]
    lib.nhwc_maxpool.argtypes = [f, i, i, i, i, i, i, i, i, p, p, i, f]
    lib.nhwc_pad.argtypes = [f, i, i, i, i, q, q, q, q, i, f]
    lib.bconv_stem.restype = i
    lib.bconv_stem.argtypes = [f, i, i, i, i, f, f, i, i, i, i, i, f, p, i]
    for probe in (lib.bconv_clock_probe, lib.bconv_popcount_peak):
        probe.restype, probe.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return lib


@cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks below 32 MB from its heap and to keep freed memory
    there (``mallopt``: M_MMAP_THRESHOLD 32 MB, M_TRIM_THRESHOLD 512 MB) rather than hand it back
    to the kernel: a packed model allocates its activations image after image (a DenseNet stage's
    features are 5.6 MB at 224 px), and memory that comes back from the kernel is zeroed page by
    page on first touch, which made some processes a third slower than others (docs/kernels.md).
    Process-wide, set once
    (by :class:`nas.nn.packed.network.PackedNetwork`); False where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    trim, mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    return bool(mallopt(trim, 512 << 20)) and bool(mallopt(mmap, 32 << 20))


def available_paths() -> list[str]:
    """The compiled paths this CPU can run (empty without the library)."""
    return list(compiled_paths())


@cache
def compiled_paths() -> tuple[str, ...]:
    """:func:`available_paths` as a tuple, asked once: binary_conv2d consults it on every call."""
    lib = library()
    if lib is None:
        return ()
    mask = lib.bconv_paths()
    return tuple(name for name, bit in PATHS.items() if mask & (1 << bit))
