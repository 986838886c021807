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
    idx = flat.max(dim=1).indices  # the first maximum, as argmax (documented), in a third of its time
    i0 = torch.div(idx, w, rounding_mode="floor")
    j0 = idx - i0 * w
    d = torch.arange(-radius, radius + 1, device=heatmap.device)
    rows = i0[:, None] + d  # (R, n)
    cols = j0[:, None] + d
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    index = (rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]).reshape(b * k, -1)
    return idx, i0, j0, rows, cols, inside.reshape(b * k, -1), index


def _centres(rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype):
    """Pixel centres (R, (2r+1)^2) of the window: j + 0.5 and i + 0.5 (row-major)."""
    n = rows.shape[1]
    cx = (cols.to(dtype) + 0.5)[:, None, :].expand(-1, n, -1).reshape(rows.shape[0], -1)
    cy = (rows.to(dtype) + 0.5)[:, :, None].expand(-1, -1, n).reshape(rows.shape[0], -1)
    return cx, cy


def _window_mean(wv, px, py, i0, j0):
    """Eq. 5 on the window's values (R, n): x = sum w px / S, y likewise, S = sum w; 1/S (0 where
    S <= 0, which returns the argmax pixel centre) and S."""
    total = wv.sum(dim=1)
    positive = total > 0
    inv = torch.where(positive, 1.0 / torch.where(positive, total, torch.ones_like(total)), torch.zeros_like(total))
    x = torch.where(positive, (wv * px).sum(dim=1) * inv, j0.to(wv.dtype) + 0.5)
    y = torch.where(positive, (wv * py).sum(dim=1) * inv, i0.to(wv.dtype) + 0.5)
    return x, y, inv, total


class BaliDecodeTorch(torch.autograd.Function):
    """Eq. 5 forward and its closed-form gradient (see module docstring)."""

    @staticmethod
    def forward(ctx, heatmap, offset_x, offset_y, radius: int):
        b, k, h, w = heatmap.shape
        compute = torch.float64 if heatmap.dtype == torch.float64 else torch.float32
        _, i0, j0, rows, cols, inside, index = _window(heatmap, radius)
        mask = inside.to(compute)
        wv = heatmap.reshape(b * k, -1).gather(1, index).to(compute) * mask
        cx, cy = _centres(rows, cols, compute)
        px = offset_x.reshape(b * k, -1).gather(1, index).to(compute) + cx
        py = offset_y.reshape(b * k, -1).gather(1, index).to(compute) + cy
        x, y, inv, _ = _window_mean(wv, px, py, i0, j0)
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


@torch.no_grad()
def bali_decode_conv1x1_torch(heatmap, features, weight, bias, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 with the BALI fields given as a 1x1 convolution of ``features`` (B, C, H, W):
    field d of map k at pixel p is ``bias[d K + k] + weight[d K + k] . features[:, :, p]``,
    evaluated at the window pixels only. Returns the points (B, K, 2) in map pixels and the
    window's total weight S (B, K). No gradient; any device (the C kernel's fallback)."""
    b, k, h, w = heatmap.shape
    c = features.shape[1]
    compute = torch.float64 if heatmap.dtype == torch.float64 else torch.float32
    _, i0, j0, rows, cols, inside, index = _window(heatmap, radius)
    n = index.shape[1]
    wv = heatmap.reshape(b * k, -1).gather(1, index).to(compute) * inside.to(compute)
    # (B, C, K, n): each landmark's window pixels of every feature channel
    picked = features.reshape(b, c, 1, h * w).expand(b, c, k, h * w).gather(
        3, index.view(b, 1, k, n).expand(b, c, k, n)).to(compute)
    fields = torch.einsum("bckn,dkc->bdkn", picked, weight.to(compute).view(2, k, c)) \
        + bias.to(compute).view(1, 2, k, 1)
    cx, cy = _centres(rows, cols, compute)
    x, y, _, total = _window_mean(wv, fields[:, 0].reshape(b * k, n) + cx, fields[:, 1].reshape(b * k, n) + cy,
                                  i0, j0)
    return torch.stack((x, y), dim=1).view(b, k, 2), total.view(b, k)


def window_sum_torch(heatmap: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): the sum of each map's weights inside the decoding window (clipped at the borders),
    the denominator S of eq. 5; any device and dtype, no gradient needed."""
    b, k = heatmap.shape[:2]
    _, _, _, _, _, inside, index = _window(heatmap, radius)
    return (heatmap.reshape(b * k, -1).gather(1, index) * inside).sum(dim=1).view(b, k)
