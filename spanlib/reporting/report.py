"""The paper's tables (I-VIII) and the study's figures, built from metrics JSON files.

Inputs:
- metrics JSON files written by ``spanlib evaluate`` (docs/architecture.md, "Metrics JSON"); a
  run (one checkpoint) may span several files (300-VW's three scenarios are three splits);
- setup files for Tables VII and VIII (docs/architecture.md, "Setup JSON"):
  ``{"table": "VII" | "VIII", "title": str, "norm": "io", "rows": [{"setting": str,
  "metrics": path (relative to the setup file)}, ...]}``.

Every table has the columns of the paper's table, with the metric, normalisation and threshold
its caption gives (``spanlib.reporting.paper_numbers``: Table II and III's AUC_box^7 is the AUC up to 0.07,
Table IV's FR_ip^10 the failure rate above 0.1). It lists our rows first (those our files have,
with the data they came from: rows trained and tested on synthetic faces say so), then the paper's
rows, each labelled "paper: <method as the paper names it>"; values are percentages (NME, FR,
AUC x 100). FR and AUC at a threshold a metrics JSON does not store are computed from its per-face
NME (``spanlib.evaluation.metrics``). A table none of our files has a column of is not written.
"""

from __future__ import annotations

import csv
import io as _io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from spanlib.data.crop import crop_for_model
from spanlib.data.dataset import face_box, to_tensor_image
from spanlib.data.sources import read_source
from spanlib.evaluation.compare import (MARKS, SIGNIFICANT_WHEN, comparison_note, paired_difference, same_faces,
                                       significance_mark)
from spanlib.evaluation.metrics import subset_threshold_metric
from spanlib.evaluation.stats import flagged_landmarks, over_seeds
from spanlib.inference.checkpoint import load_model
from spanlib.inference.step import decode_radius, predict_crops
from spanlib.reporting.figures import plot_ced, plot_examples, plot_maps, plot_per_landmark, save_figure
from spanlib.reporting.paper_numbers import PAPER_REFERENCE, PAPER_TABLES, Metric, PaperTable, no_autolink
from spanlib.utils.devices import resolve_device
from spanlib.utils.errors import DataError
from spanlib.utils.files import write_text


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
    def seed(self) -> int | None:
        seed = (self.provenance.get("params") or {}).get("seed")
        return None if seed is None else int(seed)

    @property
    def label(self) -> str:
        """The row this run belongs to: runs of one setting that differ only in their seed (a
        checkpoint under a ``s<seed>/`` folder) share it."""
        prov = self.provenance
        ckpt = Path(prov.get("checkpoint", "?"))
        where = "synthetic faces" if self.source == "synthetic" else self.source
        if re.fullmatch(r"s\d+", ckpt.parent.name):
            return f"ours: {prov.get('variant', '?')} [{where}] ({ckpt.parent.parent.name}/s*/{ckpt.name})"
        return f"ours: {prov.get('variant', '?')} [{where}] ({ckpt.parent.name}/{ckpt.name})"

    def per_face(self, subset: str, norm: str):
        errors = self.subsets.get(subset, {}).get("per_face_nme", {}).get(norm)
        return None if errors is None else np.asarray(errors, dtype=np.float64)


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
def metric_value(subset: dict, kind: str, norm: str, threshold: str | float | None = None) -> float | None:
    """A subset's metric in %: kind "nme" / "fr" / "auc" under ``norm`` (FR / AUC at ``threshold``,
    a fraction: 0.07 or "0.07"); None when absent. FR / AUC at a threshold the JSON does not store
    are computed from its per-face NME under ``norm``."""
    if kind == "nme":
        value = subset.get("nme", {}).get(norm)
    else:
        if threshold is None:
            raise ValueError(f"{kind}: needs a threshold")
        value = subset_threshold_metric(subset, kind, norm, threshold)
    return None if value is None else 100.0 * float(value)


# the paper's dataset names -> our sources (spanlib.data.sources); synthetic faces stand in for 300W
DATASET_SOURCES = {"300W": ("300w", "synthetic"), "Menpo 2D": ("menpo",), "COFW-68": ("cofw68",),
                   "AFLW": ("aflw",), "COFW": ("cofw",), "WFLW": ("wflw",), "300VW": ("300vw",)}
# (source, the paper's subset) -> the subset we read instead: synthetic faces have no 600-face test set
STAND_IN = {("synthetic", "test"): "full"}


@dataclass(frozen=True)
class Column:
    header: str
    sources: tuple[str, ...]
    subset: str
    kind: str
    norm: str
    threshold: str | None = None   # "0.07", "0.1": a fraction of the normalising distance

    def subset_of(self, source: str) -> str:
        return STAND_IN.get((source, self.subset), self.subset)


def paper_columns(table: PaperTable, norm: str | None = None) -> list[Column]:
    """Our columns for a paper table: same dataset, subset, metric, normalisation and threshold
    (``norm`` overrides the normalisation, for setup tables that ask for another)."""
    several = len({c.dataset for c in table.columns}) > 1
    cols = []
    for pc in table.columns:
        metric = pc.metric if norm is None else Metric(pc.metric.kind, norm, pc.metric.threshold)
        where = f"{pc.dataset} {pc.subset}" if several else pc.subset
        cols.append(Column(f"{where} {metric.name} (%)", DATASET_SOURCES[pc.dataset], pc.subset,
                           metric.kind, metric.norm, metric.threshold_key))
    return cols


def _caption_note(table: PaperTable) -> str:
    return (f"columns as in the paper's Table {table.name} ({table.caption}): "
            + "; ".join(f"'{c.paper_header}' = {c.dataset} {c.subset}, {c.metric.name}" for c in table.columns))


TABLES: dict[str, tuple[str, list[Column]]] = {
    name: (PAPER_TABLES[name].caption, paper_columns(PAPER_TABLES[name]))
    for name in ("I", "II", "III", "IV", "V", "VI")
}
SETUP_TABLES = {"VII": "heatmap distributions (Gaussian, GED, Student-t)",
                "VIII": "sensitivity to the loss weights"}
METRIC_NOTE = ("NME in % of the normalising distance (io: outer eye corners; ip: eye centres or pupils; box: "
               "sqrt(w h) of the ground-truth box, else of the landmarks' tight box; diag: the diagonal of "
               "the landmarks' tight box); FR_norm@t: % of faces with NME above t; AUC_norm@t: % area under the "
               "CED up to t (Simpson's rule, step 1e-4; the paper's AUC^7 is t = 0.07)")
DASH_NOTE = "'-': in a paper row, not counted by the paper; in our rows, not in that run's metrics files"


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
                 "| " + " | ".join(no_autolink(h) for h in self.header) + " |", "|" + "---|" * len(self.header)]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        return "\n".join(lines + [""] + [f"- {n}" for n in self.notes]) + "\n"

    def csv(self) -> str:
        buffer = _io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["kind"] + self.header)
        for kind, row in zip(self.kinds, self.rows):
            writer.writerow([kind] + [_csv_value(v) for v in row])
        return buffer.getvalue()


@dataclass(frozen=True)
class Cell:
    """One of our cells: the mean over seeds (%), its sample sd, the number of seeds, and a mark
    when the paired difference to the table's reference row is significant (▼ lower, ▲ higher)."""

    mean: float
    sd: float
    n: int
    mark: str = ""

    def __str__(self) -> str:
        spread = f" ± {self.sd:.2f}" if self.n > 1 else ""
        return f"{self.mean:.2f}{spread}{self.mark}"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, Cell):
        return str(value)
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Cell):
        return f"{value.mean:.4f} ± {value.sd:.4f} (n={value.n}){value.mark}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def seed_cell(values: Sequence[float]) -> Cell:
    summary = over_seeds(values)
    return Cell(summary.mean, summary.sd, len(values))


SIGNIFICANCE_NOTE = (f"our cells: mean ± sample sd over seeds (no ± for one seed); {MARKS} in an NME cell: "
                     f"significantly lower / higher than the row it is compared with ({SIGNIFICANT_WHEN}; "
                     "spanlib.evaluation.stats.paired_bootstrap)")


def mark_against(cells: dict, runs_by_row: dict, reference: str, columns: Sequence["Column"],
                 subset_of) -> list[str]:
    """Marks NME cells of every row against ``reference`` (in place) and returns one note per
    comparison: Δ NME (points) with its 95 % interval. ``runs_by_row``: row -> runs in seed order."""
    notes = []
    ref_runs = runs_by_row[reference]

    def faces(run):  # rows are compared only on the same test faces
        return (run.source, run.provenance.get("root"), run.provenance.get("split"))

    for label, runs in runs_by_row.items():
        if label == reference or faces(runs[0]) != faces(ref_runs[0]):
            continue
        for index, col in enumerate(columns):
            cell = cells[label].get(index)
            if col.kind != "nme" or not isinstance(cell, Cell):
                continue
            subset = subset_of(runs[0], col)
            a = [r.per_face(subset, col.norm) for r in runs]
            b = [r.per_face(subset_of(r, col), col.norm) for r in ref_runs]
            if not same_faces(a, b):
                continue  # not the same faces: no paired comparison
            diff = paired_difference(a, b)
            if significance_mark(diff):
                cells[label][index] = Cell(cell.mean, cell.sd, cell.n, significance_mark(diff))
            notes.append(comparison_note(label, reference, col.header, diff))
    return notes


def _provenance_note(run: Run) -> str:
    prov = run.provenance
    ours = prov.get("nme_norms", {}).get("fr_auc_norm", "?")
    return (f"{run.label}: {prov.get('source')}:{prov.get('split')} at {prov.get('root')}, checkpoint "
            f"sha256 {str(prov.get('checkpoint_sha256', '?'))[:12]}, iteration {prov.get('iteration')}, "
            f"FR/AUC of the JSON on NME_{ours}, code {prov.get('code_version')} ({run.path.name})")


def dead_channel_notes(runs: Sequence[Run], label: str | None = None) -> list[str]:
    """At most one note for a table row (``runs``: its seeds): how many runs have a landmark whose
    mean NME_io is > 3x the median landmark's and its neighbours' (a dead or swapped heatmap
    channel, ``spanlib.evaluation.stats.outlier_landmarks``), which landmarks (with how many
    run x subset hits each) and the worst one. One line per row, not one per run and subset:
    short trainings on drawn faces trip the check on many rows, and 66 raw lines read as noise."""
    hits = [(run, subset, i, e, m) for run in runs
            for subset, flagged in flagged_landmarks(run.subsets).items() for i, e, m in flagged]
    if not hits:
        return []
    label = label or runs[0].label
    n_runs = len({id(h[0]) for h in hits})
    counts: dict[int, int] = {}
    for _, _, i, _, _ in hits:
        counts[i] = counts.get(i, 0) + 1
    which = ", ".join(f"{i} (x{n})" if n > 1 else f"{i}" for i, n in sorted(counts.items()))
    run, subset, i, e, m = max(hits, key=lambda h: h[3] / h[4])
    seed = f"seed {run.seed}, " if run.seed is not None else ""
    return [f"FLAGGED {label}: {n_runs} of {len(runs)} run(s) with an outlier landmark (mean NME_io > 3x the "
            f"median landmark's and its neighbours'; a dead or swapped heatmap channel?): landmarks {which}; "
            f"worst: landmark {i} {100 * e:.1f} % (reference {100 * m:.1f} %; {seed}{subset})"]


def flagged_summary(tables: dict) -> dict[str, tuple[int, int, int]]:
    """A compact overview of the ``dead_channel_notes`` of ``tables``: {row label: (tables that
    flag it, runs flagged, runs)}, the runs counted once per row (a row's seeds are the same in
    every table that shows it)."""
    counts: dict[str, tuple[int, int, int]] = {}
    for table in tables.values():
        for note in getattr(table, "notes", []):
            found = re.match(r"FLAGGED (.+): (\d+) of (\d+) run\(s\) ", note)
            if found:
                label, k, n = found.group(1), int(found.group(2)), int(found.group(3))
                seen = counts.get(label, (0, 0, 0))
                counts[label] = (seen[0] + 1, max(seen[1], k), max(seen[2], n))
    return counts


def _paper_part(table: PaperTable, n_columns: int) -> tuple[list[list], list[str], list[str]]:
    """The paper's rows ("paper: <method>") and the notes that go with them."""
    rows = [[f"paper: {prow.label}"] + list(prow.values) for prow in table.rows]
    assert all(len(r) == n_columns + 1 for r in rows), f"Table {table.name}: paper rows and columns differ"
    notes = [f"rows 'paper: ...' are the paper's Table {table.name} as printed, transcribed in "
             f"spanlib/reporting/paper_numbers.py from {PAPER_REFERENCE}; the other rows are ours",
             _caption_note(table)]
    notes += [f"reading of the paper: {r}" for r in table.readings]
    return rows, ["paper"] * len(rows), notes


def _reference_row(labels: Sequence[str], runs_by_row: dict, variant: str = "shn") -> str | None:
    """The row other rows are compared with: our plain SHN (the ablation's baseline), if present."""
    for label in labels:
        if runs_by_row[label][0].provenance.get("variant") == variant:
            return label
    return None


def build_table(name: str, runs: Sequence[Run]) -> Table | None:
    """Table I-VI from runs, every column of the paper's table; None when no run has any of them.
    Runs that differ only in their seed make one row (mean ± sd over seeds); NME cells are marked
    where the paired difference to our SHN row is significant."""
    title, columns = TABLES[name]
    grouped: dict[str, dict] = {}
    stand_ins = set()
    for run in sorted(runs, key=lambda r: (r.label, r.seed if r.seed is not None else -1, str(r.path))):
        for col_index, col in enumerate(columns):
            subset = col.subset_of(run.source)
            if run.source not in col.sources or subset not in run.subsets:
                continue
            value = metric_value(run.subsets[subset], col.kind, col.norm, col.threshold)
            if value is None:
                continue
            if subset != col.subset:
                stand_ins.add((run.source, col.subset, subset))
            row = grouped.setdefault(run.label, {"values": {}, "runs": []})
            row["values"].setdefault(col_index, []).append(value)
            if run not in row["runs"]:
                row["runs"].append(run)
    if not grouped:
        return None
    header = ["method"] + [c.header for c in columns]
    cells = {label: {i: seed_cell(v) for i, v in row["values"].items()} for label, row in grouped.items()}
    runs_by_row = {label: row["runs"] for label, row in grouped.items()}
    reference = _reference_row(list(grouped), runs_by_row)
    stand_in_notes = [f"{source} rows: their '{used}' subset stands in for the paper's '{wanted}' columns"
                      for source, wanted, used in sorted(stand_ins)]
    return _finish_table(PAPER_TABLES[name], title, header, columns, cells, runs_by_row, reference,
                         lambda run, col: col.subset_of(run.source), SIGNIFICANCE_NOTE, stand_in_notes)


def _finish_table(paper: PaperTable, title: str, header: list[str], columns: Sequence[Column], cells: dict,
                  runs_by_row: dict, reference: str | None, subset_of, significance_note: str,
                  table_notes: list[str]) -> Table:
    """The tail every table shares: NME cells marked against ``reference`` (None: no comparison),
    our rows with their seeds, provenance and dead-channel notes, ``significance_note`` then
    ``table_notes``, then the paper's rows and notes."""
    notes = mark_against(cells, runs_by_row, reference, columns, subset_of) if reference is not None else []
    rows, kinds = [], []
    for label, runs in runs_by_row.items():
        rows.append([label] + [cells[label].get(i) for i in range(len(columns))])
        kinds.append("ours")
        if len(runs) > 1:
            notes.append(f"{label}: {len(runs)} runs, seeds {[r.seed for r in runs]}")
        notes += [_provenance_note(r) for r in runs]
        notes += dead_channel_notes(runs, label)
    notes.append(significance_note)
    notes += table_notes
    paper_rows_, paper_kinds, paper_notes = _paper_part(paper, len(columns))
    rows += paper_rows_
    kinds += paper_kinds
    notes += paper_notes + [DASH_NOTE, METRIC_NOTE]
    return Table(paper.name, title, header, rows, kinds, notes)


def _setup_name(setup_path: Path, setup: dict) -> str:
    name = str(setup["table"])
    if name not in ("VII", "VIII"):
        raise DataError(f"{setup_path}: 'table' must be VII or VIII, got {name!r}")
    return name


def _setup_runs(setup_path: Path, setup: dict) -> dict[str, list[Run]]:
    """Setting -> its runs (one metrics file, or a list of files, one per seed), in the setup's order;
    relative paths are relative to the setup file."""
    rows_in = setup.get("rows")
    if not isinstance(rows_in, list) or not rows_in:
        raise DataError(f"{setup_path}: 'rows' must be a non-empty list of {{setting, metrics}}")
    loaded: dict[str, list[Run]] = {}
    for entry in rows_in:
        if not isinstance(entry, dict) or "setting" not in entry or "metrics" not in entry:
            raise DataError(f"{setup_path}: each row needs 'setting' and 'metrics', got {entry!r}")
        files = entry["metrics"] if isinstance(entry["metrics"], list) else [entry["metrics"]]
        if not files:
            raise DataError(f"{setup_path}: setting {entry['setting']!r} names no metrics file")
        for file in files:
            loaded.setdefault(str(entry["setting"]), []).append(_setup_run(setup_path, file))
    return loaded


def _setup_run(setup_path: Path, file) -> Run:
    path = Path(file)
    path = path if path.is_absolute() else setup_path.parent / path
    obj = _read_json(path)
    if not is_metrics(obj):
        raise DataError(f"{path}: expected a metrics JSON (named by {setup_path})")
    return Run(path, obj["provenance"], obj["subsets"])


def _setup_stand_ins(columns: Sequence[Column], loaded: dict[str, list[Run]]) -> dict[str, str]:
    """The paper's subset -> ours, for the columns whose subset none of the runs has: "full", else the first."""
    subsets = list(dict.fromkeys(s for runs in loaded.values() for run in runs for s in run.subsets))
    stand_in = {}
    for col in columns:
        if col.subset not in subsets:
            stand_in[col.subset] = "full" if "full" in subsets else subsets[0]
    return stand_in


def _setup_cells(loaded: dict[str, list[Run]], columns: Sequence[Column],
                 stand_in: dict[str, str]) -> tuple[dict[str, list[Run]], dict[str, dict]]:
    """(row label -> runs, row label -> {column index: Cell}) of a setup's settings."""
    runs_by_row, cells = {}, {}
    for setting, runs in loaded.items():
        where = " [synthetic faces]" if runs[0].source == "synthetic" else ""
        label = f"ours: {setting}{where}"
        runs_by_row[label] = runs
        cells[label] = {}
        for index, col in enumerate(columns):
            subset = stand_in.get(col.subset, col.subset)
            values = [metric_value(r.subsets[subset], col.kind, col.norm, col.threshold)
                      for r in runs if subset in r.subsets]
            values = [v for v in values if v is not None]
            if values:
                cells[label][index] = seed_cell(values)
    return runs_by_row, cells


def _setup_notes(paper: PaperTable, norm: str | None, stand_in: dict[str, str]) -> list[str]:
    notes = [f"none of our runs has the paper's '{wanted}' subset: our '{used}' subset stands in"
             for wanted, used in stand_in.items()]
    if norm is not None and any(c.metric.norm != norm for c in paper.columns):
        notes.append(f"our rows use NME_{norm} (the setup file's 'norm'); the paper's use "
                     + ", ".join(sorted({c.metric.name for c in paper.columns})))
    return notes


def build_setup_table(setup_path: Path, setup: dict) -> Table:
    """Table VII or VIII from a setup file: one row per setting (its "metrics" one file, or a list
    of files, one per seed: mean ± sd), the paper's columns (NME_io on the 300W challenging subset;
    the setup's "norm" may ask for another normalisation), then the paper's rows. When none of the
    runs has the paper's subset, the "full" subset (or the first) stands in, and a note says so.
    NME cells are marked where the paired difference to the first setting is significant."""
    name = _setup_name(setup_path, setup)
    paper = PAPER_TABLES[name]
    norm = setup.get("norm")
    loaded = _setup_runs(setup_path, setup)
    columns = paper_columns(paper, norm)
    stand_in = _setup_stand_ins(columns, loaded)
    runs_by_row, cells = _setup_cells(loaded, columns, stand_in)
    reference = next(iter(runs_by_row))
    title = setup.get("title") or SETUP_TABLES.get(name, "")
    header = ["setting"] + [c.header for c in columns]
    return _finish_table(paper, title, header, columns, cells, runs_by_row, reference,
                         lambda run, col: stand_in.get(col.subset, col.subset),
                         SIGNIFICANCE_NOTE + f"; compared with the first setting, {reference}",
                         _setup_notes(paper, norm, stand_in))


# ------------------------------------------------------------------ figures
def ced_figures(runs: Sequence[Run], out_dir: Path, threshold: float = 0.1) -> list[Path]:
    """One PNG per (dataset, subset): a CED curve per run, on the NME its JSON's FR/AUC use."""
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
    model = load_model(checkpoint, resolve_device(device))
    samples = [s for s in read_source(source, root, split) if s.landmarks is not None][:n_examples]
    if not samples:
        raise DataError(f"{root}: no labeled faces for example figures")
    crops, transforms, images = [], [], []
    for s in samples:
        image = s.image
        crop, transform = crop_for_model(image, face_box(s, "detector"), model.params)
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


# ---- notebook 07 -------------------------------------------------------------------------------------

def notebook_timings(notebook_dir: str | Path) -> list[dict]:
    """Wall time of each executed notebook under ``notebook_dir`` (papermill records it)."""
    rows = []
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        if meta.get("duration") is not None:
            rows.append({"notebook": path.name, "seconds": float(meta["duration"]),
                         "start": meta.get("start_time"), "end": meta.get("end_time")})
    return rows


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers as given: format them before)."""
    lines = ["| " + " | ".join(no_autolink(str(h)) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(no_autolink(str(cell)) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
