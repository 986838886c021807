"""BALI head: the boundary-aware landmark intensity fields (B_u, B_v) of the last stage."""

from __future__ import annotations

import torch
from torch import nn


class BaliHead(nn.Module):
    """Predicts, per landmark k and map pixel (i, j), the offset from the pixel centre to landmark
    k in last-stage map pixels: channel 0 is B_u (x_k - (j + 0.5)), channel 1 is B_v
    (y_k - (i + 0.5)), as in eq. 2 and ``spanlib.data.targets.bali_fields``.

    Output shape (B, 2, K, h, h). Only the window of (2R+1)^2 pixels around each landmark is
    supervised; the decoder reads a (2r+1)^2 window around the heatmap's argmax (eq. 5).
    """

    def __init__(self, in_channels: int, num_points: int):
        super().__init__()
        self.num_points = num_points
        self.conv = nn.Conv2d(in_channels, 2 * num_points, 1)
        # Start from zero offsets: decoding then begins as a plain windowed soft-argmax.
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        return self.conv(features).view(b, 2, self.num_points, h, w)
