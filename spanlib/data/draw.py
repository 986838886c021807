"""Landmarks drawn on an image (OpenCV, no matplotlib): ``spanlib predict``'s annotated output and
the report's overlays (``spanlib.reporting.figures``)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def draw_landmarks(image: np.ndarray, points: np.ndarray, scheme=None, box: Sequence[float] | None = None,
                   label: str | None = None, color=(0, 255, 0), gt: np.ndarray | None = None) -> np.ndarray:
    """A copy of the RGB image with the points (and the scheme's boundaries as lines, the box, the
    ground truth in red when given). Points are corner-origin pixels; OpenCV draws at centres, so
    0.5 is subtracted."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(1, int(round(max(canvas.shape[:2]) / 300)))
    shift = 4  # sub-pixel drawing: coordinates * 16

    def pix(p):
        return tuple(int(round((v - 0.5) * (1 << shift))) for v in p)

    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(canvas, pix((x0, y0)), pix((x1, y1)), (255, 200, 0), scale, cv2.LINE_AA, shift)
    for pts, col in ((gt, (255, 40, 40)), (points, color)):
        if pts is None:
            continue
        pts = np.asarray(pts, dtype=np.float64)
        if scheme is not None:
            for boundary in scheme.boundaries:
                line = np.array([pix(pts[i]) for i in boundary.indices], dtype=np.int32)
                cv2.polylines(canvas, [line], boundary.closed, col, max(1, scale // 2), cv2.LINE_AA, shift)
        for p in pts:
            if np.all(np.isfinite(p)):
                cv2.circle(canvas, pix(p), (scale + 1) << shift, col, -1, cv2.LINE_AA, shift)
    if label and box is not None:
        cv2.putText(canvas, label, (int(box[0]), max(12, int(box[1]) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * scale, (255, 200, 0), max(1, scale // 2), cv2.LINE_AA)
    return canvas
