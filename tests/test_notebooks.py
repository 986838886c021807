"""Checks of the notebook pipeline.

Static: notebooks are committed clean (code and prose, the metadata JupyterLab writes) and
parameterised, dvc.yaml only passes parameters the notebooks declare and only interpolates keys
params.yaml has, and every path a notebook writes by default is in the scratch folder.

Executed (issue #15): every notebook runs *as opened*, through papermill/nbclient on tiny params,
once with the kernel's working folder at notebooks/ (as JupyterLab starts it) and once at the
project root (as DVC does), in a scratch copy of the project; a run by hand changes nothing of
the study (results/, the notebooks).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
INTERPOLATION = re.compile(r"\$\{([^}]+)\}")
# notebook parameters naming a path the notebook writes: scratch by default, the study's from dvc.yaml
WRITTEN = {"figures_dir", "summary_file", "checkpoint", "live_dir", "metrics_dir", "ced_file", "tables_dir",
           "models_dir", "runs_dir", "table_file", "metrics_file", "bench_dir", "paper_tables_dir", "report_file"}


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
        # every notebook starts in portable mode (spanlib/utils/portable.py), deciding by the params file
        portable = ["python", "-m", "spanlib.utils.portable", "--params", "params.yaml"]
        assert argv[:5] == portable, f"stage {name}: papermill should start through {' '.join(portable)}"
        argv = argv[5:]
        assert argv[0] == "papermill", f"stage {name}: expected a papermill command"
        assert argv[2].startswith("outputs/notebooks/"), f"stage {name}: executed notebook goes elsewhere"
        if "&&" in argv:  # what follows papermill (publishing the small executed copy) is not its
            argv = argv[: argv.index("&&")]
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
        # committed as JupyterLab writes them, so opening one does not mark it modified
        assert nb.nbformat == 4 and nb.nbformat_minor == 5, path.name
        assert set(nb.metadata) == {"kernelspec", "language_info"}, path.name
        assert nb.metadata["language_info"].get("pygments_lexer") == "ipython3", \
            f"{path.name}: language_info as the kernel reports it (JupyterLab fills it in on open)"
        assert all("id" in cell for cell in nb.cells), path.name
        text = path.read_text(encoding="utf-8")
        assert text == nbformat.writes(nb) + "\n", \
            f"{path.name}: not in the server's JSON layout (python -m spanlib.study.lab strip {path.name})"
        assert parameters_cell(nb), f"{path.name}: empty parameters cell"
        assert nb.cells[0].cell_type == "markdown", f"{path.name}: should open with prose"


def test_quick_settings_are_off_under_dvc_and_explained():
    """02 and 06 have a short setting for use by hand (``quick``); dvc.yaml never passes it, so the
    study runs in full, and the notebook's prose says what it does."""
    passed = {notebook: params for _, notebook, params in papermill_calls()}
    for name in ("02_train", "06_loss_sensitivity"):
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        assert parameters_cell(nb)["quick"] is False
        assert "quick" not in passed[f"notebooks/{name}.ipynb"]
        assert "`quick = True`" in nb.cells[0].source


def test_dvc_passes_the_params_file_and_paths_not_hyperparameters():
    """A notebook reads every hyperparameter from the params file (stage_params), so the same
    notebook opened by hand runs what dvc repro runs: DVC passes it the params file, the paths it
    writes, the foreach item and the stage's switches, never a value of params.yaml."""
    params = load_params()
    used = set()
    for stage, notebook, passed in papermill_calls():
        path = REPO / notebook
        assert path.is_file(), f"stage {stage}: {notebook} does not exist"
        used.add(path)
        declared = parameters_cell(nbformat.read(path, as_version=4))
        assert passed.get("params_file") == "params.yaml", f"stage {stage}: -p params_file params.yaml"
        for name, raw in passed.items():
            assert name in declared, f"stage {stage}: -p {name} is not in {notebook}'s parameters cell"
            for key in INTERPOLATION.findall(raw):
                assert key == "item" or name in WRITTEN, \
                    f"stage {stage}: -p {name} passes params.yaml's {key}; the notebook reads it from params_file"
                if key != "item":
                    lookup(params, key)
        # every knob left to the params file defaults to None: None reads params.yaml
        for name, value in declared.items():
            if name not in passed and name not in WRITTEN and name not in ("params_file", "face_root", "train_runs", "quick",
                                                                           "checkpoint", "variant"):
                assert value is None, f"{notebook}: {name} = {value!r} should default to None (read from params.yaml)"
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
    assert {f"models/{v}" for v in variants} <= deps  # one folder per variant: s<seed>/checkpoint.pt


def test_lookup_reports_missing_keys():
    with pytest.raises(KeyError):
        lookup({"a": {"b": 1}}, "a.c")
    assert lookup({"a": {"b": 1}}, "a.b") == 1


def test_outputs_of_a_run_by_hand_default_to_the_scratch_folder():
    """A notebook parameter that names a written path defaults to outputs/interactive/ (or None,
    which the notebook maps there); only dvc.yaml passes the study's paths."""
    written = WRITTEN
    read_only = {("03_evaluate", "models_dir"), ("07_report", "tables_dir"), ("04_heatmap_distributions", "checkpoint")}
    for path in NOTEBOOKS:
        for name, value in parameters_cell(nbformat.read(path, as_version=4)).items():
            if name in written and (path.stem, name) not in read_only:
                assert value is None or str(value).startswith("outputs/interactive/"), \
                    f"{path.name}: {name} = {value!r} would write into the study when run by hand"


# ---- every notebook runs as opened (nbclient through papermill) -----------------------------------

def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _outputs_text(path: Path) -> str:
    """Everything the executed notebook printed or displayed, as one string (not its code)."""
    nb = json.loads(path.read_text())
    return json.dumps([c.get("outputs", []) for c in nb["cells"] if c["cell_type"] == "code"])


def _project_copy(work: Path) -> Path:
    """The files a fresh clone has that the notebooks read: notebooks, dvc.yaml, tiny params,
    committed results and saved kernel benchmarks (spanlib itself is the installed package)."""
    from test_pipeline import tiny_params

    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    for name in ("notebooks", "results", "kernels/results"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    params = tiny_params()
    params["pipeline"]["variants"] = ["scpan"]  # 03 evaluates what 02 (variant scpan) trained
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


# Only what a user exploring would set: 03 reads the checkpoint 02 wrote by hand (the study's
# models/ is not in a fresh clone), and 04 explores that checkpoint once (the bundled model
# otherwise, or a clear note when this copy of spanlib has none).
AS_OPENED = [
    ("01_prepare_data", {}),
    ("02_train", {}),
    ("03_evaluate", {"models_dir": "outputs/interactive/models"}),
    ("04_heatmap_distributions", {}),
    ("05_kernel_profiling", {}),
    ("06_loss_sensitivity", {}),
    ("07_report", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("kernel_cwd", ["notebooks", "."], ids=["cwd=notebooks", "cwd=root"])
def test_every_notebook_runs_as_opened_and_leaves_the_study_alone(tmp_path, kernel_cwd):
    papermill = pytest.importorskip("papermill")
    work = _project_copy(tmp_path / "project")
    before = {name: _tree_digest(work / name) for name in ("results", "notebooks")}
    executed = tmp_path / "executed"
    executed.mkdir()
    for name, parameters in AS_OPENED:
        if name == "04_heatmap_distributions" and kernel_cwd == ".":
            parameters = {"checkpoint": "outputs/interactive/models/scpan/s0/checkpoint.pt"}
        papermill.execute_notebook(str(work / "notebooks" / f"{name}.ipynb"), str(executed / f"{name}.ipynb"),
                                   parameters=parameters, cwd=str(work / kernel_cwd), kernel_name="python3",
                                   progress_bar=False, log_output=False)
    # nothing of the study changed; the runs wrote to the scratch folder
    assert {name: _tree_digest(work / name) for name in ("results", "notebooks")} == before
    scratch = work / "outputs" / "interactive"
    assert all((scratch / "models" / "scpan" / f"s{seed}" / "checkpoint.pt").is_file() for seed in (0, 1))
    assert (scratch / "03_evaluate" / "tables" / "ablation.md").is_file()
    assert (scratch / "04_heatmap_distributions" / "figures" / "distributions.png").is_file()
    assert (scratch / "07_report" / "report.md").is_file()
    assert not (work / "notebooks" / "results").exists() and not (work / "notebooks" / "outputs").exists()
    assert {p.name for p in work.iterdir()} <= {"notebooks", "results", "kernels", "dvc.yaml", "params.yaml",
                                               "outputs", "data"}
    text = _outputs_text(executed / "04_heatmap_distributions.ipynb")
    assert "Section 4 skipped" in text  # the short trainings wait for train_runs = True
    if kernel_cwd == ".":
        assert (scratch / "04_heatmap_distributions" / "figures" / "model_view.png").is_file()
    else:  # the bundled model, or a clear note that this copy has none
        assert "No model to explore" in text or (scratch / "04_heatmap_distributions" / "figures" / "model_view.png").is_file()
    nb05 = _outputs_text(executed / "05_kernel_profiling.ipynb")
    assert "Kernel benchmarks loaded" in nb05 and "No saved results" not in nb05  # kernels/results is found from notebooks/ too


def test_find_root_looks_upward_for_dvc_yaml(tmp_path, monkeypatch):
    from spanlib.study.notebook import enter_project, find_root

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("seed: 3\n")
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    assert find_root(tmp_path / "notebooks" / "deep") == tmp_path.resolve()
    monkeypatch.chdir(tmp_path / "notebooks")
    from spanlib.study.notebook import stage_params

    assert stage_params("params.yaml")["seed"] == 3  # from notebooks/: params.yaml of the root
    assert enter_project() == tmp_path.resolve() and Path.cwd() == tmp_path.resolve()
    assert stage_params("../params.yaml")["seed"] == 3  # written for notebooks/: still found


def test_lab_hook_saves_tracked_notebooks_stripped_and_keeps_a_full_copy(tmp_path):
    from types import SimpleNamespace

    from spanlib.study.lab import LIVE_HINT_MARK, pre_save_hook

    root = tmp_path
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "notebooks").mkdir()
    committed = nbformat.read(NOTEBOOKS[0], as_version=4)
    (root / "notebooks" / "a.ipynb").write_text(nbformat.writes(committed) + "\n")
    opened = nbformat.from_dict(json.loads(nbformat.writes(committed)))
    opened.metadata["language_info"]["version"] = "3.99.0"   # another Python fills in another version
    opened.metadata["widgets"] = {"state": {}}
    code = next(c for c in opened.cells if c.cell_type == "code")
    code.execution_count = 3
    code.metadata["execution"] = {"iopub.status.idle": "now"}
    code.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
        "image/png": "iVBORw0KGgo=", "text/plain": LIVE_HINT_MARK})]
    model = {"type": "notebook", "content": json.loads(nbformat.writes(opened))}
    pre_save_hook(model=model, path="notebooks/a.ipynb", contents_manager=SimpleNamespace(root_dir=str(root)))
    assert nbformat.writes(nbformat.from_dict(model["content"])) == nbformat.writes(committed)
    full = json.loads((root / "outputs" / "interactive" / "notebooks" / "a.ipynb").read_text())
    outputs = [o for c in full["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs and "image/png" in outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in outputs[0]["data"]


def test_publish_writes_a_small_viewable_copy(tmp_path):
    import base64
    import io

    from PIL import Image

    from spanlib.study.lab import publish

    image = Image.effect_noise((1600, 500), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": "<Figure>"})]
    nb.cells = [cell]
    nbformat.write(nb, str(tmp_path / "big.ipynb"))
    publish(tmp_path / "big.ipynb", tmp_path / "docs" / "small.ipynb")
    small = nbformat.read(str(tmp_path / "docs" / "small.ipynb"), as_version=4)
    png = base64.b64decode(small.cells[0].outputs[0]["data"]["image/png"])
    assert Image.open(io.BytesIO(png)).width <= 720
    assert (tmp_path / "docs" / "small.ipynb").stat().st_size < (tmp_path / "big.ipynb").stat().st_size / 2


def test_makefile_lab_starts_at_the_root_with_the_save_hook():
    text = (REPO / "Makefile").read_text()
    recipe = text[text.index("\nlab:"):].split("\n\n")[0]
    assert "--ServerApp.root_dir=" in recipe and "/lab/tree/notebooks" in recipe
    assert "--ContentsManager.pre_save_hook=spanlib.study.lab.pre_save_hook" in recipe


def test_make_lab_turns_the_news_pop_up_off(tmp_path):
    """`make lab` merges fetchNews "false" into the .venv's JupyterLab overrides.json (the pop-up
    asking about Jupyter news covered every notebook), keeping what else is there."""
    from spanlib.study.lab import lab_overrides

    settings = tmp_path / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True)
    (settings / "overrides.json").write_text(json.dumps({"x:y": {"a": 1}}))
    path = lab_overrides(tmp_path)
    written = json.loads(path.read_text())
    assert written["x:y"] == {"a": 1}
    assert written["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert "spanlib.study.lab lab-settings" in (REPO / "Makefile").read_text()
