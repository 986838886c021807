"""Issue 23: training crops that look like a detector's (box jitter), the end-to-end evaluation
protocol (detector boxes, missed faces apart, the peer on the same boxes) and re-cropping on the
model's own points."""

import hashlib

import numpy as np
import pytest

import spanlib.inference.detect
from eval_helpers import OracleModel, save_tiny_checkpoint, tiny_params, write_pts_folder
from spanlib.cli import main
from spanlib.config.schema import ParamError, as_group
from spanlib.data.crop import (apply_affine, box_from_landmarks, compose_affine, crop_face, square_crop_matrix,
                               warp_image)
from spanlib.data.dataset import JITTER_CUT, PairedFaceDataset
from spanlib.data.sample import Sample
from spanlib.inference.detect import IDENTITY, BoxCalibration, FaceDetector, box_residuals, match_detection
from spanlib.evaluation.evaluate import detector_boxes, evaluate, evaluate_params, predict_samples
from spanlib.evaluation.peers import predict_peer

from test_dataset import PARAMS, SCHEME, make_samples


def _jitter_params(shift=(0.1, 0.05), scale=0.1) -> dict:
    params = {key: dict(value) for key, value in PARAMS.items()}
    params["crop"] = {**PARAMS["crop"], "jitter_shift": list(shift), "jitter_scale": scale}
    return params


# ------------------------------------------------------------------ box jitter of training crops
def test_without_jitter_nothing_is_drawn_and_items_repeat_bit_for_bit():
    samples = make_samples(3)
    plain = PairedFaceDataset(samples, SCHEME, 64, [16], 16, PARAMS, seed=2, progress=False)
    zero = PairedFaceDataset(samples, SCHEME, 64, [16], 16, _jitter_params((0, 0), 0), seed=2, progress=False)
    assert zero.jitter_matrix(0) is None
    for i in range(3):
        a, b = plain[i], zero[i]
        assert np.array_equal(a["a"]["image"].numpy(), b["a"]["image"].numpy())
        assert np.array_equal(a["b"]["image"].numpy(), b["b"]["image"].numpy())
        assert np.array_equal(a["b"]["landmarks"].numpy(), b["b"]["landmarks"].numpy())


def test_jittered_view_a_is_the_crop_of_a_moved_and_scaled_box():
    """View a equals crop_face of the image around the jittered box: the same matrix composed by
    hand from the cached context crop and the jitter, points exact, pixels within resampling."""
    samples = make_samples(4)
    ds = PairedFaceDataset(samples, SCHEME, 64, [16], 16, _jitter_params(), seed=5, progress=False)
    big = 64 + 2 * ds.margin
    for i, sample in enumerate(samples):
        jitter = ds.jitter_matrix(i)
        assert jitter is not None and not np.allclose(jitter, [[1, 0, -ds.margin], [0, 1, -ds.margin]])
        context = square_crop_matrix(box_from_landmarks(sample.landmarks), big, 1.25 * big / 64)
        image_to_a = compose_affine(jitter, context)
        item = ds[i]
        np.testing.assert_allclose(item["a"]["landmarks"].numpy(), apply_affine(image_to_a, sample.landmarks),
                                   atol=2e-3)
        direct = warp_image(sample.image, image_to_a, 64).astype(np.float32)
        seen = item["a"]["image"].numpy().transpose(1, 2, 0) * 255
        inside = np.s_[8:56, 8:56]  # away from the borders, which the context crop fills differently
        assert np.abs(seen[inside] - direct[inside]).mean() < 2.0


def test_jitter_draws_follow_the_configured_spread_and_are_cut():
    samples = make_samples(1)
    ds = PairedFaceDataset(samples, SCHEME, 64, [16], 16, _jitter_params((0.1, 0.05), 0.1), seed=0, progress=False)
    box_side = 64 / 1.25
    dx, dy, log_s = [], [], []
    for epoch in range(3000):
        ds.set_epoch(epoch)
        j = ds.jitter_matrix(0)
        s = 1 / j[0, 0]
        c = 32.0
        # j[:, 2] = c - (m + c + d) / s  ->  d = s (c - t) - m - c
        dx.append((s * (c - j[0, 2]) - ds.margin - c) / box_side)
        dy.append((s * (c - j[1, 2]) - ds.margin - c) / box_side)
        log_s.append(np.log(s))
    for values, sd in ((dx, 0.1), (dy, 0.05), (log_s, 0.1)):
        values = np.asarray(values)
        assert abs(values.std() / sd - 1) < 0.06 and abs(values.mean()) < 0.08 * sd
        assert np.abs(values).max() <= JITTER_CUT * sd + 1e-9
    ds.set_epoch(7)
    again = PairedFaceDataset(samples, SCHEME, 64, [16], 16, _jitter_params((0.1, 0.05), 0.1), seed=0, progress=False)
    again.set_epoch(7)
    np.testing.assert_array_equal(ds.jitter_matrix(0), again.jitter_matrix(0))


def test_no_jitter_outside_training_and_bad_spread_refused():
    ds = PairedFaceDataset(make_samples(1), SCHEME, 64, [16], 16, _jitter_params(), train=False, progress=False)
    assert ds.jitter_matrix(0) is None
    with pytest.raises(ParamError, match="jitter_shift"):
        as_group("crop", {"input_size": 64, "scale": 1.25, "jitter_shift": [0.1]})
    with pytest.raises(ParamError, match="jitter_scale"):
        as_group("crop", {"input_size": 64, "scale": 1.25, "jitter_scale": -0.1})


# ------------------------------------------------------------------ detector boxes
def test_match_detection_by_hand():
    target = np.array([0, 0, 10, 10], np.float32)
    boxes = np.array([[20, 20, 30, 30], [5, 0, 15, 10], [1, 1, 11, 11]], np.float32)
    assert match_detection(boxes, target) == 2  # IoU 81/119 beats 50/150
    assert match_detection(boxes[:1], target) is None
    assert match_detection(np.zeros((0, 4), np.float32), target) is None
    assert match_detection(boxes[1:2], target, min_iou=0.4) is None  # IoU 1/3


class _ShiftedDetector(FaceDetector):
    """Finds every face at its landmarks' box moved right by ``shift`` of its side (identity
    calibration), except the faces whose image hash is in ``miss``."""

    def __init__(self, samples, shift=0.1, miss=(), calibration=IDENTITY):
        super().__init__(backend="haar")
        self.kind, self._impl, self._calibration = "haar", object(), calibration
        self.shift, self.miss = shift, set(miss)
        self.gt = {_key(s.image): box_from_landmarks(s.landmarks) for s in samples}

    @property
    def calibration(self):
        return self._calibration

    def detect_raw(self, image):
        key = _key(image)
        if key in self.miss:
            return np.array([[0, 0, 3, 3]], np.float32)
        matches = [(k, b) for k, b in self.gt.items() if k == key]
        if not matches:  # a resized image (box_residuals): scale the box found by template size
            return np.zeros((0, 4), np.float32)
        box = matches[0][1].copy()
        side = max(box[2] - box[0], box[3] - box[1])
        return (box + np.float32([self.shift * side, 0, self.shift * side, 0]))[None]

    def describe(self):
        return "shifted test detector"


def _key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_box_residuals_recover_a_known_offset():
    samples = make_samples(5)
    detector = _ShiftedDetector(samples, shift=0.1)
    # resize_range (1, 1): the images stay as they are, so the test detector knows them
    r = box_residuals(detector, samples, resize_range=(1.0, 1.0), progress=False)
    assert r["found"] == 5
    # the calibrated box is square with the max side: its centre moves by 0.1 sides in x only
    np.testing.assert_allclose(r["dx"], 0.1, atol=1e-5)
    np.testing.assert_allclose(r["dy"], 0.0, atol=1e-5)
    np.testing.assert_allclose(r["log_scale"], 0.0, atol=1e-5)


def test_detector_boxes_count_misses_and_calibrate():
    samples = make_samples(4)
    cal = BoxCalibration(0.0, 0.1, 0.9)
    detector = _ShiftedDetector(samples, miss={_key(samples[2].image)}, calibration=cal)
    out = detector_boxes(samples, detector, progress=False)
    assert out["found"].tolist() == [True, True, False, True]
    assert np.isnan(out["raw"][2]).all() and np.isnan(out["box"][2]).all()
    np.testing.assert_allclose(out["box"][[0, 1, 3]], cal.to_landmark_box(out["raw"][[0, 1, 3]]), atol=1e-5)


def test_end_to_end_evaluation_scores_the_found_faces_from_their_boxes(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    write_pts_folder(folder, n=4, size=96)
    from spanlib.data.sources import read_source

    samples = read_source("pts", folder)
    missed = samples[1]
    made = {}

    def fake_detector(*args, **kwargs):
        made["detector"] = _ShiftedDetector(samples, shift=0.05, miss={_key(missed.image)})
        return made["detector"]

    monkeypatch.setattr(spanlib.inference.detect, "FaceDetector", fake_detector)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=32)
    result = evaluate(ckpt, "pts", folder, settings={"boxes": "detector", "batch_size": 2}, progress=False,
                      return_predictions=True, json_path=tmp_path / "m.json")
    det = result["detection"]
    assert (det["faces"], det["found"], det["missed"]) == (4, 3, 1)
    assert det["missed_paths"] == [missed.path] and "boxes" not in det
    assert [entry["n"] for entry in result["subsets"].values()] == [3]
    found = [s for s in samples if s is not missed]
    raw = np.stack([made["detector"].detect_raw(s.image)[0] for s in found])
    # identity calibration: the detector's box made square on its centre, as predict crops it
    np.testing.assert_allclose(result["predictions"]["box"], IDENTITY.to_landmark_box(raw), atol=1e-4)
    assert result["provenance"]["protocol"]["boxes"] == "detector"


def test_refine_is_a_fixed_point_for_exact_predictions():
    """An oracle that is exact on the ground-truth crop is also exact after re-cropping on its own
    points (the box of exact points is the ground-truth box); a re-crop pass equals a second call
    with those boxes."""
    rng = np.random.default_rng(0)
    params = tiny_params(input_size=64)
    base = make_samples(1)[0]
    samples = [Sample(f"f{i}", landmarks=base.landmarks, image=base.image) for i in range(3)]
    matrix = square_crop_matrix(box_from_landmarks(base.landmarks), 64, params["crop"]["scale"])
    model = OracleModel(apply_affine(matrix, base.landmarks.astype(np.float64)), params, map_size=32)
    once = predict_samples(model, samples, evaluate_params(params, {"crop_box": "landmarks"}), progress=False)
    twice = predict_samples(model, samples, evaluate_params(params, {"crop_box": "landmarks", "refine": 1}),
                            progress=False)
    np.testing.assert_allclose(once["pred"], base.landmarks[None].repeat(3, 0), atol=2e-3)
    np.testing.assert_allclose(twice["pred"], once["pred"], atol=2e-3)
    off = np.stack([box_from_landmarks(base.landmarks) + rng.uniform(-4, 4, 4).astype(np.float32) for _ in samples])
    first = predict_samples(model, samples, evaluate_params(params, {}), progress=False, boxes=off)
    refined = predict_samples(model, samples, evaluate_params(params, {"refine": 1}), progress=False, boxes=off)
    by_hand = predict_samples(model, samples, evaluate_params(params, {}), progress=False,
                              boxes=np.stack([box_from_landmarks(p) for p in first["pred"]]))
    np.testing.assert_array_equal(refined["pred"], by_hand["pred"])
    with pytest.raises(ParamError, match="refine"):
        evaluate_params(params, {"refine": 9})


def test_peer_gets_the_given_boxes():
    class Recorder:
        name, num_points = "rec", 68

        def __init__(self):
            self.boxes = []

        def predict(self, image, landmarks, box=None):
            self.boxes.append(box)
            return landmarks, box, "given", 0.0, float("nan")

    samples = make_samples(2)
    boxes = np.array([[1, 2, 30, 40], [3, 4, 50, 60]], np.float32)
    peer = Recorder()
    out = predict_peer(peer, samples, progress=False, boxes=boxes)
    np.testing.assert_array_equal(np.stack(peer.boxes), boxes)
    assert out["box_source"] == ["given", "given"]
    peer = Recorder()
    predict_peer(peer, samples, progress=False)
    assert peer.boxes == [None, None]


def test_cli_evaluate_and_predict_take_the_new_options(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "faces"
    write_pts_folder(folder, n=2, size=96)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=32)
    from spanlib.data.sources import read_source

    samples = read_source("pts", folder)
    monkeypatch.setattr(spanlib.inference.detect, "FaceDetector", lambda *a, **k: _ShiftedDetector(samples))
    code = main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(folder),
                 "--boxes", "detector", "--refine", "1", "--quiet", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "end to end" in out and "2 of 2 faces found" in out and "re-crop passes: 1" in out
    assert "flip test" not in out
    code = main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(folder),
                 "--flip-test", "--quiet", "--device", "cpu", "--json", str(tmp_path / "flip.json")])
    assert code == 0 and "# flip test:" in capsys.readouterr().out
    import json

    assert json.loads((tmp_path / "flip.json").read_text())["provenance"]["protocol"]["flip_test"] is True
    image = folder / "face0.png"
    code = main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "10,10,60,60", "--refine", "2",
                 "--json", str(tmp_path / "p.json"), "--device", "cpu"])
    (face,) = json.loads((tmp_path / "p.json").read_text())["results"][0]["faces"]
    assert code == 0 and face["box_source"] == "given+refined"
    assert face["box"] != [10.0, 10.0, 60.0, 60.0]
    # --flip-test reaches predict_image (whose result tests/test_flip_test.py checks): other points
    code = main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "10,10,60,60", "--flip-test",
                 "--json", str(tmp_path / "f.json"), "--device", "cpu"])
    (flipped,) = json.loads((tmp_path / "f.json").read_text())["results"][0]["faces"]
    code_plain = main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "10,10,60,60", "--no-flip-test",
                       "--json", str(tmp_path / "n.json"), "--device", "cpu"])
    (plain,) = json.loads((tmp_path / "n.json").read_text())["results"][0]["faces"]
    assert code == 0 and code_plain == 0 and flipped["landmarks"] != plain["landmarks"]


@pytest.mark.parametrize("value", ["-1", "5"])
def test_predict_refuses_a_refine_outside_evaluate_refines_range(tmp_path, capsys, value):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=32)
    folder = tmp_path / "faces"
    write_pts_folder(folder, n=1, size=96)
    code = main(["predict", str(folder / "face0.png"), "--checkpoint", str(ckpt), "--box", "10,10,60,60",
                 "--refine", value, "--json", str(tmp_path / "p.json"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "--refine" in err and value in err
    assert not (tmp_path / "p.json").exists()
