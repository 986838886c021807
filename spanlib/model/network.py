"""SpanNet: the stacked-hourglass network behind every SPAN variant, and ``build_model``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spanlib.config.schema import MAX_DEPTH, MAX_INPUT_SIZE, MAX_STAGES, MAX_WIDTH, as_group
from spanlib.config.variants import variant_spec
from spanlib.model.bali import BaliHead
from spanlib.model.blocks import ConvBnRelu, ResidualBottleneck
from spanlib.model.hourglass import Hourglass
from spanlib.model.scpa import SCPAModule
from spanlib.utils.errors import ParamError


# ImageNet statistics: the model takes [0, 1] RGB and normalises itself.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class _Stage(nn.Module):
    """One hourglass stage: hourglass -> residual unit -> 1x1 'lin' -> heads."""

    def __init__(self, width: int, depth: int, num_points: int, num_boundaries: int):
        super().__init__()
        self.hourglass = Hourglass(depth, width)
        self.residual = ResidualBottleneck(width, width)
        self.lin = ConvBnRelu(width, width)
        self.heat = nn.Conv2d(width, num_points, 1)
        self.boundary = nn.Conv2d(width, num_boundaries, 1) if num_boundaries else None

    def features(self, p: torch.Tensor) -> torch.Tensor:
        return self.lin(self.residual(self.hourglass(p)))


class SpanNet(nn.Module):
    """Stacked hourglass with intermediate supervision, SCPA attention and a BALI head.

    Stages 1..T-1 work at input/4 (64x64 for a 256 input); the last stage's hourglass works at the
    same resolution and its output is upsampled to input/2 (128x128), fused with the stem's input/2
    features, refined by one residual unit and read by the last heads, so the last maps are twice the
    resolution of the others.

    forward(images (B, 3, S, S) in [0, 1]) -> {"heatmaps": [T x (B, K, h_t, h_t) logits],
    "boundaries": [T x (B, C, h_t, h_t)] or [], "offsets": (B, 2, K, h_T, h_T) or None,
    "features": (B, width, h_T, h_T) the last stage's features, which the last heads read,
    "input_size": S} (the last key lets ``spanlib.model.decode`` convert map pixels to crop pixels).
    """

    def __init__(self, variant: str, num_points: int, num_boundaries: int, input_size: int,
                 stages: int, width: int, depth: int):
        super().__init__()
        self.variant = variant
        self.spec = variant_spec(variant)
        self.num_points = num_points
        self.num_boundaries = num_boundaries if self.spec.boundaries else 0
        self.input_size = input_size
        self.stages = stages
        base = input_size // 4
        self.stage_resolutions = [base] * (stages - 1) + [2 * base]
        c1, c2 = max(width // 4, 8), max(width // 2, 8)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.stem_conv = ConvBnRelu(3, c1, kernel=7, stride=2)          # S/2
        self.stem = nn.Sequential(
            ResidualBottleneck(c1, c2), nn.MaxPool2d(2),                  # S/4
            ResidualBottleneck(c2, c2), ResidualBottleneck(c2, width),
        )
        nb = self.num_boundaries
        self.stage_modules = nn.ModuleList(_Stage(width, depth, num_points, nb) for _ in range(stages))
        # Re-projection of the stage's features and heads back into the trunk (Q_t).
        self.remap_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stages - 1))
        self.remap_heat = nn.ModuleList(nn.Conv2d(num_points, width, 1) for _ in range(stages - 1))
        self.remap_boundary = nn.ModuleList(nn.Conv2d(nb, width, 1) for _ in range(stages - 1)) if nb else None
        self.scpa = nn.ModuleList(SCPAModule(width) for _ in range(stages - 1)) if self.spec.scpa else None
        # Last stage at twice the resolution.
        self.high_skip = nn.Conv2d(c1, width, 1)
        self.high_refine = ResidualBottleneck(width, width)
        self.bali = BaliHead(width, num_points) if self.spec.bali else None

    def forward(self, images: torch.Tensor) -> dict:
        x = (images - self.mean) / self.std
        high = self.stem_conv(x)
        p = self.stem(high)
        heatmaps, boundaries = [], []
        for t, stage in enumerate(self.stage_modules):
            feat = stage.features(p)
            if t == self.stages - 1:
                feat = F.interpolate(feat, scale_factor=2.0, mode="bilinear", align_corners=False)
                feat = self.high_refine(feat + self.high_skip(high))
            h = stage.heat(feat)
            heatmaps.append(h)
            b = stage.boundary(feat) if stage.boundary is not None else None
            if b is not None:
                boundaries.append(b)
            if t < self.stages - 1:
                q = p + self.remap_features[t](feat) + self.remap_heat[t](h)
                if b is not None:
                    q = q + self.remap_boundary[t](b)
                p = self.scpa[t](q) if self.scpa is not None else q
        offsets = self.bali(feat) if self.bali is not None else None
        # the size of these images, not the configured one: inference may run a smaller placing pass
        # (evaluate.placing_size) through the same fully convolutional network
        return {"heatmaps": heatmaps, "boundaries": boundaries, "offsets": offsets, "features": feat,
                "input_size": images.shape[-1]}


def check_model_params(model, input_size: int) -> None:
    """Stop with a ParamError naming the parameter when the configuration cannot be built (the
    schema checks each value; this, what depends on two of them, and the upper bounds again for a
    ModelConfig made directly). Bounds: ``spanlib.config.schema.MAX_*``."""
    for key, value, high in (("stages", model.stages, MAX_STAGES), ("width", model.width, MAX_WIDTH),
                             ("depth", model.depth, MAX_DEPTH)):
        if not isinstance(value, int) or not 1 <= value <= high:
            raise ParamError(f"model.{key}: expected an integer from 1 to {high} (spanlib's upper bound), "
                             f"got {value!r}")
    if isinstance(input_size, int) and input_size > MAX_INPUT_SIZE:
        raise ParamError(f"crop.input_size: expected at most {MAX_INPUT_SIZE} pixels (spanlib's upper bound), "
                         f"got {input_size}")
    if model.width % 2:
        raise ParamError(f"model.width: expected an even number of channels, got {model.width}")
    check_input_size(input_size, model.depth)


def check_input_size(input_size, depth: int, key: str = "crop.input_size") -> None:
    """Stop with a ParamError naming ``key`` unless ``input_size`` is a multiple of 4 * 2**depth:
    the stem halves it twice and each of the hourglass's ``depth`` levels once more."""
    multiple = 4 * 2 ** depth
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < multiple or input_size % multiple:
        raise ParamError(f"{key}: expected a multiple of {multiple} (4 * 2**model.depth), got {input_size!r}")


def build_model(model, num_points: int, num_boundaries: int, input_size: int) -> SpanNet:
    """The SpanNet of the ``model`` group (a ModelConfig, or a mapping checked by the schema)."""
    model = as_group("model", model)
    check_model_params(model, input_size)
    return SpanNet(variant=model.variant, num_points=num_points, num_boundaries=num_boundaries,
                   input_size=input_size, stages=model.stages, width=model.width, depth=model.depth)
