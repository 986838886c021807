"""Distillation (spanlib.training.distill): the resampled teacher distribution, the target mixture,
the teacher's checks, against hand-built references."""

import math

import numpy as np
import pytest
import torch

from spanlib.training.distill import mix_targets, overlap_matrix as distill_overlap, resample_distribution, teacher_distribution
from spanlib.utils.errors import ParamError


def gaussian_map(size: int, cx: float, cy: float, sigma: float) -> torch.Tensor:
    """The mass of a Gaussian (centre (cx, cy), sd sigma, unit-square coordinates) in each pixel of
    a size x size grid over the unit square: exact bin integrals by erf, renormalised."""
    edges = np.arange(size + 1) / size
    mass_x = np.diff([0.5 * (1 + math.erf((e - cx) / (sigma * math.sqrt(2)))) for e in edges])
    mass_y = np.diff([0.5 * (1 + math.erf((e - cy) / (sigma * math.sqrt(2)))) for e in edges])
    g = torch.from_numpy(np.outer(mass_y, mass_x))
    return (g / g.sum()).float()


def mean_position(prob: torch.Tensor) -> tuple[float, float]:
    size = prob.shape[-1]
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    p = prob.double()
    return float((p.sum(-2) * centres).sum()), float((p.sum(-1) * centres).sum())


@pytest.mark.parametrize("size", [48, 24, 96])
def test_resampled_distribution_keeps_its_mass_and_its_centre(size):
    prob = gaussian_map(64, 0.37, 0.61, 0.04)[None, None]
    out = resample_distribution(prob, size)
    assert out.shape == (1, 1, size, size)
    assert torch.all(out >= 0)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    x0, y0 = mean_position(prob[0, 0])
    x1, y1 = mean_position(out[0, 0])
    # the same point of the face, in the unit square both grids cover
    assert x1 == pytest.approx(x0, abs=1e-3) and y1 == pytest.approx(y0, abs=1e-3)
    # against the Gaussian's exact bin masses on the new grid (only bins split between two output
    # pixels are shared by area rather than by the density inside them)
    if size < 64:  # downsampling (the student's map is the smaller): near the exact masses
        assert float((out[0, 0] - gaussian_map(size, 0.37, 0.61, 0.04)).abs().sum()) < 0.05


def test_overlap_matrix_by_hand():
    # 3 input bins onto 2: bin 1 ([1/3, 2/3)) is split half and half
    expected = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    assert torch.allclose(distill_overlap(3, 2), expected)
    # 2 onto 4: each input bin's mass is halved into the two output bins inside it
    assert torch.allclose(distill_overlap(2, 4), torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.0, 0.5], [0.0, 0.5]]))


def test_same_size_is_left_alone():
    prob = torch.softmax(torch.randn(2, 3, 16 * 16), -1).reshape(2, 3, 16, 16)
    assert resample_distribution(prob, 16) is prob


def test_mixture_by_hand():
    g = torch.zeros(1, 2, 4, 4)
    g[0, 0, 1, 2] = 1.0
    g[0, 0, 1, 1] = 0.5   # channel 0: two pixels, 2 : 1
    teacher = torch.full((1, 2, 4, 4), 1 / 16)   # uniform
    out = mix_targets({4: g}, teacher, 0.25)[4]
    expected = torch.full((4, 4), 0.25 / 16)
    expected[1, 2] += 0.75 * 2 / 3
    expected[1, 1] += 0.75 * 1 / 3
    assert torch.allclose(out[0, 0], expected, atol=1e-7)
    assert float(out[0, 0].sum()) == pytest.approx(1.0, abs=1e-6)
    # channel 1: the landmark is outside the crop (empty map): no target, as without a teacher
    assert torch.count_nonzero(out[0, 1]) == 0


def test_weight_one_is_the_teacher_and_zero_the_ground_truth():
    g = gaussian_map(8, 0.3, 0.4, 0.1)[None, None] * 7.0
    teacher = gaussian_map(16, 0.6, 0.5, 0.1)[None, None]
    assert torch.allclose(mix_targets({8: g}, teacher, 1.0)[8], resample_distribution(teacher, 8), atol=1e-7)
    assert torch.allclose(mix_targets({8: g}, teacher, 0.0)[8], g / g.sum(), atol=1e-7)


class _Fixed(torch.nn.Module):
    """A stand-in teacher: fixed logits from the mean colour, and records the input size it saw."""

    def __init__(self, size: int):
        super().__init__()
        self.params = {"crop": {"input_size": size, "scale": 1.25}}
        self.seen = None

    def forward(self, images):
        self.seen = tuple(images.shape)
        b = images.shape[0]
        logits = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4).repeat(b, 1, 1, 1)
        return {"heatmaps": [logits * 0.0, logits * images.mean()]}


def test_teacher_sees_its_own_input_size_and_gives_its_softmax():
    teacher = _Fixed(32)
    images = torch.full((3, 3, 24, 24), 0.5)
    prob = teacher_distribution(teacher, images)
    assert teacher.seen == (3, 3, 32, 32)
    logits = torch.arange(32, dtype=torch.float64).reshape(2, 16) * 0.5
    expected = np.exp(logits.numpy() - logits.numpy().max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    assert np.allclose(prob[0].reshape(2, 16).numpy(), expected, atol=1e-6)


def test_a_teacher_that_crops_differently_is_refused(tmp_path, monkeypatch):
    from spanlib.training import distill

    class Model(torch.nn.Module):
        def __init__(self, points, scale):
            super().__init__()
            self.params = {"crop": {"input_size": 64, "scale": scale}}
            self.scheme = type("S", (), {"num_points": points})()

    monkeypatch.setattr(distill, "load_model", lambda path, device: Model(68, 1.4))
    with pytest.raises(ParamError, match="train.teacher.*crop.scale is 1.4"):
        distill.load_teacher("t.pt", num_points=68, crop_scale=1.25, device=torch.device("cpu"))
    monkeypatch.setattr(distill, "load_model", lambda path, device: Model(98, 1.25))
    with pytest.raises(ParamError, match="98 landmarks"):
        distill.load_teacher("t.pt", num_points=68, crop_scale=1.25, device=torch.device("cpu"))
