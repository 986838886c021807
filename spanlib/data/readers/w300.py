"""300-W: the standard root layout, any folder of images with .pts files, and the synthetic faces
(a 300-W-style root with train/, common/, challenging/, unlabeled/)."""

from __future__ import annotations

import os
from pathlib import Path

from spanlib.data.pts import read_pts
from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# split -> (subset tag, official parts); `full` = common + challenging, as in 300-W.
PARTS = {
    "train": [("train", "afw"), ("train", "helen/trainset"), ("train", "lfpw/trainset")],
    "common": [("common", "helen/testset"), ("common", "lfpw/testset")],
    "challenging": [("challenging", "ibug")],
    "test": [("test", "300W/01_Indoor"), ("test", "300W/02_Outdoor")],  # the 300-W private test set
}
PARTS["full"] = PARTS["common"] + PARTS["challenging"]
SPLITS = ("train", "common", "challenging", "full", "test")


def read_pts_folder(folder: str | Path, subsets: tuple[str, ...], num_points: int | None = 68) -> list[Sample]:
    """Every ``NAME.pts`` in ``folder`` (not recursive) with its image ``NAME.<ext>`` beside it."""
    folder = Path(folder)
    names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    images = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            images.setdefault(stem, name)
    samples = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".pts":
            continue
        pts_path = folder / name
        if stem not in images:
            raise DataError(f"{pts_path}: no image {stem}{{{','.join(IMAGE_EXTENSIONS)}}} beside it")
        samples.append(
            Sample(str(folder / images[stem]), landmarks=read_pts(pts_path, num_points), subsets=subsets)
        )
    return samples


def read_image_folder(folder: str | Path, subsets: tuple[str, ...], recursive: bool = True) -> list[Sample]:
    """Every image under ``folder`` as an unlabeled sample (sorted by path)."""
    folder = Path(folder)
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        paths += [os.path.join(dirpath, f) for f in filenames if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        if not recursive:
            break
    return [Sample(p, subsets=subsets) for p in sorted(paths)]


def _read_parts(root: Path, parts: list[tuple[str, str]]) -> ReadResult:
    samples, missing = [], []
    for tag, part in parts:
        folder = root / part
        if not folder.is_dir():
            missing.append(part)
            continue
        samples += read_pts_folder(folder, (tag,) if tag == part else (tag, part))
    return ReadResult(samples, missing)


def read(root: str | Path, split: str) -> ReadResult:
    """The 300-W split ``split`` from the standard root layout; subsets are the split tag
    ("train", "common", "challenging") and the part ("afw", "helen/trainset", ...)."""
    if split not in PARTS:
        raise DataError(f"300w: unknown split {split!r}; expected one of {list(SPLITS)}")
    return _read_parts(Path(root), PARTS[split])


def read_folder(root: str | Path, split: str) -> ReadResult:
    """Source "pts": one folder of images with .pts files; the split name is only a tag."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected images with .pts files)")
    tag = split or "all"
    return ReadResult(read_pts_folder(root, (tag,), num_points=None), [])


SYNTHETIC_SPLITS = ("train", "common", "challenging", "full", "unlabeled")


def read_synthetic(root: str | Path, split: str) -> ReadResult:
    """The synthetic faces: folders train/, common/, challenging/ (images + .pts) and unlabeled/
    (images only); `full` = common + challenging."""
    root = Path(root)
    if split not in SYNTHETIC_SPLITS:
        raise DataError(f"synthetic: unknown split {split!r}; expected one of {list(SYNTHETIC_SPLITS)}")
    if split == "unlabeled":
        if not (root / "unlabeled").is_dir():
            return ReadResult([], ["unlabeled"])
        return ReadResult(read_image_folder(root / "unlabeled", ("unlabeled",)), [])
    parts = ["common", "challenging"] if split == "full" else [split]
    return _read_parts(root, [(p, p) for p in parts])
