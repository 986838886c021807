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
