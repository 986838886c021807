"""Face detector choice (dlib HOG, Haar fallback) and the box calibration to the training crop."""

import json
import sys

import cv2
import numpy as np
import pytest

from eval_helpers import save_tiny_checkpoint
from spanlib import load_model
from spanlib.cli import main
from spanlib.data.crop import box_from_landmarks
from spanlib.data.pts import read_pts
from spanlib.inference.detect import (DLIB_HOG_CALIBRATION, HAAR_CALIBRATION, BoxCalibration, FaceDetector,
                            box_iou, detect_faces)
from spanlib.utils.errors import DataError
from spanlib.inference.predict import FaceDetector as ReExported
from spanlib.inference.predict import predict_image, predict_paths


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=32))


@pytest.fixture
def no_dlib(monkeypatch):
    """``import dlib`` fails, as on a machine without dlib-bin."""
    monkeypatch.setitem(sys.modules, "dlib", None)


def test_predict_re_exports_the_detector():
    assert ReExported is FaceDetector


def test_auto_prefers_dlib_when_importable():
    pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin)")
    detector = FaceDetector()
    assert detector.kind == "dlib" and detector.calibration == DLIB_HOG_CALIBRATION
    assert "dlib" in detector.describe() and "HOG" in detector.describe()
    noise = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    assert detector.detect(noise).shape == (0, 4)


def test_falls_back_to_haar_without_dlib(no_dlib):
    detector = FaceDetector()
    assert detector.kind == "haar" and detector.calibration == HAAR_CALIBRATION
    assert "pip install dlib-bin" in detector.describe()
    with pytest.raises(DataError, match="pip install dlib-bin"):
        FaceDetector(backend="dlib")
    with pytest.raises(Exception, match="expected one of"):
        FaceDetector(backend="mtcnn")


def test_calibration_by_hand():
    cal = BoxCalibration(shift_x=0.1, shift_y=0.2, scale=0.8)
    # w = h = 100, centre (150, 100) -> centre (160, 120), side 80
    np.testing.assert_allclose(cal.to_landmark_box([[100, 50, 200, 150]]), [[120, 80, 200, 160]], atol=1e-4)
    # a 100 x 50 box: side from max(w, h) = 100, shift_y in units of h = 50
    np.testing.assert_allclose(cal.to_landmark_box([[0, 0, 100, 50]]), [[20, -5, 100, 75]], atol=1e-4)
    # and back: the landmark box (120, 80, 200, 160) came from (100, 50, 200, 150)
    np.testing.assert_allclose(cal.from_landmark_box([[120, 80, 200, 160]]), [[100, 50, 200, 150]], atol=1e-4)
    # the measured dlib constants: (0, 0, 100, 100) -> centre (50.5, 58.4), side 97.7
    np.testing.assert_allclose(DLIB_HOG_CALIBRATION.to_landmark_box([[0, 0, 100, 100]]),
                               [[1.65, 9.55, 99.35, 107.25]], atol=1e-4)
    np.testing.assert_allclose(HAAR_CALIBRATION.to_landmark_box([[0, 0, 100, 100]]),
                               [[7.3, 21.2, 93.7, 107.6]], atol=1e-4)


class _FixedDetector(FaceDetector):
    """Reports one fixed raw box as a given back-end would."""

    def __init__(self, kind, raw):
        super().__init__(backend="haar")
        self.kind, self._impl, self.raw = kind, object(), np.asarray([raw], np.float32)

    def detect_raw(self, image):
        return self.raw

    def describe(self):
        return f"fixed {self.kind}"


@pytest.mark.parametrize("kind,calibration", [("dlib", DLIB_HOG_CALIBRATION), ("haar", HAAR_CALIBRATION)])
def test_prediction_crops_around_the_calibrated_box(model, kind, calibration):
    image = np.full((200, 240, 3), 90, np.uint8)
    raw = [60.0, 40.0, 160.0, 140.0]
    faces, message = predict_image(model, image, detector=_FixedDetector(kind, raw))
    (face,) = faces
    np.testing.assert_allclose(face.box, calibration.to_landmark_box([raw])[0], atol=1e-4)
    assert face.detector_box == raw and face.box_source == kind and f"detector: fixed {kind}" in message
    # the crop is the training protocol around the calibrated box: side crop.scale * its side
    scale = model.params["crop"]["scale"]
    side = calibration.scale * 100
    pts = np.asarray(face.landmarks)
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    assert np.all(np.abs(pts - [cx, cy]) <= scale * side / 2 + 1e-3)


def test_command_line_names_the_detector(tmp_path, model, capsys, no_dlib):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    code = main(["predict", str(blank), "--checkpoint", model.checkpoint_path, "--json", str(tmp_path / "o.json"),
                 "--device", "cpu"])
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and "detector: OpenCV" in out and "Haar" in written["detector"]
    assert "Haar" in written["results"][0]["detector"]
    main(["predict", str(blank), "--checkpoint", model.checkpoint_path, "--box", "10,10,90,90",
          "--json", str(tmp_path / "g.json"), "--device", "cpu"])
    written = json.loads((tmp_path / "g.json").read_text())
    assert written["detector"] == "given box (--box)" and written["results"][0]["detector"] == "given box"
    assert written["results"][0]["faces"][0]["box_source"] == "given"


@pytest.mark.shared_data
@pytest.mark.parametrize("backend", ["dlib", "haar"])
def test_calibrated_boxes_match_landmark_boxes_on_real_faces(shared_data, backend):
    """On real 300-W faces the calibrated box is centred on the landmark box (no systematic offset:
    the raw boxes of both detectors sit above it) and has its size, to within the spread measured."""
    if backend == "dlib":
        pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin)")
    images = sorted((shared_data / "300w" / "helen" / "trainset").glob("*.jpg"))[:12]
    if not images:
        pytest.skip("no HELEN images under ../shared/data/300w")
    detector = FaceDetector(backend=backend)
    raw_dy, cal_dy, cal_side, centre_err = [], [], [], []
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        gt = box_from_landmarks(read_pts(path.with_suffix(".pts"), 68))
        raw = detector.detect_raw(image)
        if len(raw) == 0:
            continue
        best = max(range(len(raw)), key=lambda i: box_iou(raw[i], gt))
        if box_iou(raw[best], gt) < 0.3:
            continue
        cal = detector.calibration.to_landmark_box(raw[best:best + 1])[0]
        np.testing.assert_allclose(detect_faces(image, detector)[best], cal)
        side = max(gt[2] - gt[0], gt[3] - gt[1])
        raw_dy.append(((gt[1] + gt[3]) - (raw[best][1] + raw[best][3])) / 2 / side)
        cal_dy.append(((gt[1] + gt[3]) - (cal[1] + cal[3])) / 2 / side)
        centre_err.append(np.hypot((cal[0] + cal[2] - gt[0] - gt[2]) / 2, (cal[1] + cal[3] - gt[1] - gt[3]) / 2) / side)
        cal_side.append((cal[2] - cal[0]) / side)
    assert len(cal_dy) >= 8, f"{backend} found only {len(cal_dy)} of {len(images)} faces"
    assert np.mean(raw_dy) > 0.05 and abs(np.mean(cal_dy)) < 0.04
    assert 0.85 < np.median(cal_side) < 1.15 and np.median(centre_err) < 0.15
