"""Windowed BALI soft-argmax (eq. 5), CPU path in PyTorch ops: the fallback that ``bali_cpu.py``
runs where its C kernel cannot be built (no compiler) or for bfloat16/float16 or mixed-dtype
inputs. The maths and edge cases are in ``bali_cpu.py``.

The window is read with one gather of (2r+1)^2 values per channel; out-of-map window positions
are clamped to a valid index and given weight 0, so nothing of full map size is built in forward.
"""

from __future__ import annotations

import torch


def _window(heatmap: torch.Tensor, radius: int):
    """Flat window indices (R, (2r+1)^2), in-map mask and pixel centres, around each argmax."""
    b, k, h, w = heatmap.shape
    flat = heatmap.reshape(b * k, h * w)
    idx = flat.argmax(dim=1)
    i0 = torch.div(idx, w, rounding_mode="floor")
    j0 = idx - i0 * w
    d = torch.arange(-radius, radius + 1, device=heatmap.device)
    rows = i0[:, None] + d  # (R, n)
    cols = j0[:, None] + d
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    index = (rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]).reshape(b * k, -1)
    return idx, i0, j0, rows, cols, inside.reshape(b * k, -1), index


class BaliDecodeTorch(torch.autograd.Function):
    """Eq. 5 forward and its closed-form gradient (see module docstring)."""

    @staticmethod
    def forward(ctx, heatmap, offset_x, offset_y, radius: int):
        b, k, h, w = heatmap.shape
        compute = torch.float64 if heatmap.dtype == torch.float64 else torch.float32
        n = 2 * radius + 1
        _, i0, j0, rows, cols, inside, index = _window(heatmap, radius)
        mask = inside.to(compute)
        wv = heatmap.reshape(b * k, -1).gather(1, index).to(compute) * mask
        cx = (cols.to(compute) + 0.5)[:, None, :].expand(-1, n, -1).reshape(b * k, -1)
        cy = (rows.to(compute) + 0.5)[:, :, None].expand(-1, -1, n).reshape(b * k, -1)
        px = offset_x.reshape(b * k, -1).gather(1, index).to(compute) + cx
        py = offset_y.reshape(b * k, -1).gather(1, index).to(compute) + cy
        total = wv.sum(dim=1)
        positive = total > 0
        inv = torch.where(positive, 1.0 / torch.where(positive, total, torch.ones_like(total)), torch.zeros_like(total))
        x = torch.where(positive, (wv * px).sum(dim=1) * inv, j0.to(compute) + 0.5)
        y = torch.where(positive, (wv * py).sum(dim=1) * inv, i0.to(compute) + 0.5)
        ctx.save_for_backward(index, mask, wv, px, py, x, y, inv)
        ctx.shape = (b, k, h, w)
        ctx.dtypes = (heatmap.dtype, offset_x.dtype, offset_y.dtype)
        return torch.stack((x, y), dim=1).view(b, k, 2)

    @staticmethod
    def backward(ctx, grad_output):
        index, mask, wv, px, py, x, y, inv = ctx.saved_tensors
        b, k, h, w = ctx.shape
        g = grad_output.reshape(b * k, 2).to(wv.dtype)
        gx = (g[:, 0] * inv)[:, None]
        gy = (g[:, 1] * inv)[:, None]
        grads = [None, None, None]
        if ctx.needs_input_grad[0]:
            gh = (gx * (px - x[:, None]) + gy * (py - y[:, None])) * mask
            grads[0] = _scatter(gh, index, (b, k, h, w), ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grads[1] = _scatter(gx * wv, index, (b, k, h, w), ctx.dtypes[1])
        if ctx.needs_input_grad[2]:
            grads[2] = _scatter(gy * wv, index, (b, k, h, w), ctx.dtypes[2])
        return grads[0], grads[1], grads[2], None


def _scatter(values, index, shape, dtype):
    """Full-size gradient: window values added at their indices (clamped duplicates add 0)."""
    b, k, h, w = shape
    out = torch.zeros(b * k, h * w, dtype=values.dtype, device=values.device)
    out.scatter_add_(1, index, values)
    return out.view(b, k, h, w).to(dtype)


def bali_decode_torch(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    return BaliDecodeTorch.apply(heatmap, offset_x, offset_y, radius)


def window_sum_torch(heatmap: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): the sum of each map's weights inside the decoding window (clipped at the borders),
    the denominator S of eq. 5; any device and dtype, no gradient needed."""
    b, k = heatmap.shape[:2]
    _, _, _, _, _, inside, index = _window(heatmap, radius)
    return (heatmap.reshape(b * k, -1).gather(1, index) * inside).sum(dim=1).view(b, k)
