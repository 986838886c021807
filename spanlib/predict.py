"""Landmarks for any image or video: load a checkpoint, find faces, crop, predict, map back.

``load_model(path)`` returns the network in eval mode with ``.params``, ``.scheme``, ``.variant``.
``predict_crops`` is the one inference step shared with ``spanlib.evaluate``: forward, decode with
the windowed BALI soft-argmax (eq. 5, window ``2 r + 1`` with r = ``evaluate.decode_radius``) and
a confidence per landmark.

Confidence: for each landmark, the softmax probability mass of the last-stage heatmap inside the
(2r + 1)^2 decoding window around its argmax, in [0, 1]; a face's confidence is the mean over its
landmarks. Unlike the peak probability it does not shrink with the map size, and it is low when the
heatmap is spread out or multi-modal (an occluded or absent point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError, ParamError

CHECKPOINT_FORMAT = "spanlib-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "variant", "scheme", "params", "model_state")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """"auto"/None -> cuda when available, else cpu; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamError("--device cuda: CUDA is not available on this machine")
    return device


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint dict after checking its format, version and keys (DataError otherwise).

    Checkpoints are pickles (``torch.save``): load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise DataError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a spanlib checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise DataError(f"{path}: checkpoint lacks keys {missing} (expected {list(REQUIRED_KEYS)})")
    if ckpt["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise DataError(
            f"{path}: checkpoint format_version {ckpt['format_version']!r} was written by spanlib "
            f"{ckpt.get('code_version', '?')}; this spanlib reads format_version {CHECKPOINT_FORMAT_VERSION}"
        )
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A ready model (eval mode, on ``device``) with ``.params``, ``.scheme``, ``.variant``,
    ``.checkpoint_path`` and ``.checkpoint_info`` (code_version, iteration)."""
    from .model import build_model
    from .schemes import get_scheme

    device = resolve_device(device)
    ckpt = read_checkpoint(path, device)
    params, scheme = ckpt["params"], get_scheme(ckpt["scheme"])
    for key in ("model", "crop"):
        if not isinstance(params.get(key), dict):
            raise DataError(f"{path}: checkpoint params lack the {key!r} group")
    model_params = {**params["model"], "variant": ckpt["variant"]}
    model = build_model(model_params, scheme.num_points, scheme.num_boundaries, int(params["crop"]["input_size"]))
    result = model.load_state_dict(ckpt["model_state"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DataError(
            f"{path}: model_state does not fit variant {ckpt['variant']!r} with params.model "
            f"{params['model']}: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    model.to(device).eval()
    model.params, model.scheme, model.variant = params, scheme, ckpt["variant"]
    model.checkpoint_path = str(path)
    model.checkpoint_info = {"code_version": ckpt.get("code_version"), "iteration": ckpt.get("iteration")}
    return model


def decode_radius(params: dict, default: int = 3) -> int:
    return int(params.get("evaluate", {}).get("decode_radius", default))


@torch.no_grad()
def predict_crops(model: torch.nn.Module, images: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(B, 3, S, S) crops in [0, 1] -> (points (B, K, 2) crop px, confidence (B, K), outputs)."""
    from .decode import decode_landmarks

    device = next(model.parameters()).device
    outputs = model(images.to(device, non_blocking=True))
    points = decode_landmarks(outputs, radius)
    return points, window_mass(outputs["heatmaps"][-1], radius), outputs


def window_mass(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K): softmax probability inside the (2r+1)^2 window centred on each map's argmax."""
    b, k, h, w = logits.shape
    prob = torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).view(b * k, 1, h, w)
    # box sum of every window, read at the argmax (zero padding = clipping at the borders)
    box = F.avg_pool2d(prob, 2 * radius + 1, stride=1, padding=radius, count_include_pad=True)
    box = box * (2 * radius + 1) ** 2
    arg = prob.view(b * k, -1).argmax(dim=-1)
    return box.view(b * k, -1).gather(1, arg[:, None]).view(b, k)


# ---------------------------------------------------------------- face detection
class FaceDetector:
    """Face boxes (N, 4) (x0, y0, x1, y1), largest first. Back-ends, in order of preference:

    - ``haar``: OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``), present in
      OpenCV 4.x (pinned for this reason: OpenCV 5 removed ``CascadeClassifier`` and the XML files);
    - ``yunet``: ``cv2.FaceDetectorYN`` with a YuNet ONNX file given by the user (OpenCV ships the
      class but not the weights);
    - ``none``: no detector; ``predict_image`` then uses the whole image as the face box and
      refines it once with the box of the predicted landmarks.
    The Haar box is tight around eyes, nose and mouth; it is enlarged by 10% per side (centre kept)
    so that it roughly matches a landmark box, which the crop protocol (``crop.scale``) expects.
    """

    def __init__(self, yunet_model: str | Path | None = None, min_size_fraction: float = 0.1):
        self.min_size_fraction = min_size_fraction
        self.kind, self._impl = "none", None
        if yunet_model is not None:
            if not Path(yunet_model).is_file():
                raise DataError(f"{yunet_model}: YuNet face detector model not found")
            self.kind = "yunet"
            self._impl = cv2.FaceDetectorYN.create(str(yunet_model), "", (320, 320), 0.6, 0.3, 50)
            return
        xml = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".") / "haarcascade_frontalface_default.xml"
        if hasattr(cv2, "CascadeClassifier") and xml.is_file():
            impl = cv2.CascadeClassifier(str(xml))
            if not impl.empty():
                self.kind, self._impl = "haar", impl

    @property
    def available(self) -> bool:
        return self._impl is not None

    def describe(self) -> str:
        if self.available:
            return {"haar": "OpenCV Haar cascade", "yunet": "OpenCV YuNet"}[self.kind]
        return (f"no face detector in OpenCV {cv2.__version__} (its Haar cascades were removed in "
                f"OpenCV 5): whole image used as the face box, refined once; give --box or --detector-model")

    def detect(self, image: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            raise DataError(self.describe())
        if self.kind == "yunet":
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
            grow = 0.1
            boxes = np.stack([x - grow * bw, y - grow * bh, x + (1 + grow) * bw, y + (1 + grow) * bh], axis=1)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[np.argsort(-area)].astype(np.float32)


def detect_faces(image: np.ndarray, detector: FaceDetector | None = None) -> np.ndarray:
    """(N, 4) face boxes with ``detector`` (default: the best available back-end)."""
    return (detector or FaceDetector()).detect(image)


# ---------------------------------------------------------------- prediction on files
@dataclass
class FaceResult:
    box: list[float]
    landmarks: list[list[float]]  # (K, 2) image pixels
    confidence: float
    landmark_confidence: list[float]
    box_source: str  # "given" | "haar"


@dataclass
class FrameResult:
    path: str
    frame: int | None
    faces: list[FaceResult] = field(default_factory=list)
    message: str = ""
    error: str = ""

    def to_json(self) -> dict:
        return {"path": self.path, "frame": self.frame, "message": self.message, "error": self.error,
                "faces": [vars(f) for f in self.faces]}


def predict_image(model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray | None = None,
                  detector: FaceDetector | None = None, radius: int | None = None) -> tuple[list[FaceResult], str]:
    """Faces in one RGB image: (results, message). ``boxes`` (N, 4) skips detection; without boxes
    and without an available detector the whole image is the box, refined once (see FaceDetector)."""
    from .data.crop import box_from_landmarks

    detector = detector or FaceDetector()
    if boxes is not None:
        source = "given"
    elif detector.available:
        boxes, source = detector.detect(image), detector.kind
    else:
        h, w = image.shape[:2]
        boxes, source = np.array([[0, 0, w, h]], np.float32), "image"
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return [], f"no face found ({detector.describe()})"
    faces = _predict_boxes(model, image, boxes, source, radius)
    if source == "image":
        refined = np.stack([box_from_landmarks(np.asarray(f.landmarks)) for f in faces])
        faces = _predict_boxes(model, image, refined, "image+refined", radius)
        return faces, f"{len(faces)} face(s); {detector.describe()}"
    return faces, f"{len(faces)} face(s)"


def _predict_boxes(model, image, boxes, source, radius) -> list[FaceResult]:
    from .data.crop import crop_face
    from .data.dataset import to_tensor_image

    size, scale = int(model.params["crop"]["input_size"]), float(model.params["crop"]["scale"])
    radius = decode_radius(model.params) if radius is None else radius
    crops, transforms = [], []
    for box in boxes:
        crop, transform = crop_face(image, box, size, scale)
        crops.append(to_tensor_image(crop))
        transforms.append(transform)
    points, conf, _ = predict_crops(model, torch.stack(crops), radius)
    points, conf = points.cpu().numpy(), conf.cpu().numpy()
    faces = []
    for box, transform, pts, c in zip(boxes, transforms, points, conf):
        image_pts = transform.to_image(pts.astype(np.float64))
        faces.append(FaceResult(box=[float(v) for v in box], landmarks=image_pts.round(3).tolist(),
                                confidence=float(c.mean()), landmark_confidence=c.round(4).tolist(),
                                box_source=source))
    return faces


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: not a readable image (OpenCV could not decode it)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def iter_frames(path: Path, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[int | None, np.ndarray]]:
    """(frame index or None, RGB image) for an image file or each ``every``-th frame of a video."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
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
                  progress: bool = True, detector: FaceDetector | None = None) -> list[FrameResult]:
    """Predict on images and videos. A file that cannot be read, or a frame with no face, gives a
    FrameResult with ``error`` or ``message`` set and the batch goes on."""
    from tqdm import tqdm

    detector = detector or FaceDetector()
    boxes = None if box is None else np.asarray([box], dtype=np.float32)
    results: list[FrameResult] = []
    for path in tqdm([Path(p) for p in paths], desc="predict", unit="file", disable=not progress):
        try:
            for frame, image in iter_frames(path, every, max_frames):
                faces, message = predict_image(model, image, boxes, detector)
                results.append(FrameResult(str(path), frame, faces, message))
                if overlay_dir is not None:
                    _write_overlay(image, faces, model.scheme, Path(overlay_dir), path, frame)
        except DataError as exc:
            results.append(FrameResult(str(path), None, [], "", str(exc)))
    return results


def _write_overlay(image: np.ndarray, faces: list[FaceResult], scheme, out_dir: Path, path: Path,
                   frame: int | None) -> Path:
    from .figures import draw_landmarks
    from .io import atomic_path

    canvas = image.copy()
    for face in faces:
        canvas = draw_landmarks(canvas, np.asarray(face.landmarks), scheme, box=face.box,
                                label=f"{face.confidence:.2f}")
    name = path.stem + ("" if frame is None else f"_f{frame:06d}") + ".png"
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
