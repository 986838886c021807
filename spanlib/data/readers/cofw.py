"""COFW (Burgos-Artizzu et al. 2013): ``COFW_train_color.mat`` / ``COFW_test_color.mat``, and the
COFW-68 test annotations (Ghiasi & Fowlkes 2015).

COFW .mat variables: images ``IsTr`` / ``IsT`` (cell arrays of H x W x 3 or H x W uint8),
shapes ``phisTr`` / ``phisT`` (N x 87: 29 x, 29 y, 29 occlusion flags, 1 = occluded) and boxes
``bboxesTr`` / ``bboxesT`` (N x 4: x, y, width, height). The color files are MATLAB v7.3 (HDF5,
read with h5py, which sees every array transposed); older versions are read with scipy.io.

COFW-68: the images and boxes of ``COFW_test_color.mat`` with the 68-point annotations of the
cofw68-benchmark release, ``COFW68_Data/test_annotations/<i>_points.mat`` (i = 1..507, variables
``Points`` 68 x 2 and ``Occ`` 68 x 1); ``COFW68_Data/cofw68_test_bboxes.mat`` (``bboxes``, x y w h)
replaces the COFW boxes when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample, check_landmarks
from spanlib.utils.errors import DataError

SPLITS = ("train", "test")
COFW68_SPLITS = ("test",)
FILES = {"train": ("COFW_train_color.mat", "IsTr", "phisTr", "bboxesTr"),
         "test": ("COFW_test_color.mat", "IsT", "phisT", "bboxesT")}


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n" or (f.seek(512), f.read(8))[1] == b"\x89HDF\r\n\x1a\n"


def load_mat(path: Path, names: tuple[str, ...]) -> dict:
    """Arrays in MATLAB's own orientation (rows x cols) whatever the .mat version; cell arrays
    become lists of arrays (images as H x W x 3 or H x W)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a MATLAB .mat file)")
    try:
        if _is_hdf5(path):
            return _load_h5(path, names)
        raw = scipy.io.loadmat(str(path), variable_names=list(names))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise DataError(f"{path}: not a readable .mat file ({exc})") from None
    out = {}
    for name in names:
        if name not in raw:
            raise DataError(f"{path}: variable {name!r} not found (expected {list(names)})")
        value = raw[name]
        out[name] = [np.asarray(v) for v in value.ravel()] if value.dtype == object else np.asarray(value)
    return out


def _load_h5(path: Path, names: tuple[str, ...]) -> dict:
    import h5py  # lazy: h5py, only for MATLAB v7.3 (HDF5) files

    out = {}
    with h5py.File(path, "r") as f:
        for name in names:
            if name not in f:
                raise DataError(f"{path}: variable {name!r} not found (expected {list(names)})")
            data = f[name]
            if data.dtype == h5py.ref_dtype:  # cell array: each reference is one image, transposed
                out[name] = [np.asarray(f[ref]).T for ref in np.asarray(data).ravel()]
            else:
                out[name] = np.asarray(data).T
    return out


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in FILES:
        raise DataError(f"cofw: unknown split {split!r}; expected one of {list(SPLITS)}")
    name, images_var, phis_var, boxes_var = FILES[split]
    path = root / name
    if not path.is_file():
        return ReadResult([], [name])
    data = load_mat(path, (images_var, phis_var, boxes_var))
    images, phis, boxes = data[images_var], np.asarray(data[phis_var], np.float64), np.asarray(data[boxes_var], np.float64)
    if phis.ndim != 2 or phis.shape[1] != 87:
        raise DataError(f"{path}: {phis_var} must be N x 87 (29 x, 29 y, 29 occlusion flags), got {phis.shape}")
    if len(images) != len(phis) or boxes.shape != (len(phis), 4):
        raise DataError(f"{path}: {images_var}, {phis_var}, {boxes_var} disagree on the number of faces "
                        f"({len(images)}, {len(phis)}, {boxes.shape})")
    samples = []
    for i, (image, phi, box) in enumerate(zip(images, phis, boxes)):
        where = f"{path}#{i + 1}"
        points = check_landmarks(np.stack([phi[:29], phi[29:58]], axis=1), 29, where)
        samples.append(Sample(where, landmarks=points, box=_xywh_to_corners(box), subsets=("full",),
                              occluded=phi[58:87] > 0.5, image=_as_uint8(image, where)))
    return ReadResult(samples, [])


def read_cofw68(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split != "test":
        raise DataError(f"cofw68: unknown split {split!r}; expected ['test']")
    missing = [p for p in ("COFW_test_color.mat", "COFW68_Data/test_annotations") if not (root / p).exists()]
    if missing:
        return ReadResult([], missing)
    path = root / "COFW_test_color.mat"
    data = load_mat(path, ("IsT", "bboxesT"))
    images, boxes = data["IsT"], np.asarray(data["bboxesT"], np.float64)
    box_file = root / "COFW68_Data" / "cofw68_test_bboxes.mat"
    if box_file.is_file():
        boxes = np.asarray(load_mat(box_file, ("bboxes",))["bboxes"], np.float64)
        if boxes.shape != (len(images), 4):
            raise DataError(f"{box_file}: bboxes must be {len(images)} x 4, got {boxes.shape}")
    samples = []
    for i, image in enumerate(images):
        ann = root / "COFW68_Data" / "test_annotations" / f"{i + 1}_points.mat"
        mat = load_mat(ann, ("Points", "Occ"))
        points = check_landmarks(mat["Points"], 68, str(ann))
        occ = np.asarray(mat["Occ"]).ravel()
        if occ.shape != (68,):
            raise DataError(f"{ann}: Occ must hold 68 flags, got {occ.shape}")
        samples.append(Sample(str(ann), landmarks=points, box=_xywh_to_corners(boxes[i]), subsets=("full",),
                              occluded=occ > 0.5, image=_as_uint8(image, f"{path}#{i + 1}")))
    return ReadResult(samples, [])


def _xywh_to_corners(box: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def _as_uint8(image: np.ndarray, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise DataError(f"{where}: expected an H x W (x 3) uint8 image, got {image.dtype} {image.shape}")
    return image
