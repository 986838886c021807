"""Saved kernel benchmarks (``kernels/results/<device>/<op>.json``, written by ``spanlib bench`` or
notebook 05): load every device's results and plot time and bandwidth against problem size,
every device on one pair of axes (notebook 05_kernel_profiling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

from spanlib.bench.harness import markdown_table

OPS = ("jsd", "decode")
_DEVICE_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]


def load_saved(folders: Iterable[str | Path]) -> dict[tuple[str, str], dict]:
    """{(device folder, op): result} of every ``<folder>/<device>/<op>.json`` that is a benchmark
    result; a later folder's result replaces an earlier one's for the same device and op."""
    saved = {}
    for folder in dict.fromkeys(Path(f) for f in folders):
        for path in sorted(folder.glob("*/*.json")):
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(result, dict) and "rows" in result and "op" in result:
                saved[(path.parent.name, result["op"])] = result
    return saved


def _elements(row: dict) -> int:
    return row["batch"] * row["channels"] * row["height"] * row["width"]


def plot_saved(runs: Mapping[str, dict], op: str):
    """Median time (log-log) and GB/s of floor bytes (log-log: a CPU's few GB/s and a GPU's
    thousands on one axis) against elements, one line per device and method: colour per method,
    line style and marker per device; the dashed grey lines are each device's copy bandwidth.
    The legend sits below the axes, off the data. Returns the figure."""
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    methods = list(dict.fromkeys(r["method"] for result in runs.values() for r in result["rows"]
                                 if r.get("median_ms")))
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)  # 18, no light twins
    colour = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
    fig, (ax_time, ax_bw) = plt.subplots(1, 2, figsize=(12, 4.6))
    for d, (device, result) in enumerate(runs.items()):
        ls, marker = _DEVICE_STYLES[d % len(_DEVICE_STYLES)]
        rows = [r for r in result["rows"] if r.get("median_ms")]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = sorted((r for r in rows if r["method"] == method), key=_elements)
            size = [_elements(r) for r in mine]
            style = dict(ls=ls, marker=marker, ms=4, color=colour[method], label=f"{device}: {method}")
            ax_time.loglog(size, [r["median_ms"] for r in mine], **style)
            ax_bw.loglog(size, [r["gbps"] for r in mine], **style)
        if result.get("copy_bandwidth_gbps"):
            ax_bw.axhline(result["copy_bandwidth_gbps"], ls=ls, lw=0.8, color="gray")
            ax_bw.annotate(f"{device} copy", (1, result["copy_bandwidth_gbps"]), xycoords=("axes fraction", "data"),
                           ha="right", va="bottom", fontsize=7, color="gray")
    ax_time.set(xlabel="elements (B x K x H x W)", ylabel="median ms (forward + backward)", title=f"{op}: time")
    ax_bw.set(xlabel="elements (B x K x H x W)", ylabel="GB/s of floor bytes (log)", title=f"{op}: bandwidth")
    for ax in (ax_time, ax_bw):
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax_time.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def saved_report(saved: Mapping[tuple[str, str], dict]) -> tuple[list[str], dict]:
    """(markdown sections: one table per device and op, {op: figure}) of ``load_saved``'s results."""
    sections, figures = [], {}
    for op in OPS:
        runs = {device: r for (device, o), r in saved.items() if o == op}
        if not runs:
            continue
        figures[op] = plot_saved(runs, op)
        sections += [markdown_table(result).replace("# `", "### `", 1) for result in runs.values()]
    return sections, figures
