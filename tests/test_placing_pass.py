"""A smaller placing pass (``evaluate.placing_size``): with ``refine``, the passes that only place the
next crop run the same fully convolutional network on a smaller crop; the last pass, whose points
are the answer, stays at ``crop.input_size``."""

import copy

import numpy as np
import pytest
import torch

from spanlib import load_model
from spanlib.data.crop import box_from_landmarks, crop_face
from spanlib.data.dataset import to_tensor_image
from spanlib.data.synth.face import render_face, sample_face
from spanlib.inference.backends import make_runner, placing_runners, runner_for
from spanlib.inference.predict import predict_crops, predict_image
from spanlib.inference.step import TOLERANCE_PX, LandmarkHead, pass_sizes
from spanlib.utils.errors import ParamError

from eval_helpers import predict_with_own_settings


@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(1)
    model = load_model()
    model.params = copy.deepcopy(model.params)
    assert model.params["crop"]["input_size"] == 128 and model.params["model"]["depth"] == 3
    return model


def _face(index):
    spec = sample_face(0, "train", index, size=192)
    return render_face(spec), box_from_landmarks(spec.landmarks), spec.landmarks


def _at_size(model, size):
    """The same weights configured for ``size`` px crops: every pass at that size, through the
    ordinary path (``crop.input_size``), not through ``placing_size``."""
    other = copy.copy(model)
    other.params = copy.deepcopy(model.params)
    other.params["crop"]["input_size"] = size
    return other


def test_pass_sizes_puts_the_placing_size_before_the_last_pass(bundled):
    params = bundled.params
    assert pass_sizes(params, 0, 96) == [128]  # one pass: it is the last, at the model's size
    assert pass_sizes(params, 1, None) == [128, 128]
    assert pass_sizes(params, 1, 96) == [96, 128]
    assert pass_sizes(params, 2, 64) == [64, 64, 128]
    for bad in (100, 16, 0):  # depth 3: multiples of 4 * 2**3 = 32 only
        with pytest.raises(ParamError, match=r"evaluate\.placing_size: expected a multiple of 32"):
            pass_sizes(params, 1, bad)


def test_the_network_reports_and_decodes_at_the_size_it_is_given(bundled):
    """At 96 px the last maps are 48 wide and the stride 2 crop px: the same face's points from a
    96 px crop and from a 128 px crop land within 2 % of the face's size of each other in the image
    (a stride taken from the configured 128 would put them 33 % apart, scaled about the corner)."""
    image, box, truth = _face(0)
    points = {}
    for size in (96, 128):
        crop, transform = crop_face(image, box, size, bundled.params["crop"]["scale"])
        outputs = bundled(to_tensor_image(crop)[None])
        assert outputs["input_size"] == size and outputs["heatmaps"][-1].shape[-1] == size // 2
        pts, _, _ = predict_crops(bundled, to_tensor_image(crop)[None], radius=3)
        points[size] = transform.to_image(pts[0].double().numpy())
    side = np.ptp(truth, axis=0).max()
    assert np.linalg.norm(points[96] - points[128], axis=1).mean() < 0.02 * side
    assert np.linalg.norm(points[96] - truth, axis=1).mean() < 0.05 * side


def test_the_exported_head_decodes_at_its_own_size(bundled):
    """LandmarkHead (masked decode, the graph that is traced and exported) against predict_crops
    (spanlib.ops.bali_decode) at a size other than crop.input_size."""
    image, box, _ = _face(1)
    crop, _ = crop_face(image, box, 96, bundled.params["crop"]["scale"])
    images = to_tensor_image(crop)[None]
    reference, _, _ = predict_crops(bundled, images, radius=3)
    with torch.no_grad():
        head_points, _ = LandmarkHead(bundled, 3)(images)
    np.testing.assert_allclose(head_points.numpy(), reference.numpy(), atol=TOLERANCE_PX)


def test_predict_with_a_placing_pass_is_a_small_pass_then_a_full_one(bundled):
    """Reference: the weights configured for 96 px crops predict once; the model at 128 predicts once
    more from the box of those points. refine 1 with placing 96 must give the same landmarks."""
    image, box, _ = _face(2)
    (first,), _ = predict_image(_at_size(bundled, 96), image, boxes=[box], refine=0, flip=False)
    refined = box_from_landmarks(np.asarray(first.landmarks))
    (reference,), _ = predict_image(bundled, image, boxes=[refined], refine=0, flip=True)
    (placed,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, flip_which="last", placing=96)
    (full,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, flip_which="last", placing=128)
    # 2e-3 px: the refined box is rebuilt from the 3-decimal rounded points of the first pass
    np.testing.assert_allclose(placed.landmarks, reference.landmarks, atol=2e-3)
    assert np.abs(np.asarray(full.landmarks) - placed.landmarks).max() > 1e-3  # the small pass moves the crop
    # the bundled model carries evaluate.placing_size 96: its default path is the placed one
    (own,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, flip_which="last")
    np.testing.assert_array_equal(own.landmarks, placed.landmarks)
    default = predict_with_own_settings(bundled, image, box, refine=1, flip_test=True, flip_passes="last",
                                        placing_size=96)
    np.testing.assert_array_equal(default.landmarks, placed.landmarks)


@pytest.mark.parametrize("backend", ["jit", "onnxruntime"])
def test_a_traced_backend_gets_a_graph_per_size_and_agrees_with_eager(bundled, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
    image, box, _ = _face(3)
    runners = placing_runners(bundled, make_runner(bundled, backend), 96)
    assert [r.size for r in runners] == [128, 96]
    assert runner_for(runners, 96, 3) is runners[1] and runner_for(runners, 96, 2) is None
    assert placing_runners(bundled, runners[0], None) == [runners[0]]
    (eager,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, placing=96)
    (fast,), _ = predict_image(bundled, image, boxes=[box], refine=1, flip=True, placing=96, runner=runners)
    # two passes, each within the back-ends' tolerance (the second from a box that moved by as much)
    np.testing.assert_allclose(fast.landmarks, eager.landmarks, atol=4 * TOLERANCE_PX)
    with pytest.raises(ParamError, match=r"evaluate\.placing_size"):
        make_runner(bundled, backend, size=80)


def test_evaluate_with_a_placing_pass_is_the_passes_called_by_hand(bundled):
    from spanlib.data.sample import Sample
    from spanlib.evaluation.evaluate import evaluate_params, predict_samples
    faces = [sample_face(0, "train", i, size=192) for i in (4, 5)]
    samples = [Sample(f"f{i}.png", f.landmarks, image=render_face(f)) for i, f in enumerate(faces)]
    small = _at_size(bundled, 96)
    first = predict_samples(small, samples, evaluate_params(small.params, {"flip_test": False, "refine": 0}),
                            progress=False)
    boxes = np.stack([box_from_landmarks(p) for p in first["pred"]])
    by_hand = predict_samples(bundled, samples, evaluate_params(bundled.params, {"refine": 0}),
                              progress=False, boxes=boxes)
    placed = predict_samples(bundled, samples, evaluate_params(bundled.params, {"refine": 1, "placing_size": 96}),
                             progress=False)
    np.testing.assert_array_equal(placed["pred"], by_hand["pred"])
    with pytest.raises(ParamError, match="placing_size"):
        evaluate_params(bundled.params, {"placing_size": 4})  # the schema's floor


def test_predict_refuses_a_placing_size_the_network_cannot_take(tmp_path, capsys):
    import cv2

    from spanlib.cli import main
    image_path = tmp_path / "face.png"
    image, _, _ = _face(6)
    cv2.imwrite(str(image_path), image[:, :, ::-1])
    status = main(["predict", str(image_path), "--placing-size", "100", "--json", str(tmp_path / "out.json")])
    message = capsys.readouterr().err
    assert status != 0
    assert "evaluate.placing_size: expected a multiple of 32" in message
    assert not (tmp_path / "out.json").exists()
