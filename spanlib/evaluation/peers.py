"""Peer landmark detectors evaluated on the same faces as our model (``spanlib evaluate --peer``).

``dlib``: dlib's 68-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014,
trained by dlib on iBUG 300-W), from ``dlib-bin`` (a dependency of spanlib) and the optional
``face_recognition_models`` (which ships ``shape_predictor_68_face_landmarks.dat``):
``pip install -e .[peers]``, which ``make`` installs. Its points are in the iBUG 68-point order, as ours.

The face box. Our evaluation crops 300-W faces around the ground-truth landmarks' box. dlib's
predictor was trained on boxes of dlib's HOG frontal face detector, and it is accurate only on such
boxes, so it gets the box that detector gives for the face when the detector finds one overlapping
the ground truth (IoU > ``min_iou`` = 0.3 with the landmarks' box), and otherwise the landmarks' box
turned into the HOG box it would have had by the inverse of the calibration measured on 300-W
(``spanlib.inference.detect.DLIB_HOG_CALIBRATION``). How many faces used which is reported.

Coordinates: dlib's rectangles and points are pixel indices (pixel centres at integers, and its
points are whole pixels); ours are corner-origin (pixel centres at i + 0.5), so 0.5 is added to
its points and boxes are converted by ``spanlib.inference.detect.box_to_dlib_rect``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from spanlib.data.crop import box_from_landmarks
from spanlib.evaluation.metrics import format_metrics, subset_metrics
from spanlib.inference.detect import (DLIB_HOG_CALIBRATION, box_to_dlib_rect, dlib_rect_to_box, import_dlib,
                                      match_detection)
from spanlib.utils.errors import DataError, ParamError

PEERS = ("dlib",)
PEER_LABELS = {"dlib": "peer: dlib 68-point shape predictor"}
PEERS_PIP = "pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0  (or: pip install -e '.[peers]')"
SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
TRAINED_ON = ("the iBUG 300-W training set (dlib's labels_ibug_300W_train.xml: AFW and the HELEN and LFPW "
              "trainsets among others): on 300-W's train split, held-out faces included, it has seen the faces "
              "it is scored on, so its numbers there are optimistic")


def shape_predictor_path() -> Path:
    """Where ``face_recognition_models`` keeps dlib's 68-point model. The package is located without
    importing it: its ``__init__`` imports ``pkg_resources``, which setuptools >= 81 no longer has."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"peer 'dlib': the package face_recognition_models (dlib's {SHAPE_PREDICTOR_FILE}) "
                        f"is not installed; install the peers with: {PEERS_PIP}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / SHAPE_PREDICTOR_FILE
    if not path.is_file():
        raise DataError(f"peer 'dlib': {path} not found; reinstall the peers with: {PEERS_PIP}")
    return path


class DlibPeer:
    """dlib's HOG face detector + 68-point shape predictor. ``predict(image, gt)`` -> ((68, 2)
    corner-origin points, the box given to the predictor, its source "hog" | "calibrated", seconds
    in the predictor, seconds in the detector)."""

    name, label, num_points = "dlib", PEER_LABELS["dlib"], 68

    def __init__(self, upsample: int = 1, min_iou: float = 0.3, model_path: str | Path | None = None):
        dlib = import_dlib()
        if dlib is None:
            raise DataError(f"peer 'dlib': the package dlib is not installed; install the peers with: {PEERS_PIP}")
        self.dlib = dlib
        self.model_path = Path(model_path) if model_path is not None else shape_predictor_path()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(self.model_path))
        self.upsample, self.min_iou = int(upsample), float(min_iou)
        self.version = getattr(dlib, "__version__", "?")

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(N, 4) HOG boxes, corner-origin."""
        rects = self.detector(image, self.upsample)
        return np.array([dlib_rect_to_box(r) for r in rects], np.float32).reshape(-1, 4)

    def face_box(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, str, float]:
        """(box for the predictor, "hog" | "calibrated", detector seconds) for a face with known landmarks."""
        gt_box = box_from_landmarks(landmarks)
        start = time.perf_counter()
        boxes = self.detect(image)
        seconds = time.perf_counter() - start
        best = match_detection(boxes, gt_box, self.min_iou)
        if best is not None:
            return boxes[best], "hog", seconds
        return DLIB_HOG_CALIBRATION.from_landmark_box(gt_box)[0], "calibrated", seconds

    def predict_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) points for one box (corner-origin pixels)."""
        shape = self.predictor(image, box_to_dlib_rect(self.dlib, box))
        return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], dtype=np.float32)

    def predict(self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, str, float, float]:
        """``box``: the detector box to use (the end-to-end protocol gives every method the same
        HOG box); None finds it (``face_box``)."""
        image = np.ascontiguousarray(image)
        if box is None:
            box, source, det_seconds = self.face_box(image, landmarks)
        else:
            box, source, det_seconds = np.asarray(box, np.float32), "given", float("nan")
        start = time.perf_counter()
        points = self.predict_box(image, box)
        return points, box, source, time.perf_counter() - start, det_seconds


def make_peer(name: str, **kwargs):
    if name not in PEERS:
        raise ParamError(f"--peer: unknown peer {name!r}; expected one of {list(PEERS)}")
    return DlibPeer(**kwargs)


def predict_peer(peer, samples: Sequence, progress: bool = True, boxes: np.ndarray | None = None) -> dict:
    """The peer on labeled ``samples``: {"pred" (N, K, 2), "gt", "box" (N, 4) the boxes it was
    given, "box_source" [N], "predictor_s" (N,), "detector_s" (N,)}. ``boxes`` (N, 4): the HOG
    boxes to use (source "given"); None: the peer finds its own (``DlibPeer.face_box``)."""
    out = {"pred": [], "gt": [], "box": [], "box_source": [], "predictor_s": [], "detector_s": []}
    for i, sample in enumerate(tqdm(samples, desc=f"peer {peer.name}", unit="face", disable=not progress)):
        if sample.landmarks is None:
            raise DataError(f"{sample.path}: the peer is evaluated on labeled faces only")
        if len(sample.landmarks) != peer.num_points:
            raise DataError(f"{sample.path}: {len(sample.landmarks)} points; peer {peer.name!r} predicts "
                            f"{peer.num_points} (iBUG 68)")
        points, box, source, pred_s, det_s = peer.predict(sample.image, sample.landmarks,
                                                          None if boxes is None else boxes[i])
        out["pred"].append(points)
        out["gt"].append(sample.landmarks.astype(np.float32))
        out["box"].append(np.asarray(box, np.float32))
        out["box_source"].append(source)
        out["predictor_s"].append(pred_s)
        out["detector_s"].append(det_s)
    return {"pred": np.stack(out["pred"]), "gt": np.stack(out["gt"]), "box": np.stack(out["box"]),
            "box_source": out["box_source"],
            "predictor_s": np.asarray(out["predictor_s"]), "detector_s": np.asarray(out["detector_s"])}


def evaluate_peer(name: str, samples: Sequence, groups: dict, scheme, thresholds, norm: str,
                  progress: bool = True, return_predictions: bool = False, boxes: np.ndarray | None = None) -> dict:
    """The peer's entry of the metrics JSON: {"label", "subsets" (as ours), "box_sources" counts,
    "timing_ms_per_face", "provenance"}; ``groups`` are the subset indices our rows use; ``boxes``
    the HOG boxes every face is given (the end-to-end protocol), None: its own (``face_box``)."""
    peer = make_peer(name)
    preds = predict_peer(peer, samples, progress, boxes)
    subsets = {sub: subset_metrics(preds["pred"][idx], preds["gt"][idx], scheme, thresholds=thresholds, norm=norm)
               for sub, idx in groups.items()}
    sources = preds["box_source"]
    result = {
        "label": peer.label,
        "subsets": subsets,
        "box_sources": {"hog": sources.count("hog"), "calibrated": sources.count("calibrated"),
                        "given": sources.count("given")},
        "timing_ms_per_face": {
            "predictor": float(1000 * np.median(preds["predictor_s"])),
            "hog_detector": (float(1000 * np.median(preds["detector_s"])) if boxes is None else None),
            "statistic": "median over faces, one thread, this process",
        },
        "provenance": {
            "package": f"dlib {peer.version}", "model": str(peer.model_path),
            "box": ("the HOG box our model's crop came from (end-to-end protocol: the same boxes for both)"
                    if boxes is not None else
                    f"dlib HOG detector box (upsample {peer.upsample}) when it overlaps the ground truth "
                    f"(IoU > {peer.min_iou}), else the landmarks' box through the inverse of "
                    f"{DLIB_HOG_CALIBRATION}"),
            "coordinates": "dlib pixel indices + 0.5 (corner-origin)",
            "trained_on": TRAINED_ON,
        },
    }
    if return_predictions:
        result["predictions"] = preds
    return result


def peer_summary_text(name: str, entry: dict) -> str:
    """The peer's rows, labelled, with the box sources and timing."""
    boxes, timing = entry["box_sources"], entry["timing_ms_per_face"]
    if boxes.get("given"):
        where = f"the same HOG boxes as ours for all {boxes['given']} faces; {timing['predictor']:.2f} ms/face predictor"
    else:
        where = (f"face box from dlib's HOG detector for {boxes['hog']}, calibrated from the landmarks for "
                 f"{boxes['calibrated']}; {timing['predictor']:.2f} ms/face predictor, "
                 f"{timing['hog_detector']:.1f} ms/face HOG detector")
    head = (f"# {entry['label']} ({entry['provenance']['package']}) on the same faces: {where} "
            f"(median, one thread)\n#   caveat: dlib's model was trained on {entry['provenance']['trained_on']}")
    rows = format_metrics(entry["subsets"]).splitlines()
    return head + "\n" + "\n".join(f"{line}  [{entry['label']}]" for line in rows)
