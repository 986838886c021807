"""The INT8 back-end (``onnxruntime_int8``): the bundled model's graph statically quantised by
``onnxruntime.quantization`` against the float model on crops it was not calibrated on.

The reference is the float model itself (eager PyTorch, ``predict_crops``); the tolerances are
what a user would accept for a faster back-end, and looser than the float back-ends' 0.01 px
(``TOLERANCE_PX``): INT8 moves points, and by how much on real faces is measured, not assumed
(results/real/inference_speed.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spanlib import load_model
from spanlib.inference.backends import make_runner
from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.dataset import to_tensor_image
from spanlib.data.synth.face import render_face, sample_face
from spanlib.utils.errors import ParamError
from spanlib.inference.step import predict_crops

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")


@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(1)
    return load_model()


def _synthetic_crops(model, split: str, n: int, size: int | None = None) -> torch.Tensor:
    crops = []
    for index in range(n):
        spec = sample_face(0, split, index, size=192)
        image = render_face(spec)
        crops.append(to_tensor_image(crop_for_model(image, box_from_landmarks(spec.landmarks), model.params, size)[0]))
    return torch.stack(crops)


def _point_errors(model, runner, crops):
    """(|INT8 - float| per point in crop px, float points)."""
    reference, _, _ = predict_crops(model, crops, runner.radius)
    points = torch.cat([runner(crops[i:i + 1])[0] for i in range(len(crops))])
    return (points - reference).norm(dim=-1).numpy(), reference.numpy()


def test_int8_needs_calibration_crops(bundled):
    with pytest.raises(ParamError, match="calibration"):
        make_runner(bundled, "onnxruntime_int8")


def test_int8_placing_runner_calibrates_on_crops_of_its_own_size(bundled):
    """The bundled model places its re-crop with a 96 px pass (evaluate.placing_size): an INT8
    runner for that pass is calibrated on 96 px crops and stays close to the float model at 96 px;
    without crops it stops with the calibration error, as the 128 px runner does."""
    from spanlib.inference.backends import placing_runners

    runner = make_runner(bundled, "onnxruntime_int8", calibration=_synthetic_crops(bundled, "train", 4))
    with pytest.raises(ParamError, match="calibration"):
        placing_runners(bundled, runner, 96)
    runners = placing_runners(bundled, runner, 96, calibration=_synthetic_crops(bundled, "train", 8, 96))
    assert [r.size for r in runners] == [128, 96] and runners[1].backend == "onnxruntime_int8"
    errors, _ = _point_errors(bundled, runners[1], _synthetic_crops(bundled, "common", 6, 96))
    assert np.median(errors) < 0.5, f"median |INT8 - float| {np.median(errors):.3f} px of a 96 px crop"
    assert errors.max() > 0, "INT8 identical to float to the last bit: the graph was not quantised"


def test_int8_graph_is_quantised_and_close_to_float_on_uncalibrated_crops(bundled):
    """Calibrated on synthetic training faces, measured on synthetic test faces: the points stay
    within a fraction of a pixel of the float model's (a broken calibration, a wrong scale or a
    swapped channel gives many pixels), and the graph really holds integer convolutions."""
    import onnx

    from spanlib.inference.step import LandmarkHead
    from spanlib.inference.step import decode_radius
    from spanlib.inference.onnx_export import onnx_bytes, quantize_int8

    calibration = _synthetic_crops(bundled, "train", 12)
    crops = _synthetic_crops(bundled, "common", 8)
    runner = make_runner(bundled, "onnxruntime_int8", calibration=calibration)
    errors, _ = _point_errors(bundled, runner, crops)
    assert np.median(errors) < 0.5, f"median |INT8 - float| {np.median(errors):.3f} px of a 128 px crop"
    assert np.percentile(errors, 90) < 1.5
    assert errors.max() > 0, "INT8 identical to float to the last bit: the graph was not quantised"

    head = LandmarkHead(bundled, decode_radius(bundled.params)).eval()
    graph = onnx.load_from_string(quantize_int8(onnx_bytes(head, crops[:1]), calibration))
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    weights = {init.name: init for init in graph.graph.initializer}
    quantised = [n for n in graph.graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in weights and weights[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert len(convs) > 50 and len(quantised) >= len(convs), "every convolution's weights stored as int8"


@pytest.mark.shared_data
def test_int8_on_real_held_out_crops_moves_nme_by_under_a_tenth_of_a_point(bundled, shared_data):
    """On real 300-W faces (calibrated on training crops, measured on 40 held-out ones): the NME
    change against the float model stays under 0.1 points of NME_io."""
    from spanlib.bench.inference_speed import calibration_crops, held_out_faces
    from spanlib.evaluation.metrics import nme_per_face

    root = shared_data / "300w"
    calibration = calibration_crops(bundled, root, 32)
    faces = held_out_faces(bundled, root)[:40]
    crops, transforms = [], []
    for face in faces:
        crop, transform = crop_for_model(face.image, box_from_landmarks(face.landmarks), bundled.params)
        crops.append(to_tensor_image(crop))
        transforms.append(transform)
    crops = torch.stack(crops)
    runner = make_runner(bundled, "onnxruntime_int8", calibration=calibration)
    errors, reference = _point_errors(bundled, runner, crops)
    points = torch.cat([runner(crops[i:i + 1])[0] for i in range(len(crops))]).numpy()
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    to_image = lambda p: np.stack([t.to_image(q.astype(np.float64)) for t, q in zip(transforms, p)])  # noqa: E731
    nme_float = nme_per_face(to_image(reference), gt, "io", bundled.scheme).mean()
    nme_int8 = nme_per_face(to_image(points), gt, "io", bundled.scheme).mean()
    assert abs(nme_int8 - nme_float) < 0.001, f"NME_io float {100 * nme_float:.3f} %, INT8 {100 * nme_int8:.3f} %"
    assert np.median(errors) < 0.5
