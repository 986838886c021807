"""Landmarks from the network's outputs: the windowed BALI soft-argmax of eq. 5."""

from __future__ import annotations

import torch

from spanlib import ops


def bali_decode(heatmap: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor, radius: int) -> torch.Tensor:
    """The one call into the fused op (Triton on CUDA, PyTorch reference on CPU)."""
    return ops.bali_decode(heatmap, offset_x, offset_y, radius)


def decode_landmarks(outputs: dict, radius: int, input_size: int | None = None) -> torch.Tensor:
    """(B, K, 2) landmarks in crop pixels (corner origin) from ``SpanNet`` outputs.

    Weights are the softmax of the last-stage logits over space; offsets are the BALI fields
    (zeros for variants without them); the result in last-stage map pixels is multiplied by the
    stride input_size / h_T. Differentiable (used by L_coord, eq. 18). ``input_size`` defaults to
    ``outputs["input_size"]``, which ``SpanNet.forward`` sets.
    """
    logits = outputs["heatmaps"][-1]
    b, k, h, w = logits.shape
    size = input_size if input_size is not None else outputs["input_size"]
    weights = torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).view(b, k, h, w)
    offsets = outputs.get("offsets")
    if offsets is None:
        zeros = weights.new_zeros(())
        offset_x = offset_y = zeros.expand_as(weights)
    else:
        offsets = offsets.float()
        offset_x, offset_y = offsets[:, 0], offsets[:, 1]
    return bali_decode(weights, offset_x, offset_y, int(radius)) * (size / w)
