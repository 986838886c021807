"""One face: image path (or video frame), landmarks, box, subset tags, attributes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from spanlib.utils.errors import DataError
from spanlib.utils.files import declared_size, file_problem, read_image as read_checked


@dataclass(init=False, eq=False)
class Sample:
    """A face as the readers return it.

    ``landmarks`` (K, 2) float32 pixels in the corner-origin convention (or None for unlabeled
    faces), ``box`` (x0, y0, x1, y1) float32 or None, ``subsets`` the tags this face is counted
    under (e.g. ``("common", "helen/testset")``), ``attributes`` extra per-face values (WFLW flags,
    AFLW box_size ...), ``occluded`` (K,) bool or None, ``frame`` the video frame index or None.

    ``image`` is RGB uint8 (H, W, 3), read from ``path`` (or frame ``frame`` of the video at
    ``path``) on each access; an image given to the constructor is kept instead (COFW ships its
    images inside a .mat file).
    """

    path: str
    landmarks: np.ndarray | None = None
    box: np.ndarray | None = None
    subsets: tuple[str, ...] = ()
    attributes: dict = field(default_factory=dict)
    occluded: np.ndarray | None = None
    frame: int | None = None

    def __init__(
        self,
        path: str,
        landmarks: np.ndarray | None = None,
        box: np.ndarray | None = None,
        subsets: tuple[str, ...] = (),
        attributes: dict | None = None,
        occluded: np.ndarray | None = None,
        frame: int | None = None,
        image: np.ndarray | None = None,
    ) -> None:
        self.path = str(path)
        self.landmarks = None if landmarks is None else np.asarray(landmarks, dtype=np.float32)
        self.box = None if box is None else np.asarray(box, dtype=np.float32)
        self.subsets = tuple(subsets)
        self.attributes = dict(attributes or {})
        self.occluded = None if occluded is None else np.asarray(occluded, dtype=bool)
        self.frame = None if frame is None else int(frame)
        self._image = None if image is None else as_rgb_uint8(image, self.path)

    @property
    def image(self) -> np.ndarray:
        if self._image is not None:
            return self._image
        if self.frame is not None:
            return read_video_frame(self.path, self.frame)
        return read_image(self.path)

    @image.setter
    def image(self, value: np.ndarray | None) -> None:
        self._image = None if value is None else as_rgb_uint8(value, self.path)

    @property
    def labeled(self) -> bool:
        return self.landmarks is not None

    def image_size(self) -> tuple[int, int]:
        """(width, height) without decoding the whole image where the format allows it."""
        if self._image is not None:
            return int(self._image.shape[1]), int(self._image.shape[0])
        if self.frame is not None:
            return video_size(self.path)
        return image_file_size(self.path)


def as_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DataError(f"{name}: expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{name}: expected an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def read_image(path: str) -> np.ndarray:
    """RGB uint8 (H, W, 3); grey images are repeated to three channels. A missing, truncated or
    undecodable file is a DataError naming it (``spanlib.utils.files.read_image``)."""
    return read_checked(path)


def image_file_size(path: str) -> tuple[int, int]:
    """(width, height) from the file header (Pillow reads only the header; an image over Pillow's
    own bomb limit still gets its size: ``spanlib.utils.files.declared_size``)."""
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected an image)")
    size = declared_size(path)
    if size is not None:
        return size
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected an image)") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _open_video(path: str):
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        reason = "file not found" if not os.path.exists(path) else "not a video OpenCV can open"
        raise DataError(f"{path}: {reason}")
    return cap


def read_video_frame(path: str, frame: int) -> np.ndarray:
    """Frame ``frame`` (0-based) of a video as RGB uint8."""
    cap = _open_video(path)
    try:
        if frame > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok or bgr is None:
        raise DataError(f"{path}: cannot read frame {frame} (expected a frame index below the video length)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_size(path: str) -> tuple[int, int]:
    cap = _open_video(path)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()


def check_landmarks(points, num_points: int | None, name: str) -> np.ndarray:
    """(K, 2) float32, finite, with the expected number of points; else DataError naming ``name``."""
    try:
        points = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: landmarks are not numbers ({exc})") from None
    if points.ndim != 2 or points.shape[1] != 2:
        raise DataError(f"{name}: expected landmarks of shape (K, 2), got {points.shape}")
    if num_points is not None and points.shape[0] != num_points:
        raise DataError(f"{name}: expected {num_points} points, found {points.shape[0]}")
    if not np.isfinite(points).all():
        bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise DataError(f"{name}: landmark {bad} is not finite ({points[bad].tolist()})")
    return points
