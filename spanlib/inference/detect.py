"""Face detection for ``spanlib predict``: face boxes turned into the box the crop protocol expects.

Back-ends, chosen by ``FaceDetector(backend="auto")`` in this order:

- ``dlib``: dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``), used when
  ``dlib`` is importable (``dlib-bin``, a dependency of spanlib since issue 23: ``make`` installs it);
  the image is upsampled ``upsample`` = 1 time, so faces down to about 40 px are found;
- ``haar``: OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``), the fallback,
  present in OpenCV 4.x (pinned for this reason: OpenCV 5 removed ``CascadeClassifier`` and the
  XML files);
- ``yunet``: ``cv2.FaceDetectorYN`` with a YuNet ONNX file given by the user (OpenCV ships the
  class but not the weights); its boxes are used as they come (no calibration measured);
- ``none``: no detector; ``predict_image`` then uses the whole image as the face box and refines
  it once with the box of the predicted landmarks.

**Box calibration.** Training crops a square of side ``crop.scale * max(w, h)`` around the centre
of the *landmarks'* box (``spanlib/data/crop.py``). A detector box is not a landmark box, so each
detector's box goes through a fixed transform (``BoxCalibration``) to an estimate of the landmark
box: centre moved by (``shift_x`` w, ``shift_y`` h), side ``scale * max(w, h)``, square.
Measured on the real 300-W training faces in ``../shared/data/300w`` (AFW + HELEN trainset):
fitted on the 1,086 faces outside the held-out split (``held_out_split(.., 0.1, seed 0)``), each
image resized by a random factor in [0.6, 1.5] (seeded) so that the faces, all about 160 px in
these files, fall across the detectors' scale pyramids; the medians over faces whose detection
overlaps the landmark box (IoU > 0.3) of (landmark box centre - box centre) / box side and of
landmark box max side / box side:

================  =========  =========  ========  =====================================================
detector          shift_x    shift_y    scale     faces found; held-out check (121 faces)
================  =========  =========  ========  =====================================================
dlib HOG (up 1)   +0.005     +0.084     0.977     1,037 / 1,086; centre error 0.079, side error 0.069
OpenCV Haar       +0.005     +0.144     0.864     1,015 / 1,086; centre error 0.075, side error 0.056
================  =========  =========  ========  =====================================================

(errors: medians, as fractions of the landmark box side, after calibration.) Both detectors put
the landmark box's centre lower than their box's centre (the chin), and the Haar box is larger
than the landmark box: the earlier "grow the Haar box by 10% per side" made crops about 1.39x too
large on these faces (median side error 0.39), now 0.06. A 500-iteration scpan on the 107 held-out
faces both detectors find: NME_io 10.67 % cropped from the landmarks' box, 11.62 % from calibrated
dlib boxes (13.65 % raw), 11.95 % from calibrated Haar boxes (18.23 % with the old +10 % per side).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from spanlib.data.crop import box_from_landmarks
from spanlib.utils.errors import DataError, ParamError
from spanlib.utils.files import file_problem

BACKENDS = ("auto", "dlib", "haar", "yunet")
DLIB_PIP = "pip install dlib-bin==20.0.1.post1"


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box -> estimated landmark box (and back), see the module docstring."""

    shift_x: float  # (landmark centre x - box centre x) / box width
    shift_y: float  # (landmark centre y - box centre y) / box height
    scale: float  # landmark box max side / box max side

    def to_landmark_box(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) detector boxes -> (N, 4) square boxes with the landmark box's centre and max side."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        cx = (b[:, 0] + b[:, 2]) / 2 + self.shift_x * w
        cy = (b[:, 1] + b[:, 3]) / 2 + self.shift_y * h
        half = self.scale * np.maximum(w, h) / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).astype(np.float32)

    def from_landmark_box(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse: (N, 4) landmark boxes -> (N, 4) square boxes where the detector would put
        its box (used to give dlib's shape predictor a HOG-like box when HOG finds no face)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / self.scale
        cx = (b[:, 0] + b[:, 2]) / 2 - self.shift_x * side
        cy = (b[:, 1] + b[:, 3]) / 2 - self.shift_y * side
        return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1).astype(np.float32)


IDENTITY = BoxCalibration(0.0, 0.0, 1.0)
# measured on ../shared/data/300w, see the module docstring and docs/evaluation.md
DLIB_HOG_CALIBRATION = BoxCalibration(shift_x=0.005, shift_y=0.084, scale=0.977)
HAAR_CALIBRATION = BoxCalibration(shift_x=0.005, shift_y=0.144, scale=0.864)
CALIBRATIONS = {"dlib": DLIB_HOG_CALIBRATION, "haar": HAAR_CALIBRATION, "yunet": IDENTITY, "none": IDENTITY}


def import_dlib():
    """The ``dlib`` module, or None when it is not installed (or fails to import)."""
    try:
        import dlib  # lazy: dlib is optional (None without it)
    except ImportError:
        return None
    return dlib


def dlib_rect_to_box(rect) -> np.ndarray:
    """A dlib rectangle (inclusive pixel indices) -> (x0, y0, x1, y1) in corner-origin pixels."""
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32)


def box_to_dlib_rect(dlib, box) -> object:
    """(x0, y0, x1, y1) corner-origin -> a dlib rectangle of inclusive pixel indices."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))


class FaceDetector:
    """Face boxes (N, 4) (x0, y0, x1, y1), largest first, calibrated to landmark boxes (``detect``)
    or as the detector gives them (``detect_raw``). See the module docstring for the back-ends."""

    def __init__(self, yunet_model: str | Path | None = None, min_size_fraction: float = 0.1,
                 backend: str = "auto", upsample: int = 1):
        if backend not in BACKENDS:
            raise ParamError(f"face detector: expected one of {BACKENDS}, got {backend!r}")
        self.min_size_fraction, self.upsample = min_size_fraction, int(upsample)
        self.kind, self._impl, self.version = "none", None, ""
        if yunet_model is not None or backend == "yunet":
            problem = "no file given" if yunet_model is None else file_problem(yunet_model)
            if problem:  # also a FIFO, which OpenCV would block on
                raise DataError(f"{yunet_model}: YuNet face detector model: {problem}")
            try:
                self._impl = cv2.FaceDetectorYN.create(str(yunet_model), "", (320, 320), 0.6, 0.3, 50)
            except cv2.error as exc:
                text = " ".join(str(exc).split())
                found = re.search(r"error: \([^)]*\) (.+?)(?: in function|$)", text)
                reason = (found.group(1) if found else text)[:160]
                raise DataError(f"{yunet_model}: not a YuNet face detector model OpenCV can read (expected the "
                                f"ONNX weights, face_detection_yunet_*.onnx; OpenCV: {reason})") from None
            self.kind = "yunet"
            return
        if backend in ("auto", "dlib"):
            dlib = import_dlib()
            if dlib is not None:
                self.kind, self._impl = "dlib", dlib.get_frontal_face_detector()
                self.version = getattr(dlib, "__version__", "")
                return
            if backend == "dlib":
                raise DataError(f"face detector 'dlib': dlib is not installed ({DLIB_PIP})")
        xml = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".") / "haarcascade_frontalface_default.xml"
        if hasattr(cv2, "CascadeClassifier") and xml.is_file():
            impl = cv2.CascadeClassifier(str(xml))
            if not impl.empty():
                self.kind, self._impl, self.version = "haar", impl, cv2.__version__

    @property
    def available(self) -> bool:
        return self._impl is not None

    @property
    def calibration(self) -> BoxCalibration:
        return CALIBRATIONS[self.kind] if self.kind in CALIBRATIONS else IDENTITY

    def describe(self) -> str:
        if self.kind == "dlib":
            return f"dlib {self.version} HOG frontal face detector (upsample {self.upsample})"
        if self.kind == "haar":
            return f"OpenCV {self.version} Haar cascade" + ("" if import_dlib() else f" (dlib not installed: {DLIB_PIP})")
        if self.kind == "yunet":
            return "OpenCV YuNet"
        if self.available:
            return self.kind
        return (f"no face detector (dlib not installed, and OpenCV {cv2.__version__} has no Haar cascade): "
                f"whole image used as the face box, refined once; give --box or --detector-model, or {DLIB_PIP}")

    def detect_raw(self, image: np.ndarray) -> np.ndarray:
        """(N, 4) boxes as the detector gives them (corner-origin pixels), largest first."""
        if not self.available:
            raise DataError(self.describe())
        if self.kind == "dlib":
            rects = self._impl(np.ascontiguousarray(image), self.upsample)
            boxes = np.array([dlib_rect_to_box(r) for r in rects], np.float32).reshape(-1, 4)
        elif self.kind == "yunet":
            h, w = image.shape[:2]
            self._impl.setInputSize((w, h))
            _, faces = self._impl.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if faces is None or len(faces) == 0:
                return np.zeros((0, 4), np.float32)
            x, y, bw, bh = np.asarray(faces, np.float32)[:, :4].T
            boxes = np.stack([x, y, x + bw, y + bh], axis=1)
        else:
            gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            side = max(24, int(min(gray.shape) * self.min_size_fraction))
            found = self._impl.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
            if len(found) == 0:
                return np.zeros((0, 4), np.float32)
            x, y, bw, bh = np.asarray(found, dtype=np.float32).T
            boxes = np.stack([x, y, x + bw, y + bh], axis=1)
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[np.argsort(-area, kind="stable")].astype(np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(N, 4) estimated landmark boxes (the detector's boxes through ``self.calibration``)."""
        return self.calibration.to_landmark_box(self.detect_raw(image))


def detect_faces(image: np.ndarray, detector: FaceDetector | None = None) -> np.ndarray:
    """(N, 4) calibrated face boxes with ``detector`` (default: the best available back-end)."""
    return (detector or FaceDetector()).detect(image)


def match_detection(boxes: np.ndarray, target: np.ndarray, min_iou: float = 0.3) -> int | None:
    """Index of the box in ``boxes`` (N, 4) that overlaps ``target`` most, when its IoU exceeds
    ``min_iou``; else None. How a detection is matched to a labelled face (evaluation, peers,
    benchmarks); a user's image is instead cropped on every face found."""
    if len(boxes) == 0:
        return None
    ious = [box_iou(b, target) for b in np.asarray(boxes).reshape(-1, 4)]
    best = int(np.argmax(ious))
    return best if ious[best] > min_iou else None


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_residuals(detector: "FaceDetector", samples, resize_range: tuple[float, float] = (0.6, 1.5),
                  seed: int = 0, min_iou: float = 0.3, progress: bool = True) -> dict:
    """How the calibrated detector's box differs from the landmarks' box, face by face: what
    ``crop.jitter_shift`` / ``crop.jitter_scale`` draw from in training (docs/model.md).

    Each image is resized by a seeded factor in ``resize_range`` (so that the faces fall across the
    detector's scale pyramid, as in the calibration above); the detection overlapping the landmarks'
    box (IoU > ``min_iou``) is calibrated to a square landmark box. Returns {"dx", "dy"}: (its centre
    - the landmark box centre) / the landmark box's max side, {"log_scale"}: log(its side / that
    side), each (N,) over the faces found, and "found" / "faces" counts."""
    rng = np.random.default_rng([int(seed), 4242])
    dx, dy, log_scale = [], [], []
    for sample in tqdm(samples, desc=f"{detector.kind} boxes", unit="face", disable=not progress):
        factor = float(rng.uniform(*resize_range))
        image = cv2.resize(sample.image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        gt = box_from_landmarks(sample.landmarks * factor)
        raw = detector.detect_raw(image)
        best = match_detection(raw, gt, min_iou)
        if best is None:
            continue
        box = detector.calibration.to_landmark_box(raw[best:best + 1])[0].astype(np.float64)
        side = float(max(gt[2] - gt[0], gt[3] - gt[1]))
        dx.append(((box[0] + box[2]) / 2 - (gt[0] + gt[2]) / 2) / side)
        dy.append(((box[1] + box[3]) / 2 - (gt[1] + gt[3]) / 2) / side)
        log_scale.append(np.log((box[2] - box[0]) / side))
    return {"dx": np.asarray(dx), "dy": np.asarray(dy), "log_scale": np.asarray(log_scale),
            "found": len(dx), "faces": len(samples)}
