"""spanlib.bench.saved: notebook 05's loading and plotting of saved kernel benchmarks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


REPO = Path(__file__).resolve().parents[1]


def test_saved_benchmarks_load_and_plot_readably(tmp_path):
    import matplotlib.pyplot as plt

    from spanlib.bench.saved import load_saved, saved_report

    # the committed results of two devices whose method names differ (textbook / naive: the H200
    # run of 2026-11-30, kept under its date)
    for device, source in (("cpu", "cpu"), ("nvidia-h200", "nvidia-h200/2026-11-30")):
        (tmp_path / device).mkdir()
        shutil.copy(REPO / "kernels" / "results" / source / "jsd.json", tmp_path / device / "jsd.json")
    (tmp_path / "cpu" / "other.json").write_text(json.dumps({"not": "a result"}))
    saved = load_saved([tmp_path, tmp_path])
    assert set(saved) == {("cpu", "jsd"), ("nvidia-h200", "jsd")}
    sections, figures = saved_report(saved)
    assert list(figures) == ["jsd"] and len(sections) == 2
    fig = figures["jsd"]
    ax_time, ax_bw = fig.axes[:2]
    assert ax_bw.get_yscale() == "log" and ax_time.get_yscale() == "log"  # CPU GB/s not flat along 0
    lines = [l for l in ax_time.get_lines() if not l.get_label().startswith("_")]
    methods = {l.get_label().split(": ", 1)[1] for l in lines}
    assert len(lines) == 7 and len(methods) == 7  # 3 on the CPU, 4 on the GPU
    # "cpu: textbook unfold" and "h200: spanlib triton" once shared a colour: one colour per method now
    assert len({str(l.get_color()) for l in lines}) == len(methods)
    assert {l.get_linestyle() for l in lines if l.get_label().startswith("cpu")} != \
        {l.get_linestyle() for l in lines if l.get_label().startswith("nvidia")}
    assert fig.legends and not ax_time.get_legend()  # the legend is the figure's, below the axes
    plt.close(fig)


def test_warps_sweep_rows_are_listed_not_plotted(tmp_path):
    """The 2026-12-04 H200 run has num_warps sweep rows with a device time only: the time plot
    draws the methods timed on the wall clock, one line per device and method."""
    import matplotlib.pyplot as plt

    from spanlib.bench.saved import load_saved, saved_report

    for device in ("cpu", "nvidia-h200"):
        (tmp_path / device).mkdir()
        shutil.copy(REPO / "kernels" / "results" / device / "jsd.json", tmp_path / device / "jsd.json")
    saved = load_saved([tmp_path])
    rows = saved[("nvidia-h200", "jsd")]["rows"]
    sweep = [r for r in rows if "num_warps" in r["method"]]
    assert sweep and all(r.get("median_ms") is None and r["device_ms"] > 0 for r in sweep)
    timed = {(device, r["method"]) for (device, _), result in saved.items() for r in result["rows"]
             if r.get("median_ms")}
    sections, figures = saved_report(saved)
    lines = [l for l in figures["jsd"].axes[0].get_lines() if not l.get_label().startswith("_")]
    assert sorted(l.get_label() for l in lines) == sorted(f"{d}: {m}" for d, m in timed)
    assert not any("num_warps" in l.get_label() for l in lines)
    plt.close(figures["jsd"])
