"""Public entry point to every dataset format: ``read_source``, ``list_splits``, ``inspect_source``.

A source is a format name; a root is the folder it lives in; a split is one of the format's
official splits. Readers live in ``spanlib/data/readers/`` and are imported only when used.

Every image file a split names is checked for truncation when it is read (``spanlib.utils.files.
image_problem``: the first and last bytes of each file), because OpenCV decodes a JPEG cut short
into a grey remainder without failing; ``read_source`` stops at a broken file and
``inspect_source`` lists them.
"""

from __future__ import annotations

import importlib
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from spanlib.config.schemes import SOURCE_POINTS
from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError, ParamError
from spanlib.utils.files import image_problem

# source -> (reader module, read function, splits attribute); the sources and their landmark counts are
# spanlib.config.schemes.SOURCE_POINTS
_READERS = {
    "300w": ("w300", "read", "SPLITS"),
    "synthetic": ("w300", "read_synthetic", "SYNTHETIC_SPLITS"),
    "pts": ("w300", "read_folder", None),
    "menpo": ("menpo", "read", "SPLITS"),
    "wflw": ("wflw", "read", "SPLITS"),
    "cofw": ("cofw", "read", "SPLITS"),
    "cofw68": ("cofw", "read_cofw68", "COFW68_SPLITS"),
    "aflw": ("aflw", "read", "SPLITS"),
    "300vw": ("vw300", "read", "SPLITS"),
    "unlabeled": ("unlabeled", "read", "SPLITS"),
    "celeba": ("unlabeled", "read_celeba", "CELEBA_SPLITS"),
    "csv": ("csv_faces", "read", None),
    "300wlp": ("w300lp", "read", "SPLITS"),
}
assert set(_READERS) == set(SOURCE_POINTS), "every source has a reader and a landmark count"
_SOURCES = {name: (*_READERS[name], SOURCE_POINTS[name]) for name in SOURCE_POINTS}
SOURCES = tuple(SOURCE_POINTS)


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
        raise DataError(f"{root}: data root not found (source {source!r}){_root_hint(source, root)}")
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


def _root_hint(source: str, root: Path) -> str:
    """What to do about a missing root: the synthetic faces are generated, the others downloaded."""
    if source == "synthetic":
        return f"; run `spanlib synth --out {root}` first (or `make repro`, which does it)"
    return "; give the folder that holds the dataset (--root, or data.root / data.test_root in params.yaml)"


def broken_images(samples: list[Sample]) -> list[dict]:
    """``[{"path", "problem"}]`` for each image file of ``samples`` that is truncated or unreadable
    (each file checked once; video frames and images held in memory are not files to check)."""
    seen, broken = set(), []
    for s in samples:
        if s._image is not None or s.frame is not None or s.path in seen:
            continue
        seen.add(s.path)
        problem = image_problem(s.path)
        if problem:
            broken.append({"path": s.path, "problem": problem})
    return broken


def read_source(source: str, root: str | Path, split: str | None = None) -> list[Sample]:
    """The faces of one split of a dataset. Official parts of the split that are missing under
    ``root`` are reported as a warning; nothing found at all, or a truncated or unreadable image
    file, is a DataError naming the file."""
    result = _read(source, root, split)
    broken = broken_images(result.samples)
    if broken:
        first = broken[0]
        more = f" ({len(broken)} broken images in all; `spanlib data inspect` lists them)" if len(broken) > 1 else ""
        raise DataError(f"{first['path']}: {first['problem']}: an image of source {source!r} split "
                        f"{split!r} under {root}{more}; replace or remove it")
    if result.missing:
        warnings.warn(
            f"{root}: {source} split {split!r} lacks official parts: {', '.join(result.missing)}",
            stacklevel=2,
        )
    return result.samples


def read_extra_train(extras, num_points: int) -> list[Sample]:
    """The faces of ``data.extra_train`` (each ``{source, root, split?}``): more labelled faces that
    training adds to its own split (after the held-out faces are set aside, so validation stays on
    ``data.source``). Each must have ``num_points`` landmarks, the training source's scheme."""
    faces: list[Sample] = []
    for i, extra in enumerate(extras or []):
        samples = read_source(extra["source"], extra["root"], extra.get("split") or default_split(extra["source"], extra["root"]))
        points = len(samples[0].landmarks)
        if points != num_points:
            raise DataError(f"data.extra_train[{i}] ({extra['source']} under {extra['root']}): faces with {points} "
                            f"landmarks, but the training source has {num_points}; the schemes must match")
        faces.extend(samples)
    return faces


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


_EMPTY_SUMMARY = {"faces": 0, "labeled": 0, "points_per_face": [], "image_size": {"width": [0, 0], "height": [0, 0]}}


def inspect_source(source: str, root: str | Path, split: str | None = None) -> dict:
    """Per split and subset: faces, points per face, image size range, missing parts, broken
    (truncated or unreadable) image files.

    ``{"source", "root", "splits": {SPLIT: {"faces", "labeled", "points_per_face",
    "image_size": {"width": [min, max], "height": [min, max]}, "missing": [...],
    "broken": [{"path", "problem"}], "subsets": {SUBSET: {same without "missing"/"broken"/"subsets"}}}},
    "broken": N}``; ``faces`` counts the usable faces. A split with no faces at all is reported
    with ``faces: 0`` and its error instead of stopping the other splits; no faces in any split is
    a DataError that says which folders the format expects and which the root has (typically a
    root one level too deep).
    """
    splits = [split] if split else list(list_splits(source, root))
    report = {"source": source, "root": str(root), "splits": {}, "broken": 0}
    expected: list[str] = []
    for name in splits:
        result = _read(source, root, name, allow_empty=not split)
        expected += [m for m in result.missing if m not in expected]
        if not result.samples:
            report["splits"][name] = {
                "faces": 0,
                "missing": list(result.missing),
                "error": f"no faces found (missing: {', '.join(result.missing) or 'nothing listed'})",
            }
            continue
        # broken files are listed, not counted: a header cut short has no size to summarise
        broken = broken_images(result.samples)
        report["broken"] += len(broken)
        bad = {b["path"] for b in broken}
        good = [s for s in result.samples if s.path not in bad]
        entry = _summary(good) if good else _EMPTY_SUMMARY
        entry = {**entry, "missing": list(result.missing), "broken": broken}
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in good:
            for tag in s.subsets:
                groups[tag].append(s)
        entry["subsets"] = {tag: _summary(group) for tag, group in groups.items()}
        report["splits"][name] = entry
    if report["splits"] and all(e["faces"] == 0 and not e.get("broken") for e in report["splits"].values()):
        raise DataError(_layout_message(source, Path(root), expected))
    return report


def _layout_message(source: str, root: Path, expected: list[str]) -> str:
    """No faces in any split: the folders the format expects against the ones the root holds."""
    found = sorted(e.name + "/" for e in root.iterdir() if e.is_dir()) if root.is_dir() else []
    files = sorted({e.suffix.lower() for e in root.iterdir() if e.is_file()}) if root.is_dir() else []
    lines = [f"{root}: no faces in any split of source {source!r}."]
    if expected:
        lines.append(f"  expected under the root: {', '.join(e + '/' for e in expected)}")
    lines.append(f"  found: {', '.join(found) or 'no folders'}"
                 + (f" and files {', '.join(files)}" if files else ""))
    if ".pts" in files:
        lines.append("  this folder holds .pts files itself: give the dataset's top folder as --root, "
                     "or read it as one folder with --source pts")
    return "\n".join(lines)
