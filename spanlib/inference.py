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
import torch.nn.functional as F


def decode_radius(params: dict) -> int:
    """``evaluate.decode_radius`` of a checkpoint's params (the schema's default when absent)."""
    from spanlib.config import default

    return int((params.get("evaluate") or {}).get("decode_radius", default("evaluate.decode_radius")))


@torch.no_grad()
def predict_crops(model: torch.nn.Module, images: torch.Tensor, radius: int,
                  flip: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(B, 3, S, S) crops in [0, 1] -> (points (B, K, 2) crop px, confidence (B, K), outputs).

    ``flip=True`` (``evaluate.flip_test``): also predict the mirrored crops, map those points back
    (x -> S - x in corner-origin pixels, channels through the scheme's mirror permutation) and
    average the two estimates; twice the cost, measured gain in docs/model.md."""
    from spanlib.decode import decode_landmarks

    device = next(model.parameters()).device
    images = images.to(device, non_blocking=True)
    outputs = model(images)
    points = decode_landmarks(outputs, radius)
    confidence = window_mass(outputs["heatmaps"][-1], radius)
    if flip:
        mirrored = model(torch.flip(images, dims=[-1]))
        perm = torch.as_tensor(np.asarray(model.scheme.flip_perm), device=points.device, dtype=torch.long)
        back = decode_landmarks(mirrored, radius)
        back[..., 0] = images.shape[-1] - back[..., 0]
        unflipped = torch.empty_like(back)
        unflipped[:, perm] = back  # mirrored channel k is original point perm[k]
        points = 0.5 * (points + unflipped)
        mass = torch.empty_like(confidence)
        mass[:, perm] = window_mass(mirrored["heatmaps"][-1], radius)
        confidence = 0.5 * (confidence + mass)
    return points, confidence, outputs


def window_mass(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): softmax probability inside the (2r+1)^2 window centred on each map's argmax."""
    b, k, h, w = logits.shape
    prob = torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).view(b * k, 1, h, w)
    # box sum of every window, read at the argmax (zero padding = clipping at the borders)
    box = F.avg_pool2d(prob, 2 * radius + 1, stride=1, padding=radius, count_include_pad=True)
    box = box * (2 * radius + 1) ** 2
    arg = prob.view(b * k, -1).argmax(dim=-1)
    return box.view(b * k, -1).gather(1, arg[:, None]).view(b, k)


def crop_points_to_image(points: torch.Tensor, crop_matrix: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) crop pixels -> image pixels, in float64: ``crop_matrix`` (B, 2, 3) maps image to
    crop (p_c = A p_i + t), so p_i = A^-1 (p_c - t)."""
    m = crop_matrix.double()
    inv = torch.linalg.inv(m[:, :, :2])
    return (points.double().cpu() - m[:, None, :, 2]) @ inv.transpose(1, 2)
