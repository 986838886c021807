"""Faces without landmarks: any image folder (with an optional box list), and CelebA.

Box list (optional, the layout of CelebA's ``list_bbox_celeba.txt``): an optional count line, an
optional header ``image_id x_1 y_1 width height``, then one ``NAME x y w h`` line per image. In a
plain folder it is read from ``boxes.txt`` or ``list_bbox_celeba.txt`` beside the images.

CelebA: images from ``img_celeba/`` (in the wild) or ``img_align_celeba/`` (aligned). CelebA's
boxes are given for the in-the-wild images, so ``list_bbox_celeba.txt`` is applied to
``img_celeba/`` only. ``list_eval_partition.txt`` (0 train, 1 val, 2 test) gives the splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spanlib.data.readers import ReadResult
from spanlib.data.readers.w300 import read_image_folder
from spanlib.utils.errors import DataError

SPLITS = ("all",)
CELEBA_SPLITS = ("all", "train", "val", "test")
BOX_FILES = ("boxes.txt", "list_bbox_celeba.txt")


def read_box_list(path: Path) -> dict[str, np.ndarray]:
    """NAME -> (x0, y0, x1, y1) float32."""
    boxes = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or (len(fields) == 1 and fields[0].isdigit()) or fields[0] == "image_id":
            continue
        if len(fields) != 5:
            raise DataError(f"{path}:{line_no}: expected 'NAME x y width height', got {line!r}")
        try:
            x, y, w, h = map(float, fields[1:])
        except ValueError:
            raise DataError(f"{path}:{line_no}: box values must be numbers, got {line!r}") from None
        if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
            raise DataError(f"{path}:{line_no}: box must be finite with positive size, got {line!r}")
        boxes[fields[0]] = np.array([x, y, x + w, y + h], dtype=np.float32)
    return boxes


def _attach_boxes(samples, folder: Path, boxes: dict[str, np.ndarray]) -> None:
    for s in samples:
        rel = Path(s.path).relative_to(folder).as_posix()
        box = boxes.get(rel, boxes.get(Path(s.path).name))
        if box is not None:
            s.box = box


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"unlabeled: unknown split {split!r}; expected ['all']")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected images)")
    samples = read_image_folder(root, ("unlabeled",))
    box_file = next((root / n for n in BOX_FILES if (root / n).is_file()), None)
    if box_file is not None:
        _attach_boxes(samples, root, read_box_list(box_file))
    return ReadResult(samples, [])


def read_celeba(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in CELEBA_SPLITS:
        raise DataError(f"celeba: unknown split {split!r}; expected one of {list(CELEBA_SPLITS)}")
    folder = next((root / n for n in ("img_celeba", "img_align_celeba") if (root / n).is_dir()), None)
    if folder is None:
        return ReadResult([], ["img_align_celeba"])
    samples = read_image_folder(folder, ("celeba",), recursive=False)
    if folder.name == "img_celeba" and (root / "list_bbox_celeba.txt").is_file():
        _attach_boxes(samples, folder, read_box_list(root / "list_bbox_celeba.txt"))
    if split == "all":
        return ReadResult(samples, [])
    partition = root / "list_eval_partition.txt"
    if not partition.is_file():
        return ReadResult([], ["list_eval_partition.txt"])
    wanted = str(CELEBA_SPLITS.index(split) - 1)
    names = set()
    for line_no, line in enumerate(partition.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in "012":
            raise DataError(f"{partition}:{line_no}: expected 'NAME 0|1|2', got {line!r}")
        if fields[1] == wanted:
            names.add(fields[0])
    return ReadResult([s for s in samples if Path(s.path).name in names], [])
