"""300W-LP (Zhu et al. 2016, the 3DDFA release): 300-W faces re-rendered at large poses, the
pretraining set of the paper's SCPAN* (Table II, "pretrained on 300W-LP-2D", as LUVLi and KDN).

Published layout under the root (``300W_LP/``):
- ``AFW/``, ``HELEN/``, ``IBUG/``, ``LFPW/``: ``<name>.jpg`` and ``<name>.mat`` (the 3DMM fit:
  ``pt2d``, ``Pose_Para``, ``Shape_Para`` ...; not read here);
- ``AFW_Flip/``, ``HELEN_Flip/``, ``IBUG_Flip/``, ``LFPW_Flip/``: the same images mirrored, same names;
- ``landmarks/<PART>/<name>_pts.mat`` for the four unflipped parts only: ``pts_2d`` (68 x 2, x y,
  the 2D landmarks: "300W-LP-2D") and ``pts_3d`` (68 x 2, the 3D landmarks projected; not read).

Splits: ``train`` = the four unflipped parts (the faces with published landmarks, as LUVLi
pretrains); ``full`` = those plus the ``_Flip`` parts, whose landmarks are the unflipped face's
``pts_2d`` mirrored (x -> width - x, in the corner-origin convention) and relabelled with the
68-point scheme's ``flip_perm``. Subsets: the split tag and the part name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from spanlib.config.schemes import get_scheme, mirror_landmarks
from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample, check_landmarks, image_file_size
from spanlib.utils.errors import DataError

PARTS = ("AFW", "HELEN", "IBUG", "LFPW")
SPLITS = ("train", "full")
FLIP = "_Flip"
LANDMARK_DIR = "landmarks"


def landmark_path(root: Path, part: str, stem: str) -> Path:
    """``landmarks/<PART>/<stem>_pts.mat`` (a ``_Flip`` part uses its unflipped part's file)."""
    return root / LANDMARK_DIR / part.removesuffix(FLIP) / f"{stem}_pts.mat"


def read_pts_2d(path: Path) -> np.ndarray:
    """``pts_2d`` (68, 2) float32 of one ``_pts.mat``; DataError naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the 300W-LP landmarks of the image of that name)")
    try:
        raw = scipy.io.loadmat(str(path), variable_names=["pts_2d"])
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise DataError(f"{path}: not a readable .mat file ({exc})") from None
    if "pts_2d" not in raw:
        raise DataError(f"{path}: variable 'pts_2d' not found (expected pts_2d, 68 x 2)")
    points = np.asarray(raw["pts_2d"], dtype=np.float64)
    if points.shape == (2, 68):  # a file saved transposed: x row, y row
        points = points.T
    return check_landmarks(points, 68, f"{path} (pts_2d)")


def _read_part(root: Path, part: str, tag: str) -> list[Sample]:
    folder = root / part
    samples = []
    for image in sorted(folder.glob("*.jpg")):
        points = read_pts_2d(landmark_path(root, part, image.stem))
        if part.endswith(FLIP):
            # the mirrored image's labels: x -> width - x, each point relabelled as its counterpart
            points = mirror_landmarks(points.astype(np.float32), image_file_size(str(image))[0], get_scheme(68))
        samples.append(Sample(str(image), landmarks=points, subsets=(tag, part)))
    if not samples:
        raise DataError(f"{folder}: no .jpg images (expected 300W-LP's <name>.jpg files)")
    return samples


def read(root: str | Path, split: str) -> ReadResult:
    """The 300W-LP faces of ``split`` (``train`` or ``full``); absent parts are listed as missing."""
    if split not in SPLITS:
        raise DataError(f"300wlp: unknown split {split!r}; expected one of {list(SPLITS)}")
    root = Path(root)
    parts = PARTS + (tuple(p + FLIP for p in PARTS) if split == "full" else ())
    samples, missing = [], []
    for part in parts:
        base = part.removesuffix(FLIP)
        absent = [name for name in (part, f"{LANDMARK_DIR}/{base}") if not (root / name).is_dir()]
        if absent:
            missing += [name for name in absent if name not in missing]
            continue
        samples += _read_part(root, part, split)
    return ReadResult(samples, missing)
