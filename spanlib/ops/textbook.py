"""The paper's two formulas written directly with torch ops and autograd, as a user would.

One definition serves three roles:
- the baselines of the benchmark (``spanlib.bench.harness``): plain, and under ``torch.compile``;
- run on float64 inputs, the reference that the tests and ``kernels/gpu_check.py`` compare the
  fused ops against (``js_reference64``, ``bali_reference64``: values and autograd gradients);
- the definition of the edge cases the fused ops must match: a target channel summing to zero
  gives JS = 0 and no gradient, softmax values underflowing to 0 add nothing (0 log 0 = 0), a
  decoding window of zero total weight returns the argmax pixel centre.

Compute dtype: float64 for float64 inputs, float32 otherwise (what ``.float()`` gives a user).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def js_divergence(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 15 term by term, per channel (B, K): p = softmax(logits) over H*W, q = target / sum,
    m = (p + q) / 2, JS = 1/2 KL(p || m) + 1/2 KL(q || m), natural log."""
    dtype = _compute_dtype(logits)
    log_p = torch.log_softmax(logits.flatten(2).to(dtype), dim=-1)  # finite where p underflows
    p = log_p.exp()
    t = target.flatten(2).to(dtype)
    total = t.sum(-1, keepdim=True)
    q = t / total.clamp_min(torch.finfo(dtype).tiny)  # a zero-target channel: q = 0, masked below
    m = 0.5 * (p + q)
    log_m = torch.log(torch.where(m > 0, m, torch.ones_like(m)))  # m = 0: both terms are 0
    kl_p = (p * (log_p - log_m)).sum(-1)
    kl_q = (torch.xlogy(q, q) - q * log_m).sum(-1)  # q gets no gradient: xlogy's 0/0 never runs
    js = 0.5 * kl_p + 0.5 * kl_q
    return torch.where(total[..., 0] > 0, js, torch.zeros_like(js))


def _argmax_rows_cols(heatmap: torch.Tensor):
    b, k, h, w = heatmap.shape
    idx = heatmap.reshape(b, k, h * w).argmax(dim=-1)  # first maximum in row-major order
    return torch.div(idx, w, rounding_mode="floor"), idx % w


def _finish(wv_sum, wx_sum, wy_sum, i0, j0):
    """x = sum w px / sum w (likewise y); a window of zero weight gives the argmax pixel centre."""
    positive = wv_sum > 0
    safe = torch.where(positive, wv_sum, torch.ones_like(wv_sum))
    x = torch.where(positive, wx_sum / safe, j0.to(wv_sum.dtype) + 0.5)
    y = torch.where(positive, wy_sum / safe, i0.to(wv_sum.dtype) + 0.5)
    return torch.stack((x, y), dim=-1)


def bali_decode_masked(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    """Eq. 5 on the full maps: a 0/1 mask of the (2r+1)^2 window around each argmax, then
    x = sum w (offset_x + j + 0.5) / sum w and y likewise, as sums over all H*W pixels."""
    dtype = _compute_dtype(heatmap)
    b, k, h, w = heatmap.shape
    i0, j0 = _argmax_rows_cols(heatmap)
    ii = torch.arange(h, device=heatmap.device)[:, None]
    jj = torch.arange(w, device=heatmap.device)[None, :]
    mask = ((ii - i0[..., None, None]).abs() <= radius) & ((jj - j0[..., None, None]).abs() <= radius)
    wv = heatmap.to(dtype) * mask
    sums = [(wv * v).sum(dim=(2, 3)) for v in (1, offset_x.to(dtype) + jj + 0.5, offset_y.to(dtype) + ii + 0.5)]
    return _finish(*sums, i0, j0)


def bali_decode_gather(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    """Eq. 5 on the window only: gather the (2r+1)^2 values around each argmax (positions outside
    the map are clamped to a valid index and given weight 0), then the same weighted sums."""
    dtype = _compute_dtype(heatmap)
    b, k, h, w = heatmap.shape
    i0, j0 = _argmax_rows_cols(heatmap)
    d = torch.arange(-radius, radius + 1, device=heatmap.device)
    rows = i0[..., None] + d  # (B, K, 2r+1)
    cols = j0[..., None] + d
    inside = ((rows >= 0) & (rows < h))[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]
    index = (rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]).flatten(2)

    def window(maps):
        return maps.reshape(b, k, h * w).gather(2, index).to(dtype)

    wv = window(heatmap) * inside.flatten(2)
    cx = (cols.to(dtype) + 0.5)[..., None, :].expand(-1, -1, 2 * radius + 1, -1).flatten(2)
    cy = (rows.to(dtype) + 0.5)[..., :, None].expand(-1, -1, -1, 2 * radius + 1).flatten(2)
    sums = [wv.sum(-1), (wv * (window(offset_x) + cx)).sum(-1), (wv * (window(offset_y) + cy)).sum(-1)]
    return _finish(*sums, i0, j0)


def bali_decode_unfold(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    """Eq. 5 with ``F.unfold``: every (2r+1)^2 window of every map (zero padding = clipping),
    then the window at the argmax is picked. Memory grows as (2r+1)^2 x the maps."""
    dtype = _compute_dtype(heatmap)
    b, k, h, w = heatmap.shape
    size = 2 * radius + 1
    cols = (torch.arange(w, device=heatmap.device, dtype=dtype) + 0.5).expand(h, w)
    rows = (torch.arange(h, device=heatmap.device, dtype=dtype) + 0.5)[:, None].expand(h, w)

    def windows(maps):  # (B*K, size*size, H*W)
        return F.unfold(maps.reshape(b * k, 1, h, w).to(dtype), size, padding=radius)

    i0, j0 = _argmax_rows_cols(heatmap)
    pick = (i0 * w + j0).reshape(b * k, 1, 1).expand(-1, size * size, 1)
    wv = windows(heatmap).gather(2, pick)[..., 0]
    xv = windows(offset_x + cols).gather(2, pick)[..., 0]
    yv = windows(offset_y + rows).gather(2, pick)[..., 0]
    sums = [wv.sum(1), (wv * xv).sum(1), (wv * yv).sum(1)]
    return _finish(*sums, i0.reshape(-1), j0.reshape(-1)).view(b, k, 2)


# ---------------------------------------------------------------------------------------------
# float64 references: the formulas above on float64 copies (on the CPU), gradients by autograd


def js_reference64(logits: torch.Tensor, target: torch.Tensor, grad_output: torch.Tensor):
    """(JS (B, K), dL/dlogits) in float64 on the CPU, for L = sum(JS * grad_output)."""
    x = logits.detach().double().cpu().requires_grad_(True)
    js = js_divergence(x, target.detach().double().cpu())
    (js * grad_output.detach().double().cpu()).sum().backward()
    return js.detach(), x.grad


def bali_reference64(heatmap, offset_x, offset_y, radius: int, grad_output):
    """(points (B, K, 2), d/dheatmap, d/doffset_x, d/doffset_y) in float64 on the CPU (masked
    version), for L = sum(points * grad_output). The argmax is taken on the given values, so a
    bf16/fp16 input is decoded around the same pixel as the op under test sees."""
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in (heatmap, offset_x, offset_y)]
    out = bali_decode_masked(*leaves, radius)
    grads = torch.autograd.grad((out * grad_output.detach().double().cpu()).sum(), leaves, allow_unused=True)
    return (out.detach(), *[torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)])
