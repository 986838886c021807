"""Batched torch targets (train.device_targets, issue 25) against the numpy targets of
spanlib.data.targets: every distribution and kind, points near and outside the crop, missing points."""

import numpy as np
import pytest
import torch

from spanlib.config.schemes import get_scheme
from spanlib.data import targets_torch
from spanlib.data.dataset import PairedFaceDataset, collate_pairs
from spanlib.data.targets import build_targets
from spanlib.utils.errors import ParamError

from test_dataset import PARAMS, make_samples
from test_targets import mean_face

SCHEME = get_scheme("68")
CROP = 64
RESOLUTIONS = [16, 32]  # sigma scales with the resolution (sigma_at): both must agree
SETTINGS = [
    {"distribution": "gaussian"},
    {"distribution": "ged", "ged_shape": 0.2},
    {"distribution": "ged", "ged_shape": -0.1},
    {"distribution": "ged", "ged_shape": 1.0},   # exponent 1/2
    {"distribution": "student_t", "student_df": 1.0},
    {"distribution": "student_t", "student_df": 3.0},
]


def settings(**extra) -> dict:
    base = {"sigma": 1.3, "boundary_sigma": 1.1, "boundary_xi": 0.05, "field_radius": 2, "ged_shape": 0.0,
            "student_df": 3.0}
    return {**base, **extra}


def landmark_sets(n: int = 12, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) crop points: faces jittered about the mean face, some shifted across the crop
    edge or beyond it, some points uniform over a box wider than the crop, single NaN points, a
    point with only y missing, a whole boundary missing (the nose bridge), and one face all NaN."""
    rng = np.random.default_rng(seed)
    pts = mean_face(CROP)[None] + rng.normal(0, 1.5, size=(n, 68, 2))
    pts[1] += [-30, 0]          # the left half beyond the left edge
    pts[2] += [0, 40]           # the lower part below the crop
    pts[3] = rng.uniform(-6, CROP + 6, size=(68, 2))
    pts[4, :, 0] = np.linspace(-0.6, CROP + 0.6, 68)  # points on and just past the edges
    pts[5][rng.random(68) < 0.2] = np.nan
    pts[6, 10, 1] = np.nan
    pts[7, 27:31] = np.nan      # the whole nose bridge: its boundary map is xi everywhere
    pts[8] = np.nan
    return pts.astype(np.float32)


def numpy_batch(points: np.ndarray, t: dict, kinds=("heatmaps", "boundaries", "field")) -> dict:
    per_face = [build_targets(p, SCHEME, CROP, RESOLUTIONS, 32, t, kinds) for p in points]
    out = {}
    for key, value in per_face[0].items():
        if isinstance(value, dict):
            out[key] = {r: np.stack([f[key][r] for f in per_face]) for r in value}
        else:
            out[key] = np.stack([f[key] for f in per_face])
    return out


def assert_same_targets(got: dict, expected: dict, atol: float = 1e-5) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        pairs = [(got[key][r], value[r], (key, r)) for r in value] if isinstance(value, dict) else \
            [(got[key], value, key)]
        if isinstance(value, dict):
            assert set(got[key]) == set(value)
        for tensor, array, name in pairs:
            assert tensor.dtype == torch.float32 and tuple(tensor.shape) == array.shape, name
            np.testing.assert_allclose(tensor.numpy(), array, rtol=0, atol=atol, err_msg=str(name))


@pytest.mark.parametrize("extra", SETTINGS, ids=lambda e: "-".join(str(v) for v in e.values()))
def test_torch_targets_equal_numpy(extra):
    """All kinds, every Table VII distribution: max |torch - numpy| <= 1e-5 (peak 1), NaN and edge
    points included; the maps are not trivial (peaks, xi outside the boundary band, masked fields)."""
    points = landmark_sets()
    t = settings(**extra)
    expected = numpy_batch(points, t)
    got = targets_torch.build_targets(torch.from_numpy(points), SCHEME, CROP, RESOLUTIONS, 32, t)
    assert_same_targets(got, expected)
    heat = expected["heatmaps"][32]
    assert heat.max() > 0.9 and (heat[8] == 0).all() and (heat[5].reshape(68, -1).max(1) == 0).any()
    assert np.isclose(expected["boundaries"][16], 0.05).any() and expected["field_mask"].sum() > 0
    assert (expected["boundaries"][32][7, 3] == np.float32(0.05)).all()  # nose bridge (3) missing: xi


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_torch_targets_equal_numpy_on_random_points(seed):
    """Points uniform over a box wider than the crop (every position relative to the pixel grid and
    the edges), 10% missing, the paper's Gaussian with other widths and a zero mask radius."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-8, CROP + 8, size=(16, 68, 2)).astype(np.float32)
    points[rng.random((16, 68)) < 0.1] = np.nan
    t = settings(sigma=1.0, boundary_sigma=2.0, boundary_xi=0.0, field_radius=0)
    got = targets_torch.build_targets(torch.from_numpy(points), SCHEME, CROP, RESOLUTIONS, 32, t)
    assert_same_targets(got, numpy_batch(points, t))


def test_kinds_limit_the_work():
    points = landmark_sets()[::3]
    t = settings()
    got = targets_torch.build_targets(torch.from_numpy(points), SCHEME, CROP, RESOLUTIONS, 32, t, kinds=("heatmaps",))
    assert set(got) == {"heatmaps"}
    got = targets_torch.build_targets(torch.from_numpy(points), SCHEME, CROP, RESOLUTIONS, 32, t,
                                      kinds=("heatmaps", "field"))
    assert_same_targets(got, numpy_batch(points, t, ("heatmaps", "field")))


def test_bad_settings_and_shapes_are_param_errors():
    points = torch.from_numpy(landmark_sets()[:2])
    with pytest.raises(ParamError, match="targets.distribution"):
        targets_torch.landmark_heatmaps(points, 16, 1.0, "laplace")
    with pytest.raises(ParamError, match="targets.boundary_sigma"):
        targets_torch.boundary_heatmaps(points, SCHEME, 16, 0.0)
    with pytest.raises(ParamError, match="targets.field_radius"):
        targets_torch.bali_fields(points, 16, -1)
    with pytest.raises(ParamError, match=r"\(N, 68, 2\)"):
        targets_torch.build_targets(points[0], SCHEME, CROP, RESOLUTIONS, 32, settings())


def test_a_dataset_without_target_kinds_gives_images_and_landmarks_only():
    """targets=() (train.device_targets): no target tensors in the views, nor in the collated batch;
    images and landmarks are those of the default dataset, item for item."""
    samples = make_samples(4)
    bare = PairedFaceDataset(samples, SCHEME, 64, [16, 32], 32, PARAMS, seed=3, targets=(), progress=False)
    full = PairedFaceDataset(samples, SCHEME, 64, [16, 32], 32, PARAMS, seed=3, progress=False)
    items = [bare[i] for i in range(4)]
    for i, item in enumerate(items):
        for view in "ab":
            assert set(item[view]) == {"image", "landmarks"}
            assert torch.equal(item[view]["image"], full[i][view]["image"])
            assert torch.equal(item[view]["landmarks"], full[i][view]["landmarks"])
    batch = collate_pairs(items)
    assert set(batch["views"]) == {"image", "landmarks"} and batch["views"]["landmarks"].shape == (8, 68, 2)
    # the device targets of those landmarks are the numpy targets of the full dataset's views
    views = collate_pairs([full[i] for i in range(4)])["views"]
    got = targets_torch.build_targets(batch["views"]["landmarks"], SCHEME, 64, [16, 32], 32, PARAMS["targets"])
    expected = {k: ({r: t.numpy() for r, t in v.items()} if isinstance(v, dict) else v.numpy())
                for k, v in views.items() if k not in ("image", "landmarks")}
    assert_same_targets(got, expected)
