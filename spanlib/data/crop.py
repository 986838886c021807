"""Crop protocol (issue 2, section 5): a square crop around a face box, with its exact transform.

All points use the corner-origin convention: pixel (row i, col j) has its centre at
(j + 0.5, i + 0.5). OpenCV's ``warpAffine`` instead puts pixel centres at integers, so every matrix
handed to OpenCV is conjugated by a half-pixel shift (``to_opencv_matrix``).

OpenCV resamples with coordinates quantised to 1/32 pixel (``INTER_BITS = 5``), so the image content
of a crop sits within 1/64 px of where the matrix says; the point transform itself is exact
(float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spanlib.utils.errors import DataError, ParamError


@dataclass(frozen=True)
class CropTransform:
    """Affine map from image points to crop points (both corner-origin), crop of ``size`` x ``size``."""

    matrix: np.ndarray  # (2, 3) float64
    size: int

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.float64)
        if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
            raise ParamError(f"CropTransform.matrix: expected a finite (2, 3) array, got {matrix}")
        object.__setattr__(self, "matrix", matrix)

    @property
    def inverse_matrix(self) -> np.ndarray:
        """(2, 3) float64: crop points -> image points."""
        return invert_affine(self.matrix)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        return apply_affine(self.matrix, points)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        return apply_affine(self.inverse_matrix, points)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (the matrix is a similarity)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points (..., 2); keeps the points' float dtype."""
    points = np.asarray(points)
    dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
    matrix = np.asarray(matrix, dtype=np.float64)
    out = points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return out.astype(dtype, copy=False)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of ``outer(inner(p))``."""
    a = np.vstack([np.asarray(outer, dtype=np.float64), [0.0, 0.0, 1.0]])
    b = np.vstack([np.asarray(inner, dtype=np.float64), [0.0, 0.0, 1.0]])
    return (a @ b)[:2]


def to_opencv_matrix(matrix: np.ndarray) -> np.ndarray:
    """Corner-origin affine -> the matrix ``cv2.warpAffine`` expects (pixel centres at integers).

    With q = A p + t in corner coordinates and p = p_cv + 0.5: q_cv = A p_cv + (t + A 0.5 - 0.5).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    out = matrix.copy()
    out[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int],
               interpolation: int = cv2.INTER_LINEAR, border_value: float = 0.0) -> np.ndarray:
    """Resample ``image`` so that output point q = matrix @ [p, 1] shows image point p.

    ``size`` is the output side (square) or (width, height). Outside the image is ``border_value``.
    """
    width, height = (size, size) if np.isscalar(size) else size
    return cv2.warpAffine(image, to_opencv_matrix(matrix), (int(width), int(height)),
                          flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(border_value,) * 4)


def box_from_landmarks(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) float32 of the finite points; DataError when there are none."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.all(np.isfinite(points), axis=1)
    if not finite.any():
        raise DataError("box_from_landmarks: expected at least one finite landmark, got none")
    pts = points[finite]
    return np.array([*pts.min(axis=0), *pts.max(axis=0)], dtype=np.float32)


# crop.box (training) -> the preference of ``spanlib.data.dataset.face_box``. ``dataset`` is the
# rule evaluation uses (``evaluate.crop_box: detector``): the dataset's own face box when the face
# has one (WFLW, COFW, AFLW), else the landmarks' box, so train and test crops share centre and scale.
TRAIN_BOX_RULES = {"dataset": "detector", "landmarks": "landmarks"}


def train_box_preference(rule: str) -> str:
    """``face_box`` preference for the ``crop.box`` rule; ParamError naming the param otherwise."""
    if rule not in TRAIN_BOX_RULES:
        raise ParamError(f"crop.box: expected one of {list(TRAIN_BOX_RULES)}, got {rule!r}")
    return TRAIN_BOX_RULES[rule]


def square_crop_matrix(box: np.ndarray, size: int, scale: float) -> np.ndarray:
    """(2, 3) matrix of the crop protocol: a square of side ``scale * max(w, h)`` centred on the box
    maps onto the ``size`` x ``size`` crop."""
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise DataError(f"crop box: expected finite (x0, y0, x1, y1), got {box}")
    if scale <= 0 or size <= 0:
        raise ParamError(f"crop: expected scale > 0 and size > 0, got scale={scale}, size={size}")
    x0, y0, x1, y1 = box
    side = scale * max(x1 - x0, y1 - y0)
    if not side > 0:
        raise DataError(f"crop box {box.tolist()}: has zero width and height")
    k = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])


def crop_face(image: np.ndarray, box: np.ndarray, size: int, scale: float,
              interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, CropTransform]:
    """Crop protocol: square of side ``scale * max(box w, h)`` centred on ``box``, resized to ``size``.

    Returns the crop and the exact CropTransform (image points -> crop points). When the crop
    shrinks the face by 2x or more, the image is first block-averaged by the integer factor f
    (``cv2.INTER_AREA`` on a size divisible by f, which maps p -> p / f exactly) so that bilinear
    resampling does not alias.
    """
    matrix = square_crop_matrix(box, size, scale)
    shrink = int(np.floor(1.0 / matrix[0, 0]))
    source, pre = image, np.eye(2, 3)
    if shrink >= 2 and min(image.shape[:2]) >= 2 * shrink:
        h, w = (image.shape[0] // shrink) * shrink, (image.shape[1] // shrink) * shrink
        source = cv2.resize(image[:h, :w], (w // shrink, h // shrink), interpolation=cv2.INTER_AREA)
        pre = np.eye(2, 3) / shrink
        matrix_small = compose_affine(matrix, invert_affine(pre))
    else:
        matrix_small = matrix
    crop = warp_image(source, matrix_small, size, interpolation)
    return crop, CropTransform(matrix, int(size))


def model_crop_size(params) -> tuple[int, float]:
    """(side, scale) of a model's crops: ``crop.input_size`` and ``crop.scale`` of its params."""
    crop = params["crop"]
    return int(crop["input_size"]), float(crop["scale"])


def crop_for_model(image: np.ndarray, box: np.ndarray, params, size: int | None = None
                   ) -> tuple[np.ndarray, CropTransform]:
    """The crop a model with these params takes of the face in ``box``: ``crop_face`` at the model's
    input size (or ``size``: a placing pass's, ``evaluate.placing_size``) and crop scale
    (``model_crop_size``). Returns the (S, S, 3) crop and its CropTransform, whose ``to_image`` maps
    the model's crop points back to image points."""
    input_size, scale = model_crop_size(params)
    return crop_face(image, box, input_size if size is None else int(size), scale)
