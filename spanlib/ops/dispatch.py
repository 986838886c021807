"""Which implementation runs an op: the Triton kernel or the CPU path.

CUDA tensors go to the Triton kernels, CPU tensors to the CPU path (``*_cpu.py``). The environment
variable ``SPANLIB_OPS`` overrides: ``cpu`` always uses the CPU path (``reference``, its former
name, is accepted), ``triton`` always uses the kernels
(on CPU tensors that needs ``TRITON_INTERPRET=1`` set before triton is imported, which is how the
tests run the kernels without a GPU), ``auto`` (or unset) picks by device.
"""

from __future__ import annotations

import os

import torch

from spanlib.utils.errors import ParamError

BACKENDS = ("auto", "cpu", "triton")
ALIASES = {"reference": "cpu"}  # the CPU path's former name


def backend_for(tensor: torch.Tensor) -> str:
    """``"triton"`` or ``"cpu"`` for an op whose inputs live where ``tensor`` lives."""
    choice = os.environ.get("SPANLIB_OPS", "auto").strip().lower() or "auto"
    choice = ALIASES.get(choice, choice)
    if choice not in BACKENDS:
        raise ParamError(f"SPANLIB_OPS={choice!r}: expected one of {', '.join(BACKENDS)}")
    if choice == "auto":
        return "triton" if tensor.is_cuda else "cpu"
    if choice == "triton" and not tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ParamError(
            "SPANLIB_OPS=triton on CPU tensors needs TRITON_INTERPRET=1 set before triton is "
            "imported (the Triton interpreter); use SPANLIB_OPS=cpu or CUDA tensors"
        )
    return choice
