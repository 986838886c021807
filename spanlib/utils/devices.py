"""The one reading of ``--device`` for every command (train, evaluate, predict, profile, report)."""

from __future__ import annotations

import torch

from spanlib.utils.errors import ParamError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``--device``: cpu, cuda or cuda:N (None: cuda when available); anything else, or CUDA on a
    machine without it, is a ParamError rather than torch's RuntimeError."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit())):
        raise ParamError(f"--device {text}: unknown device; expected cpu, cuda or cuda:N "
                         f"(default: cuda when available)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"--device {text}: CUDA is not available on this machine (torch {torch.__version__}); "
                         f"use --device cpu")
    return torch.device(text)
