"""The README's grid of synthetic samples with their 68 points drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spanlib.data.synth.face import render_face, sample_face
from spanlib.utils.files import write_bytes

# point colours per part (RGB): jaw, brows, nose, eyes, lips
_PART_COLOURS = [((0, 17), (255, 235, 0)), ((17, 27), (255, 120, 0)), ((27, 36), (0, 230, 255)),
                 ((36, 48), (0, 255, 80)), ((48, 68), (255, 60, 200))]


def draw_points(image: np.ndarray, points: np.ndarray, radius: float = 1.6) -> np.ndarray:
    """A copy of ``image`` with the points drawn as dots (sub-pixel, corner-origin coordinates)."""
    out = image.copy()
    for (a, b), colour in _PART_COLOURS:
        for x, y in points[a:b]:
            centre = (int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16)))
            cv2.circle(out, centre, int(radius * 16), colour, -1, cv2.LINE_AA, 4)
    return out


def make_grid(path: str | Path | None = None, seed: int = 0, rows: tuple[str, ...] = ("common", "common",
              "challenging", "challenging"), cols: int = 6, size: int = 256, tile: int = 200) -> np.ndarray:
    """Faces 0.. of each split named in ``rows`` (row r shows faces r'*cols.. of its split), points
    drawn, each tile resized to ``tile`` pixels; written as PNG to ``path`` when given."""
    seen: dict[str, int] = {}
    lines = []
    for split in rows:
        start = seen.get(split, 0)
        seen[split] = start + cols
        tiles = []
        for i in range(start, start + cols):
            spec = sample_face(seed, split, i, size)
            scale = tile / size
            image = cv2.resize(render_face(spec), (tile, tile), interpolation=cv2.INTER_AREA)
            tiles.append(draw_points(image, spec.landmarks * scale, radius=1.5))
        lines.append(np.hstack(tiles))
    grid = np.vstack(lines)
    if path is not None:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        write_bytes(path, buf.tobytes())
    return grid
