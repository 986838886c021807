"""Landmarks for any image or video: load a checkpoint, find faces, crop, predict, map back.

``load_model(path)`` (from ``spanlib.inference.checkpoint``) returns the network in eval mode with
``.params``, ``.scheme``, ``.variant``.
The inference step itself (forward, decoding, confidence) is ``spanlib.inference.step.predict_crops``,
shared with training's validation, evaluate, report, profile and the ONNX check; this module keeps
face detection, image and video input, and overlays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

# The checkpoint format, read_checkpoint and load_model live in spanlib.inference.checkpoint; re-exported here
# for code written against spanlib.inference.predict.
from spanlib.config.schema import default
from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.dataset import to_tensor_image
from spanlib.data.draw import draw_landmarks
from spanlib.inference.backends import auto_runner, make_runner, placing_runners, runner_for
from spanlib.inference.checkpoint import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    REQUIRED_KEYS,
    load_model,
    read_checkpoint,
)
from spanlib.inference.step import (  # noqa: F401
    average_with_mirrored,
    crop_mirror_offsets,
    crop_points_to_image,
    decode_radius,
    pass_flips,
    pass_sizes,
    predict_crops,
    window_mass,
)
from spanlib.inference.options import VIDEO_SUFFIXES  # noqa: F401  (its home: light for `predict --help`)
from spanlib.utils.devices import resolve_device  # noqa: F401  (also spanlib.inference.predict's API)
from spanlib.utils.errors import DataError
from spanlib.utils.files import atomic_path, file_problem, read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


# ---------------------------------------------------------------- face detection
# in spanlib/inference/detect.py (dlib HOG, Haar fallback, box calibration); re-exported here
from spanlib.inference.detect import FaceDetector, detect_faces  # noqa: E402,F401


# ---------------------------------------------------------------- prediction on files
@dataclass
class FaceResult:
    box: list[float]
    landmarks: list[list[float]]  # (K, 2) image pixels
    confidence: float
    landmark_confidence: list[float]
    box_source: str  # "given" | "dlib" | "haar" | "yunet" | "image" | "image+refined"
    detector_box: list[float] | None = None  # the detector's own box; ``box`` is it calibrated (detect.py)


@dataclass
class FrameResult:
    path: str
    frame: int | None
    faces: list[FaceResult] = field(default_factory=list)
    message: str = ""
    error: str = ""
    detector: str = ""  # what found the faces: FaceDetector.describe() or "given box"

    def to_json(self) -> dict:
        return {"path": self.path, "frame": self.frame, "message": self.message, "error": self.error,
                "detector": self.detector, "faces": [vars(f) for f in self.faces]}


def refine_passes(params: dict) -> int:
    """``evaluate.refine`` of a checkpoint's params (the schema's default when absent)."""
    return int((params.get("evaluate") or {}).get("refine", default("evaluate.refine")))


def flip_test(params: dict) -> bool:
    """``evaluate.flip_test`` of a checkpoint's params (the schema's default when absent)."""
    return bool((params.get("evaluate") or {}).get("flip_test", default("evaluate.flip_test")))


def flip_passes(params: dict) -> str:
    """``evaluate.flip_passes`` of a checkpoint's params (the schema's default when absent)."""
    return str((params.get("evaluate") or {}).get("flip_passes", default("evaluate.flip_passes")))


def placing_size(params: dict) -> int | None:
    """``evaluate.placing_size`` of a checkpoint's params (the schema's default, None, when absent)."""
    value = (params.get("evaluate") or {}).get("placing_size", default("evaluate.placing_size"))
    return None if value is None else int(value)


def predict_image(model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray | None = None,
                  detector: FaceDetector | None = None, radius: int | None = None,
                  runner=None, refine: int | None = None, flip: bool | None = None,
                  flip_which: str | None = None, placing: int | None = None) -> tuple[list[FaceResult], str]:
    """Faces in one RGB image: (results, message). ``boxes`` (N, 4) skips detection; without boxes
    and without an available detector the whole image is the box, refined once (see FaceDetector).
    A detector's boxes go through its calibration to landmark boxes (``spanlib.inference.detect``) so that the
    crop matches the training crop; the message names the detector. ``runner``: a
    ``spanlib.inference.backends.Runner`` (a faster back-end, same landmarks within its tolerance), or
    several (one per crop size, ``backends.placing_runners``); a crop size that none was built for,
    or None, runs ``predict_crops``. ``refine`` (default: the checkpoint's ``evaluate.refine``): passes that each
    crop again on the box of the previous pass's points (``box_source`` gains "+refined"). ``flip``
    (default: the checkpoint's ``evaluate.flip_test``): passes also predict the mirrored crop and
    average the two, as ``spanlib evaluate`` does (``step.average_with_mirrored``): every pass, or
    only the last with ``flip_which`` "last" (default: the checkpoint's ``evaluate.flip_passes``).
    ``placing`` (default: the checkpoint's ``evaluate.placing_size``): the crop size of the passes
    before the last, which only place the next crop."""
    raw = None
    if boxes is not None:  # no detector is built: loading one costs more than a forward pass
        source, name = "given", "given box"
    elif (detector := detector or FaceDetector()).available:
        raw, source, name = detector.detect_raw(image), detector.kind, detector.describe()
        boxes = detector.calibration.to_landmark_box(raw)
    else:
        h, w = image.shape[:2]
        boxes, source, name = np.array([[0, 0, w, h]], np.float32), "image", detector.describe()
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return [], f"no face found; detector: {name}"
    flip = flip_test(model.params) if flip is None else bool(flip)
    passes = refine_passes(model.params) if refine is None else int(refine)
    if source == "image":  # the whole image is no face box: always refine at least once
        passes = max(1, passes)
    flips = pass_flips(flip, passes, flip_passes(model.params) if flip_which is None else flip_which)
    sizes = pass_sizes(model.params, passes, placing_size(model.params) if placing is None else placing)
    faces = _predict_boxes(model, image, boxes, source, radius, raw, runner, flips[0], sizes[0])
    for flip, size in zip(flips[1:], sizes[1:]):
        refined = np.stack([box_from_landmarks(np.asarray(f.landmarks)) for f in faces])
        faces = _predict_boxes(model, image, refined, source + "+refined", radius, raw, runner, flip, size)
    return faces, f"{len(faces)} face(s); detector: {name}"


def _predict_boxes(model, image, boxes, source, radius, raw_boxes=None, runners=None, flip=False,
                   size: int | None = None) -> list[FaceResult]:
    radius = decode_radius(model.params) if radius is None else radius
    crops, transforms = [], []
    for box in boxes:
        crop, transform = crop_for_model(image, box, model.params, size)
        crops.append(to_tensor_image(crop))
        transforms.append(transform)
    crops = torch.stack(crops)
    offset = crop_mirror_offsets(model.params, [t.matrix for t in transforms]) if flip else 0.0
    runner = runner_for(runners, crops.shape[-1], radius)
    if runner is not None and flip:
        # crops and mirrored crops in one call of the back-end (its graph's batch is symbolic)
        points, conf = runner(torch.cat([crops, torch.flip(crops, dims=[-1])]))
        n = len(crops)
        points, conf = average_with_mirrored(points[:n], conf[:n], points[n:], conf[n:],
                                             model.scheme.flip_perm, crops.shape[-1], offset)
    elif runner is not None:
        points, conf = runner(crops)
    else:  # no runner, or none built for this crop size and decoding window
        points, conf, _ = predict_crops(model, crops, radius, flip=flip, offset=offset)
    points, conf = points.cpu().numpy(), conf.cpu().numpy()
    faces = []
    raws = [None] * len(boxes) if raw_boxes is None else raw_boxes
    for box, raw, transform, pts, c in zip(boxes, raws, transforms, points, conf):
        image_pts = transform.to_image(pts.astype(np.float64))
        faces.append(FaceResult(box=[float(v) for v in box], landmarks=image_pts.round(3).tolist(),
                                confidence=float(c.mean()), landmark_confidence=c.round(4).tolist(),
                                box_source=source,
                                detector_box=None if raw is None else [float(v) for v in raw]))
    return faces


def _read_rgb(path: Path) -> np.ndarray:
    return read_image(path)  # a truncated JPEG is a DataError naming it, not a grey remainder


def iter_frames(path: Path, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[int | None, np.ndarray]]:
    """(frame index or None, RGB image) for an image file or each ``every``-th frame of a video."""
    problem = file_problem(path)  # also a FIFO or a device: opening those can block forever
    if problem:
        raise DataError(f"{path}: {problem}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise DataError(f"{path}: not a readable video (OpenCV VideoCapture could not open it)")
        try:
            index, emitted = 0, 0
            while max_frames is None or emitted < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    emitted += 1
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
            if index == 0:
                raise DataError(f"{path}: video has no readable frames")
        finally:
            capture.release()
    else:
        yield None, _read_rgb(path)


def predict_paths(model: torch.nn.Module, paths: Sequence[str | Path], box: Sequence[float] | None = None,
                  overlay_dir: str | Path | None = None, every: int = 1, max_frames: int | None = None,
                  progress: bool = True, detector: FaceDetector | None = None,
                  runner=None, refine: int | None = None, flip: bool | None = None,
                  flip_which: str | None = None, placing: int | None = None) -> list[FrameResult]:
    """Predict on images and videos. A file that cannot be read, or a frame with no face, gives a
    FrameResult with ``error`` or ``message`` set and the batch goes on. ``runner``: None (eager
    ``predict_crops``), a ``spanlib.inference.backends.Runner`` or a list of them (one per crop size), or a
    back-end name (``"auto"``: the fastest measured one that builds here, see ``spanlib.inference.backends``;
    built for the placing passes' size too when they run at another, ``evaluate.placing_size``)."""
    if isinstance(runner, str):
        built = auto_runner(model)[0] if runner == "auto" else make_runner(model, runner)
        runner = placing_runners(model, built, placing_size(model.params) if placing is None else placing)

    detector = detector or FaceDetector()
    boxes = None if box is None else np.asarray([box], dtype=np.float32)
    name = "given box" if boxes is not None else detector.describe()
    results: list[FrameResult] = []
    stems = overlay_stems(paths)
    for path in tqdm([Path(p) for p in paths], desc="predict", unit="file", disable=not progress):
        try:
            for frame, image in iter_frames(path, every, max_frames):
                faces, message = predict_image(model, image, boxes, detector, runner=runner, refine=refine,
                                               flip=flip, flip_which=flip_which, placing=placing)
                results.append(FrameResult(str(path), frame, faces, message, detector=name))
                if overlay_dir is not None:
                    _write_overlay(image, faces, model.scheme, Path(overlay_dir), path, frame, stems[path])
        except DataError as exc:
            results.append(FrameResult(str(path), None, [], "", str(exc)))
    return results


def overlay_stems(paths: Sequence[str | Path]) -> dict[Path, str]:
    """The overlay name (without ``.png``) of each input: its own stem, or, when two different
    inputs share a stem (``a/face.jpg``, ``b/face.jpg``), the stem plus ``_`` and the first 8 hex
    digits of the SHA-1 of the input's absolute path, so that no overlay replaces another."""
    paths = [Path(p) for p in paths]
    owners: dict[str, set[Path]] = {}
    for p in paths:
        owners.setdefault(p.stem, set()).add(p.resolve())
    stems = {}
    for p in paths:
        tag = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]
        stems[p] = p.stem if len(owners[p.stem]) == 1 else f"{p.stem}_{tag}"
    return stems


def _write_overlay(image: np.ndarray, faces: list[FaceResult], scheme, out_dir: Path, path: Path,
                   frame: int | None, stem: str | None = None) -> Path:
    canvas = image.copy()
    for face in faces:
        canvas = draw_landmarks(canvas, np.asarray(face.landmarks), scheme, box=face.box,
                                label=f"{face.confidence:.2f}")
    name = (path.stem if stem is None else stem) + ("" if frame is None else f"_f{frame:06d}") + ".png"
    target = out_dir / name
    with atomic_path(target) as tmp:
        if not cv2.imwrite(str(tmp) + ".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
            raise DataError(f"{target}: could not write the overlay image")
        Path(str(tmp) + ".png").replace(tmp)
    return target


def as_points_array(results: Iterable[FrameResult]) -> list[np.ndarray]:
    """Per frame, (N, K, 2) landmarks of its faces (N may be 0)."""
    return [np.asarray([f.landmarks for f in r.faces], dtype=np.float32).reshape(len(r.faces), -1, 2)
            for r in results]
