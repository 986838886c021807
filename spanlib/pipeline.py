"""Small helpers the pipeline notebooks (notebooks/*.ipynb, chained by dvc.yaml) call.

The notebooks stay thin: a papermill ``parameters`` cell, calls into spanlib, figures and prose.
Their parameters cell names the params file plus the few knobs of the stage; ``stage_params``
applies those knobs on top of the file, so a notebook run by DVC, by papermill with ``-p`` or by
hand in JupyterLab sees exactly one set of hyperparameters.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import DataError, ParamError
from .params import load_params


def stage_params(params_file: str | Path, values: Mapping[str, Any] | None = None) -> dict:
    """params.yaml, then the profile named by ``pipeline.profile`` (``profiles: {NAME: {dotted
    key: value}}``, e.g. ``paper``), then the notebook's ``values`` (``{"train.iterations": 50}``).

    A value of None keeps the file's (what a notebook parameter defaults to). DVC passes the
    notebook parameters from params.yaml itself, so a value equal to the file's defers to the
    profile; a value changed by hand (in JupyterLab or with ``papermill -p``) wins over both. Every dotted key must already exist in the file, so a misspelt notebook parameter
    stops with a ParamError instead of being silently ignored.
    """
    raw = load_params(params_file)
    params = raw
    profile = (raw.get("pipeline") or {}).get("profile")
    if profile:
        from .train import apply_profile

        params = apply_profile(raw, profile)
    changed = {key: value for key, value in (values or {}).items()
               if value is not None and (not profile or _lookup(raw, key, str(params_file)) != value)}
    return set_values(params, changed, origin=str(params_file))


def _lookup(params: dict, key: str, origin: str) -> Any:
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamError(f"{origin}: unknown parameter {key!r} (set by a notebook parameter)")
        node = node[part]
    return node


def set_values(params: dict, values: Mapping[str, Any], origin: str = "params") -> dict:
    """A deep copy of ``params`` with each dotted key of ``values`` replaced (keys must exist)."""
    import copy

    params = copy.deepcopy(params)
    for key, value in values.items():
        node = params
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ParamError(f"{origin}: unknown parameter {'.'.join(parts[: depth + 1])!r} "
                                 f"(set by a notebook parameter as {key})")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return params


def read_loss_curves(dvclive_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar series dvclive logged under ``dvclive_dir/plots/metrics``: name -> (step, value).

    Names are the paths below ``plots/metrics`` without ``.tsv`` (e.g. ``train/loss``).
    """
    root = Path(dvclive_dir) / "plots" / "metrics"
    if not root.is_dir():
        raise DataError(f"{root}: no dvclive metrics (expected the training run's dvclive folder)")
    curves = {}
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        name = path.relative_to(root).with_suffix("").as_posix()
        column = path.stem if path.stem in rows[0] else [c for c in rows[0] if c not in ("step", "timestamp")][0]
        steps = np.array([float(r["step"]) for r in rows])
        values = np.array([float(r[column]) for r in rows])
        curves[name] = (steps, values)
    return curves


def plot_loss_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = ""):
    """One panel per series group (the part of the name before the first ``/``; the learning rate
    on its own panel), log-scale y where every value is positive."""
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for name in curves:
        group = "learning rate" if name.rsplit("/", 1)[-1] == "lr" else (name.split("/")[0] if "/" in name else "metrics")
        groups.setdefault(group, []).append(name)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (group, names) in zip(axes[0], groups.items()):
        for name in names:
            steps, values = curves[name]
            ax.plot(steps, values, label=name.split("/", 1)[-1])
        if all(np.all(curves[n][1] > 0) for n in names):
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(group)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sample_grid(samples: list, scheme=None, columns: int = 4, title: str = ""):
    """Faces with their landmarks (and boundaries when ``scheme`` is given) in a grid."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(samples) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sample in zip(axes.ravel(), samples):
        ax.imshow(sample.image)
        points = sample.landmarks
        if points is not None:
            if scheme is not None:
                for boundary in scheme.boundaries:
                    idx = list(boundary.indices) + ([boundary.indices[0]] if boundary.closed else [])
                    ax.plot(points[idx, 0] - 0.5, points[idx, 1] - 0.5, lw=0.6, color="cyan")
            # imshow puts pixel centres at integers: shift the corner-origin points by -0.5
            ax.scatter(points[:, 0] - 0.5, points[:, 1] - 0.5, s=2, color="red")
        ax.set_title(Path(sample.path).name, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_maps(maps: Iterable[np.ndarray], titles: Iterable[str], cmap: str = "magma",
              background: np.ndarray | None = None, title: str = ""):
    """A row of 2-D maps (heatmaps, fields) side by side, optionally over a background image."""
    import matplotlib.pyplot as plt

    maps, titles = list(maps), list(titles)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.0), squeeze=False)
    for ax, image, name in zip(axes[0], maps, titles):
        extent = (0, image.shape[1], image.shape[0], 0)
        if background is not None:
            ax.imshow(background, extent=extent)
            ax.imshow(image, cmap=cmap, alpha=0.6, extent=extent)
        else:
            shown = ax.imshow(image, cmap=cmap, extent=extent)
            fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically as PNG (the format is fixed so the temporary name does not matter)."""
    from .io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


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
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def read_test_faces(data: Mapping[str, Any]) -> list:
    """The faces of every split in ``data["test_splits"]`` of ``data["test_source"]`` at
    ``data["test_root"]``, read once (evaluated together, so the metrics come per subset: common,
    challenging and full for 300W and the synthetic default)."""
    from .data.sources import read_source

    return [face for split in data["test_splits"]
            for face in read_source(data["test_source"], data["test_root"], split)]


def spread(faces: list, count: int | None) -> list:
    """``count`` faces taken evenly over ``faces`` (all of them when ``count`` is None or larger),
    so a subsample keeps the mix of subsets (common and challenging) of the whole list."""
    if count is None or count >= len(faces):
        return list(faces)
    if count < 1:
        raise ParamError(f"test_faces: expected at least 1 face, got {count}")
    return [faces[i] for i in np.linspace(0, len(faces) - 1, count).round().astype(int)]


def results_table(results: Mapping[str, dict], norm: str, threshold: float, label: str = "variant") -> str:
    """Markdown table of metrics JSON dicts (one row each): NME per subset, FR and AUC on ``full``
    (or the last subset when there is no ``full``). NME and FR in %."""
    first = next(iter(results.values()))["subsets"]
    subsets = sorted(first, key=lambda name: name == "full")  # the whole test set last
    last = "full" if "full" in first else subsets[-1]
    key = f"{threshold:g}"
    header = [label] + [f"NME_{norm} {s} (%)" for s in subsets] + [f"FR_{key} {last} (%)", f"AUC_{key} {last}"]
    rows = []
    for name, result in results.items():
        s = result["subsets"]
        rows.append([name] + [f"{100 * s[sub]['nme'][norm]:.2f}" for sub in subsets]
                    + [f"{100 * s[last]['fr'][key]:.2f}", f"{s[last]['auc'][key]:.4f}"])
    return markdown_table(header, rows)


def headline_metrics(results: Mapping[str, dict]) -> dict:
    """``{name: {subset: {n, nme, fr, auc}}}``: the numbers ``dvc metrics show`` lists (no per-face
    or per-landmark arrays)."""
    return {name: {sub: {k: s[k] for k in ("n", "nme", "fr", "auc")} for sub, s in r["subsets"].items()}
            for name, r in results.items()}


def short_runs(params: dict, variant: str, runs: Mapping[str, Mapping[str, Any]], out_dir: str | Path,
               test_faces: list, metrics_dir: str | Path, table: str, title: str,
               progress: bool = True) -> dict[str, dict]:
    """Train ``variant`` once per entry of ``runs`` (setting name -> dotted params to change, e.g.
    ``{"targets.profile": "ged"}``) from the same seed, and evaluate each on ``test_faces``.

    Used by Tables VII and VIII: short runs (``train.iterations`` as given in ``runs`` or
    ``params``) without periodic validation. Checkpoints and dvclive logs go to ``out_dir``; each
    run's metrics JSON to ``metrics_dir/run_<i>.json``, and ``metrics_dir/setup.json`` names them
    for ``spanlib.report`` (docs/architecture.md, "Setup JSON"). Returns name -> metrics JSON dict.
    """
    from .evaluate import evaluate
    from .io import write_json
    from .train import train

    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    data = params["data"]
    results, rows = {}, []
    for index, (name, values) in enumerate(runs.items()):
        run_params = set_values(params, {**values, "train.val_every": 0,
                                         "train.live_dir": str(out_dir / f"run_{index}_live")}, origin=f"run {name}")
        checkpoint = train(run_params, variant, out_dir / f"run_{index}.pt", progress=progress)
        results[name] = evaluate(checkpoint, data["test_source"], data["test_root"],
                                 split="+".join(data["test_splits"]), samples=test_faces,
                                 settings=params["evaluate"], json_path=metrics_dir / f"run_{index}.json",
                                 progress=progress)
        rows.append({"setting": name, "metrics": f"run_{index}.json"})
    write_json(metrics_dir / "setup.json", {"table": table, "title": title,
                                            "norm": params["evaluate"]["nme_norm"], "rows": rows})
    return results
