"""The one inference step: crops in, landmarks out. Used by training's validation, ``spanlib
evaluate``, the report's figures, ``spanlib profile``, the ONNX check and ``spanlib predict``.

``predict_crops``: forward, decode with the windowed BALI soft-argmax (eq. 5, window ``2 r + 1``
with r = ``evaluate.decode_radius``) and a confidence per landmark. ``crop_points_to_image`` maps
crop pixels back to image pixels through each crop's matrix.

Confidence: for each landmark, the softmax probability mass of the last-stage heatmap inside the
(2r + 1)^2 decoding window around its argmax, in [0, 1]; a face's confidence is the mean over its
landmarks. Unlike the peak probability it does not shrink with the map size, and it is low when the
heatmap is spread out or multi-modal (an occluded or absent point).
"""

from __future__ import annotations

import numpy as np
import torch

from spanlib.config.schema import default
from spanlib.model.decode import decode_weights, spatial_softmax
from spanlib.ops import bali_decode_conv1x1, window_sum
from spanlib.model.network import check_input_size
from spanlib.utils.errors import ParamError

# agreement with eager that a back-end must keep, in crop pixels (128 px crop of the bundled model):
# float32 reassociation moves points by ~1e-4 px; a real change of the decoding moves them by > 0.1
TOLERANCE_PX = 1e-2


def decode_radius(params: dict) -> int:
    """``evaluate.decode_radius`` of a checkpoint's params (the schema's default when absent)."""
    return int((params.get("evaluate") or {}).get("decode_radius", default("evaluate.decode_radius")))


def mirror_offset(params: dict) -> float:
    """``disturb.mirror_offset`` of a checkpoint's params in image px (the schema's default, 0,
    when absent): how far right of their mirror-symmetric place its training labels sit."""
    return float((params.get("disturb") or {}).get("mirror_offset", default("disturb.mirror_offset")))


def crop_mirror_offsets(params: dict, crop_matrices) -> torch.Tensor:
    """(B,) float32: ``mirror_offset`` in each crop's px, for the flip test. ``crop_matrices``
    (B, 2, 3) map image to crop; a crop has sqrt |det A| px per image px."""
    matrices = torch.as_tensor(np.asarray(crop_matrices), dtype=torch.float64)
    return (mirror_offset(params) * torch.linalg.det(matrices[:, :, :2]).abs().sqrt()).float()


@torch.no_grad()
def predict_crops(model: torch.nn.Module, images: torch.Tensor, radius: int,
                  flip: bool = False, offset: torch.Tensor | float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(B, 3, S, S) crops in [0, 1] -> (points (B, K, 2) crop px, confidence (B, K), outputs).

    ``flip=True`` (``evaluate.flip_test``): also predict the mirrored crops and average the two
    estimates (``average_with_mirrored``); twice the cost, measured gain in docs/model.md.
    ``offset``: crop px, a float or one per crop (B,): the training labels' x offset from mirror
    symmetry (``crop_mirror_offsets``), which a mirrored estimate carries to the wrong side."""
    device = next(model.parameters()).device
    images = images.to(device, non_blocking=True)
    outputs = model(images)
    points, confidence = decode_maps(outputs["heatmaps"][-1], outputs.get("offsets"), radius, images.shape[-1])
    if flip:
        mirrored = model(torch.flip(images, dims=[-1]))
        points, confidence = average_with_mirrored(
            points, confidence, *decode_maps(mirrored["heatmaps"][-1], mirrored.get("offsets"), radius,
                                             images.shape[-1]),
            model.scheme.flip_perm, images.shape[-1], offset)
    return points, confidence, outputs


@torch.no_grad()
def decode_features(logits: torch.Tensor, features: torch.Tensor | None, bali, radius: int, input_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``decode_maps`` from the last stage's ``features`` (B, C, H, W) instead of the BALI fields:
    ``bali`` (the model's ``BaliHead``, None without fields) computes them at the decoding windows
    only (``ops.bali_decode_conv1x1``). What the ONNX Runtime back-ends run after the network graph
    (``NetworkMaps``), which then skips the head's 1x1 convolution over every pixel."""
    if bali is None:
        return decode_maps(logits, None, radius, input_size)
    weights = spatial_softmax(logits)
    conv = bali.conv  # 1x1, 2K outputs: field d of landmark k is channel d K + k
    points, total = bali_decode_conv1x1(weights, features.float(), conv.weight.detach().flatten(1).float(),
                                        conv.bias.detach().float(), radius)
    return points * (input_size / weights.shape[-1]), total


def decode_maps(logits: torch.Tensor, offsets: torch.Tensor | None, radius: int, input_size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The last stage's maps -> (points (B, K, 2) crop px, confidence (B, K)): the windowed BALI
    soft-argmax of eq. 5 (``decode_weights``, as ``decode_landmarks``) and the window's softmax mass
    (``window_mass``), from one softmax and one pass of the decoding kernel. No gradient.
    ``logits`` (B, K, H, W); ``offsets`` (B, 2, K, H, W) BALI fields or None. What ``predict_crops``
    decodes with (the exported-network back-ends: ``decode_features``)."""
    return decode_weights(spatial_softmax(logits), offsets, radius, input_size, with_window_sum=True)


def average_with_mirrored(points: torch.Tensor, confidence: torch.Tensor, mirrored_points: torch.Tensor,
                          mirrored_confidence: torch.Tensor, flip_perm, size: int,
                          offset: torch.Tensor | float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The flip test's mean of two estimates: ``points`` (B, K, 2) and ``confidence`` (B, K) of the
    crops, and the same of the horizontally mirrored crops (channel k of the mirrored estimate is
    the original point ``flip_perm[k]``). A mirrored point maps back by x -> S - x + 2 ``offset``
    (corner-origin crop px; ``offset`` a float or one per crop, see ``predict_crops``)."""
    perm = torch.as_tensor(np.asarray(flip_perm), device=points.device, dtype=torch.long)
    back = mirrored_points.to(points.device).clone()
    shift = torch.as_tensor(offset, dtype=back.dtype, device=back.device).reshape(-1, 1)
    back[..., 0] = size - back[..., 0] + 2 * shift
    unflipped = torch.empty_like(back)
    unflipped[:, perm] = back  # mirrored channel k is original point perm[k]
    mass = torch.empty_like(confidence)
    mass[:, perm] = mirrored_confidence.to(confidence.device)
    return 0.5 * (points + unflipped), 0.5 * (confidence + mass)


def window_mass(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): softmax probability inside the (2r+1)^2 window centred on each map's argmax."""
    return window_sum(spatial_softmax(logits), radius)


def crop_points_to_image(points: torch.Tensor, crop_matrix: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) crop pixels -> image pixels, in float64: ``crop_matrix`` (B, 2, 3) maps image to
    crop (p_c = A p_i + t), so p_i = A^-1 (p_c - t)."""
    m = crop_matrix.double()
    inv = torch.linalg.inv(m[:, :, :2])
    return (points.double().cpu() - m[:, None, :, 2]) @ inv.transpose(1, 2)


class NetworkMaps(torch.nn.Module):
    """images (B, 3, S, S) in [0, 1] -> what the decoding reads: the last stage's heatmap logits
    (B, K, H, W) and, for variants with a BALI head, the last stage's features (B, C, H, W) that
    the head reads. The graph the ONNX Runtime back-ends export; ``decode_features`` decodes its
    outputs. Two savings over exporting ``LandmarkHead`` whole: the decoding's tensor ops (about a
    fifth of a forward in ONNX Runtime's profiler) and the BALI head's 1x1 convolution over every
    pixel (14 % of the bundled model's FLOPs), of which the decoding reads one window per map
    (results/real/decode_outside_graph.md)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.output_names = ("heatmap",) if bali_head(model) is None else ("heatmap", "features")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(images)
        # the features the BALI head reads, not its fields: decode_features computes those at the
        # decoding windows only (the export drops the unused head)
        return tuple(outputs["heatmaps"][-1].float() if name == "heatmap" else outputs["features"].float()
                     for name in self.output_names)


def bali_head(model: torch.nn.Module):
    """The model's BALI head (``spanlib.model.bali.BaliHead``), None for variants without one."""
    return getattr(model, "bali", None)


class LandmarkHead(torch.nn.Module):
    """images (B, 3, S, S) in [0, 1] -> (points (B, K, 2) crop pixels, confidence (B, K))."""

    def __init__(self, model: torch.nn.Module, radius: int):
        super().__init__()
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ParamError(f"decode radius: expected an integer >= 0, got {radius!r}")
        self.model, self.radius = model, radius

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(images)
        logits = outputs["heatmaps"][-1].float()
        _, k, h, w = logits.shape  # k, h, w are fixed by the model; the batch stays symbolic (-1)
        prob = torch.softmax(logits.flatten(2), dim=-1)
        idx = prob.argmax(dim=-1)  # (B, K)
        i0 = torch.div(idx, w, rounding_mode="floor")[..., None, None]
        j0 = (idx % w)[..., None, None]
        rows = torch.arange(h, device=logits.device)[:, None]
        cols = torch.arange(w, device=logits.device)[None, :]
        mask = ((rows - i0).abs() <= self.radius) & ((cols - j0).abs() <= self.radius)
        weights = prob.reshape(-1, k, h, w) * mask.to(prob.dtype)
        total = weights.sum(dim=(2, 3))  # > 0: the argmax pixel itself is in the window
        x_pos = cols.to(prob.dtype) + 0.5
        y_pos = rows.to(prob.dtype) + 0.5
        offsets = outputs.get("offsets")
        if offsets is not None:  # BALI fields (B, 2, K, H, W), in map pixels
            offsets = offsets.float()
            x_pos = x_pos + offsets[:, 0]
            y_pos = y_pos + offsets[:, 1]
        x = (weights * x_pos).sum(dim=(2, 3)) / total
        y = (weights * y_pos).sum(dim=(2, 3)) / total
        points = torch.stack((x, y), dim=-1) * (images.shape[-1] / w)  # a constant in a traced graph
        return points, total


def pass_sizes(params: dict, refine: int, placing_size: int | None = None) -> list[int]:
    """The crop side in px of each of the 1 + ``refine`` passes of a model with these params:
    ``placing_size`` (``evaluate.placing_size``) for the passes that only place the next crop, the
    model's ``crop.input_size`` for the last, whose points are the answer. None: every pass at
    ``crop.input_size``. The network is fully convolutional, so it runs at either size; a size it
    cannot take (not a multiple of 4 * 2**model.depth) is a ParamError naming the parameter."""
    input_size = int(params["crop"]["input_size"])
    passes = 1 + int(refine)
    if placing_size is None or passes == 1:
        return [input_size] * passes
    check_input_size(placing_size, int(params["model"]["depth"]), "evaluate.placing_size")
    return [int(placing_size)] * (passes - 1) + [input_size]


def pass_flips(flip_test: bool, refine: int, flip_passes: str = "all") -> list[bool]:
    """Whether each of the 1 + ``refine`` passes averages with its mirrored crop: every pass with
    ``flip_passes`` "all", only the last with "last" (the earlier passes only place the next crop)."""
    if flip_passes not in ("all", "last"):
        raise ParamError(f"evaluate.flip_passes: expected 'all' or 'last', got {flip_passes!r}")
    passes = 1 + int(refine)
    return [bool(flip_test) and (flip_passes == "all" or i == passes - 1) for i in range(passes)]
