"""``spanlib evaluate --peer dlib``: dlib's 68-point shape predictor scored beside our model."""

import importlib.util
import json
import shutil
import sys

import cv2
import numpy as np
import pytest

from eval_helpers import save_tiny_checkpoint
from spanlib.cli import main
from spanlib.data.pts import read_pts
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError
from spanlib.evaluation.evaluate import evaluate, summary_text
from spanlib.evaluation import peers

LABEL = "peer: dlib 68-point shape predictor"


def _require_dlib_peer():
    pytest.importorskip("dlib", reason="dlib not installed (pip install -e '.[peers]')")
    try:
        return peers.shape_predictor_path()
    except DataError as exc:
        pytest.skip(f"dlib's 68-point model not available: {exc}")


def _afw_faces(shared_data, n=3):
    images = sorted((shared_data / "300w" / "afw").glob("*.jpg"))[:n]
    if len(images) < n:
        pytest.skip("fewer than 3 AFW faces under ../shared/data/300w")
    return images


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(DataError, match=r"pip install dlib-bin.*face_recognition_models"):
        peers.DlibPeer()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(DataError, match=r"face_recognition_models.*pip install"):
        peers.shape_predictor_path()
    with pytest.raises(Exception, match="unknown peer"):
        peers.make_peer("openface")


def _direct_nme_io(images, model_path):
    """dlib called directly: HOG box overlapping the ground truth (else the calibrated one), the
    shape predictor, +0.5 px to corner-origin, NME_io by hand."""
    import dlib

    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_path))
    nmes, sources = [], []
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        gt = read_pts(path.with_suffix(".pts"), 68).astype(np.float64)
        x0, y0 = gt.min(0)
        x1, y1 = gt.max(0)
        best, best_iou = None, 0.3
        for r in detector(image, 1):
            b = (r.left(), r.top(), r.right() + 1, r.bottom() + 1)
            iw = max(0, min(b[2], x1) - max(b[0], x0))
            ih = max(0, min(b[3], y1) - max(b[1], y0))
            iou = iw * ih / ((b[2] - b[0]) * (b[3] - b[1]) + (x1 - x0) * (y1 - y0) - iw * ih)
            if iou > best_iou:
                best, best_iou = r, iou
        if best is None:  # the calibrated box: side S / 0.977, centre moved up by 0.084 side
            side = max(x1 - x0, y1 - y0) / 0.977
            cx, cy = (x0 + x1) / 2 - 0.005 * side, (y0 + y1) / 2 - 0.084 * side
            best = dlib.rectangle(round(cx - side / 2), round(cy - side / 2),
                                  round(cx + side / 2) - 1, round(cy + side / 2) - 1)
            sources.append("calibrated")
        else:
            sources.append("hog")
        shape = predictor(image, best)
        pred = np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()])
        io = np.hypot(*(gt[36] - gt[45]))
        nmes.append(np.mean(np.hypot(*(pred - gt).T)) / io)
    return np.array(nmes), sources


@pytest.mark.shared_data
def test_peer_row_equals_direct_computation(shared_data, tmp_path):
    model_path = _require_dlib_peer()
    images = _afw_faces(shared_data)
    samples = [Sample(str(p), landmarks=read_pts(p.with_suffix(".pts"), 68), subsets=("afw",)) for p in images]
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    result = evaluate(ckpt, "pts", shared_data / "300w" / "afw", None, device="cpu", progress=False,
                      samples=samples, peer="dlib", json_path=tmp_path / "m.json")
    entry = result["peers"]["dlib"]
    direct, sources = _direct_nme_io(images, model_path)
    (name, ours), = result["subsets"].items()
    assert list(entry["subsets"]) == [name] and entry["subsets"][name]["n"] == ours["n"] == 3
    np.testing.assert_allclose(entry["subsets"][name]["per_face_nme"]["io"], direct, rtol=1e-5)
    assert entry["subsets"][name]["nme"]["io"] == pytest.approx(direct.mean(), rel=1e-5)
    assert entry["subsets"][name]["fr"]["0.1"] == pytest.approx(np.mean(direct > 0.1))
    assert entry["box_sources"] == {"hog": sources.count("hog"), "calibrated": sources.count("calibrated"), "given": 0}
    assert direct.mean() < 0.1  # dlib is a working landmarker on these faces
    text = summary_text(result)
    assert LABEL in text and text.count(f"[{LABEL}]") == 1 and "NME_io" in text.splitlines()[-1]
    assert json.loads((tmp_path / "m.json").read_text())["peers"]["dlib"]["label"] == LABEL


@pytest.mark.shared_data
def test_peer_from_the_command_line(shared_data, tmp_path, capsys):
    _require_dlib_peer()
    root = tmp_path / "faces"  # a scratch copy of two faces (outside the repository)
    root.mkdir()
    for image in _afw_faces(shared_data, 2):
        shutil.copy(image, root / image.name)
        shutil.copy(image.with_suffix(".pts"), root / image.with_suffix(".pts").name)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(root), "--device", "cpu",
                 "--quiet", "--peer", "dlib"])
    out = capsys.readouterr().out
    assert code == 0 and f"# {LABEL}" in out and "face box from dlib's HOG detector for" in out
