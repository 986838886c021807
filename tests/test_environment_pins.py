"""environment.yml must pin exactly what pyproject.toml pins, so conda and pip users get the same."""

import re
import tomllib

import yaml

from conftest import REPO_ROOT


def _pins(requirements):
    return dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", r).groups() for r in requirements)


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = _pins(project["dependencies"] + extras["dev"] + extras["onnx"] + extras["peers"])  # what `make` installs
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins([p for p in pip_list if "==" in p]) == wanted
    assert wanted["torch"] == "2.13.0"
