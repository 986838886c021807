"""The ops benchmark harness lives in ``kernels/benchmark.py`` (outside the package: it is a tool
of this repository, not part of the library, and not of ``spanlib.ops``). This module loads it for
notebook 05_kernel_profiling and ``spanlib bench``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from spanlib.utils.errors import ParamError

HARNESS = Path(__file__).resolve().parents[2] / "kernels" / "benchmark.py"


def _load():
    if not HARNESS.is_file():
        raise ParamError(f"the ops benchmark needs the repository checkout: {HARNESS} not found")
    name = "spanlib_kernels_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HARNESS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


_harness = _load()
run_benchmark = _harness.run_benchmark
markdown_table = _harness.markdown_table
device_slug = _harness.device_slug
plot = _harness.plot
describe = _harness.describe
floor_bytes = _harness.floor_bytes
JS_SIZES, DECODE_SIZES, DECODE_RADIUS, WHAT = _harness.JS_SIZES, _harness.DECODE_SIZES, _harness.DECODE_RADIUS, _harness.WHAT
