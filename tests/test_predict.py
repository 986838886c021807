import json

import cv2
import numpy as np
import pytest
import torch

from eval_helpers import save_tiny_checkpoint
from spanlib import load_model
from spanlib.cli import main
from spanlib.data.pts import read_pts
from spanlib.inference.predict import FaceDetector, predict_paths, window_mass


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=32)
    return load_model(path)


def _inside_crop(points, box, scale):
    """Every point lies in the square the crop protocol cut around ``box``."""
    x0, y0, x1, y1 = box
    half = scale * max(x1 - x0, y1 - y0) / 2 + 1e-3
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.all(np.abs(points[:, 0] - cx) <= half) and np.all(np.abs(points[:, 1] - cy) <= half)


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_window_mass_by_hand():
    logits = torch.full((1, 2, 8, 8), -1e4)
    logits[0, 0, 3, 4] = 0.0  # all mass on one pixel
    logits[0, 1] = 0.0  # flat: argmax (0, 0), window clipped to (r+1)^2 pixels
    mass = window_mass(logits, radius=1)
    assert mass[0, 0] == pytest.approx(1.0) and mass[0, 1] == pytest.approx(4 / 64)


@pytest.mark.parametrize("radius", [0, 1, 3, 9])
def test_window_mass_against_a_float64_loop(radius):
    """Against a plain float64 loop over the clipped window at each map's first argmax: random
    maps of an odd shape (windows clipped at every border), tied peaks, a flat map."""
    g = torch.Generator().manual_seed(radius)
    logits = torch.randn(3, 5, 7, 11, generator=g) * 3
    logits[0, 0] = 0.0  # flat: argmax (0, 0), the corner window
    logits[1, 1, 2, 3] = logits[1, 1, 5, 8] = 50.0  # tie: the first in row-major order wins
    logits[2, 2, 6, 10] = 40.0  # the bottom-right corner
    mass = window_mass(logits, radius)
    prob = torch.softmax(logits.double().flatten(2), dim=-1).view(3, 5, 7, 11)
    for b in range(3):
        for k in range(5):
            i, j = divmod(int(prob[b, k].flatten().argmax()), 11)
            ref = sum(float(prob[b, k, r, c]) for r in range(max(0, i - radius), min(7, i + radius + 1))
                      for c in range(max(0, j - radius), min(11, j + radius + 1)))
            assert float(mass[b, k]) == pytest.approx(ref, abs=1e-6)
    # the peaks are 3 rows and 5 columns apart: both in the window from radius 5 on
    assert float(mass[1, 1]) == pytest.approx(0.5 if radius < 5 else 1.0, abs=1e-6)


@pytest.mark.parametrize("backend", ["haar", "dlib"])
def test_predict_on_real_300w_faces(shared_data, model, backend):
    folder = shared_data / "300w" / "afw"
    images = sorted(folder.glob("*.jpg"))[:4]
    if not images:
        pytest.skip(f"no .jpg images under {folder}")
    if backend == "dlib":
        pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin)")
    detector = FaceDetector(backend=backend)
    assert detector.kind == backend, "the pinned OpenCV 4.x ships the Haar cascade"
    results = predict_paths(model, images, progress=False, detector=detector)
    scale = model.params["crop"]["scale"]
    matched = 0
    for image, result in zip(images, results):
        assert not result.error and result.detector == detector.describe()
        gt = read_pts(image.with_suffix(".pts"), 68)
        gt_box = [*gt.min(0), *gt.max(0)]
        for face in result.faces:
            pts = np.asarray(face.landmarks)
            assert pts.shape == (68, 2) and 0.0 <= face.confidence <= 1.0
            assert _inside_crop(pts, face.box, scale)  # points map back into the face's crop
        if result.faces and max(_iou(f.box, gt_box) for f in result.faces) > 0.3:
            matched += 1
    # the Haar cascade is frontal-only: most, not necessarily all, AFW faces are found
    assert matched >= len(images) // 2, [r.message for r in results]


def test_given_box_no_face_and_unreadable_file_do_not_stop_the_batch(tmp_path, model):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    results = predict_paths(model, [blank, broken, tmp_path / "absent.png", blank], progress=False)
    assert [bool(r.error) for r in results] == [False, True, True, False]
    assert "broken.jpg" in results[1].error and "absent.png" in results[2].error
    assert results[0].faces == [] and "no face" in results[0].message
    given = predict_paths(model, [blank], box=[40, 30, 100, 90], progress=False)[0]
    (face,) = given.faces
    assert face.box_source == "given" and _inside_crop(np.asarray(face.landmarks), face.box, model.params["crop"]["scale"])


class _NoFace(FaceDetector):
    """A detector that finds nothing: the "no face" path whatever OpenCV build is installed."""

    def __init__(self):
        super().__init__()
        self.kind, self._impl = "stub", object()

    def detect_raw(self, image):
        return np.zeros((0, 4), np.float32)

    def describe(self):
        return "stub detector"


def test_no_face_gives_empty_list_and_message(tmp_path, model):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((50, 60, 3), 128, np.uint8))
    (result,) = predict_paths(model, [blank], progress=False, detector=_NoFace())
    assert result.faces == [] and not result.error and "no face found" in result.message


def test_video_frames_and_command_line(tmp_path, model, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 80))
    if not writer.isOpened():
        pytest.skip("OpenCV has no MJPG writer in this build")
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    writer.release()
    code = main(["predict", str(video), "--checkpoint", model.checkpoint_path, "--box", "20,10,70,60",
                 "--json", str(tmp_path / "out.json"), "--overlay", str(tmp_path / "overlays"), "--device", "cpu"])
    assert code == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert [r["frame"] for r in out["results"]] == [0, 1, 2]
    assert out["backend"] in ("onnxruntime", "jit")  # --backend auto builds a faster one for a video
    assert all(len(r["faces"]) == 1 and len(r["faces"][0]["landmarks"]) == 68 for r in out["results"])
    overlays = sorted(p.name for p in (tmp_path / "overlays").iterdir())
    assert overlays == ["clip_f000000.png", "clip_f000001.png", "clip_f000002.png"]
    assert "frame 2: 1 face(s)" in capsys.readouterr().out


def test_detector_reports_what_it_is():
    detector = FaceDetector(backend="haar")
    assert detector.available and detector.kind == "haar" and "Haar" in detector.describe()
    noise = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    assert detector.detect(noise).shape == (0, 4)
    with pytest.raises(Exception, match="yunet.onnx"):
        FaceDetector("missing/yunet.onnx")


def test_exit_status_counts_failed_inputs(tmp_path, model, capsys):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((80, 90, 3), 100, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    common = ["--checkpoint", model.checkpoint_path, "--box", "10,10,60,60", "--device", "cpu", "--backend", "eager"]
    assert main(["predict", str(good), *common]) == 0
    capsys.readouterr()
    auto = [c for c in common if c not in ("--backend", "eager")]
    assert main(["predict", str(good), *auto, "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["backend"] == "eager"  # one image: no export
    capsys.readouterr()
    # one bad input among good ones: still every good one is predicted, and the status says it
    assert main(["predict", str(good), str(broken), str(tmp_path / "absent.png"), str(good), *common]) == 1
    out, err = capsys.readouterr()
    assert out.count("good.png: 1 face(s)") == 2
    assert "2 of 4 input(s) failed" in err and "broken.jpg" in err and "absent.png" in err
    assert main(["predict", str(broken), *common]) == 1
    assert "1 of 1 input(s) failed" in capsys.readouterr().err


def test_faster_backend_gives_the_same_landmarks_in_predict(tmp_path, model):
    image = tmp_path / "noise.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 255, (90, 100, 3), dtype=np.uint8))
    eager = predict_paths(model, [image], box=[15, 10, 75, 70], progress=False)[0].faces[0]
    fast = predict_paths(model, [image], box=[15, 10, 75, 70], progress=False, runner="jit")[0].faces[0]
    np.testing.assert_allclose(fast.landmarks, eager.landmarks, atol=1e-2)
    assert fast.confidence == pytest.approx(eager.confidence, abs=1e-4)


def test_help_and_code_agree_on_the_haar_fallback(monkeypatch, capsys):
    """docs/evaluation.md and README: dlib's HOG detector when dlib is installed, otherwise OpenCV's
    bundled Haar cascade (the pinned OpenCV 4.x ships it). --help must say the same, and it must be true."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "dlib's HOG frontal face detector when dlib is installed" in text
    assert "otherwise OpenCV's bundled frontal-face Haar cascade" in text
    assert "no bundled Haar cascade" not in text  # the old, contradicting help
    import spanlib.inference.detect

    monkeypatch.setattr(spanlib.inference.detect, "import_dlib", lambda: None)  # as without dlib-bin
    assert FaceDetector(backend="auto").kind == "haar"
