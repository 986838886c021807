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
    size = input_size if input_size is not None else outputs["input_size"]
    return decode_weights(spatial_softmax(logits), outputs.get("offsets"), radius, size)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> float32 weights, the softmax of each map over its H * W pixels."""
    b, k, h, w = logits.shape
    return torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).view(b, k, h, w)


def decode_weights(weights: torch.Tensor, offsets: torch.Tensor | None, radius: int, input_size: int,
                   with_window_sum: bool = False):
    """(B, K, 2) crop pixels from (B, K, H, W) weights (``spatial_softmax``) and the BALI fields
    (B, 2, K, H, W), None for variants without them (zero offsets): eq. 5 in map pixels times the
    stride input_size / W. ``with_window_sum`` (inference, no gradient): also the window's total
    weight (B, K), from the same pass (``ops.bali_decode_and_sum``)."""
    if offsets is None:
        zeros = weights.new_zeros(())
        offset_x = offset_y = zeros.expand_as(weights)
    else:
        offsets = offsets.float()
        offset_x, offset_y = offsets[:, 0], offsets[:, 1]
    stride = input_size / weights.shape[-1]
    if with_window_sum:
        points, total = ops.bali_decode_and_sum(weights, offset_x, offset_y, int(radius))
        return points * stride, total
    return bali_decode(weights, offset_x, offset_y, int(radius)) * stride
