"""Each reader against tiny files written here in the dataset's published format."""

import json
import subprocess
import sys
import warnings

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from spanlib.data.pts import read_pts, write_pts
from spanlib.data.sample import Sample
from spanlib.data.sources import inspect_source, list_splits, read_source
from spanlib.utils.errors import DataError, ParamError

from format_writers import RNG, points as _points, wflw_line as _wflw_line, write_cofw_mat as _write_mat_v5
from format_writers import write_face as _face, write_image as _write_image


def test_pts_round_trip_and_bad_files(tmp_path):
    points = _points(68)
    write_pts(tmp_path / "a.pts", points)
    text = (tmp_path / "a.pts").read_text()
    assert text.startswith("version: 1\nn_points:  68\n{\n") and text.endswith("}\n")
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts", 68), points, atol=1e-6)
    with pytest.raises(DataError, match=r"a\.pts: expected 98 points, found 68"):
        read_pts(tmp_path / "a.pts", 98)
    (tmp_path / "nan.pts").write_text(text.replace(text.splitlines()[5], "nan 3.0"))
    with pytest.raises(DataError, match=r"nan\.pts: landmark 2 is not finite"):
        read_pts(tmp_path / "nan.pts")
    (tmp_path / "short.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(DataError, match=r"short\.pts: header says n_points: 3 but 2"):
        read_pts(tmp_path / "short.pts")
    with pytest.raises(DataError, match=r"gone\.pts: file not found"):
        read_pts(tmp_path / "gone.pts")


def test_sample_image_is_rgb_and_unreadable_image_names_the_file(tmp_path):
    _write_image(tmp_path / "x.png", color=(10, 20, 200))  # BGR on disk
    s = Sample(str(tmp_path / "x.png"))
    assert s.image.shape == (40, 60, 3) and s.image.dtype == np.uint8
    assert s.image[0, 0].tolist() == [200, 20, 10]
    assert s.image_size() == (60, 40)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"bad\.jpg: not a readable image"):
        Sample(str(tmp_path / "bad.jpg")).image
    with pytest.raises(DataError, match=r"nope\.jpg: file not found"):
        Sample(str(tmp_path / "nope.jpg")).image
    preset = Sample("inside.mat#1", image=np.full((4, 5), 7, np.uint8))
    assert preset.image.shape == (4, 5, 3) and preset.image_size() == (5, 4)


def _w300_root(tmp_path):
    root = tmp_path / "300w"
    truth = {}
    for part, n in (("afw", 2), ("helen/trainset", 3), ("helen/testset", 1), ("ibug", 2)):
        for i in range(n):
            truth[(part, i)] = _face(root / part, f"img{i}", ext=".jpg" if part != "ibug" else ".png")
    return root, truth


def test_300w_layout_splits_subsets_and_missing_parts(tmp_path):
    root, truth = _w300_root(tmp_path)
    with pytest.warns(UserWarning, match="lfpw/trainset"):
        train = read_source("300w", root, "train")
    assert len(train) == 5
    assert {s.subsets for s in train} == {("train", "afw"), ("train", "helen/trainset")}
    first = next(s for s in train if s.subsets[1] == "afw" and s.path.endswith("img0.jpg"))
    np.testing.assert_allclose(first.landmarks, truth[("afw", 0)], atol=1e-5)
    with pytest.warns(UserWarning, match="lfpw/testset"):
        full = read_source("300w", root, "full")
    assert sorted(s.subsets[0] for s in full) == ["challenging", "challenging", "common"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_source("300w", root, "challenging")) == 2
    with pytest.raises(DataError, match="unknown split 'valid'"):
        read_source("300w", root, "valid")
    with pytest.raises(DataError, match="no faces found.*300W/01_Indoor"):
        read_source("300w", root, "test")
    with pytest.raises(ParamError, match="unknown data source"):
        read_source("300x", root, "train")
    report = inspect_source("300w", root)
    assert report["splits"]["train"]["missing"] == ["lfpw/trainset"]
    assert report["splits"]["train"]["subsets"]["helen/trainset"]["faces"] == 3
    assert report["splits"]["train"]["points_per_face"] == [68]
    assert report["splits"]["full"]["image_size"] == {"width": [60, 60], "height": [40, 40]}
    assert report["splits"]["test"]["faces"] == 0
    # a wrong number of points and a .pts without its image both name the file
    write_pts(root / "ibug" / "img1.pts", _points(67))
    with pytest.raises(DataError, match=r"ibug/img1\.pts: expected 68 points, found 67"):
        read_source("300w", root, "challenging")
    write_pts(root / "ibug" / "lonely.pts", _points(68))
    (root / "ibug" / "img1.pts").unlink()
    with pytest.raises(DataError, match=r"lonely\.pts: no image"):
        read_source("300w", root, "challenging")


def test_synthetic_and_pts_folder_sources(tmp_path):
    root = tmp_path / "synth"
    for split, n in (("train", 3), ("common", 2), ("challenging", 1)):
        for i in range(n):
            _face(root / split, f"{split}{i}")
    _write_image(root / "unlabeled" / "u0.png")
    assert list_splits("synthetic") == ("train", "common", "challenging", "full", "unlabeled")
    assert len(read_source("synthetic", root, "train")) == 3
    full = read_source("synthetic", root, "full")
    assert sorted(s.subsets for s in full) == [("challenging",), ("common",), ("common",)]
    unlabeled = read_source("synthetic", root, "unlabeled")
    assert len(unlabeled) == 1 and unlabeled[0].landmarks is None
    assert len(read_source("pts", root / "common")) == 2


def test_menpo_keeps_frontal_faces(tmp_path):
    root = tmp_path / "menpo"
    _face(root / "trainset", "a")
    _face(root / "trainset", "b", k=39)  # profile
    samples = read_source("menpo", root, "train")
    assert len(samples) == 1 and samples[0].attributes["profile_faces_skipped"] == 1


def test_wflw_list_files_and_attribute_subsets(tmp_path):
    root = tmp_path / "WFLW"
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    p0, p1 = _points(98), _points(98)
    _write_image(root / "WFLW_images" / "51--Dresses" / "a.jpg")
    _write_image(root / "WFLW_images" / "0--Parade" / "b.jpg")
    (lists / "list_98pt_rect_attr_test.txt").write_text(
        _wflw_line(p0, (3, 4, 50, 38), (1, 0, 0, 0, 1, 0), "51--Dresses/a.jpg") + "\n"
        + _wflw_line(p1, (1, 2, 30, 33), (0, 0, 0, 0, 0, 0), "0--Parade/b.jpg") + "\n")
    samples = read_source("wflw", root, "test")
    np.testing.assert_allclose(samples[0].landmarks, p0, atol=1e-3)
    np.testing.assert_array_equal(samples[0].box, [3, 4, 50, 38])
    assert samples[0].subsets == ("full", "pose", "occlusion") and samples[1].subsets == ("full",)
    assert samples[0].attributes["pose"] == 1 and samples[0].image.shape == (40, 60, 3)
    report = inspect_source("wflw", root, "test")
    assert report["splits"]["test"]["subsets"]["pose"]["faces"] == 1
    (lists / "list_98pt_rect_attr_train.txt").write_text(_wflw_line(p0[:97], (1, 2, 3, 4), (0,) * 6, "x.jpg"))
    with pytest.raises(DataError, match=r"list_98pt_rect_attr_train\.txt:1: expected 207 fields"):
        read_source("wflw", root, "train")


def _cofw_data(n=3):
    images = [RNG.integers(0, 255, size=(30 + i, 40, 3), dtype=np.uint8) for i in range(n)]
    images[1] = images[1][:, :, 0]  # COFW has grey images too
    phis = np.concatenate([RNG.uniform(2, 28, (n, 58)), RNG.integers(0, 2, (n, 29))], axis=1)
    boxes = RNG.uniform(1, 20, (n, 4))
    return images, phis, boxes


def _write_mat_v73(path, images, phis, boxes, names=("IsT", "phisT", "bboxesT")):
    """MATLAB v7.3 layout: HDF5 with a 512-byte user block, arrays stored transposed, a cell array
    as a (1, N) dataset of object references into #refs#."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        ref_list = []
        for i, im in enumerate(images):
            d = refs.create_dataset(f"im{i}", data=np.ascontiguousarray(im.T))
            ref_list.append(d.ref)
        f.create_dataset(names[0], data=np.array([ref_list], dtype=h5py.ref_dtype))
        f.create_dataset(names[1], data=phis.T)
        f.create_dataset(names[2], data=boxes.T)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64")


@pytest.mark.parametrize("writer", [_write_mat_v5, _write_mat_v73])
def test_cofw_mat_both_versions(tmp_path, writer):
    images, phis, boxes = _cofw_data()
    writer(tmp_path / "COFW_test_color.mat", images, phis, boxes)
    samples = read_source("cofw", tmp_path, "test")
    assert len(samples) == 3
    for s, im, phi, box in zip(samples, images, phis, boxes):
        np.testing.assert_allclose(s.landmarks[:, 0], phi[:29], rtol=1e-6)
        np.testing.assert_allclose(s.landmarks[:, 1], phi[29:58], rtol=1e-6)
        np.testing.assert_array_equal(s.occluded, phi[58:] > 0.5)
        np.testing.assert_allclose(s.box, [box[0], box[1], box[0] + box[2], box[1] + box[3]], rtol=1e-6)
        expected = im if im.ndim == 3 else np.repeat(im[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(s.image, expected)
    report = inspect_source("cofw", tmp_path)
    assert report["splits"]["train"]["faces"] == 0 and report["splits"]["train"]["missing"] == ["COFW_train_color.mat"] and report["splits"]["test"]["faces"] == 3


def test_cofw_bad_shapes_and_cofw68(tmp_path):
    images, phis, boxes = _cofw_data()
    _write_mat_v5(tmp_path / "COFW_test_color.mat", images, phis[:, :80], boxes)
    with pytest.raises(DataError, match=r"COFW_test_color\.mat: phisT must be N x 87"):
        read_source("cofw", tmp_path, "test")
    _write_mat_v5(tmp_path / "COFW_test_color.mat", images, phis, boxes)
    ann = tmp_path / "COFW68_Data" / "test_annotations"
    ann.mkdir(parents=True)
    truth = []
    for i in range(3):
        pts, occ = _points(68), RNG.integers(0, 2, (68, 1)).astype(float)
        scipy.io.savemat(str(ann / f"{i + 1}_points.mat"), {"Points": pts.astype(float), "Occ": occ})
        truth.append((pts, occ))
    samples = read_source("cofw68", tmp_path, "test")
    np.testing.assert_allclose(samples[2].landmarks, truth[2][0], atol=1e-5)
    np.testing.assert_array_equal(samples[2].occluded, truth[2][1].ravel() > 0.5)
    np.testing.assert_array_equal(samples[0].image, images[0])
    (ann / "2_points.mat").unlink()
    with pytest.raises(DataError, match=r"2_points\.mat: file not found"):
        read_source("cofw68", tmp_path, "test")


def test_aflw_csv_lists_with_frontal_tags_and_box_size(tmp_path):
    header = "image_name,scale,box_size,center_w,center_h," + ",".join(
        f"original_{i}_{c}" for i in range(19) for c in "xy")
    rows, pts = [], []
    for i in range(3):
        p = _points(19)
        pts.append(p)
        _write_image(tmp_path / "images" / "flickr" / "0" / f"image{i:05d}.jpg")
        rows.append(f"flickr/0/image{i:05d}.jpg,0.25,{40 + i},30,20," + ",".join(f"{v:.3f}" for v in p.ravel()))
    (tmp_path / "face_landmarks_aflw_test.csv").write_text("\n".join([header] + rows) + "\n")
    (tmp_path / "face_landmarks_aflw_test_frontal.csv").write_text("\n".join([header, rows[1]]) + "\n")
    test = read_source("aflw", tmp_path, "test")
    assert [s.subsets for s in test] == [("full",), ("full", "frontal"), ("full",)]
    assert test[2].attributes["box_size"] == 42.0
    np.testing.assert_allclose(test[0].landmarks, pts[0], atol=1e-3)
    np.testing.assert_allclose(test[0].box, [5, -5, 55, 45])
    assert len(read_source("aflw", tmp_path, "frontal")) == 1
    (tmp_path / "face_landmarks_aflw_train.csv").write_text(header + "\n" + rows[0].replace(",0.25,", ",inf,") + "\n")
    with pytest.raises(DataError, match=r"face_landmarks_aflw_train\.csv:2"):
        read_source("aflw", tmp_path, "train")


def test_300vw_video_folder_frames(tmp_path):
    folder = tmp_path / "410"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (48, 32))
    assert writer.isOpened()
    levels = [30, 120, 220]
    for level in levels:
        writer.write(np.full((32, 48, 3), level, np.uint8))
    writer.release()
    truth = [_points(68) for _ in levels]
    for i, p in enumerate(truth):
        write_pts(folder / "annot" / f"{i + 1:06d}.pts", p)
    with pytest.warns(UserWarning, match="lacks official parts"):
        samples = read_source("300vw", tmp_path, "scenario3")
    assert [s.frame for s in samples] == [0, 1, 2] and samples[0].subsets == ("scenario3", "410")
    for s, level, p in zip(samples, levels, truth):
        assert abs(float(s.image.mean()) - level) < 4  # MJPG is lossy
        np.testing.assert_allclose(s.landmarks, p, atol=1e-5)
    assert samples[0].image_size() == (48, 32)
    with pytest.raises(DataError, match="cannot read frame 7"):
        Sample(str(folder / "vid.avi"), frame=7).image
    report = inspect_source("300vw", tmp_path, "scenario3")
    assert report["splits"]["scenario3"]["faces"] == 3 and "411" in report["splits"]["scenario3"]["missing"]


def test_unlabeled_folder_celeba_and_box_list(tmp_path):
    folder = tmp_path / "faces"
    _write_image(folder / "a.jpg")
    _write_image(folder / "sub" / "b.png")
    (folder / "boxes.txt").write_text("2\nimage_id x_1 y_1 width height\na.jpg 1 2 10 20\n")
    samples = read_source("unlabeled", folder)
    assert [s.landmarks for s in samples] == [None, None]
    np.testing.assert_array_equal(samples[0].box, [1, 2, 11, 22])
    assert samples[1].box is None
    celeba = tmp_path / "celeba"
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        _write_image(celeba / "img_celeba" / name)
    (celeba / "list_bbox_celeba.txt").write_text("3\nimage_id x_1 y_1 width height\n000002.jpg 3 4 5 6\n")
    (celeba / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n000003.jpg 2\n")
    test = read_source("celeba", celeba, "test")
    assert [s.path.rsplit("/", 1)[1] for s in test] == ["000002.jpg", "000003.jpg"]
    np.testing.assert_array_equal(test[0].box, [3, 4, 8, 10])
    (folder / "boxes.txt").write_text("a.jpg 1 2 -1 20\n")
    with pytest.raises(DataError, match=r"boxes\.txt:1: box must be finite"):
        read_source("unlabeled", folder)


def test_csv_layout(tmp_path):
    p0 = _points(68)
    _write_image(tmp_path / "training" / "Luis_Fonsi_21.jpg")
    header = "," + ",".join(str(i) for i in range(136))
    row = "Luis_Fonsi_21.jpg," + ",".join(f"{v}" for v in p0.ravel())
    (tmp_path / "training_frames_keypoints.csv").write_text(header + "\n" + row + "\n")
    assert list_splits("csv", tmp_path) == ("training",)
    samples = read_source("csv", tmp_path, "training")
    np.testing.assert_allclose(samples[0].landmarks, p0, atol=1e-5)
    assert samples[0].path.endswith("training/Luis_Fonsi_21.jpg")
    (tmp_path / "training_frames_keypoints.csv").write_text(header + "\n" + row.replace("Luis", "Ricky") + "\n")
    with pytest.raises(DataError, match=r"training_frames_keypoints\.csv:2: image .*Ricky_Fonsi_21\.jpg not found"):
        read_source("csv", tmp_path, "training")


def test_cli_inspect_prints_and_writes_json(tmp_path):
    root, _ = _w300_root(tmp_path)
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "spanlib", "data", "inspect", "--source", "300w", "--root", str(root), "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "helen/trainset: 3 faces" in done.stdout and "missing parts: lfpw/trainset" in done.stdout
    assert json.loads(out.read_text())["splits"]["challenging"]["faces"] == 2
    bad = subprocess.run(cmd[:-2] + ["--split", "test"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no faces found" in bad.stderr


@pytest.mark.shared_data
def test_shared_300w_and_youtube_faces(shared_data):
    report = inspect_source("300w", shared_data / "300w", "train")
    subsets = report["splits"]["train"]["subsets"]
    assert subsets["afw"]["faces"] == 337 and subsets["helen/trainset"]["faces"] == 870
    assert report["splits"]["train"]["image_size"] == {"width": [320, 320], "height": [320, 320]}
    csv_faces = read_source("csv", shared_data / "youtube-faces", "training")
    assert len(csv_faces) == 3462 and csv_faces[0].landmarks.shape == (68, 2)
    assert len(read_source("unlabeled", shared_data / "youtube-faces" / "unlabeled")) == 1538
