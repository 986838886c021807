"""Portable mode: the same bits on every x86-64 CPU, for training, evaluation and the tables.

Numerical libraries pick their code by the CPU they run on, and the picks round differently. Each
setting below was found by bisecting a run that diverged between this machine and QEMU's emulated
CPUs (``qemu-x86_64 -cpu Haswell | Nehalem | EPYC``, docs/reproducibility.md), and each removes
one such pick:

- ``ATEN_CPU_CAPABILITY=default``: ATen's element-wise and reduction kernels in their plain C++
  version (AVX-512 and AVX2 versions vectorise sums and softmax differently).
- ``ONEDNN_MAX_CPU_ISA=SSE41``: oneDNN's convolutions in their SSE4.1 code (the ISA every x86-64
  CPU since 2008 has), not AVX2 or AVX-512.
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility: one code path on every
  CPU. It does not cover ``torch.sqrt`` of a tensor, which ATen sends to MKL's vector maths, so the
  library avoids it where training uses it (``losses.coord_loss``, Adam's fused kernel).
- ``NPY_DISABLE_CPU_FEATURES``: NumPy's ufuncs in their baseline (x86-64-v2) code; its AVX2 and
  AVX-512 ``exp`` round differently (the heatmap targets).
- ``GLIBC_TUNABLES=glibc.cpu.hwcaps=...``: glibc's libm without its FMA variants (NumPy's float64
  ``exp`` calls glibc's, which has an FMA and an SSE2 version).
- ``SPANLIB_NATIVE=0``: our C kernels are built with ``-march=native -ffast-math``; portable mode
  runs their PyTorch path instead.
- ``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``: a sum split over threads
  is summed in another order, so the thread count must not follow the machine's core count.
  (Training sets its own count, ``train.threads``, which the pipeline keeps at 1.)

They are read when the libraries load, so they must be in the environment before the process
starts: ``python -m spanlib.utils.portable --params params.yaml CMD ...`` runs CMD with them (every stage of
dvc.yaml starts its notebook that way), and :func:`active` tells a running process whether it has
them. ``pipeline.portable: false`` in params.yaml runs CMD unchanged (faster; numbers then move in the
last bits from one CPU to another). The cost is measured in docs/reproducibility.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import yaml  # the params file itself, not spanlib.config (a layer above this one): one key is read

# variable -> value; every one must be set before torch, NumPy or glibc's loader start
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX",
    "SPANLIB_NATIVE": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "SPANLIB_PORTABLE": "1",
}


def portable_env(base: dict | None = None) -> dict:
    """``base`` (default: this process's environment) with the portable settings added."""
    env = dict(os.environ if base is None else base)
    env.update(PORTABLE_ENV)
    return env


def active() -> bool:
    """Whether this process started with every portable setting (not merely some of them)."""
    return all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())


def describe() -> dict:
    """What a results file records about the mode: on or off, and the settings when on."""
    return {"portable": active(), **({"settings": dict(PORTABLE_ENV)} if active() else {})}


def wanted(params_file: str | None) -> bool:
    """``pipeline.portable`` of ``params_file`` (true when the file or the key is absent)."""
    if not params_file:
        return True
    try:
        with open(params_file, encoding="utf-8") as handle:
            params = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise SystemExit(f"spanlib.utils.portable: cannot read --params {params_file}: {exc}") from None
    value = (params.get("pipeline") or {}).get("portable", True)
    if not isinstance(value, bool):
        raise SystemExit(f"spanlib.utils.portable: {params_file}: pipeline.portable must be true or false, "
                         f"got {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spanlib.utils.portable",
        description="run a command with the settings that make torch, NumPy and glibc give the same "
                    "bits on every x86-64 CPU (spanlib/utils/portable.py)")
    parser.add_argument("--params", default=None,
                        help="params file whose pipeline.portable decides (default: always portable)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given, e.g. python -m spanlib.utils.portable papermill in.ipynb out.ipynb")
    program = shutil.which(command[0])
    if program is None:
        print(f"spanlib.utils.portable: command not found: {command[0]}", file=sys.stderr)
        return 127
    env = portable_env() if wanted(args.params) else dict(os.environ)
    sys.stdout.flush()
    os.execve(program, command, env)  # replaces this process: its exit status is the command's
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
