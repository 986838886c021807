"""300W-LP (source ``300wlp``) against tiny files written here in the published layout, and the
paper's SCPAN* protocol: pretrain on 300W-LP-2D, then fine-tune on 300W with ``train.init_from``."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from spanlib.data.sources import list_splits, read_source
from spanlib.utils.errors import DataError
from spanlib.config.schemes import get_scheme

from test_train import small_params, write_faces

WIDTH, HEIGHT = 80, 60


def write_300wlp(root: Path, faces: dict[str, list[np.ndarray]], flips: bool = True) -> None:
    """The published layout: ``<PART>/<name>.jpg`` + ``<name>.mat``, ``<PART>_Flip/`` the mirrored
    images, ``landmarks/<PART>/<name>_pts.mat`` with ``pts_2d`` and ``pts_3d`` (68 x 2)."""
    for part, point_sets in faces.items():
        for i, points in enumerate(point_sets):
            name = f"{part}_{1000 + i}_1_{i % 3}"
            image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
            x, y = np.floor(points[36]).astype(int)  # a bright spot around point 36 (an outer eye corner)
            image[y - 1:y + 2, x - 1:x + 2] = 255
            folders = [(part, image)] + ([(part + "_Flip", cv2.flip(image, 1))] if flips else [])
            for folder, picture in folders:
                (root / folder).mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(root / folder / f"{name}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 100])
                scipy.io.savemat(root / folder / f"{name}.mat", {"pt2d": points.T, "Pose_Para": np.zeros((1, 7))})
            (root / "landmarks" / part).mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(root / "landmarks" / part / f"{name}_pts.mat",
                             {"pts_2d": points, "pts_3d": points + 0.5})


def _points(rng) -> np.ndarray:
    points = rng.uniform(10, min(WIDTH, HEIGHT) - 10, size=(68, 2))
    points[36] = rng.integers(10, 30), rng.integers(10, 50)
    points[36] += 0.5  # the centre of the marked pixel (corner-origin)
    return points


def test_reads_the_published_layout_and_mirrors_the_flipped_parts(tmp_path):
    rng = np.random.default_rng(0)
    truth = {"AFW": [_points(rng) for _ in range(2)], "HELEN": [_points(rng)], "IBUG": [_points(rng)],
             "LFPW": [_points(rng)]}
    write_300wlp(tmp_path, truth)
    assert list_splits("300wlp") == ("train", "full")
    train = read_source("300wlp", tmp_path, "train")
    assert [s.subsets for s in train] == [("train", "AFW")] * 2 + [("train", p) for p in ("HELEN", "IBUG", "LFPW")]
    assert Path(train[0].path).name == "AFW_1000_1_0.jpg" and train[0].box is None
    np.testing.assert_allclose(train[0].landmarks, truth["AFW"][0], atol=1e-4)  # pts_2d, not pts_3d
    full = read_source("300wlp", tmp_path, "full")
    assert len(full) == 10 and full[5].subsets == ("full", "AFW_Flip")
    flipped, original = full[5], truth["AFW"][0]
    perm = get_scheme(68).flip_perm
    # point 45 of the mirrored face is the mirror of point 36 (flip_perm[45] == 36) ...
    assert perm[45] == 36
    np.testing.assert_allclose(flipped.landmarks[45], [WIDTH - original[36, 0], original[36, 1]], atol=1e-4)
    # ... and it lies on the marked pixel of the mirrored image
    x, y = np.floor(flipped.landmarks[45]).astype(int)
    assert flipped.image[y, x].min() > 200
    x0, y0 = np.floor(original[36]).astype(int)
    assert train[0].image[y0, x0].min() > 200


def test_missing_parts_and_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(1)
    write_300wlp(tmp_path, {"AFW": [_points(rng)]}, flips=False)
    with pytest.warns(UserWarning, match="lacks official parts: HELEN, landmarks/HELEN, IBUG"):
        assert len(read_source("300wlp", tmp_path, "train")) == 1
    with pytest.raises(DataError, match="unknown split 'test'"):
        read_source("300wlp", tmp_path, "test")
    mat = tmp_path / "landmarks" / "AFW" / "AFW_1000_1_0_pts.mat"
    scipy.io.savemat(mat, {"pts_3d": np.zeros((68, 2))})
    with pytest.raises(DataError, match=r"AFW_1000_1_0_pts\.mat: variable 'pts_2d' not found"):
        read_source("300wlp", tmp_path, "train")
    scipy.io.savemat(mat, {"pts_2d": np.zeros((21, 2))})
    with pytest.raises(DataError, match=r"AFW_1000_1_0_pts\.mat \(pts_2d\): expected 68 points, found 21"):
        read_source("300wlp", tmp_path, "train")
    mat.unlink()
    with pytest.raises(DataError, match=r"AFW_1000_1_0_pts\.mat: file not found"):
        read_source("300wlp", tmp_path, "train")


def write_300wlp_faces(root: Path, count: int, seed: int) -> None:
    """Drawn faces (tests/test_train.py ``write_faces``) laid out as 300W-LP's AFW part."""
    staging = root.parent / f"{root.name}_pts"
    write_faces(staging, count, seed)
    from spanlib.data.pts import read_pts

    (root / "AFW").mkdir(parents=True)
    (root / "landmarks" / "AFW").mkdir(parents=True)
    for pts in sorted(staging.glob("*.pts")):
        name = f"AFW_{pts.stem}"
        image = cv2.imread(str(pts.with_suffix(".png")))
        assert cv2.imwrite(str(root / "AFW" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        points = read_pts(pts, 68).astype(np.float64)
        scipy.io.savemat(root / "landmarks" / "AFW" / f"{name}_pts.mat", {"pts_2d": points, "pts_3d": points})


def test_scpan_star_pretrains_on_300wlp_then_fine_tunes_on_300w(tmp_path):
    """docs/pipeline.md, "SCPAN* (300W-LP pretraining)": step 1 trains on source 300wlp, step 2
    starts from its weights (train.init_from) on a 300-W-style folder; the fine-tuned checkpoint's
    metrics record where its weights came from."""
    import hashlib

    from spanlib.training.train import train

    lp, w300 = tmp_path / "300W_LP", tmp_path / "300w"
    write_300wlp_faces(lp, 8, seed=0)
    write_faces(w300 / "afw", 8, seed=1)  # 300-W's train split: afw/, helen/trainset, lfpw/trainset
    base = {"train": w300 / "afw", "held": w300 / "afw"}
    tiny = dict(iterations=2, batch_size=2, unlabeled_ratio=0.0)

    pretrain = small_params(base, **tiny)
    pretrain["data"].update(source="300wlp", root=str(lp), train_split="train")
    pretrain["model"].update(width=8, depth=1)
    with pytest.warns(UserWarning, match="lacks official parts: HELEN"):  # only AFW written here
        step1 = train(pretrain, "scpan", tmp_path / "scpan_300wlp.pt", progress=False)

    finetune = small_params(base, init_from=str(step1), **tiny)
    finetune["data"].update(source="300w", root=str(w300), train_split="train")
    finetune["model"].update(width=8, depth=1)
    with pytest.warns(UserWarning, match="lacks official parts"):  # helen/lfpw trainsets not written here
        step2 = train(finetune, "scpan", tmp_path / "scpan_star.pt", progress=False)

    first, second = torch.load(step1, weights_only=True), torch.load(step2, weights_only=True)
    record = second["metrics"]["init_from"]
    assert record["path"] == str(step1) and record["sha256"] == hashlib.sha256(step1.read_bytes()).hexdigest()
    assert record["copied"] == record["tensors"] == len(first["model_state"])  # same variant: every tensor
    assert first["params"]["data"]["source"] == "300wlp" and second["params"]["data"]["source"] == "300w"
    assert second["params"]["train"]["init_from"] == str(step1)
    assert all(math.isfinite(v) for v in second["metrics"]["train"].values())
