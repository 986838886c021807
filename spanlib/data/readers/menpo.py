"""Menpo 2D (2017 challenge): folders of images with .pts files. Frontal faces carry 68 points,
profile faces 39; this reader keeps the 68-point (frontal) faces and counts the others."""

from __future__ import annotations

import os
from pathlib import Path

from spanlib.data.pts import read_pts
from spanlib.data.readers import ReadResult
from spanlib.data.readers.w300 import IMAGE_EXTENSIONS
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError

SPLITS = ("train", "test")
FOLDERS = {"train": "trainset", "test": "testset"}


def read(root: str | Path, split: str) -> ReadResult:
    """Split folder ``trainset/`` or ``testset/`` under the root (or the root itself when it holds
    the .pts files directly), searched recursively (the test set has semifrontal/ and profile/)."""
    root = Path(root)
    if split not in FOLDERS:
        raise DataError(f"menpo: unknown split {split!r}; expected one of {list(SPLITS)}")
    folder = root / FOLDERS[split]
    if not folder.is_dir():
        if any(root.glob("*.pts")):
            folder = root
        else:
            return ReadResult([], [FOLDERS[split]])
    samples, profile = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        stems = {os.path.splitext(f)[0]: f for f in filenames if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS}
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() != ".pts":
                continue
            pts_path = os.path.join(dirpath, name)
            points = read_pts(pts_path)
            if points.shape[0] == 39:  # profile annotation: not part of the 68-point frontal set
                profile += 1
                continue
            if points.shape[0] != 68:
                raise DataError(f"{pts_path}: expected 68 (frontal) or 39 (profile) points, found {points.shape[0]}")
            if stem not in stems:
                raise DataError(f"{pts_path}: no image {stem}.jpg/.png beside it")
            samples.append(Sample(os.path.join(dirpath, stems[stem]), landmarks=points, subsets=("frontal",)))
    for sample in samples:  # how many profile faces the split folder also held
        sample.attributes["profile_faces_skipped"] = profile
    return ReadResult(samples, [])
