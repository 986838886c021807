"""Fused ops for SPAN's two hot spots: the JS-divergence heatmap loss (eq. 15) and the windowed
BALI soft-argmax decoding (eq. 5).

Each op has a CPU path (``*_cpu.py``: a C kernel built once, with a PyTorch fallback in
``*_cpu_torch.py``) and a Triton kernel (``*_triton.py``, the CUDA path) computing the same
function; ``dispatch.backend_for`` picks one (CUDA -> Triton, CPU -> cpu,
``SPANLIB_OPS=cpu|triton`` overrides). ``textbook.py`` writes both formulas directly with torch
ops: the benchmark's baselines and, in float64, the tests' reference. Triton is imported only when
a kernel is used.
"""

from __future__ import annotations

import torch

from spanlib.ops.bali_cpu import bali_decode_and_sum_cpu, bali_decode_conv1x1_cpu, bali_decode_cpu
from spanlib.ops.bali_cpu_torch import window_sum_torch
from spanlib.ops.dispatch import backend_for
from spanlib.ops.jsd_cpu import js_divergence_cpu
from spanlib.ops.validate import check_maps
from spanlib.utils.errors import ParamError

__all__ = ["js_divergence", "bali_decode", "bali_decode_and_sum", "window_sum", "bali_decode_conv1x1", "backend_for"]


def js_divergence(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-channel Jensen-Shannon divergence (eq. 15), shape (B, K).

    ``logits`` (B, K, H, W) are read as distributions through a softmax over the H*W positions of
    each channel; ``target`` (B, K, H, W), non-negative, is normalised to sum to one per channel.
    Natural log, so 0 <= JS <= log 2. ``weight`` (B, K) multiplies each channel's value (0 masks a
    point). A channel whose target sums to zero gives 0 and no gradient. Differentiable with
    respect to ``logits`` (and ``weight``); ``target`` gets no gradient. Accepts float32, bfloat16,
    float16 (accumulated in float32) and float64; returns float32 (float64 for float64 logits).
    """
    check_maps("logits", logits)
    check_maps("target", target, like=logits)
    if weight is not None and (not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(logits.shape[:2])):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ParamError(f"weight: expected shape {tuple(logits.shape[:2])} (B, K), got {got}")
    if backend_for(logits) == "triton":
        from spanlib.ops.jsd_triton import js_divergence_triton as impl  # lazy: imports triton
    else:
        impl = js_divergence_cpu
    return impl(logits, target.detach(), weight)  # the weight enters the op: no extra autograd node


def bali_decode(
    heatmap: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor, radius: int
) -> torch.Tensor:
    """Windowed BALI soft-argmax (eq. 5): landmark (x, y) per channel, shape (B, K, 2).

    ``heatmap`` (B, K, H, W) non-negative weights; ``offset_x``, ``offset_y`` (B, K, H, W) the BALI
    fields in map pixels (zeros for plain windowed soft-argmax). Around each channel's argmax (first
    in row-major order on ties) the (2r+1)^2 window, clipped at the borders, gives
    x = sum w (offset_x + j + 0.5) / sum w and y = sum w (offset_y + i + 0.5) / sum w, in map
    pixels with the corner origin. A window with zero total weight (an all-zero map) returns the
    argmax pixel centre and zero gradient. Differentiable with respect to all three maps; the
    argmax position is treated as constant. Returns float32 (float64 for float64 heatmaps).
    """
    _check_decode_args(heatmap, offset_x, offset_y, radius)
    if backend_for(heatmap) == "triton":
        from spanlib.ops.bali_triton import bali_decode_triton as impl  # lazy: imports triton
    else:
        impl = bali_decode_cpu
    return impl(heatmap, offset_x, offset_y, radius)


def _check_decode_args(heatmap, offset_x, offset_y, radius) -> None:
    check_maps("heatmap", heatmap)
    check_maps("offset_x", offset_x, like=heatmap)
    check_maps("offset_y", offset_y, like=heatmap)
    _check_radius(radius)


def _check_radius(radius) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ParamError(f"radius: expected an integer >= 0, got {radius!r}")


def bali_decode_and_sum(
    heatmap: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor, radius: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference only (no gradient): ``bali_decode``'s points (B, K, 2) and the window's total
    weight S (B, K), the decoding's own denominator; for softmax weights, the probability mass in
    the window (the landmark's confidence). On CPU the C kernel gives both in one pass; elsewhere
    ``bali_decode`` and ``window_sum``."""
    _check_decode_args(heatmap, offset_x, offset_y, radius)
    if backend_for(heatmap) == "triton":
        return bali_decode(heatmap, offset_x, offset_y, radius).detach(), window_sum(heatmap, radius)
    return bali_decode_and_sum_cpu(heatmap, offset_x, offset_y, radius)


@torch.no_grad()
def window_sum(heatmap: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): the sum of each (B, K, H, W) map's weights inside the (2r+1)^2 window around its
    argmax (the first in row-major order on ties), clipped at the borders: eq. 5's denominator."""
    check_maps("heatmap", heatmap)
    _check_radius(radius)
    return window_sum_torch(heatmap, radius)


def bali_decode_conv1x1(heatmap: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference only (no gradient): ``bali_decode_and_sum`` where the BALI fields are a 1x1
    convolution of ``features`` (B, C, H, W) with ``weight`` (2K, C) and ``bias`` (2K) (output
    channel d K + k is field d of map k, as ``spanlib.model.bali.BaliHead``), computed at the
    (2r+1)^2 window pixels the decoding reads instead of at all H W. Returns the points (B, K, 2)
    in map pixels and the window's total weight S (B, K). CPU: a C kernel; elsewhere PyTorch."""
    check_maps("heatmap", heatmap)
    _check_radius(radius)
    b, k, h, w = heatmap.shape
    if features.ndim != 4 or features.shape[0] != b or tuple(features.shape[2:]) != (h, w):
        raise ParamError(f"features: expected (B, C, H, W) with B, H, W of the heatmap {tuple(heatmap.shape)}, "
                         f"got {tuple(features.shape)}")
    if tuple(weight.shape) != (2 * k, features.shape[1]) or tuple(bias.shape) != (2 * k,):
        raise ParamError(f"weight, bias: expected ({2 * k}, {features.shape[1]}) and ({2 * k},), "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}")
    return bali_decode_conv1x1_cpu(heatmap, features, weight, bias, radius)  # off CPU: its PyTorch fallback
