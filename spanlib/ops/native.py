"""Build-once loader of the C kernels behind the CPU path, and the row-parallel runner they share.

A kernel's C source (kept beside its maths in ``jsd_cpu.py`` / ``bali_cpu.py``) is compiled on
first use with the system C compiler into a cache folder (``$SPANLIB_CACHE`` or
``~/.cache/spanlib``), named by a hash of the source, the flags, the compiler and the CPU, so a
rebuild happens only when one of them changes; later processes load the cached library. Where no
compiler is found or the build fails, ``load`` returns None and the ops fall back to their
PyTorch code (``status()`` says which path runs and why).

Why plain C through ctypes rather than a torch extension: the kernels only need pointers and
sizes, so nothing includes torch's headers (a build takes about a second instead of a minute),
and ctypes releases the GIL during a call, so rows are spread over ``torch.get_num_threads()``
Python threads without a second OpenMP runtime beside torch's.

Flags: ``-O3 -march=native -ffast-math`` let GCC vectorise the loops, calling glibc's vector
``expf``/``logf`` (libmvec). The object is linked without ``-ffast-math`` so that GCC does not add
``crtfastmath.o``, which would switch the whole process to flush-denormals-to-zero on load.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch

COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c11"]
_LIBS: dict[str, ctypes.CDLL | None] = {}
_STATUS: dict[str, str] = {}
_POOL: ThreadPoolExecutor | None = None


def cache_dir() -> Path:
    root = os.environ.get("SPANLIB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spanlib")
    return Path(root) / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def load(name: str, source: str) -> ctypes.CDLL | None:
    """The compiled library for ``source`` (built on first use, then cached), or None."""
    if name in _LIBS:
        return _LIBS[name]
    lib = None
    if os.environ.get("SPANLIB_NATIVE", "1") == "0":
        _STATUS[name] = "disabled by SPANLIB_NATIVE=0"
    elif (cc := _compiler()) is None:
        _STATUS[name] = "no C compiler found (cc, gcc, clang; or $CC)"
    else:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([source, " ".join(COMPILE_FLAGS), version, _cpu_flags(),
                                        platform.machine()]).encode()).hexdigest()[:16]
        path = cache_dir() / f"{name}-{key}.so"
        try:
            if not path.exists():
                _build(cc, source, path)
            lib = ctypes.CDLL(str(path))
            _STATUS[name] = f"native C kernel ({path})"
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            _STATUS[name] = f"build failed: {str(detail).strip().splitlines()[-1][:200] if detail else exc}"
            lib = None
    _LIBS[name] = lib
    return lib


def _build(cc: str, source: str, path: Path) -> None:
    """Compile and link into a temporary folder, then rename into place (atomic: concurrent
    builders each produce a complete file and the last rename wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src, obj, lib = Path(tmp, "k.c"), Path(tmp, "k.o"), Path(tmp, "k.so")
        src.write_text(source)
        subprocess.run([cc, *COMPILE_FLAGS, "-c", str(src), "-o", str(obj)], check=True, capture_output=True, text=True)
        subprocess.run([cc, "-shared", str(obj), "-o", str(lib), "-lm"], check=True, capture_output=True, text=True)
        os.replace(lib, path)


def status(name: str) -> str:
    """Which path the op named ``name`` runs on the CPU, and why (after its first ``load``)."""
    return _STATUS.get(name, "not loaded yet")


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def parallel_rows(kernel: Callable[[int, int], None], rows: int, row_cost: int) -> None:
    """Run ``kernel(start, stop)`` over [0, rows) in contiguous ranges on torch.get_num_threads()
    threads; small problems (under ~64k elements) run inline, where a thread hop costs more.
    Four ranges per thread, taken as threads free up: on a shared machine one core is often
    busier than the other, and equal halves would leave the faster thread waiting."""
    threads = max(1, torch.get_num_threads())
    if threads == 1 or rows < 2 or rows * row_cost < (1 << 16):
        kernel(0, rows)
        return
    global _POOL
    if _POOL is None or _POOL._max_workers != threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spanlib-cpu")
    parts = min(rows, 4 * threads)
    bounds = [rows * i // parts for i in range(parts + 1)]
    list(_POOL.map(lambda i: kernel(bounds[i], bounds[i + 1]), range(parts)))


def zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor whose pages are not written: large ones are anonymous memory maps, which the
    kernel hands out as zero pages and backs with memory only where they are written. For a
    gradient that is zero outside small windows (``bali_decode``) this skips writing, and
    faulting in, the full-size zeros; the pages a later reader touches map the shared zero page.
    Small tensors (under 1 MiB) come from ``torch.zeros``."""
    numel = 1
    for size in shape:
        numel *= size
    nbytes = numel * torch.empty(0, dtype=dtype).element_size()
    if nbytes < (1 << 20):
        return torch.zeros(shape, dtype=dtype)
    # the tensor keeps the mmap object alive; the pages are unmapped when its storage is freed
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).view(shape)
