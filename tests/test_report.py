import csv
import io
import json

import numpy as np
import pytest

from spanlib.cli import main
from spanlib.utils.errors import DataError
from spanlib.evaluation.metrics import auc, failure_rate, subset_metrics
from spanlib.reporting.paper_numbers import PAPER_TABLES
from spanlib.reporting.report import build_table, collect, write_report
from spanlib.config.schemes import get_scheme


def _subset(rng, scheme, n=6, noise=1.0):
    gt = rng.uniform(20, 100, size=(n, scheme.num_points, 2))
    gt[:, scheme.io_indices[0]] = (30, 50)
    gt[:, scheme.io_indices[1]] = (90, 50)
    return subset_metrics(gt + rng.normal(0, noise, gt.shape), gt, scheme)


def _metrics(path, variant, source, split, subsets, sha):
    obj = {"provenance": {"checkpoint": f"models/{variant}.pt", "checkpoint_sha256": sha, "variant": variant,
                          "source": source, "root": "data", "split": split, "code_version": "test",
                          "iteration": 10, "nme_norms": {"fr_auc_norm": "io"}},
           "subsets": subsets}
    path.write_text(json.dumps(obj))
    return obj


@pytest.fixture
def metrics_dir(tmp_path):
    rng = np.random.default_rng(0)
    s68, s98 = get_scheme("68"), get_scheme("98")
    d = tmp_path / "metrics"
    d.mkdir()
    _metrics(d / "scpan_synth.json", "scpan", "synthetic", "full",
             {k: _subset(rng, s68) for k in ("full", "common", "challenging")}, "a" * 64)
    _metrics(d / "shn_300w.json", "shn", "300w", "full",
             {k: _subset(rng, s68, noise=2.0) for k in ("full", "common", "challenging")}, "b" * 64)
    _metrics(d / "wflw.json", "scpan", "wflw", "test",
             {k: _subset(rng, s98) for k in ("full", "pose", "blur")}, "c" * 64)
    for i in (1, 2, 3):
        _metrics(d / f"vw{i}.json", "scpan", "300vw", f"scenario{i}", {f"scenario{i}": _subset(rng, s68)}, "d" * 64)
    (d / "notes.json").write_text(json.dumps({"something": "else"}))  # skipped inside a folder
    return d


def test_tables_hold_the_json_values(metrics_dir, tmp_path):
    out = write_report([metrics_dir], tmp_path / "report")
    tables = out["tables"]
    assert set(tables) == {"I", "II", "V", "VI"}
    t1 = tables["I"]
    assert t1.header[1:] == [f"{s} NME_{n} (%)" for n in ("io", "ip") for s in ("common", "challenging", "full")]
    synth = json.loads((metrics_dir / "scpan_synth.json").read_text())["subsets"]
    row = next(r for r in t1.rows if "synthetic faces" in r[0])
    assert row[1].mean == pytest.approx(100 * synth["common"]["nme"]["io"])
    assert row[6].mean == pytest.approx(100 * synth["full"]["nme"]["ip"])
    assert any(r[0].startswith("ours: shn [300w]") for r in t1.rows)
    assert "not transcribed" not in t1.markdown()
    # 300-VW: three files of one checkpoint make one row with three scenarios, NME_ip as Table VI's caption
    t6 = tables["VI"]
    assert t6.kinds.count("ours") == 1 and t6.header[1:] == [f"scenario{i} NME_ip (%)" for i in (1, 2, 3)]
    vw2 = json.loads((metrics_dir / "vw2.json").read_text())["subsets"]["scenario2"]
    assert t6.rows[0][2].mean == pytest.approx(100 * vw2["nme"]["ip"])
    # WFLW: every column of the paper's Table V, in its order; ours empty where no subset was tested
    t5 = tables["V"]
    assert t5.header[1:] == [f"{s} NME_io (%)" for s in ("full", "pose", "expression", "illumination",
                                                         "makeup", "occlusion", "blur")]
    assert t5.rows[0][2] is not None and t5.rows[0][3] is None and t5.rows[0][7] is not None
    # Table II: AUC_box^7 is the AUC up to 0.07, computed from the per-face NME_box (the JSON stores 0.08
    # and 0.1); synthetic faces stand in for the 300W test set, and the table says so
    t2 = tables["II"]
    value = t2.rows[0][t2.header.index("300W test AUC_box@0.07 (%)")].mean
    assert value == pytest.approx(100 * auc(synth["full"]["per_face_nme"]["box"], 0.07))
    assert "0.07" not in synth["full"]["auc_by_norm"]["box"]
    assert any("'full' subset stands in for the paper's 'test'" in n for n in t2.notes)
    rows = list(csv.reader(io.StringIO((tmp_path / "report" / "table_I.csv").read_text())))
    assert rows[0][:2] == ["kind", "method"] and {r[0] for r in rows[1:]} == {"ours", "paper"}
    assert (tmp_path / "report" / "tables.md").is_file()
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("ced_*.png"))
    assert "ced_synthetic_common.png" in figures and "ced_300vw_scenario2.png" in figures
    assert (tmp_path / "report" / "figures" / "per_landmark_wflw_full.png").stat().st_size > 1000


def test_setup_table_vii(metrics_dir, tmp_path):
    setup = {"table": "VII", "title": "heatmap distributions", "rows": [
        {"setting": "gaussian", "metrics": "scpan_synth.json"}, {"setting": "ged", "metrics": "shn_300w.json"}]}
    (metrics_dir / "table7.json").write_text(json.dumps(setup))
    runs, setups = collect([metrics_dir / "table7.json"])
    assert not runs and len(setups) == 1
    out = write_report([metrics_dir / "table7.json"], tmp_path / "r", figures=False)
    t7 = out["tables"]["VII"]
    assert [r[0] for r in t7.rows[:2]] == ["ours: gaussian [synthetic faces]", "ours: ged"]
    assert t7.header == ["setting", "challenging NME_io (%)"]  # Table VII: NME_io on the challenging subset
    shn = json.loads((metrics_dir / "shn_300w.json").read_text())["subsets"]
    assert t7.rows[1][1].mean == pytest.approx(100 * shn["challenging"]["nme"]["io"])
    assert t7.kinds == ["ours"] * 2 + ["paper"] * len(PAPER_TABLES["VII"].rows)
    assert t7.rows[2] == ["paper: Gaussian", 4.43]


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        collect([bad])
    other = tmp_path / "other.json"
    other.write_text("{}")
    with pytest.raises(DataError, match="other.json"):
        collect([other])
    with pytest.raises(DataError, match="missing.json"):
        collect([tmp_path / "missing.json"])
    setup = tmp_path / "s.json"
    setup.write_text(json.dumps({"table": "VIII", "rows": [{"setting": "x", "metrics": "nope.json"}]}))
    with pytest.raises(DataError, match="nope.json"):
        write_report([setup], tmp_path / "r")


def test_report_command(metrics_dir, tmp_path, capsys):
    assert main(["report", "--metrics", str(metrics_dir), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    assert "Table I" in capsys.readouterr().out


def test_paper_rows_are_labelled_and_apart_from_ours(tmp_path):
    """A table rendered from a small fake metrics file: our rows first, each "ours: ...", then every
    row of the paper's table, each "paper: ..." with the transcribed values, none mixed."""
    rng = np.random.default_rng(1)
    cofw = get_scheme("29")
    path = tmp_path / "cofw.json"
    obj = _metrics(path, "scpan", "cofw", "test", {"full": _subset(rng, cofw, n=20, noise=3.0)}, "e" * 64)
    runs, _ = collect([path])
    table = build_table("IV", runs)
    paper = PAPER_TABLES["IV"]
    assert table.header == ["method", "full NME_ip (%)", "full FR_ip@0.1 (%)"]
    assert table.kinds == ["ours"] + ["paper"] * len(paper.rows)
    ours, theirs = table.rows[0], table.rows[1:]
    assert ours[0].startswith("ours: scpan [cofw]")
    errors = obj["subsets"]["full"]["per_face_nme"]["ip"]
    assert ours[1].mean == pytest.approx(100 * np.mean(errors))
    assert ours[2].mean == pytest.approx(100 * failure_rate(errors, 0.1))
    assert [r[0] for r in theirs] == [f"paper: {r.label}" for r in paper.rows]
    assert all(not r[0].startswith("paper") for r in table.rows[:1])
    assert ["paper: SCPAN", 4.93, 1.78] in theirs and ["paper: ODN (CVPR19) [29]", 5.30, None] in theirs
    markdown = table.markdown()
    lines = [l for l in markdown.splitlines() if l.startswith("| ours:") or l.startswith("| paper:")]
    assert lines[0].startswith("| ours: scpan") and all(l.startswith("| paper:") for l in lines[1:])
    assert "| paper: ODN (CVPR19) [29] | 5.30 | - |" in markdown
    assert any("transcribed in spanlib/reporting/paper_numbers.py" in n for n in table.notes)
    assert any(n.startswith("reading of the paper:") for n in table.notes)
    rows = list(csv.reader(io.StringIO(table.csv())))
    assert [r[0] for r in rows[1:]] == table.kinds


def test_a_planted_dead_channel_is_flagged_beside_the_table(metrics_dir, tmp_path):
    """A landmark whose mean NME_io is far above the others (the committed run of issue 10 had one
    at 83 %) is listed in the table's notes and in evaluate's summary."""
    from spanlib.evaluation.evaluate import summary_text

    path = metrics_dir / "scpan_synth.json"
    obj = json.loads(path.read_text())
    for entry in obj["subsets"].values():
        entry["per_landmark_nme_io"] = [0.05] * 68
        entry["per_landmark_nme_io"][1] = 0.83
    path.write_text(json.dumps(obj))
    table = write_report([metrics_dir], tmp_path / "report")["tables"]["I"]
    flagged = [n for n in table.notes if n.startswith("FLAGGED")]
    assert len(flagged) == 1, flagged  # one summary line per row, not one per run and subset
    assert "1 of 1 run(s)" in flagged[0] and "landmarks 1 (x3)" in flagged[0] and "landmark 1 83.0 %" in flagged[0]
    from spanlib.reporting.report import flagged_summary
    assert flagged_summary({"I": table}) == {flagged[0][len("FLAGGED "):].split(": 1 of 1")[0]: (1, 1, 1)}
    assert next(iter(flagged_summary({"I": table}))).startswith("ours: ")  # the whole row label
    clean = write_report([metrics_dir / "shn_300w.json"], tmp_path / "clean")["tables"]["I"]
    assert not any(n.startswith("FLAGGED") for n in clean.notes)
    obj["provenance"].setdefault("nme_norms", {"fr_auc_norm": "io"})
    obj["provenance"].setdefault("protocol", {"decode_radius": 3})
    obj["provenance"].setdefault("checkpoint", "x.pt")
    obj["provenance"]["checkpoint"] = "models/scpan/s2/checkpoint.pt"
    obj["provenance"].setdefault("params", {})["seed"] = 2
    text = summary_text(obj)
    assert "FLAGGED full: landmark 1 has mean NME_io 83.0 %" in text
    assert text.startswith(f"# {obj['provenance']['variant']} seed 2 on ") and "checkpoint s2/checkpoint.pt" in text
