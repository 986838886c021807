"""Static checks of the notebook pipeline: notebooks are committed clean and parameterised, and
dvc.yaml only passes parameters the notebooks declare and only interpolates keys params.yaml has."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


def load_dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def load_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def lookup(params: dict, key: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def parameters_cell(nb) -> dict[str, object]:
    """Names assigned in the papermill ``parameters`` cell and their literal default values."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "expected exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"parameters cell: only simple assignments, got {ast.unparse(node)!r}"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def papermill_calls() -> list[tuple[str, str, dict[str, str]]]:
    """(stage, notebook path, {parameter: raw value}) for every stage's papermill command."""
    calls = []
    for name, stage in load_dvc_stages().items():
        body = stage.get("do", stage)
        argv = shlex.split(body["cmd"])
        assert argv[:4] == ["mkdir", "-p", "outputs/notebooks", "&&"], f"stage {name}: unexpected command"
        argv = argv[4:]
        assert argv[0] == "papermill", f"stage {name}: expected a papermill command"
        assert argv[2].startswith("outputs/notebooks/"), f"stage {name}: executed notebook goes elsewhere"
        params, i = {}, 3
        while i < len(argv):
            if argv[i] in ("-p", "--parameters"):
                params[argv[i + 1]] = argv[i + 2]
                i += 3
            else:
                i += 1
        calls.append((name, argv[1], params))
    return calls


def test_every_notebook_is_clean_and_parameterised():
    assert {p.stem for p in NOTEBOOKS} >= {"01_prepare_data", "02_train", "03_evaluate",
                                          "04_heatmap_distributions", "05_kernel_profiling"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{path.name}: committed with outputs (clear them before committing)"
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        assert parameters_cell(nb), f"{path.name}: empty parameters cell"
        assert nb.cells[0].cell_type == "markdown", f"{path.name}: should open with prose"


def test_dvc_passes_only_declared_parameters_with_matching_defaults():
    params = load_params()
    used = set()
    for stage, notebook, passed in papermill_calls():
        path = REPO / notebook
        assert path.is_file(), f"stage {stage}: {notebook} does not exist"
        used.add(path)
        declared = parameters_cell(nbformat.read(path, as_version=4))
        for name, raw in passed.items():
            assert name in declared, f"stage {stage}: -p {name} is not in {notebook}'s parameters cell"
            match = INTERPOLATION.fullmatch(raw)
            if match and match.group(1) != "item":
                # opened by hand in JupyterLab, the notebook must run what dvc repro runs: a
                # hyperparameter defaults to None, which stage_params reads from params.yaml
                assert declared[name] is None, \
                    f"{notebook}: {name} should default to None (params.yaml {match.group(1)})"
                lookup(params, match.group(1))
    assert used == set(NOTEBOOKS), f"notebooks no stage runs: {set(NOTEBOOKS) - used}"


def test_every_interpolated_key_and_declared_param_exists_in_params_yaml():
    params = load_params()
    strings = []

    def collect(node):
        if isinstance(node, dict):
            for k, v in node.items():
                collect(k), collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)
        elif isinstance(node, str):
            strings.append(node)

    collect(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    keys = {k for s in strings for k in INTERPOLATION.findall(s) if k != "item"}
    assert keys, "dvc.yaml interpolates nothing from params.yaml"
    for key in sorted(keys):
        lookup(params, key)  # KeyError names the missing key
    for name, stage in load_dvc_stages().items():
        for key in stage.get("do", stage).get("params", []):
            assert isinstance(key, str), f"stage {name}: params from another file are not expected"
            lookup(params, key)


def test_foreach_variants_are_the_models_evaluate_reads():
    params = load_params()
    stages = load_dvc_stages()
    assert stages["train"]["foreach"] == "${pipeline.variants}"
    variants = params["pipeline"]["variants"]
    assert variants == ["shn", "shn_bali", "shn_scpa", "scpan", "semi_scpan"]
    deps = set(stages["evaluate"]["deps"])
    assert {f"models/{v}/checkpoint.pt" for v in variants} <= deps


def test_lookup_reports_missing_keys():
    with pytest.raises(KeyError):
        lookup({"a": {"b": 1}}, "a.c")
    assert lookup({"a": {"b": 1}}, "a.b") == 1
