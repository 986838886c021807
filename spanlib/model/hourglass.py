"""The hourglass unit: recursive down-up path with a skip branch at every scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spanlib.model.blocks import ResidualBottleneck


class Hourglass(nn.Module):
    """One hourglass of recursion ``depth`` at ``width`` channels.

    out = up1(x) + upsample(low3(inner(low1(maxpool(x))))), where ``inner`` is the hourglass of
    depth - 1 (a residual unit at the bottom). Spatial size must be divisible by 2**depth.
    """

    def __init__(self, depth: int, width: int):
        super().__init__()
        self.depth = depth
        self.up1 = ResidualBottleneck(width, width)
        self.low1 = ResidualBottleneck(width, width)
        self.inner = Hourglass(depth - 1, width) if depth > 1 else ResidualBottleneck(width, width)
        self.low3 = ResidualBottleneck(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up1 = self.up1(x)
        low = self.low3(self.inner(self.low1(F.max_pool2d(x, 2))))
        return up1 + F.interpolate(low, scale_factor=2.0, mode="nearest")
