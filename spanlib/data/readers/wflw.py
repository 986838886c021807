"""WFLW: ``list_98pt_rect_attr_train.txt`` / ``list_98pt_rect_attr_test.txt``.

One face per line: 196 coordinates (x0 y0 ... x97 y97), the box (x_min y_min x_max y_max), six
attribute flags (pose, expression, illumination, make-up, occlusion, blur) and the image path
relative to ``WFLW_images/``. Subsets: "full" plus every attribute whose flag is 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample, check_landmarks
from spanlib.utils.errors import DataError

SPLITS = ("train", "test")
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
LIST_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
IMAGE_DIR = "WFLW_images"


def list_file(root: Path, split: str) -> Path | None:
    name = f"list_98pt_rect_attr_{split}.txt"
    for candidate in (root / LIST_DIR / name, root / name, root / "WFLW_annotations" / name):
        if candidate.is_file():
            return candidate
    return None


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"wflw: unknown split {split!r}; expected one of {list(SPLITS)}")
    path = list_file(root, split)
    if path is None:
        return ReadResult([], [f"{LIST_DIR}/list_98pt_rect_attr_{split}.txt"])
    image_dir = root / IMAGE_DIR if (root / IMAGE_DIR).is_dir() else root
    samples = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        if len(fields) != 196 + 4 + 6 + 1:
            raise DataError(f"{where}: expected 207 fields (196 coordinates, 4 box, 6 flags, image), got {len(fields)}")
        try:
            values = np.array(fields[:206], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where}: the first 206 fields must be numbers") from None
        points = check_landmarks(values[:196].reshape(98, 2), 98, where)
        box = values[196:200]
        if not np.isfinite(box).all():
            raise DataError(f"{where}: the box is not finite")
        flags = values[200:206].astype(int)
        attributes = dict(zip(ATTRIBUTES, map(int, flags)))
        subsets = ("full",) + tuple(a for a, f in zip(ATTRIBUTES, flags) if f)
        samples.append(Sample(str(image_dir / fields[206]), landmarks=points, box=box, subsets=subsets,
                              attributes=attributes))
    return ReadResult(samples, [])
