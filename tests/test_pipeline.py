"""Smoke run of the whole notebook pipeline: `dvc repro` of the repository's dvc.yaml, notebooks and
params.yaml (with tiny sizes) in a scratch copy; every stage runs its notebook through papermill.

Checks that every declared output exists, that the metrics and tables hold what they claim, that
a second `dvc repro` has nothing to do, and that changing one param reruns only its stages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spanlib.utils.errors import DataError, ParamError
from spanlib.study.experiments import spread
from spanlib.reporting.figures import read_loss_curves
from spanlib.study.notebook import stage_params
from spanlib.config.params import resolve
from spanlib.reporting.report import notebook_timings

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# A handful of faces, a few iterations, a small network: the chain, not the numbers.
TINY = {
    "synth.n_train": 6, "synth.n_common": 3, "synth.n_challenging": 3, "synth.n_unlabeled": 4,
    "synth.size": 128,
    "crop.input_size": 64,
    "model.stages": 2, "model.width": 16, "model.depth": 2,
    "train.iterations": 2, "train.batch_size": 2, "train.checkpoint_every": 2, "train.val_every": 2,
    "train.num_workers": 0, "train.val_faces": 2,
    "pipeline.preview_faces": 4, "pipeline.seeds": [0, 1], "pipeline.workers": 2,
    "distributions.iterations": 1, "distributions.batch_size": 2, "distributions.test_faces": 4,
    "sensitivity.iterations": 1, "sensitivity.batch_size": 2, "sensitivity.test_faces": 4,
    "kernel_profiling.run": "never",
}


def tiny_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = resolve(params, overrides=TINY, origin="tests/test_pipeline.py TINY")
    params["sensitivity"]["settings"] = params["sensitivity"]["settings"][:2]
    params["distributions"]["settings"] = [{"distribution": "gaussian"}, {"distribution": "ged", "ged_shape": 0.2}]
    return params


def dvc(workdir: Path, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def pipeline_copy(tmp_path_factory) -> Path:
    """A scratch DVC project with the repo's pipeline files, the code it depends on, tiny params."""
    work = tmp_path_factory.mktemp("pipeline")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in ("notebooks", "spanlib", "kernels"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    dvc(work, "init", "--no-scm", "-q")
    dvc(work, "repro")
    return work


@pytest.mark.slow
def test_repro_runs_every_notebook_and_writes_every_output(pipeline_copy):
    work = pipeline_copy
    params = yaml.safe_load((work / "params.yaml").read_text())
    variants = params["pipeline"]["variants"]
    executed = {p.name for p in (work / "outputs" / "notebooks").glob("*.ipynb")}
    expected = {"01_prepare_data.ipynb", "03_evaluate.ipynb", "04_heatmap_distributions.ipynb",
                "05_kernel_profiling.ipynb", "06_loss_sensitivity.ipynb", "07_report.ipynb"}
    expected |= {f"02_train_{v}.ipynb" for v in variants}
    assert executed == expected
    for name in executed:  # papermill marks a failed cell in the notebook's metadata
        meta = json.loads((work / "outputs" / "notebooks" / name).read_text())["metadata"]["papermill"]
        assert meta["exception"] is None, name

    for v in variants:
        for seed in params["pipeline"]["seeds"]:  # one run per seed, side by side
            assert (work / "models" / v / f"s{seed}" / "checkpoint.pt").is_file()
            assert (work / "results" / "train" / v / f"s{seed}" / "plots" / "metrics").is_dir()
            assert (work / "results" / "evaluate" / v / f"s{seed}.json").is_file()
        assert (work / "results" / "figures" / "02_train" / v / "loss_curves.png").is_file()
    for fig in ("samples.png", "targets.png", "bali_fields.png"):
        assert (work / "results" / "figures" / "01_prepare_data" / fig).is_file()
    assert (work / "results" / "figures" / "03_evaluate" / "ced.png").is_file()
    assert (work / "results" / "figures" / "04_heatmap_distributions" / "distributions.png").is_file()

    summary = json.loads((work / "results" / "metrics" / "evaluate.json").read_text())
    assert list(summary) == variants and all(set(summary[v]) == {"nme_io", "sd"} for v in variants)
    n_test = params["synth"]["n_common"] + params["synth"]["n_challenging"]
    detail = json.loads((work / "results" / "tables" / "03_evaluate" / "ablation.json").read_text())
    for v in variants:
        full = detail["rows"][v]["subsets"]["full"]["nme"]
        assert len(full["per_seed"]) == 2 and summary[v]["nme_io"] == pytest.approx(100 * full["mean"], abs=1e-3)
        assert set(detail["rows"][v]["subsets"]) == {"common", "challenging", "full"}
    assert {(c["a"], c["b"]) for c in detail["comparisons"]} == {(v, "shn") for v in variants[1:]} | {("semi_scpan", "scpan")}
    assert all(c["faces"] == n_test and c["seeds"] == 2 for c in detail["comparisons"] if c["subset"] == "full")
    ced_header = (work / "results" / "plots" / "ced.csv").read_text().splitlines()[0]
    assert ced_header == "nme," + ",".join(variants)

    ablation = (work / "results" / "tables" / "03_evaluate" / "ablation.md").read_text()
    assert all(f"| {v} |" in ablation for v in variants)
    table7 = (work / "results" / "tables" / "table7_heatmap_distributions.md").read_text()
    assert "| gaussian | 2 |" in table7 and "| ged d=0.2 | 2 |" in table7  # setting, seeds
    table8 = (work / "results" / "tables" / "table8_loss_weights.md").read_text()
    rows8 = [line for line in table8.splitlines() if line.startswith("| lambda1=") and " − " not in line]
    assert len(rows8) == len(params["sensitivity"]["settings"])
    report = (work / "results" / "report.md").read_text()
    assert "ablation" in report and "Wall time per notebook" in report
    assert (work / "results" / "paper_tables" / "tables.md").is_file()
    setup = json.loads((work / "results" / "sensitivity" / "setup.json").read_text())
    assert setup["table"] == "VIII" and len(setup["rows"]) == len(params["sensitivity"]["settings"])
    assert all(len(row["metrics"]) == 2 and all((work / "results" / "sensitivity" / f).is_file() for f in row["metrics"])
               for row in setup["rows"])


@pytest.mark.slow
def test_second_repro_does_nothing_and_one_param_reruns_only_its_stages(pipeline_copy):
    work = pipeline_copy
    assert "up to date" in dvc(work, "status").lower()
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["kernel_profiling"]["run"] = "auto"  # still nothing to run without CUDA, but a new param
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = dvc(work, "status", "--json")
    assert set(json.loads(changed)) == {"profiling"}
    params["kernel_profiling"]["run"] = "never"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert json.loads(dvc(work, "status", "--json")) == {}


# ---- the helpers the notebooks call (fast) -------------------------------------------------------

def test_stage_params_reads_the_file_then_its_recipe_then_the_values_set_by_hand(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "pipeline": {"recipe": "paper"}, "train": {"iterations": 600, "batch_size": 16},
        "data": {"root": "data/synthetic"},
        "recipes": {"paper": {"train.iterations": 200000}}}))
    # None (a notebook parameter's default, what dvc repro leaves) keeps the file's value, or the recipe's
    assert stage_params(path)["train"]["iterations"] == 200000
    assert stage_params(path, {"train.iterations": None})["train"]["iterations"] == 200000
    assert stage_params(path, {"data.root": None})["data"]["root"] == "data/synthetic"
    # a value set by hand wins over both
    assert stage_params(path, {"train.iterations": 5})["train"]["iterations"] == 5
    assert stage_params(path, {"train.iterations": 600})["train"]["iterations"] == 600
    assert stage_params(path, {"data.root": "x"})["data"]["root"] == "x"
    with pytest.raises(ParamError, match="train.iters"):
        stage_params(path, {"train.iters": 5})
    # without a recipe the file and the values are all there is
    path.write_text(yaml.safe_dump({"pipeline": {"recipe": None}, "train": {"iterations": 600}}))
    assert stage_params(path)["train"]["iterations"] == 600


def test_stage_params_checks_the_values_set_by_hand(tmp_path):
    """A notebook parameter is checked by the schema like a --set: a value out of range or of the
    wrong type is a ParamError naming the notebook parameter, and the file is left unchanged."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"recipe": None}, "train": {"iterations": 600},
                                    "kernel_profiling": {"run": "auto", "results_dir": "k"}}))
    with pytest.raises(ParamError, match=r"\(notebook parameter\) train.iterations: .*expected an integer >= 1, got 0"):
        stage_params(path, {"train.iterations": 0})
    with pytest.raises(ParamError, match=r"\(notebook parameter\) kernel_profiling.run: .*one of auto, always, never"):
        stage_params(path, {"kernel_profiling.run": "sometimes"})
    assert stage_params(path, {"kernel_profiling.run": "never"})["kernel_profiling"]["run"] == "never"
    assert yaml.safe_load(path.read_text())["kernel_profiling"]["run"] == "auto"


def test_read_loss_curves_reads_dvclive_tsv(tmp_path):
    folder = tmp_path / "live" / "plots" / "metrics" / "train"
    folder.mkdir(parents=True)
    (folder / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t1\t0.5\n2\t2\t0.25\n")
    curves = read_loss_curves(tmp_path / "live")
    steps, values = curves["train/loss"]
    assert steps.tolist() == [1.0, 2.0] and values.tolist() == [0.5, 0.25]
    with pytest.raises(DataError, match="no dvclive metrics"):
        read_loss_curves(tmp_path / "missing")


def test_notebook_timings_reads_papermill_metadata(tmp_path):
    (tmp_path / "a.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": 12.5}}}))
    (tmp_path / "b.ipynb").write_text(json.dumps({"metadata": {}}))
    assert [(r["notebook"], r["seconds"]) for r in notebook_timings(tmp_path)] == [("a.ipynb", 12.5)]


def test_spread_takes_evenly_spaced_faces_including_both_ends():
    faces = list(range(10))
    assert spread(faces, 4) == [0, 3, 6, 9]
    assert spread(faces, None) == faces and spread(faces, 20) == faces
    with pytest.raises(ParamError, match="test_faces"):
        spread(faces, 0)


@pytest.mark.slow
def test_dvc_metrics_and_plots_see_the_declared_files(pipeline_copy):
    metrics = json.loads(dvc(pipeline_copy, "metrics", "show", "--json"))
    files = next(iter(metrics.values()))["data"]
    assert set(files) == {"results/metrics/evaluate.json"}  # the ablation's headline: NME mean and sd per variant
    shown = dvc(pipeline_copy, "metrics", "show")
    assert max(len(line) for line in shown.splitlines()) <= 200, shown  # fits in a terminal
    plots = json.loads(dvc(pipeline_copy, "plots", "show", "--json"))
    text = json.dumps(plots)
    assert "CED on the full test set" in text and "Training loss: landmark heatmap term" in text
    # one figure per term, every variant overlaid (DVC names each curve by its file, minus the common prefix)
    assert all(f"{v}/s0/plots/metrics/train/heat.tsv" in text for v in ("shn", "shn_bali", "scpan", "semi_scpan"))
