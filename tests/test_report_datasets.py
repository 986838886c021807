"""Tables I-VI filled end to end: tiny files in each dataset's published format, read by our
readers, scored by `spanlib evaluate` with a tiny checkpoint of the dataset's scheme, and tabled
by the report. Every column of every table must get one of our values, from the dataset and the
subset the paper's caption names (no stand-in), so a reader's subset tag that the report does not
look for (Menpo's "frontal", 300-W's 600-face "test" set) fails here."""

import warnings

import cv2
import numpy as np
import pytest
import scipy.io

from eval_helpers import save_tiny_checkpoint
from format_writers import points, wflw_line, write_cofw_mat, write_face, write_image
from spanlib.data.pts import write_pts
from spanlib.evaluation.evaluate import evaluate
from spanlib.reporting.report import write_report

FACES = 2  # per part or subset: enough for every metric, small enough for seconds


def _300w(root):
    """The 300-W layout: the common and challenging parts (Table I) and the 600-face test set's
    two folders (Table II)."""
    for part in ("helen/testset", "lfpw/testset", "ibug", "300W/01_Indoor", "300W/02_Outdoor"):
        for i in range(FACES):
            write_face(root / part, f"{part.replace('/', '_')}_{i}")


def _menpo(root):
    for i in range(FACES):
        write_face(root / "testset" / "semifrontal", f"f{i}")
    write_face(root / "testset" / "profile", "p0", k=39)  # profile faces are counted and skipped


def _cofw(root):
    """COFW's test .mat (29 points, Table IV) and COFW-68's per-face annotations (Table II)."""
    n = FACES
    images = [np.full((40, 60, 3), 90 + 10 * i, np.uint8) for i in range(n)]
    xy = [points(29) for _ in range(n)]  # phisT rows: 29 x, 29 y, 29 occlusion flags
    phis = np.concatenate([np.stack([np.concatenate([p[:, 0], p[:, 1]]) for p in xy]), np.zeros((n, 29))], axis=1)
    write_cofw_mat(root / "COFW_test_color.mat", images, phis, np.tile([5.0, 5.0, 50.0, 30.0], (n, 1)))
    ann = root / "COFW68_Data" / "test_annotations"
    ann.mkdir(parents=True)
    for i in range(n):
        scipy.io.savemat(str(ann / f"{i + 1}_points.mat"), {"Points": points(68).astype(float),
                                                            "Occ": np.zeros((68, 1))})


def _aflw(root):
    header = "image_name,scale,box_size,center_w,center_h," + ",".join(
        f"original_{i}_{c}" for i in range(19) for c in "xy")
    rows = []
    for i in range(FACES + 1):
        write_image(root / "images" / "flickr" / "0" / f"image{i:05d}.jpg")
        rows.append(f"flickr/0/image{i:05d}.jpg,0.25,{40 + i},30,20," + ",".join(f"{v:.3f}" for v in points(19).ravel()))
    (root / "face_landmarks_aflw_test.csv").write_text("\n".join([header] + rows) + "\n")
    (root / "face_landmarks_aflw_test_frontal.csv").write_text("\n".join([header] + rows[:FACES]) + "\n")


def _wflw(root):
    """Two faces of each attribute, so that every subset column of Table V exists."""
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    lines = []
    for i, flags in enumerate([(1, 1, 1, 0, 0, 0), (0, 0, 0, 1, 1, 1)] * FACES):
        write_image(root / "WFLW_images" / "0--Parade" / f"{i}.jpg")
        lines.append(wflw_line(points(98), (3, 4, 55, 36), flags, f"0--Parade/{i}.jpg"))
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")


def _300vw(root):
    """One video of each test scenario (114: scenario 1, 203: 2, 410: 3), MJPG with .pts per frame."""
    for video in ("114", "203", "410"):
        folder = root / video
        folder.mkdir(parents=True)
        writer = cv2.VideoWriter(str(folder / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (60, 40))
        assert writer.isOpened()
        for frame in range(FACES):
            writer.write(np.full((40, 60, 3), 60 + 40 * frame, np.uint8))
            write_pts(folder / "annot" / f"{frame + 1:06d}.pts", points(68))
        writer.release()


# (source, writer, scheme, splits evaluated): the splits the tables' columns come from
DATASETS = [("300w", _300w, "68", ("full", "test")), ("menpo", _menpo, "68", ("test",)),
            ("cofw68", _cofw, "68", ("test",)), ("cofw", _cofw, "29", ("test",)), ("aflw", _aflw, "19", ("test",)),
            ("wflw", _wflw, "98", ("test",)), ("300vw", _300vw, "68", ("scenario1", "scenario2", "scenario3"))]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    metrics = base / "metrics"
    for source, write, scheme, splits in DATASETS:
        root = base / source
        if not root.exists():  # cofw and cofw68 share one root
            root.mkdir()
            write(root)
        checkpoint = save_tiny_checkpoint(base / f"{source}.pt", scheme=scheme)
        for split in splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the parts and videos a tiny root lacks
                evaluate(checkpoint, source, root, split=split, device="cpu", progress=False,
                         json_path=metrics / f"{source}_{split}.json")
    return write_report([metrics], base / "report", figures=False)["tables"]


@pytest.mark.parametrize("name", ["I", "II", "III", "IV", "V", "VI"])
def test_every_column_of_the_papers_table_gets_our_value(report, name):
    table = report[name]
    ours = [row for row, kind in zip(table.rows, table.kinds) if kind == "ours"]
    assert ours, f"Table {name}: no row of ours"
    for col, header in enumerate(table.header[1:], start=1):
        assert any(row[col] is not None for row in ours), f"Table {name}: column {header!r} is empty"
    assert not any("stands in" in note for note in table.notes), table.notes


def test_each_dataset_fills_its_own_columns(report):
    """The cells come from the dataset the column names: Table II's three datasets in three rows,
    each filling only its own two columns (NME_box and AUC_box^7)."""
    table = report["II"]
    ours = {row[0]: row[1:] for row, kind in zip(table.rows, table.kinds) if kind == "ours"}
    filled = {label.split("[")[1].split("]")[0]: [h for h, v in zip(table.header[1:], values) if v is not None]
              for label, values in ours.items()}
    assert filled == {"300w": ["300W test NME_box (%)", "300W test AUC_box@0.07 (%)"],
                      "menpo": ["Menpo 2D frontal NME_box (%)", "Menpo 2D frontal AUC_box@0.07 (%)"],
                      "cofw68": ["COFW-68 full NME_box (%)", "COFW-68 full AUC_box@0.07 (%)"]}, filled
