import csv
import io
import json

import numpy as np
import pytest

from spanlib.cli import main
from spanlib.errors import DataError
from spanlib.metrics import subset_metrics
from spanlib.report import collect, write_report
from spanlib.schemes import get_scheme


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
    assert t1.header[1:] == [f"{s} NME_{n} (%)" for s in ("common", "challenging", "full") for n in ("io", "ip")]
    synth = json.loads((metrics_dir / "scpan_synth.json").read_text())["subsets"]
    row = next(r for r in t1.rows if "synthetic faces" in r[0])
    assert row[1] == pytest.approx(100 * synth["common"]["nme"]["io"])
    assert row[6] == pytest.approx(100 * synth["full"]["nme"]["ip"])
    assert any(r[0].startswith("ours: shn [300w]") for r in t1.rows)
    assert "not transcribed" in t1.markdown()  # the paper's numbers are labelled, never invented
    # 300-VW: three files of one checkpoint make one row with three scenarios
    t6 = tables["VI"]
    assert len(t6.rows) == 1 and sum(h.endswith("NME_io (%)") for h in t6.header) == 3
    # WFLW: only the subsets present, in the paper's order
    assert [h for h in tables["V"].header if "NME" in h] == ["full NME_io (%)", "pose NME_io (%)", "blur NME_io (%)"]
    auc = tables["II"].rows[0][tables["II"].header.index("full AUC_box@0.1 (%)")]
    assert auc == pytest.approx(100 * synth["full"]["auc_by_norm"]["box"]["0.1"])
    rows = list(csv.reader(io.StringIO((tmp_path / "report" / "table_I.csv").read_text())))
    assert rows[0][:2] == ["kind", "method"] and {r[0] for r in rows[1:]} == {"ours"}
    assert (tmp_path / "report" / "tables.md").is_file()
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("ced_*.png"))
    assert "ced_synthetic_common.png" in figures and "ced_300vw_scenario2.png" in figures
    assert (tmp_path / "report" / "figures" / "per_landmark_wflw_full.png").stat().st_size > 1000


def test_setup_table_vii(metrics_dir, tmp_path):
    setup = {"table": "VII", "title": "heatmap profiles", "rows": [
        {"setting": "gaussian", "metrics": "scpan_synth.json"}, {"setting": "ged", "metrics": "shn_300w.json"}]}
    (metrics_dir / "table7.json").write_text(json.dumps(setup))
    runs, setups = collect([metrics_dir / "table7.json"])
    assert not runs and len(setups) == 1
    out = write_report([metrics_dir / "table7.json"], tmp_path / "r", figures=False)
    t7 = out["tables"]["VII"]
    assert [r[0] for r in t7.rows] == ["ours: gaussian [synthetic faces]", "ours: ged"]
    shn = json.loads((metrics_dir / "shn_300w.json").read_text())["subsets"]
    assert t7.rows[1][t7.header.index("full NME_io (%)")] == pytest.approx(100 * shn["full"]["nme"]["io"])
    assert t7.rows[1][t7.header.index("full FR_io@0.1 (%)")] == pytest.approx(100 * shn["full"]["fr"]["0.1"])


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
