"""What produced a number: a hash of the code that ran, the git description, and the machine.

``code_version()`` is ``<version>+code.<12 hex>`` where the hash covers every ``spanlib/**/*.py``
file and the code cells of ``notebooks/*.ipynb`` (outputs and metadata excluded), so running the
pipeline, which rewrites results, does not change it, while any edit to the library does. The git
description (``git describe --always``), when the package sits in a checkout, goes beside it in
``machine_info()``, not in the version: results committed after a run would otherwise "dirty" it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from spanlib._version import __version__
from spanlib.utils import portable
from spanlib.utils.files import write_json

try:  # NumPy's private module of SIMD levels: if NumPy moves it, machine_info leaves them out
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    _NUMPY_SIMD = (__cpu_baseline__, __cpu_dispatch__, __cpu_features__)
except ImportError:
    _NUMPY_SIMD = None

PACKAGE = Path(__file__).resolve().parents[1]  # spanlib/
PROJECT = PACKAGE.parent


def _notebook_code(path: Path) -> bytes:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return path.read_bytes() if path.is_file() else b""
    code = ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", ""))
            for c in cells if c.get("cell_type") == "code"]
    return "\n# ---- cell ----\n".join(code).encode("utf-8")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """SHA-256 (hex) over the library's Python files and the notebooks' code cells, by relative path."""
    digest = hashlib.sha256()
    files = sorted(PACKAGE.rglob("*.py"))
    notebooks = sorted((PROJECT / "notebooks").glob("*.ipynb")) if (PROJECT / "notebooks").is_dir() else []
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for path in notebooks:
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + _notebook_code(path) + b"\0")
    return digest.hexdigest()


def code_version() -> str:
    return f"{__version__}+code.{code_hash()[:12]}"


def git_describe() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--tags"], cwd=PACKAGE, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, the SIMD level torch and NumPy dispatch to, versions: numbers computed on other
    CPUs may differ in the last bits (docs/evaluation.md, "Reproducibility across machines").
    Gathered once per process (it runs ``git describe``; training writes a sidecar per checkpoint);
    each call returns a fresh copy."""
    return copy.deepcopy(_machine_info())


@lru_cache(maxsize=1)
def _machine_info() -> dict:
    import torch  # lazy: utils is imported by torch-free code (spanlib.study.lab's Jupyter save hook)

    info = {"cpu": cpu_model(), "machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "numpy": np.__version__, "git": git_describe(), "code_hash": code_hash()}
    if _NUMPY_SIMD is not None:
        baseline, dispatch, features = _NUMPY_SIMD
        info["numpy_simd_baseline"] = list(baseline)
        info["numpy_simd_dispatch"] = [k for k in dispatch if features.get(k)]
    info["opencv"] = cv2.__version__
    # OpenCV's dispatch (the likely source of cross-CPU pixel differences) is in its build info
    lines = [line.strip() for line in cv2.getBuildInformation().splitlines()]
    info["opencv_dispatch"] = next((line.split(":", 1)[1].strip() for line in lines
                                    if line.startswith("Dispatched code generation")), None)
    return info


# ---- what must differ between machines, kept apart from the results --------------------------------
# A results file must be the same bytes on every CPU (portable mode, spanlib/utils/portable.py); what
# cannot be (the CPU, the git description, wall times) goes to a sidecar named <stem>.machine.json
# beside it. `.dvcignore` leaves *.machine.* out of DVC's hashes, so a rerun on another machine
# changes no hash in dvc.lock, and `git status` after `make repro` lists only the sidecars.
MACHINE_SUFFIX = ".machine.json"


def machine_sidecar(path: str | Path) -> Path:
    """``results/x/s0.json`` -> ``results/x/s0.machine.json`` (``model.pt`` -> ``model.machine.json``)."""
    path = Path(path)
    return path.with_name(path.stem + MACHINE_SUFFIX)


def write_machine_sidecar(path: str | Path, **volatile) -> Path:
    """Write the machine (``machine_info()``), the portable mode and ``volatile`` (wall times,
    images/s) to the sidecar of ``path``; returns the sidecar's path."""
    sidecar = machine_sidecar(path)
    write_json(sidecar, {"describes": Path(path).name, "machine": machine_info(), **portable.describe(),
                         **volatile})
    return sidecar


def write_result_json(path: str | Path, result: dict) -> None:
    """Write a metrics JSON without ``provenance.machine``, which goes to the sidecar instead."""
    provenance = dict(result.get("provenance") or {})
    provenance.pop("machine", None)
    write_json(path, {**result, "provenance": provenance} if "provenance" in result else result)
    write_machine_sidecar(path)
