"""The 300-W ``.pts`` text format: ``version: 1``, ``n_points: K``, ``{``, K lines ``x y``, ``}``."""

from __future__ import annotations

import os

import numpy as np

from spanlib.data.sample import check_landmarks
from spanlib.utils.errors import DataError
from spanlib.utils.files import write_text


def read_pts(path: str | os.PathLike, num_points: int | None = None) -> np.ndarray:
    """(K, 2) float32 points of a .pts file; DataError naming the file when malformed."""
    path = str(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected a .pts landmark file)") from None
    lines = [line for line in lines if line]
    try:
        start, end = lines.index("{"), lines.index("}")
    except ValueError:
        raise DataError(f"{path}: not a .pts file (expected '{{' and '}}' around the points)") from None
    declared = None
    for line in lines[:start]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "n_points":
            try:
                declared = int(value)
            except ValueError:
                raise DataError(f"{path}: bad n_points line {line!r}") from None
    rows = []
    for i, line in enumerate(lines[start + 1 : end]):
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise DataError(f"{path}: point line {i + 1} is {line!r}, expected 'x y'")
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise DataError(f"{path}: point line {i + 1} is {line!r}, expected two numbers") from None
    if declared is not None and declared != len(rows):
        raise DataError(f"{path}: header says n_points: {declared} but {len(rows)} points follow")
    return check_landmarks(np.array(rows, dtype=np.float32).reshape(-1, 2), num_points, path)


def format_pts(points: np.ndarray) -> str:
    points = np.asarray(points, dtype=np.float64)
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points)
    return f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n"


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write (K, 2) points as a .pts file, atomically."""
    points = check_landmarks(points, None, str(path))
    write_text(path, format_pts(points))
