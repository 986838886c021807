"""Public entry point to every dataset format: ``read_source``, ``list_splits``, ``inspect_source``.

A source is a format name; a root is the folder it lives in; a split is one of the format's
official splits. Readers live in ``spanlib/data/readers/`` and are imported only when used.
"""

from __future__ import annotations

import importlib
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError, ParamError
from .readers import ReadResult
from .sample import Sample

# source -> (module, read function, splits attribute, number of points or None)
_SOURCES = {
    "300w": ("w300", "read", "SPLITS", 68),
    "synthetic": ("w300", "read_synthetic", "SYNTHETIC_SPLITS", 68),
    "pts": ("w300", "read_folder", None, None),
    "menpo": ("menpo", "read", "SPLITS", 68),
    "wflw": ("wflw", "read", "SPLITS", 98),
    "cofw": ("cofw", "read", "SPLITS", 29),
    "cofw68": ("cofw", "read_cofw68", "COFW68_SPLITS", 68),
    "aflw": ("aflw", "read", "SPLITS", 19),
    "300vw": ("vw300", "read", "SPLITS", 68),
    "unlabeled": ("unlabeled", "read", "SPLITS", None),
    "celeba": ("unlabeled", "read_celeba", "CELEBA_SPLITS", None),
    "csv": ("csv_faces", "read", None, None),
}
SOURCES = tuple(_SOURCES)


def _entry(source: str):
    if source not in _SOURCES:
        raise ParamError(f"source: unknown data source {source!r}; expected one of {list(SOURCES)}")
    module_name, func, splits_attr, num_points = _SOURCES[source]
    module = importlib.import_module(f"spanlib.data.readers.{module_name}")
    return module, getattr(module, func), splits_attr


def list_splits(source: str, root: str | Path | None = None) -> tuple[str, ...]:
    """The split names of ``source``. Formats whose splits are files under the root ("csv") or
    that have none ("pts") need ``root`` to list them."""
    module, _, splits_attr = _entry(source)
    if splits_attr is not None:
        return tuple(getattr(module, splits_attr))
    if source == "pts":
        return ("all",)
    if root is None:
        raise ParamError(f"root: the splits of source {source!r} are files under the root; give the root")
    return tuple(module.list_splits(root))


def default_split(source: str, root: str | Path | None = None) -> str:
    return list_splits(source, root)[0]


def _read(source: str, root: str | Path, split: str | None, allow_empty: bool = False) -> ReadResult:
    module, read, _ = _entry(source)
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data root not found (source {source!r})")
    split = split or default_split(source, root)
    splits = list_splits(source, root)
    if source != "pts" and split not in splits:
        raise DataError(f"{source}: unknown split {split!r} under {root}; expected one of {list(splits)}")
    result = read(root, split)
    if not result.samples and allow_empty:
        return result
    if not result.samples:
        where = f" (missing: {', '.join(result.missing)})" if result.missing else ""
        raise DataError(f"{root}: no faces found for source {source!r}, split {split!r}{where}")
    num_points = _SOURCES[source][3]
    counts = {s.landmarks.shape[0] for s in result.samples if s.landmarks is not None}
    if num_points is not None and counts - {num_points}:
        raise DataError(f"{root}: source {source!r} expects {num_points} points, found {sorted(counts)}")
    if len(counts) > 1:
        raise DataError(f"{root}: faces of split {split!r} have different numbers of points {sorted(counts)}")
    return result


def read_source(source: str, root: str | Path, split: str | None = None) -> list[Sample]:
    """The faces of one split of a dataset. Official parts of the split that are missing under
    ``root`` are reported as a warning; nothing found at all is a DataError."""
    result = _read(source, root, split)
    if result.missing:
        warnings.warn(
            f"{root}: {source} split {split!r} lacks official parts: {', '.join(result.missing)}",
            stacklevel=2,
        )
    return result.samples


def _size_range(samples: list[Sample]) -> dict:
    sizes = np.array(_image_sizes(samples), dtype=np.int64).reshape(-1, 2)
    return {
        "width": [int(sizes[:, 0].min()), int(sizes[:, 0].max())],
        "height": [int(sizes[:, 1].min()), int(sizes[:, 1].max())],
    }


def _image_sizes(samples: list[Sample]) -> list[tuple[int, int]]:
    """Sizes from file headers, each file (or video) read once."""
    cache: dict[tuple[str, bool], tuple[int, int]] = {}
    sizes = []
    for s in samples:
        key = (s.path, s.frame is not None)
        if s._image is not None:
            sizes.append(s.image_size())
            continue
        if key not in cache:
            cache[key] = s.image_size()
        sizes.append(cache[key])
    return sizes


def _summary(samples: list[Sample]) -> dict:
    points = sorted({int(s.landmarks.shape[0]) for s in samples if s.landmarks is not None})
    return {
        "faces": len(samples),
        "labeled": sum(s.landmarks is not None for s in samples),
        "points_per_face": points,
        "image_size": _size_range(samples),
    }


def inspect_source(source: str, root: str | Path, split: str | None = None) -> dict:
    """Per split and subset: faces, points per face, image size range, missing parts.

    ``{"source", "root", "splits": {SPLIT: {"faces", "labeled", "points_per_face",
    "image_size": {"width": [min, max], "height": [min, max]}, "missing": [...],
    "subsets": {SUBSET: {same without "missing"/"subsets"}}}}}``. A split with no faces at all is
    reported with ``faces: 0`` and its error instead of stopping the other splits.
    """
    splits = [split] if split else list(list_splits(source, root))
    report = {"source": source, "root": str(root), "splits": {}}
    for name in splits:
        result = _read(source, root, name, allow_empty=not split)
        if not result.samples:
            report["splits"][name] = {
                "faces": 0,
                "missing": list(result.missing),
                "error": f"no faces found (missing: {', '.join(result.missing) or 'nothing listed'})",
            }
            continue
        entry = _summary(result.samples)
        entry["missing"] = list(result.missing)
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in result.samples:
            for tag in s.subsets:
                groups[tag].append(s)
        entry["subsets"] = {tag: _summary(group) for tag, group in groups.items()}
        report["splits"][name] = entry
    return report
