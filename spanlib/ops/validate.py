"""Argument checks shared by the public ops: they name the argument and what was expected."""

from __future__ import annotations

import torch

from spanlib.utils.errors import ParamError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_maps(name: str, tensor: torch.Tensor, like: torch.Tensor | None = None) -> None:
    """``tensor`` is a floating (B, K, H, W) map stack, shaped and placed like ``like``."""
    if not isinstance(tensor, torch.Tensor):
        raise ParamError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 4:
        raise ParamError(f"{name}: expected shape (B, K, H, W), got {tuple(tensor.shape)}")
    if tensor.dtype not in FLOAT_DTYPES:
        raise ParamError(f"{name}: expected a float32/float16/bfloat16/float64 tensor, got {tensor.dtype}")
    if tensor.shape[2] < 1 or tensor.shape[3] < 1:
        raise ParamError(f"{name}: empty map of size {tuple(tensor.shape[2:])}")
    if like is not None:
        if tensor.shape != like.shape:
            raise ParamError(f"{name}: expected shape {tuple(like.shape)}, got {tuple(tensor.shape)}")
        if tensor.device != like.device:
            raise ParamError(f"{name}: expected device {like.device}, got {tensor.device}")
