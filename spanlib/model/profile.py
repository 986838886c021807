"""Model size and cost: parameters, bytes on disk, FLOPs (used by ``spanlib profile``)."""

from __future__ import annotations

import io

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk(model: torch.nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (float32 weights + BN statistics)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def count_flops(model: torch.nn.Module, input_size: int | None = None, batch: int = 1) -> int:
    """FLOPs of one forward pass on ``batch`` images (torch.utils.flop_counter: a multiply-add
    counts as 2 FLOPs; convolutions and matmuls only, element-wise ops are not counted)."""
    size = input_size or model.input_size
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(batch, 3, size, size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_profile(model: torch.nn.Module, input_size: int | None = None) -> dict:
    """{"params", "size_bytes", "gflops"} for one image."""
    return {
        "params": count_parameters(model),
        "size_bytes": size_on_disk(model),
        "gflops": count_flops(model, input_size) / 1e9,
    }
