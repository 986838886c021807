"""The paper's tables (I-VIII) and the study's figures, built from metrics JSON files.

Inputs:
- metrics JSON files written by ``spanlib evaluate`` (docs/architecture.md, "Metrics JSON"); a
  run (one checkpoint) may span several files (300-VW's three scenarios are three splits);
- setup files for Tables VII and VIII (docs/architecture.md, "Setup JSON"):
  ``{"table": "VII" | "VIII", "title": str, "norm": "io", "rows": [{"setting": str,
  "metrics": path (relative to the setup file)}, ...]}``.

Every table lists our rows (those our files have, with the data they came from: rows trained and
tested on synthetic faces say so) and then the paper's rows from ``spanlib.paper_numbers``,
labelled "paper"; values are percentages (NME, FR, AUC x 100). Columns no run has are dropped.
"""

from __future__ import annotations

import csv
import io as _io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DataError
from .io import write_text
from .paper_numbers import NOT_TRANSCRIBED, PAPER_REFERENCE, paper_rows


# ------------------------------------------------------------------ inputs
@dataclass
class Run:
    """One metrics JSON file."""

    path: Path
    provenance: dict
    subsets: dict

    @property
    def key(self) -> str:
        return self.provenance.get("checkpoint_sha256") or str(self.path)

    @property
    def source(self) -> str:
        return self.provenance.get("source", "?")

    @property
    def label(self) -> str:
        prov = self.provenance
        ckpt = Path(prov.get("checkpoint", "?"))
        where = "synthetic faces" if self.source == "synthetic" else self.source
        return f"ours: {prov.get('variant', '?')} [{where}] ({ckpt.parent.name}/{ckpt.name})"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from exc


def is_metrics(obj) -> bool:
    return isinstance(obj, dict) and "provenance" in obj and "subsets" in obj


def is_setup(obj) -> bool:
    return isinstance(obj, dict) and "rows" in obj and "table" in obj


def collect(paths: Iterable[str | Path]) -> tuple[list[Run], list[tuple[Path, dict]]]:
    """(metrics runs, setup files) from files and folders (folders: every *.json below them;
    JSON files that are neither are skipped, a named file that is neither is an error)."""
    runs, setups = [], []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            files, strict = sorted(item.rglob("*.json")), False
        elif item.is_file():
            files, strict = [item], True
        else:
            raise DataError(f"{item}: no such metrics file or folder")
        for file in files:
            obj = _read_json(file)
            if is_metrics(obj):
                runs.append(Run(file, obj["provenance"], obj["subsets"]))
            elif is_setup(obj):
                setups.append((file, obj))
            elif strict:
                raise DataError(f"{file}: expected a metrics JSON (keys provenance, subsets) or a setup "
                                f"JSON (keys table, rows)")
    return runs, setups


# ------------------------------------------------------------------ cells
def metric_value(subset: dict, kind: str, norm: str, threshold: str | None = None) -> float | None:
    """A subset's metric in %: kind "nme" / "fr" / "auc" under ``norm``; None when absent."""
    if kind == "nme":
        value = subset.get("nme", {}).get(norm)
    else:
        by_norm = subset.get(f"{kind}_by_norm", {}).get(norm)
        if by_norm is None and subset.get("norm") == norm:
            by_norm = subset.get(kind)
        value = None if by_norm is None else by_norm.get(threshold)
    return None if value is None else 100.0 * float(value)


@dataclass(frozen=True)
class Column:
    header: str
    sources: tuple[str, ...]
    subset: str
    kind: str
    norm: str
    threshold: str | None = None


def _cols(sources, subsets, specs) -> list[Column]:
    cols = []
    for subset in subsets:
        for kind, norm, thr in specs:
            name = {"nme": f"NME_{norm}", "fr": f"FR_{norm}@{thr}", "auc": f"AUC_{norm}@{thr}"}[kind]
            cols.append(Column(f"{subset} {name} (%)", tuple(sources), subset, kind, norm, thr))
    return cols


W300 = ("300w", "synthetic")
WFLW_SUBSETS = ("full", "pose", "expression", "illumination", "makeup", "occlusion", "blur")

TABLES: dict[str, tuple[str, list[Column]]] = {
    "I": ("NME_io and NME_ip on 300W (common, challenging, full)",
          _cols(W300, ("common", "challenging", "full"), [("nme", "io", None), ("nme", "ip", None)])),
    "II": ("NME_box and AUC_box on 300W, Menpo and COFW-68",
           _cols(W300, ("full",), [("nme", "box", None), ("auc", "box", "0.1")])
           + [Column(f"Menpo {c.header}", ("menpo",), c.subset, c.kind, c.norm, c.threshold)
              for c in _cols(("menpo",), ("full",), [("nme", "box", None), ("auc", "box", "0.1")])]
           + [Column(f"COFW-68 {c.header}", ("cofw68",), c.subset, c.kind, c.norm, c.threshold)
              for c in _cols(("cofw68",), ("full",), [("nme", "box", None), ("auc", "box", "0.1")])]),
    "III": ("NME on AFLW (full, frontal)",
            _cols(("aflw",), ("full", "frontal"), [("nme", "diag", None), ("nme", "box", None)])),
    "IV": ("NME_ip and FR_ip on COFW (29 points)",
           _cols(("cofw",), ("full",), [("nme", "ip", None), ("fr", "ip", "0.1"), ("nme", "io", None)])),
    "V": ("NME_io on WFLW (test and its six attribute subsets), FR and AUC at 0.1",
          _cols(("wflw",), WFLW_SUBSETS, [("nme", "io", None)])
          + _cols(("wflw",), ("full",), [("fr", "io", "0.1"), ("auc", "io", "0.1")])),
    "VI": ("NME_io, FR_io@0.08 and AUC_io@0.08 on 300-VW scenarios 1-3",
           _cols(("300vw",), ("scenario1", "scenario2", "scenario3"),
                 [("nme", "io", None), ("fr", "io", "0.08"), ("auc", "io", "0.08")])),
}
SETUP_TABLES = {"VII": "heatmap distributions (Gaussian, GED, Student-t)",
                "VIII": "sensitivity to the loss weights"}


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    rows: list[list]          # our rows, then the paper's
    kinds: list[str]          # "ours" | "paper" per row
    notes: list[str]

    def markdown(self) -> str:
        lines = [f"### Table {self.name}: {self.title}", "",
                 "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        return "\n".join(lines + [""] + [f"- {n}" for n in self.notes]) + "\n"

    def csv(self) -> str:
        buffer = _io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["kind"] + self.header)
        for kind, row in zip(self.kinds, self.rows):
            writer.writerow([kind] + ["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for v in row])
        return buffer.getvalue()


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _provenance_note(run: Run) -> str:
    prov = run.provenance
    ours = prov.get("nme_norms", {}).get("fr_auc_norm", "?")
    return (f"{run.label}: {prov.get('source')}:{prov.get('split')} at {prov.get('root')}, checkpoint "
            f"sha256 {str(prov.get('checkpoint_sha256', '?'))[:12]}, iteration {prov.get('iteration')}, "
            f"FR/AUC of the JSON on NME_{ours}, code {prov.get('code_version')} ({run.path.name})")


def build_table(name: str, runs: Sequence[Run]) -> Table | None:
    """Table I-VI from runs; None when no run has any of its columns."""
    title, columns = TABLES[name]
    grouped: dict[str, dict] = {}
    for run in runs:
        for col_index, col in enumerate(columns):
            if run.source not in col.sources or col.subset not in run.subsets:
                continue
            value = metric_value(run.subsets[col.subset], col.kind, col.norm, col.threshold)
            if value is None:
                continue
            row = grouped.setdefault(run.label, {"cells": {}, "runs": []})
            row["cells"][col_index] = value
            if run not in row["runs"]:
                row["runs"].append(run)
    if not grouped:
        return None
    used = sorted({i for row in grouped.values() for i in row["cells"]})
    header = ["method"] + [columns[i].header for i in used]
    rows, kinds, notes = [], [], []
    for label, row in grouped.items():
        rows.append([label] + [row["cells"].get(i) for i in used])
        kinds.append("ours")
        notes += [_provenance_note(r) for r in row["runs"]]
    paper = paper_rows(name)
    for prow in paper:
        rows.append([f"paper: {prow['method']}"] + [prow.get(columns[i].header) for i in used])
        kinds.append("paper")
    notes.append(f"paper rows from {PAPER_REFERENCE}" if paper else NOT_TRANSCRIBED)
    notes.append("NME in % of the normalising distance (io: outer eye corners; ip: eye centres or pupils; "
                 "box: sqrt(w h) of the landmarks' box; diag: its diagonal); FR: % of faces with NME above "
                 "the threshold; AUC: % area under the CED up to the threshold (Simpson's rule, step 1e-4)")
    return Table(name, title, header, rows, kinds, notes)


def build_setup_table(setup_path: Path, setup: dict) -> Table:
    """Table VII or VIII from a setup file: one row per setting, NME per subset (and FR / AUC at
    0.1 on the "full" subset, or on the only subset)."""
    name = str(setup["table"])
    norm = setup.get("norm", "io")
    rows_in = setup.get("rows")
    if not isinstance(rows_in, list) or not rows_in:
        raise DataError(f"{setup_path}: 'rows' must be a non-empty list of {{setting, metrics}}")
    loaded = []
    for entry in rows_in:
        if not isinstance(entry, dict) or "setting" not in entry or "metrics" not in entry:
            raise DataError(f"{setup_path}: each row needs 'setting' and 'metrics', got {entry!r}")
        path = Path(entry["metrics"])
        path = path if path.is_absolute() else setup_path.parent / path
        obj = _read_json(path)
        if not is_metrics(obj):
            raise DataError(f"{path}: expected a metrics JSON (named by {setup_path})")
        loaded.append((str(entry["setting"]), Run(path, obj["provenance"], obj["subsets"])))
    subsets = list(dict.fromkeys(s for _, run in loaded for s in run.subsets))
    main = "full" if "full" in subsets else subsets[0]
    header = ["setting"] + [f"{s} NME_{norm} (%)" for s in subsets] + [f"{main} FR_{norm}@0.1 (%)",
                                                                      f"{main} AUC_{norm}@0.1 (%)"]
    rows, kinds, notes = [], [], []
    for setting, run in loaded:
        cells = [metric_value(run.subsets[s], "nme", norm) if s in run.subsets else None for s in subsets]
        sub = run.subsets.get(main, {})
        cells += [metric_value(sub, "fr", norm, "0.1"), metric_value(sub, "auc", norm, "0.1")]
        where = " [synthetic faces]" if run.source == "synthetic" else ""
        rows.append([f"ours: {setting}{where}"] + cells)
        kinds.append("ours")
        notes.append(_provenance_note(run))
    for prow in paper_rows(name):
        rows.append([f"paper: {prow['method']}"] + [prow.get(h) for h in header[1:]])
        kinds.append("paper")
    notes.append(f"paper rows from {PAPER_REFERENCE}" if paper_rows(name) else NOT_TRANSCRIBED)
    title = setup.get("title") or SETUP_TABLES.get(name, "")
    return Table(name, title, header, rows, kinds, notes)


# ------------------------------------------------------------------ figures
def ced_figures(runs: Sequence[Run], out_dir: Path, threshold: float = 0.1) -> list[Path]:
    """One PNG per (dataset, subset): a CED curve per run, on the NME its JSON's FR/AUC use."""
    from .figures import plot_ced, save_figure

    groups: dict[tuple[str, str, str], dict[str, list]] = {}
    for run in runs:
        norm = run.provenance.get("nme_norms", {}).get("fr_auc_norm", "io")
        for subset, entry in run.subsets.items():
            errors = entry.get("per_face_nme", {}).get(norm)
            if errors:
                groups.setdefault((run.source, subset, norm), {})[run.label] = errors
    written = []
    for (source, subset, norm), curves in sorted(groups.items()):
        fig = plot_ced(curves, threshold, norm, title=f"CED, {source} {subset} (NME_{norm})")
        written.append(save_figure(fig, out_dir / f"ced_{_safe(source)}_{_safe(subset)}.png"))
    return written


def per_landmark_figures(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    from .figures import plot_per_landmark, save_figure

    groups: dict[tuple[str, str], dict[str, list]] = {}
    for run in runs:
        for subset, entry in run.subsets.items():
            if entry.get("per_landmark_nme_io"):
                groups.setdefault((run.source, subset), {})[run.label] = entry["per_landmark_nme_io"]
    written = []
    for (source, subset), errors in sorted(groups.items()):
        fig = plot_per_landmark(errors, "io", title=f"per-landmark NME_io, {source} {subset}")
        written.append(save_figure(fig, out_dir / f"per_landmark_{_safe(source)}_{_safe(subset)}.png"))
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def example_figures(checkpoint: str | Path, source: str, root: str | Path, split: str | None,
                    out_dir: Path, n_examples: int = 4, device: str = "auto") -> list[Path]:
    """Overlays of predictions on ``n_examples`` faces (the first of the split) and the maps of
    Figs. 3 / 6 for the first one (landmark heatmaps, boundary heatmaps, BALI fields)."""
    import numpy as np

    from .data.crop import crop_face
    from .data.dataset import face_box, to_tensor_image
    from .data.sources import read_source
    from .figures import plot_examples, plot_maps, save_figure
    from .predict import decode_radius, load_model, predict_crops, resolve_device

    model = load_model(checkpoint, resolve_device(device))
    samples = [s for s in read_source(source, root, split) if s.landmarks is not None][:n_examples]
    if not samples:
        raise DataError(f"{root}: no labeled faces for example figures")
    size, scale = int(model.params["crop"]["input_size"]), float(model.params["crop"]["scale"])
    crops, transforms, images = [], [], []
    for s in samples:
        image = s.image
        crop, transform = crop_face(image, face_box(s, "detector"), size, scale)
        crops.append(crop)
        transforms.append(transform)
        images.append(image)
    points, _, outputs = predict_crops(model, torch_stack([to_tensor_image(c) for c in crops]),
                                       decode_radius(model.params))
    points = points.cpu().numpy().astype(np.float64)
    preds = [t.to_image(p) for t, p in zip(transforms, points)]
    tag = f"{model.variant}, {source}:{split}"
    fig = plot_examples(images, preds, model.scheme, gts=[s.landmarks for s in samples],
                        titles=[f"{Path(s.path).name}" for s in samples])
    fig.suptitle(f"{tag}: prediction (green) and ground truth (red)", fontsize=9)
    written = [save_figure(fig, out_dir / f"examples_{_safe(model.variant)}_{_safe(source)}.png")]
    first = {k: ([v[:1] for v in val] if isinstance(val, list) else (val[:1] if hasattr(val, "shape") else val))
             for k, val in outputs.items()}
    fig = plot_maps(crops[0], first, model.scheme, points=points[0])
    fig.suptitle(f"{tag}: maps of the last stage (Figs. 3 and 6)", fontsize=9)
    written.append(save_figure(fig, out_dir / f"maps_{_safe(model.variant)}_{_safe(source)}.png"))
    return written


def torch_stack(tensors):
    import torch

    return torch.stack(list(tensors))


# ------------------------------------------------------------------ all together
def write_report(paths: Iterable[str | Path], out_dir: str | Path, figures: bool = True,
                 ced_threshold: float = 0.1) -> dict:
    """Tables (markdown + CSV, one file each and ``tables.md`` with all) and figures under
    ``out_dir``; returns {"tables": {name: Table}, "files": [paths]}."""
    out_dir = Path(out_dir)
    runs, setups = collect(paths)
    if not runs and not setups:
        raise DataError(f"no metrics JSON found in {list(map(str, paths))}")
    tables: dict[str, Table] = {}
    for name in TABLES:
        table = build_table(name, runs)
        if table is not None:
            tables[name] = table
    for setup_path, setup in setups:
        table = build_setup_table(setup_path, setup)
        tables[table.name if table.name not in tables else f"{table.name}-{setup_path.stem}"] = table
    files = []
    for name, table in tables.items():
        for suffix, text in ((".md", table.markdown()), (".csv", table.csv())):
            path = out_dir / f"table_{_safe(name)}{suffix}"
            write_text(path, text)
            files.append(path)
    index = ["# Tables", "", f"Built by `spanlib report` from {len(runs)} metrics file(s) and "
             f"{len(setups)} setup file(s).", ""] + [t.markdown() for t in tables.values()]
    write_text(out_dir / "tables.md", "\n".join(index))
    files.append(out_dir / "tables.md")
    if figures and runs:
        files += ced_figures(runs, out_dir / "figures", ced_threshold)
        files += per_landmark_figures(runs, out_dir / "figures")
    return {"tables": tables, "files": files}
