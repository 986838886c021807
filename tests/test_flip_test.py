"""Flip test-time augmentation in ``predict_crops``: the mirrored prediction is mapped back through
x -> S - x and the scheme's mirror permutation before averaging."""

import numpy as np
import torch

from spanlib.inference.predict import predict_crops
from spanlib.config.schemes import get_scheme


class MarkerModel(torch.nn.Module):
    """Puts each landmark's heatmap peak at fixed crop pixels ``points`` when the image's left
    half is brighter (the original view) and at the mirror image of the permuted points otherwise,
    as a perfectly mirror-equivariant network would; 16x16 maps for a 64 px crop."""

    def __init__(self, points: np.ndarray, scheme):
        super().__init__()
        self.scheme = scheme
        self.points = torch.as_tensor(points, dtype=torch.float32)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images):
        size, res = images.shape[-1], 16
        stride = size / res
        original = images[..., : size // 2].mean() > images[..., size // 2:].mean()
        pts = self.points.clone()
        if not original:
            perm = torch.as_tensor(np.asarray(self.scheme.flip_perm))
            pts = pts[perm]
            pts[:, 0] = size - pts[:, 0]
        # map-pixel centres: (i + 0.5) * stride in crop pixels
        centres = (torch.arange(res, dtype=torch.float32) + 0.5) * stride
        dx = centres[None, :] - pts[:, 0:1]
        dy = centres[None, :] - pts[:, 1:2]
        logits = -(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2 * (0.7 * stride) ** 2)
        logits = logits[None].expand(images.shape[0], -1, -1, -1)
        return {"heatmaps": [logits], "boundaries": [], "offsets": None, "input_size": size}


def test_flip_test_maps_the_mirrored_points_back():
    scheme = get_scheme(68)
    rng = np.random.default_rng(0)
    points = rng.uniform(12, 52, size=(68, 2))
    images = torch.zeros(2, 3, 64, 64)
    images[..., :32] = 1.0  # left half brighter: the original view
    model = MarkerModel(points, scheme)
    plain, _, _ = predict_crops(model, images, radius=3)
    flipped, conf, _ = predict_crops(model, images, radius=3, flip=True)
    # an equivariant model gives the same points both ways, so the average equals the plain estimate
    np.testing.assert_allclose(flipped.numpy(), plain.numpy(), atol=1e-4)
    assert conf.shape == (2, 68)
    # without the permutation the mirrored estimate would land on the other side's points
    assert np.abs(plain.numpy()[0] - points).max() < 1.0


class OffsetModel(MarkerModel):
    """A model trained on labels ``o`` px right of the true points and never told which view is
    mirrored: it places every point ``o`` right of the feature it sees, so on the mirrored view
    it answers S - x + 2 o (permuted) instead of S - x."""

    def __init__(self, points, scheme, offset):
        super().__init__(points, scheme)
        self.offset = offset

    def forward(self, images):
        out = super().forward(images)
        original = images[..., : images.shape[-1] // 2].mean() > images[..., images.shape[-1] // 2:].mean()
        if not original:  # move the peaks 2 o px right: rebuild the maps around the shifted points
            size, res = images.shape[-1], 16
            perm = torch.as_tensor(np.asarray(self.scheme.flip_perm))
            pts = self.points.clone()[perm]
            pts[:, 0] = size - pts[:, 0] + 2 * self.offset
            centres = (torch.arange(res, dtype=torch.float32) + 0.5) * (size / res)
            dx, dy = centres[None, :] - pts[:, 0:1], centres[None, :] - pts[:, 1:2]
            logits = -(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2 * (0.7 * size / res) ** 2)
            out["heatmaps"] = [logits[None].expand(images.shape[0], -1, -1, -1)]
        return out


def test_flip_test_with_the_labels_mirror_offset_recovers_the_plain_points():
    scheme = get_scheme(68)
    points = np.random.default_rng(1).uniform(14, 50, size=(68, 2))
    images = torch.zeros(3, 3, 64, 64)
    images[..., :32] = 1.0
    model = OffsetModel(points, scheme, offset=1.25)
    plain, _, _ = predict_crops(model, images, radius=3)
    naive, _, _ = predict_crops(model, images, radius=3, flip=True)
    # without the offset the average is pulled o px left (half of the mirrored estimate's 2 o)
    np.testing.assert_allclose((naive - plain).numpy()[..., 0], -1.25, atol=0.02)
    np.testing.assert_allclose((naive - plain).numpy()[..., 1], 0.0, atol=1e-3)
    fixed, _, _ = predict_crops(model, images, radius=3, flip=True, offset=torch.full((3,), 1.25))
    np.testing.assert_allclose(fixed.numpy(), plain.numpy(), atol=0.02)
