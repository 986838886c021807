import subprocess
import sys

import pytest
import yaml

from spanlib.cli import COMMANDS
from spanlib.utils.errors import ParamError
from spanlib.utils.files import write_json
from spanlib.config.schema import apply_overrides
from spanlib.config.params import get


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    params = {"train": {"iterations": 10, "lr": 0.1}, "model": {"variant": "shn"}}
    out = apply_overrides(params, ["train.iterations=25", "model.variant=scpan", "train.lr=2.5e-4"])
    assert out["train"]["iterations"] == 25 and out["model"]["variant"] == "scpan"
    assert out["train"]["lr"] == pytest.approx(2.5e-4)
    assert params["train"]["iterations"] == 10  # the original is untouched
    with pytest.raises(ParamError, match="train.iteratons"):
        apply_overrides(params, ["train.iteratons=3"])
    with pytest.raises(ParamError, match="key=value"):
        apply_overrides(params, ["train.iterations"])
    assert get(out, "model.variant") == "scpan"
    with pytest.raises(ParamError, match="model.width"):
        get(out, "model.width")


def test_atomic_json_write_replaces_whole_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    write_json(target, {"b": 2})
    assert yaml.safe_load(target.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert target.stat().st_mode & 0o044, "atomic writes must not leave files readable by the owner only"


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    from spanlib.utils.files import atomic_path

    target = tmp_path / "m.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.txt"]


def test_every_command_module_imports_and_has_the_interface():
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "spanlib", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "spanlib" in out.stdout
