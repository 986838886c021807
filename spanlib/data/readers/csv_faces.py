"""Landmarks in a CSV file: a header row, then ``image_name, x0, y0, x1, y1, ...`` per face (the
layout of the YouTube Faces keypoint set: ``training_frames_keypoints.csv`` beside the image folder
``training/``).

Splits are the CSV files under the root: ``NAME_frames_keypoints.csv`` or ``NAME.csv`` gives split
NAME, with images in ``NAME/`` (or the root itself when that folder does not exist). The root may
also be one CSV file (split = its name).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spanlib.data.readers import ReadResult, csv_rows
from spanlib.data.sample import Sample, check_landmarks
from spanlib.utils.errors import DataError

SUFFIX = "_frames_keypoints.csv"


def _split_name(file_name: str) -> str:
    return file_name[: -len(SUFFIX)] if file_name.endswith(SUFFIX) else file_name[:-4]


def _csv_files(root: Path) -> dict[str, Path]:
    if root.is_file():
        return {_split_name(root.name): root}
    return {_split_name(p.name): p for p in sorted(root.glob("*.csv"))}


def list_splits(root: str | Path) -> list[str]:
    splits = list(_csv_files(Path(root)))
    if not splits:
        raise DataError(f"{root}: no .csv landmark files found")
    return splits


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    files = _csv_files(root)
    if split not in files:
        raise DataError(f"csv: unknown split {split!r} under {root}; expected one of {list(files)}")
    path = files[split]
    base = path.parent
    image_dir = base / split if (base / split).is_dir() else base
    present = set(os.listdir(image_dir))
    samples = []
    rows = csv_rows(path)
    _, header = next(rows, (0, None))
    if header is None:
        raise DataError(f"{path}: empty file (expected a header and one row per face)")
    if len(header) < 3 or (len(header) - 1) % 2:
        raise DataError(f"{path}: header has {len(header)} columns, expected image name then x, y pairs")
    num_points = (len(header) - 1) // 2
    for line_no, row in rows:
        if not row:
            continue
        where = f"{path}:{line_no}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} columns like the header, got {len(row)}")
        try:
            values = np.array(row[1:], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where}: coordinates must be numbers") from None
        points = check_landmarks(values.reshape(num_points, 2), num_points, where)
        if row[0] not in present:
            raise DataError(f"{where}: image {image_dir / row[0]} not found")
        samples.append(Sample(str(image_dir / row[0]), landmarks=points, subsets=(split,)))
    return ReadResult(samples, [])
