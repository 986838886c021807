"""Self-Calibrated Pose Attention module (eqs. 9-10)."""

from __future__ import annotations

import torch
from torch import nn

from spanlib.model.blocks import ResidualBottleneck


class SCPAModule(nn.Module):
    """Pose attention between two stages.

    Eq. 9:  M_t = sigmoid(RB2(RB1(Q_t)))   (one mask value per channel and position)
    Eq. 10: P_{t+1} = M_t * Q_t + Q_t

    Q_t is the stage's feature output with its landmark and boundary heatmaps re-projected into it
    (built by :class:`spanlib.model.network.SpanNet`).
    """

    def __init__(self, width: int):
        super().__init__()
        self.rb1 = ResidualBottleneck(width, width)
        self.rb2 = ResidualBottleneck(width, width)

    def mask(self, q: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.rb2(self.rb1(q)))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.mask(q) * q + q
