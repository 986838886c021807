"""What a new user sees: `spanlib --help`, a fresh clone without data, a dataset root one level
too deep."""

import subprocess
import sys

import numpy as np
import pytest

from spanlib.cli import COMMANDS, DESCRIPTION, main
from spanlib.data.pts import write_pts
from spanlib.utils.errors import DataError


def spanlib(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spanlib", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_help_shows_whole_sentences_for_the_tool_and_each_command():
    done = spanlib("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert " ".join(DESCRIPTION.split()) in text and "``" not in text
    for name, (_, help_text) in COMMANDS.items():
        assert f"{name} {help_text}" in text
        assert help_text[-1] not in ",;:" and len(help_text.split()) >= 4, name


def test_every_commands_help_answers_without_torch():
    """`spanlib COMMAND --help` imports the command's module and builds its parser only: torch (about
    2 s to import) stays out, so help is at once. A fresh interpreter, so no other test's imports count."""
    code = ("import sys\nfrom spanlib.cli import COMMANDS, main\nfor name in COMMANDS:\n"
            "    try:\n        main([name, '--help'])\n    except SystemExit as stop:\n"
            "        assert stop.code == 0, (name, stop.code)\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'onnxruntime', 'dlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_missing_synthetic_root_says_how_to_make_it(tmp_path):
    from spanlib.data.sources import read_source

    with pytest.raises(DataError, match=r"data root not found.*spanlib synth --out .*synthetic.*make repro"):
        read_source("synthetic", tmp_path / "data" / "synthetic", "train")


def test_inspect_on_a_300w_sub_folder_fails_and_names_the_expected_layout(tmp_path, capsys):
    sub = tmp_path / "300w" / "afw"
    sub.mkdir(parents=True)
    import cv2

    cv2.imwrite(str(sub / "1.jpg"), np.zeros((20, 20, 3), np.uint8))
    write_pts(sub / "1.pts", np.full((68, 2), 5.0, np.float32))
    assert main(["data", "inspect", "--source", "300w", "--root", str(sub)]) == 2
    err = capsys.readouterr().err
    assert "no faces in any split" in err and "expected under the root: afw/, helen/trainset/" in err
    assert "found: no folders and files .jpg, .pts" in err and "--source pts" in err
    assert main(["data", "inspect", "--source", "300w", "--root", str(tmp_path / "300w"), "--split", "train"]) == 0
