"""A JPEG cut short is refused, naming the file, wherever images are read (OpenCV alone would
decode it into a grey remainder and only print "Premature end of JPEG file")."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from spanlib.data.pts import write_pts
from spanlib.data.sources import inspect_source, read_source
from spanlib.utils.errors import DataError
from spanlib.utils.files import image_problem, read_image


def jpeg_bytes(size=96) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def face_folder(folder, names=("a", "b", "c")):
    folder.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes()
    for name in names:
        (folder / f"{name}.jpg").write_bytes(data)
        write_pts(folder / f"{name}.pts", np.full((68, 2), 40.0, np.float32))
    return data


def test_a_jpeg_cut_in_half_is_refused_naming_the_file(tmp_path):
    data = jpeg_bytes()
    whole, half = tmp_path / "whole.jpg", tmp_path / "half.jpg"
    whole.write_bytes(data)
    half.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(half)) is not None  # what the check exists for: OpenCV accepts it
    assert image_problem(whole) is None and read_image(whole).shape == (96, 96, 3)
    assert "truncated JPEG" in image_problem(half)
    with pytest.raises(DataError, match=r"half.jpg: truncated JPEG"):
        read_image(half)


def test_data_after_the_end_marker_and_other_formats_are_accepted(tmp_path):
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(jpeg_bytes() + b"\0" * 10000)  # marker beyond the tail searched: Pillow decides
    assert image_problem(padded) is None
    png = tmp_path / "x.png"
    assert cv2.imwrite(str(png), np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert image_problem(png) is None
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    assert "truncated PNG" in image_problem(png)
    assert image_problem(tmp_path / "none.jpg") == "file not found"


def test_reading_a_split_with_a_truncated_jpeg_stops_naming_it(tmp_path):
    data = face_folder(tmp_path / "faces")
    assert len(read_source("pts", tmp_path / "faces")) == 3
    (tmp_path / "faces" / "b.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"b.jpg: truncated JPEG .*source 'pts'"):
        read_source("pts", tmp_path / "faces")


def test_data_inspect_lists_broken_images_and_exits_1(tmp_path):
    data = face_folder(tmp_path / "faces")
    (tmp_path / "faces" / "c.jpg").write_bytes(data[: len(data) // 2])
    report = inspect_source("pts", tmp_path / "faces")
    entry = report["splits"]["all"]
    assert report["broken"] == 1 and entry["faces"] == 2
    assert entry["broken"][0]["path"].endswith("c.jpg") and "truncated JPEG" in entry["broken"][0]["problem"]
    done = subprocess.run([sys.executable, "-m", "spanlib", "data", "inspect", "--source", "pts",
                           "--root", str(tmp_path / "faces")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "broken images: 1" in done.stdout and "c.jpg: truncated JPEG" in done.stdout


def test_predict_counts_a_cut_jpeg_as_a_failed_input_and_exits_1(tmp_path, capsys):
    from spanlib.cli import main

    data = jpeg_bytes(160)
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    code = main(["predict", str(tmp_path / "whole.jpg"), str(tmp_path / "half.jpg"), "--json", str(tmp_path / "f.json")])
    said = capsys.readouterr()
    assert code == 1 and "1 of 2 input(s) failed" in said.err and "half.jpg" in said.err
    reason = next(line for line in said.out.splitlines() if line.startswith(str(tmp_path / "half.jpg")))
    assert "error" in reason and "truncated" in reason.lower()
