"""Small files in the datasets' published formats, shared by the reader and the table tests:
images as OpenCV writes them, 300-W .pts, WFLW list lines, COFW's MATLAB v5 .mat."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from spanlib.data.pts import write_pts

RNG = np.random.default_rng(0)


def points(k: int, size: int = 60) -> np.ndarray:
    return RNG.uniform(5, size - 5, size=(k, 2)).astype(np.float32).round(3)


def write_image(path: Path, color=(10, 20, 200), size=(60, 40)) -> None:
    """BGR colour as OpenCV writes it; (width, height)."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = color
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_face(folder: Path, name: str, k: int = 68, ext: str = ".png", size=(60, 40)) -> np.ndarray:
    """An image and its .pts beside it; returns the points."""
    write_image(folder / f"{name}{ext}", size=size)
    pts = points(k)
    write_pts(folder / f"{name}.pts", pts)
    return pts


def wflw_line(pts: np.ndarray, box, flags, name: str) -> str:
    """One line of WFLW's list_98pt_rect_attr_*.txt: 196 coordinates, box, 6 flags, image path."""
    return " ".join([*(f"{v:.3f}" for v in pts.ravel()), *map(str, box), *map(str, flags), name])


def write_cofw_mat(path: Path, images, phis, boxes, names=("IsT", "phisT", "bboxesT")) -> None:
    """COFW's MATLAB v5 layout: a cell array of images, phis N x 87, boxes N x 4 (x, y, w, h)."""
    cell = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        cell[i, 0] = im
    scipy.io.savemat(str(path), {names[0]: cell, names[1]: phis, names[2]: boxes})
