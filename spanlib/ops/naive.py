"""The paper's formulas written directly in PyTorch with autograd: the baselines the benchmark
compares against (``spanlib bench``) and what a user would write without the fused ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def js_divergence_naive(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 15 term by term: softmax, normalised target, mixture, two KL terms (autograd)."""
    p = torch.softmax(logits.flatten(2).float(), dim=-1)
    t = target.flatten(2).float()
    q = t / t.sum(dim=-1, keepdim=True)
    log_m = torch.log(0.5 * (p + q))
    # kl_div(input=log m, target) = target * (log target - log m), 0 where target = 0
    return 0.5 * F.kl_div(log_m, p, reduction="none").sum(-1) + 0.5 * F.kl_div(log_m, q, reduction="none").sum(-1)


def bali_decode_naive_unfold(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    """Eq. 5 with ``F.unfold``: every (2r+1)^2 window of every map (zero padding = clipping),
    then the window at the argmax is picked. Memory grows as (2r+1)^2 x the maps."""
    b, k, h, w = heatmap.shape
    size = 2 * radius + 1
    cols = (torch.arange(w, device=heatmap.device, dtype=torch.float32) + 0.5).expand(h, w)
    rows = (torch.arange(h, device=heatmap.device, dtype=torch.float32) + 0.5)[:, None].expand(h, w)

    def windows(maps):  # (B*K, size*size, H*W)
        return F.unfold(maps.reshape(b * k, 1, h, w).float(), size, padding=radius)

    idx = heatmap.reshape(b * k, h * w).argmax(dim=1)
    pick = idx[:, None, None].expand(-1, size * size, 1)
    wv = windows(heatmap).gather(2, pick)[..., 0]
    xv = windows(offset_x + cols).gather(2, pick)[..., 0]
    yv = windows(offset_y + rows).gather(2, pick)[..., 0]
    total = wv.sum(1)
    x = (wv * xv).sum(1) / total
    y = (wv * yv).sum(1) / total
    return torch.stack((x, y), dim=1).view(b, k, 2)


def bali_decode_naive_mask(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    """Eq. 5 on the full maps: a 0/1 window mask around the argmax, weighted sums over H*W."""
    b, k, h, w = heatmap.shape
    idx = heatmap.reshape(b, k, h * w).argmax(dim=-1)
    i0 = (idx // w)[..., None, None]
    j0 = (idx % w)[..., None, None]
    ii = torch.arange(h, device=heatmap.device)[:, None]
    jj = torch.arange(w, device=heatmap.device)[None, :]
    mask = ((ii - i0).abs() <= radius) & ((jj - j0).abs() <= radius)
    wv = heatmap.float() * mask
    total = wv.sum(dim=(2, 3))
    x = (wv * (offset_x + jj + 0.5)).sum(dim=(2, 3)) / total
    y = (wv * (offset_y + ii + 0.5)).sum(dim=(2, 3)) / total
    return torch.stack((x, y), dim=-1)
