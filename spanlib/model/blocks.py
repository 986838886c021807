"""Residual bottleneck unit of the stacked hourglass (Newell et al.), pre-activation form."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBottleneck(nn.Module):
    """BN-ReLU-conv1x1(c/2) -> BN-ReLU-conv3x3(c/2) -> BN-ReLU-conv1x1(c), plus a skip path
    (identity, or a 1x1 projection when the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = max(out_channels // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The body's first ReLU is in place on BN's output, never on x, so the skip sees x intact.
        return self.body(x) + self.skip(x)


class ConvBnRelu(nn.Sequential):
    """1x1 (or kxk) convolution, batch norm, ReLU: the 'lin' layer after each hourglass."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
