"""The inference-speed report (``python -m spanlib.bench.inference_speed``): its markdown is a pure
function of the JSON it writes beside it, so the committed pair must agree; the load note and the
"after the detector" column say what the numbers hold."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spanlib.bench.inference_speed import markdown

RESULTS = Path(__file__).resolve().parents[1] / "results" / "real"


@pytest.fixture(scope="module")
def committed():
    return json.loads((RESULTS / "inference_speed.json").read_text())


def test_the_committed_report_is_its_json_rendered(committed):
    assert markdown(committed) == (RESULTS / "inference_speed.md").read_text()


def test_landmark_time_after_the_detector_is_part_of_the_whole_and_shown(committed):
    rows = committed["detector_included"]
    for row in rows.values():
        assert 0 < row["landmarks_ms_per_face"] < row["ms_per_face"]
    text = markdown(committed)
    row = rows["dlib+onnxruntime+refine1+place96+flip-last"]
    assert f"| {row['ms_per_face']:.1f} | {row['landmarks_ms_per_face']:.1f} | {row['nme_io_found_faces']:.2f} |" in text
    older = copy.deepcopy(committed)  # a report written before the column existed
    for row in older["detector_included"].values():
        del row["landmarks_ms_per_face"]
    assert f"| {row['ms_per_face']:.1f} | - | {row['nme_io_found_faces']:.2f} |" in markdown(older)


@pytest.mark.parametrize("before, after, busy", [(0.1, 1.0, False), (0.9, 1.4, False), (1.3, 1.0, True),
                                                 (0.2, 1.8, True)])
def test_the_machine_is_called_busy_only_when_other_work_shared_it(committed, before, after, busy):
    result = copy.deepcopy(committed)
    result["load_before"][0], result["load_after"][0] = before, after
    text = markdown(result)
    assert ("**the machine was busy**" in text) is busy
    assert ("a quiet machine" in text) is not busy
