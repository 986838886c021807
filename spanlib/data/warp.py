"""D applied to stage maps (the L_scl term of eq. 17 compares D(H_alpha) with H_beta).

D is an affine map theta from crop-a pixels to crop-b pixels (corner origin) plus, when the pair
was mirrored, a channel permutation (``flip_perm`` for landmark maps, ``boundary_flip_perm`` for
boundary maps). A map of any resolution h covers the crop, so in ``affine_grid``'s normalised
coordinates (align_corners=False: -1 and +1 are the outer pixel corners) a crop point x is
n = 2 x / S - 1 whatever h is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalized_inverse_theta(theta: torch.Tensor, crop_size: int) -> torch.Tensor:
    """(B, 2, 3) crop-a -> crop-b pixel matrices -> the (B, 2, 3) ``affine_grid`` matrices that map
    normalised output (b) coordinates to normalised input (a) coordinates.

    With b -> a = [A | t] in pixels and x = S (n + 1) / 2: n_a = A n_b + (A 1 + 2 t / S - 1).
    """
    theta = theta.to(torch.float64)
    lin = torch.linalg.inv(theta[:, :, :2])
    shift = -(lin @ theta[:, :, 2:])[..., 0]
    ones = torch.ones(2, dtype=theta.dtype, device=theta.device)
    offset = lin @ ones + 2.0 * shift / crop_size - 1.0
    return torch.cat([lin, offset[..., None]], dim=2)


def apply_warp(maps: torch.Tensor, theta: torch.Tensor, flipped: torch.Tensor, perm,
               crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D applied to stage maps of view a: ``(warped (B, C, h, w), valid (B, 1, h, w) float)``.

    warped[b, c] at a pixel of view b is maps[b, perm[c] if flipped[b] else c] read (bilinear) at
    the D^-1 image of that pixel's centre. ``valid`` is 1 where that source point lies between the
    outer pixel centres of the original map, i.e. where the bilinear value uses only real map
    pixels, and 0 elsewhere. Differentiable with respect to ``maps``.
    """
    batch, channels, height, width = maps.shape
    theta = torch.as_tensor(theta, device=maps.device)
    flipped = torch.as_tensor(flipped, device=maps.device).to(torch.bool).reshape(batch)
    perm = torch.as_tensor(np.asarray(perm), device=maps.device, dtype=torch.long)
    if perm.shape != (channels,):
        raise ValueError(f"apply_warp: perm has shape {tuple(perm.shape)}, expected ({channels},)")
    source = torch.where(flipped[:, None, None, None], maps[:, perm], maps)
    grid_theta = normalized_inverse_theta(theta.reshape(batch, 2, 3), crop_size)
    grid = F.affine_grid(grid_theta.to(maps.dtype), [batch, channels, height, width],
                         align_corners=False)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # source position in map pixel-centre indices: (n + 1) / 2 * size - 0.5
    gx = (grid[..., 0] + 1) * (width / 2) - 0.5
    gy = (grid[..., 1] + 1) * (height / 2) - 0.5
    eps = 1e-4
    valid = (gx >= -eps) & (gx <= width - 1 + eps) & (gy >= -eps) & (gy <= height - 1 + eps)
    return warped, valid[:, None].to(maps.dtype)
