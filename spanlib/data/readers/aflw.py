"""AFLW, 19-point protocol (the annotation lists used by HRNet and MMPose, derived from SAN/DCFE):
``face_landmarks_aflw_train.csv``, ``face_landmarks_aflw_test.csv`` (full test set) and
``face_landmarks_aflw_test_frontal.csv`` (its frontal faces), images under ``images/``.

Columns: image_name, scale, box_size, center_w, center_h, then 19 (x, y) pairs; a header row.
``box_size`` (sqrt of the AFLW face box area) is the NME_box normaliser; it is kept in
``attributes["box_size"]``. The box is the square of side ``scale * 200`` around the centre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spanlib.data.readers import ReadResult, csv_rows
from spanlib.data.sample import Sample, check_landmarks
from spanlib.utils.errors import DataError

SPLITS = ("train", "test", "frontal")
FILES = {"train": "face_landmarks_aflw_train.csv", "test": "face_landmarks_aflw_test.csv",
         "frontal": "face_landmarks_aflw_test_frontal.csv"}


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / "annotations" / name):
        if candidate.is_file():
            return candidate
    return None


def _rows(path: Path):
    for line_no, row in csv_rows(path):  # non-UTF-8 text or an oversized field: a DataError naming the file
        if not row or (line_no == 1 and not _is_number(row[1] if len(row) > 1 else "")):
            continue  # header
        yield line_no, row


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in FILES:
        raise DataError(f"aflw: unknown split {split!r}; expected one of {list(SPLITS)}")
    path = _find(root, FILES[split])
    if path is None:
        return ReadResult([], [FILES[split]])
    frontal: set[str] = set()
    if split == "test":  # tag the frontal faces of the full test set
        frontal_path = _find(root, FILES["frontal"])
        if frontal_path is not None:
            frontal = {row[0] for _, row in _rows(frontal_path)}
    image_dir = root / "images" if (root / "images").is_dir() else root
    samples = []
    for line_no, row in _rows(path):
        where = f"{path}:{line_no}"
        if len(row) != 5 + 38:
            raise DataError(f"{where}: expected 43 columns (image, scale, box_size, center_w, center_h, 38 coordinates), got {len(row)}")
        try:
            values = np.array(row[1:], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where}: columns 2-43 must be numbers") from None
        if not np.isfinite(values[:4]).all() or values[1] <= 0:
            raise DataError(f"{where}: scale, box_size and centre must be finite with box_size > 0")
        scale, box_size, cx, cy = values[:4]
        points = check_landmarks(values[4:].reshape(19, 2), 19, where)
        half = scale * 100.0
        subsets = {"train": ("train",), "test": ("full",) + (("frontal",) if row[0] in frontal else ()),
                   "frontal": ("frontal",)}[split]
        samples.append(Sample(str(image_dir / row[0]), landmarks=points,
                              box=np.array([cx - half, cy - half, cx + half, cy + half]),
                              subsets=subsets, attributes={"box_size": float(box_size), "scale": float(scale)}))
    return ReadResult(samples, [])
