"""Flip test-time augmentation in ``predict_crops`` and ``predict_image``: the mirrored prediction
is mapped back through x -> S - x (+ 2 ``disturb.mirror_offset``) and the scheme's mirror
permutation before averaging."""

import copy

import numpy as np
import pytest
import torch

from spanlib import load_model
from spanlib.config.schemes import get_scheme, mirror_landmarks
from spanlib.data.crop import box_from_landmarks
from spanlib.data.synth.face import render_face, sample_face
from spanlib.inference.backends import make_runner
from spanlib.inference.predict import predict_crops, predict_image
from spanlib.inference.step import TOLERANCE_PX

from eval_helpers import predict_with_own_settings


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


# ------------------------------------------------------------- predict: the flip test on whole images
@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(1)
    model = load_model()
    model.params = copy.deepcopy(model.params)
    model.params.setdefault("disturb", {})["mirror_offset"] = 0.8  # image px, as if trained with it
    return model


def _face(index):
    spec = sample_face(0, "train", index, size=192)
    return render_face(spec), box_from_landmarks(spec.landmarks)


@pytest.mark.parametrize("index", [0, 1])
def test_predict_flip_test_averages_with_the_mirrored_image(bundled, index):
    """Reference built in image space: predict the numpy-mirrored image from the mirrored box,
    mirror those points back (x -> W - x + 2 o, iBUG permutation) and average with the plain
    prediction. predict_image(flip=True) mirrors the crop instead; both must agree."""
    image, box = _face(index)
    width = image.shape[1]
    (plain,), _ = predict_image(bundled, image, boxes=[box], refine=0, flip=False)
    (flipped,), _ = predict_image(bundled, image, boxes=[box], refine=0, flip=True)
    mirror_box = np.array([width - box[2], box[1], width - box[0], box[3]])
    (mirrored,), _ = predict_image(bundled, np.ascontiguousarray(image[:, ::-1]), boxes=[mirror_box],
                                   refine=0, flip=False)
    back = mirror_landmarks(np.asarray(mirrored.landmarks), width, bundled.scheme) + [2 * 0.8, 0.0]
    reference = 0.5 * (np.asarray(plain.landmarks) + back)
    # 0.05 image px: OpenCV's 1/32 px interpolation grid and the 3-decimal rounding of the output
    np.testing.assert_allclose(flipped.landmarks, reference, atol=0.05)
    assert np.abs(np.asarray(flipped.landmarks) - plain.landmarks).max() > 0.3  # the flip does something


@pytest.mark.parametrize("backend", ["head", "onnxruntime"])
def test_predict_flip_test_is_the_models_default_and_the_backends_agree(bundled, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
    image, box = _face(2)
    (explicit,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True)
    params = copy.deepcopy(bundled.params)
    params.setdefault("evaluate", {})["flip_test"] = True
    original, bundled.params = bundled.params, params
    try:
        (default,), _ = predict_image(bundled, image, boxes=[box], refine=1)
        runner = make_runner(bundled, backend)  # crops and mirrored crops: one call of batch 2
        (backend,), _ = predict_image(bundled, image, boxes=[box], refine=1, runner=runner)
    finally:
        bundled.params = original
    np.testing.assert_array_equal(default.landmarks, explicit.landmarks)
    # the back-end's one pass, called twice (crop and mirrored crop), within the back-ends' tolerance
    np.testing.assert_allclose(backend.landmarks, explicit.landmarks, atol=TOLERANCE_PX * 2)


def test_flip_on_the_last_pass_only_is_a_plain_pass_then_a_flipped_one(bundled):
    """evaluate.flip_passes = last: the first pass (which only places the re-crop) is plain, the
    last is averaged with its mirrored crop. Reference: the two passes called one by one."""
    image, box = _face(3)
    (first,), _ = predict_image(bundled, image, boxes=[box], refine=0, flip=False)
    refined_box = box_from_landmarks(np.asarray(first.landmarks))
    (reference,), _ = predict_image(bundled, image, boxes=[refined_box], refine=0, flip=True)
    # placing=128: every pass at the model's size (the bundled model's own placing pass is 96 px,
    # tests/test_placing_pass.py)
    (last,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, flip_which="last", placing=128)
    (every,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, flip_which="all", placing=128)
    # 2e-3 px: the refined box is rebuilt from the 3-decimal rounded points of the first pass
    np.testing.assert_allclose(last.landmarks, reference.landmarks, atol=2e-3)
    assert np.abs(np.asarray(every.landmarks) - last.landmarks).max() > 1e-3  # a flipped first pass moves the crop
    default = predict_with_own_settings(bundled, image, box, flip_test=True, refine=1, flip_passes="last",
                                        placing_size=None)
    np.testing.assert_array_equal(default.landmarks, last.landmarks)


def test_evaluate_flips_the_last_pass_only_when_asked():
    from spanlib.evaluation.evaluate import pass_flips
    from spanlib.utils.errors import ParamError
    assert pass_flips(True, 2, "all") == [True, True, True]
    assert pass_flips(True, 2, "last") == [False, False, True]
    assert pass_flips(True, 0, "last") == [True]
    assert pass_flips(False, 1, "last") == [False, False]
    with pytest.raises(ParamError, match="flip_passes"):
        pass_flips(True, 1, "first")


def test_evaluate_with_the_flip_on_the_last_pass_is_the_passes_called_by_hand(bundled):
    from spanlib.data.sample import Sample
    from spanlib.evaluation.evaluate import evaluate_params, predict_samples
    faces = [sample_face(0, "train", i, size=192) for i in (4, 5)]
    samples = [Sample(f"f{i}.png", f.landmarks, image=render_face(f)) for i, f in enumerate(faces)]
    params = bundled.params
    first = predict_samples(bundled, samples, evaluate_params(params, {"flip_test": False, "refine": 0}),
                            progress=False)
    boxes = np.stack([box_from_landmarks(p) for p in first["pred"]])
    by_hand = predict_samples(bundled, samples, evaluate_params(params, {"flip_test": True, "refine": 0}),
                              progress=False, boxes=boxes)
    # placing_size None: every pass at 128 px (the bundled model's own placing pass is 96 px)
    last = predict_samples(bundled, samples, evaluate_params(
        params, {"flip_test": True, "refine": 1, "flip_passes": "last", "placing_size": None}), progress=False)
    every = predict_samples(bundled, samples, evaluate_params(
        params, {"flip_test": True, "refine": 1, "flip_passes": "all", "placing_size": None}), progress=False)
    np.testing.assert_array_equal(last["pred"], by_hand["pred"])
    assert np.abs(every["pred"] - last["pred"]).max() > 1e-3
