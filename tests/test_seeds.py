"""Seeds in the study's tables: runs of one setting grouped into mean ± sd, paired significance marks
against the reference row, and the per-seed training runner (kept / resumed / new)."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from spanlib.utils.errors import ParamError
from spanlib.evaluation.metrics import subset_metrics
from spanlib.reporting.report import Cell, build_setup_table, build_table, collect
from spanlib.config.schemes import get_scheme
from spanlib.training.seeds import check_seeds, headline, seed_path, seed_table

SCHEME = get_scheme("68")
N_FACES = 60


def _faces(rng):
    gt = rng.uniform(20, 100, size=(N_FACES, SCHEME.num_points, 2))
    gt[:, SCHEME.io_indices[0]] = (30, 50)
    gt[:, SCHEME.io_indices[1]] = (90, 50)
    return gt


def _result(variant, seed, gt, noise, rng, root="data"):
    """A metrics dict as spanlib.evaluation.evaluate writes it, for a checkpoint models/<variant>/s<seed>/."""
    pred = gt + rng.normal(0, noise, gt.shape)
    subsets = {"common": subset_metrics(pred[:40], gt[:40], SCHEME), "full": subset_metrics(pred, gt, SCHEME)}
    return {"provenance": {"checkpoint": f"models/{variant}/s{seed}/checkpoint.pt", "checkpoint_sha256": f"{variant}{seed}",
                           "variant": variant, "source": "synthetic", "root": root, "split": "common+challenging",
                           "code_version": "test", "iteration": 10, "params": {"seed": seed},
                           "nme_norms": {"fr_auc_norm": "io"}},
            "subsets": subsets}


@pytest.fixture
def groups():
    """shn, and scpan with clearly smaller errors, and shn_bali drawn like shn: 3 seeds each,
    the same faces for every run."""
    rng = np.random.default_rng(1)
    gt = _faces(rng)
    return {"shn": [_result("shn", s, gt, 2.0, rng) for s in range(3)],
            "shn_bali": [_result("shn_bali", s, gt, 2.0, rng) for s in range(3)],
            "scpan": [_result("scpan", s, gt, 1.0, rng) for s in range(3)]}


def test_report_groups_seeds_into_mean_sd_and_marks_the_clear_difference(groups, tmp_path):
    for variant, results in groups.items():
        for r in results:
            (tmp_path / f"{variant}_s{r['provenance']['params']['seed']}.json").write_text(json.dumps(r))
    runs, _ = collect([tmp_path])
    table = build_table("I", runs)
    ours = {row[0]: row for row, kind in zip(table.rows, table.kinds) if kind == "ours"}
    assert len(ours) == 3  # three seeds make one row per variant
    scpan = next(row for label, row in ours.items() if label.startswith("ours: scpan"))
    col = table.header.index("common NME_io (%)")
    values = [100 * r["subsets"]["common"]["nme"]["io"] for r in groups["scpan"]]
    cell = scpan[col]
    assert isinstance(cell, Cell) and cell.n == 3
    assert cell.mean == pytest.approx(statistics.mean(values))
    assert cell.sd == pytest.approx(statistics.stdev(values))
    assert cell.mark == " ▼"  # half the noise of shn: significantly lower
    bali = next(row for label, row in ours.items() if label.startswith("ours: shn_bali"))
    assert bali[col].mark == ""  # drawn like shn: no mark
    assert "±" in table.markdown() and any("scpan" in n and "significant" in n for n in table.notes)


def test_setup_table_takes_a_list_of_seed_files_and_compares_with_the_first_setting(groups, tmp_path):
    rows = []
    for variant in ("shn", "scpan"):
        files = []
        for r in groups[variant]:
            name = f"{variant}_{r['provenance']['params']['seed']}.json"
            (tmp_path / name).write_text(json.dumps(r))
            files.append(name)
        rows.append({"setting": variant, "metrics": files})
    setup = {"table": "VIII", "title": "weights", "norm": "io", "rows": rows}
    table = build_setup_table(tmp_path / "setup.json", setup)
    assert table.rows[0][1].n == 3 and table.rows[0][1].mark == ""
    assert table.rows[1][1].mark == " ▼"


def test_seed_table_states_intervals_and_which_differences_are_noise(groups):
    text, data = seed_table(groups, "io", 0.1, reference="shn")
    assert "scpan − shn" in text and "shn_bali − shn" in text
    by_pair = {(c["a"], c["b"], c["subset"]): c for c in data["comparisons"]}
    assert by_pair[("scpan", "shn", "full")]["significant"] and by_pair[("scpan", "shn", "full")]["mean"] < 0
    assert not by_pair[("shn_bali", "shn", "full")]["significant"]
    full = data["rows"]["scpan"]["subsets"]["full"]["nme"]
    assert full["mean"] == pytest.approx(np.mean(full["per_seed"]))
    small = headline(groups, "io", 0.1)
    assert small["scpan"] == {"nme_io": pytest.approx(100 * full["mean"], abs=1e-3),
                              "sd": pytest.approx(100 * np.std(full["per_seed"], ddof=1), abs=1e-3)}


def test_seed_parameters_are_checked():
    assert check_seeds([0, 1, 2]) == [0, 1, 2] and check_seeds(4) == [4]
    for bad in ([], [0, 0], [-1], ["1"], [True]):
        with pytest.raises(ParamError, match="pipeline.seeds"):
            check_seeds(bad)
    assert str(seed_path("models/x/s{seed}/checkpoint.pt", 2)) == "models/x/s2/checkpoint.pt"
    with pytest.raises(ParamError, match="seed"):
        seed_path("models/x/checkpoint.pt", 2)


@pytest.mark.slow
def test_train_seeds_runs_side_by_side_then_keeps_finished_and_resumes_interrupted(tmp_path, capsys):
    import torch

    from spanlib.inference.checkpoint import read_checkpoint
    from spanlib.training.seeds import train_seeds
    from spanlib.training.train import train
    from test_train import small_params, write_faces

    write_faces(tmp_path / "train", 24, seed=0)
    write_faces(tmp_path / "held", 8, seed=1)
    params = small_params({"train": tmp_path / "train", "held": tmp_path / "held"}, iterations=3)
    pattern = str(tmp_path / "runs" / "s{seed}" / "checkpoint.pt")
    paths = train_seeds(params, "shn", [0, 1], pattern, workers=2, progress=False)
    ckpts = [read_checkpoint(p) for p in paths]
    assert [c["params"]["seed"] for c in ckpts] == [0, 1] and all(c["iteration"] == 3 for c in ckpts)
    first = next(iter(ckpts[0]["model_state"]))
    assert not torch.equal(ckpts[0]["model_state"][first], ckpts[1]["model_state"][first])  # seeds differ
    stamps = [p.stat().st_mtime_ns for p in paths]
    # seed 2 interrupted after 1 of 3 iterations: resumed; seeds 0 and 1: kept as they are
    interrupted = dict(params, seed=2)
    train(interrupted, "shn", seed_path(pattern, 2), progress=False, stop_after=1)
    capsys.readouterr()
    paths = train_seeds(params, "shn", [0, 1, 2], pattern, workers=1, progress=False)
    said = capsys.readouterr().out
    assert said.count("complete with these params, kept") == 2 and "resuming the interrupted run" in said
    assert [p.stat().st_mtime_ns for p in paths[:2]] == stamps
    assert read_checkpoint(paths[2])["iteration"] == 3
