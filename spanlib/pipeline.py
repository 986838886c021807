"""Small helpers the pipeline notebooks (notebooks/*.ipynb, chained by dvc.yaml) call.

The notebooks stay thin: a papermill ``parameters`` cell, calls into spanlib, figures and prose.
Their parameters cell names the params file plus the few knobs of the stage; ``stage_params``
applies those knobs on top of the file, so a notebook run by DVC, by papermill with ``-p`` or by
hand in JupyterLab sees exactly one set of hyperparameters.

Every path a notebook reads or writes (params.yaml, its own parameters, the paths inside
params.yaml) is relative to the project root, the folder holding ``dvc.yaml``. ``enter_project``
finds it by looking upward from the kernel's working folder (``notebooks/`` in JupyterLab, the root
under DVC) and moves the kernel there, so a notebook runs the same wherever it was started.
Outputs of an interactive run go to ``outputs/interactive/`` (``INTERACTIVE``, git-ignored); only
``dvc repro`` passes the study's ``results/`` paths (docs/pipeline.md, "Exploring").
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, ParamError
from .params import load_params


PROJECT_MARKER = "dvc.yaml"
INTERACTIVE = "outputs/interactive"  # where a notebook run by hand writes (git-ignored)


def find_root(start: str | Path | None = None) -> Path:
    """The project root: the nearest folder at or above ``start`` (default: the working folder)
    holding ``dvc.yaml``; failing that, the one above the installed spanlib package (an editable
    install in the repository). Raises ParamError when neither has one."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    candidates = [here, *here.parents, Path(__file__).resolve().parents[1]]
    for folder in candidates:
        if (folder / PROJECT_MARKER).is_file():
            return folder
    raise ParamError(f"no {PROJECT_MARKER} in {here} or any folder above it: start the notebook inside the "
                     "spanlib repository (e.g. `make lab`), where dvc.yaml and params.yaml are")


def enter_project(start: str | Path | None = None) -> Path:
    """Find the project root (``find_root``) and make it the working folder, so every relative path
    (params.yaml's, and each notebook parameter) means the same under JupyterLab, papermill and DVC.
    Idempotent; returns the root."""
    root = find_root(start)
    here = Path.cwd().resolve()
    if here != root:
        _STARTED_IN["cwd"] = here
        os.chdir(root)
    return root


_STARTED_IN: dict[str, Path] = {}  # the kernel's working folder before enter_project moved it


def is_interactive() -> bool:
    """True in a kernel started by a Jupyter server (JupyterLab sets ``JPY_SESSION_NAME``), where a
    front end can drive widgets; False under papermill/nbclient (DVC and the tests)."""
    return "JPY_SESSION_NAME" in os.environ


def writes_to_study(*paths: str | Path) -> bool:
    """True when any of ``paths`` lies outside ``outputs/interactive`` (the run updates the study)."""
    scratch = Path(INTERACTIVE)
    return any(not Path(p).is_relative_to(scratch) for p in paths if p is not None)


def stage_params(params_file: str | Path, values: Mapping[str, Any] | None = None) -> dict:
    """params.yaml, then the profile named by ``pipeline.profile`` (``profiles: {NAME: {dotted
    key: value}}``, e.g. ``paper``), then the notebook's ``values`` (``{"train.iterations": 50}``).

    A value of None keeps the file's (what a notebook parameter defaults to). DVC passes the
    notebook parameters from params.yaml itself, so a value equal to the file's defers to the
    profile; a value changed by hand (in JupyterLab or with ``papermill -p``) wins over both. Every dotted key must already exist in the file, so a misspelt notebook parameter
    stops with a ParamError instead of being silently ignored.
    """
    path = Path(params_file)  # relative: to the project root, whatever the working folder
    if not path.is_absolute():
        from_root = find_root() / path
        # a path written for the kernel's own folder (e.g. "../params.yaml" from notebooks/) still works
        started = _STARTED_IN.get("cwd")
        path = from_root if from_root.is_file() or started is None or not (started / path).is_file() \
            else (started / path).resolve()
    raw = load_params(path)
    params = raw
    profile = (raw.get("pipeline") or {}).get("profile")
    if profile:
        from .params import apply_profile

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


def short_runs(params: dict, variant: str, runs: Mapping[str, Mapping[str, Any]], out_dir: str | Path,
               test_faces: list, metrics_dir: str | Path, table: str, title: str,
               seeds: Sequence[int] | None = None, workers: int = 1, progress: bool = True) -> dict[str, list[dict]]:
    """Train ``variant`` once per entry of ``runs`` (setting name -> dotted params to change, e.g.
    ``{"targets.profile": "ged"}``) and per seed of ``seeds`` (default: params' ``seed``),
    ``workers`` runs at a time (``spanlib.seeds.train_many``), and evaluate each on ``test_faces``.

    Used by Tables VII and VIII: short runs (``train.iterations`` as given in ``runs`` or
    ``params``) without periodic validation. Checkpoints and dvclive logs go to ``out_dir``; each
    run's metrics JSON to ``metrics_dir/run_<i>_s<seed>.json``, and ``metrics_dir/setup.json`` names
    them for ``spanlib.report`` (docs/architecture.md, "Setup JSON"). Returns name -> the metrics
    JSON dicts of its seeds, in seed order.
    """
    from .evaluate import evaluate
    from .io import write_json
    from .seeds import check_seeds, train_many

    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    seeds = check_seeds(list(seeds) if seeds is not None else [int(params.get("seed", 0))])
    data = params["data"]
    jobs, where = [], []
    for index, (name, values) in enumerate(runs.items()):
        for seed in seeds:
            stem = f"run_{index}_s{seed}"
            run_params = set_values(params, {**values, "seed": seed, "train.val_every": 0,
                                             "train.live_dir": str(out_dir / f"{stem}_live")}, origin=f"run {name}")
            jobs.append((f"{name} seed {seed}", run_params, variant, out_dir / f"{stem}.pt"))
            where.append((name, stem))
    checkpoints = train_many(jobs, workers, progress)
    results: dict[str, list[dict]] = {}
    for (name, stem), checkpoint in zip(where, checkpoints):
        results.setdefault(name, []).append(
            evaluate(checkpoint, data["test_source"], data["test_root"], split="+".join(data["test_splits"]),
                     samples=test_faces, settings=params["evaluate"], json_path=metrics_dir / f"{stem}.json",
                     progress=progress))
    rows = [{"setting": name, "metrics": [f"{stem}.json" for n, stem in where if n == name]} for name in runs]
    write_json(metrics_dir / "setup.json", {"table": table, "title": title, "seeds": seeds,
                                            "norm": params["evaluate"]["nme_norm"], "rows": rows})
    return results


# ---- JupyterLab: progress bars and live figures ---------------------------------------------------

_MODULE_LEVEL_TQDM = ("spanlib.train", "spanlib.data.dataset", "spanlib.data.synth.writer")


def notebook_progress() -> bool:
    """In JupyterLab, draw spanlib's tqdm bars as notebook widgets (``tqdm.auto``) instead of red
    stderr text; under papermill (no front end) keep the text bars. Returns True when switched."""
    if not is_interactive():
        return False
    import importlib

    import tqdm
    import tqdm.auto

    tqdm.tqdm = tqdm.auto.tqdm  # code that imports it when called (evaluate, predict)
    for name in _MODULE_LEVEL_TQDM:  # code that imported it at import time
        module = importlib.import_module(name)
        if getattr(module, "tqdm", None) is not None:
            module.tqdm = tqdm.auto.tqdm
    return True


LIVE_HINT = ("Static copy of the figure: run this cell (or Run All) in JupyterLab to make the "
             "sliders live. [spanlib live figure]")  # spanlib.lab.LIVE_HINT_MARK


def figure_png(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for the static copy a saved notebook keeps)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def live_figure(draw, controls: Mapping[str, Any], columns: int = 4):
    """Sliders (``controls``: name -> ipywidgets control, passed to ``draw`` by name) above ONE
    figure that each change redraws in place.

    ``draw(**values)`` returns a matplotlib figure. It is shown in a single ``ipywidgets.Output``
    and closed at once, so there are no stale copies below it and nothing reaches the Log Console.
    Displayed, the box also carries a static PNG of the first figure and a one-line hint: a saved
    notebook (the server hook of ``make lab`` drops the live view, spanlib.lab) reopens with that
    figure instead of "Error displaying widget: model not found". Returns the box.
    """
    import base64

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = widgets.Output()
    state: dict[str, Any] = {}

    def render(change=None):
        fig = draw(**{name: control.value for name, control in controls.items()})
        if "png" not in state:
            state["png"] = figure_png(fig)
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    for control in controls.values():
        control.observe(render, names="value")
    items = list(controls.values())
    rows = [widgets.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]

    class LiveFigure(widgets.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = LIVE_HINT
            if "png" in state:
                bundle["image/png"] = base64.b64encode(state["png"]).decode()
            return bundle

    box = LiveFigure(rows + [out])
    render()
    return box


def show_live_or_static(draw, controls: Mapping[str, Any], path: str | Path | None = None):
    """In JupyterLab: ``live_figure`` with the controls. Elsewhere (papermill, DVC, tests): the
    figure once at the controls' values. Either way the figure at those values is saved to ``path``
    when given (the study's figure under DVC, a scratch copy by hand)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    values = {name: control.value for name, control in controls.items()}
    if path is not None:
        fig = draw(**values)
        save_figure(fig, path)
        plt.close(fig)
    if is_interactive():
        display(Markdown("Move the sliders: the figure below redraws at once. *(A reopened notebook "
                         "shows a static copy: run this cell to make it live.)*"))
        display(live_figure(draw, controls))
    else:
        fig = draw(**values)
        display(fig)
        plt.close(fig)


# ---- 04: a model's view of one face ----------------------------------------------------------------

def exploration_face(face_root: str | Path | None, params: dict, model=None):
    """``(image, landmarks, description)``: a real face for the notebooks' model exploration.

    From ``face_root`` (a 300W folder, e.g. ../shared/data/300w) when it exists: the first face
    the model did not train on when its params hold out a validation fraction, else the first face
    of the ``train`` split. Otherwise a synthetic ``common`` face drawn in memory (seed of params)."""
    root = Path(face_root) if face_root else None
    if root is not None and root.is_dir():
        import warnings

        from .data.sources import read_source

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lacks official parts": reported by 01_prepare_data
            faces = read_source("300w", root, "train")
        train = (model.params if model is not None else params).get("train", {})
        fraction = float(train.get("val_fraction") or 0.0)
        face, where = faces[0], "300w train split (a face the model may have trained on)"
        if fraction > 0:
            try:
                from .data.split import held_out_split

                _, held_out = held_out_split(faces, fraction, int(train.get("val_seed", 0)))
                face, where = held_out[0], f"300w held-out validation face ({fraction:.0%} of train, never trained on)"
            except Exception:  # older checkpoints or no split helper: the first face
                pass
        return face.image, np.asarray(face.landmarks, dtype=np.float64), f"{where}: {face.path}"
    from .data.synth.face import render_face, sample_face

    spec = sample_face(int(params["synth"]["seed"]), "common", 0, int(params["synth"]["size"]))
    return render_face(spec), spec.landmarks.astype(np.float64), "synthetic common face 0 (no real faces here)"


def model_view(model, image: np.ndarray, landmarks: np.ndarray) -> dict:
    """One forward pass of ``model`` on the face (cropped from its landmarks' box as in evaluation
    without a detector box): the crop, ground truth in crop pixels, last-stage softmax heatmaps
    (K, h, w), BALI offsets (2, K, h, w) or zeros, and the model's input size."""
    import torch

    from .data.crop import box_from_landmarks, crop_face
    from .data.dataset import to_tensor_image

    size, scale = int(model.params["crop"]["input_size"]), float(model.params["crop"]["scale"])
    crop, transform = crop_face(image, box_from_landmarks(landmarks), size, scale)
    with torch.no_grad():
        outputs = model(to_tensor_image(crop)[None].to(next(model.parameters()).device))
    logits = outputs["heatmaps"][-1][0].float()
    k, h, w = logits.shape
    heat = torch.softmax(logits.reshape(k, h * w), dim=-1).view(k, h, w)
    offsets = outputs.get("offsets")
    offsets = torch.zeros(2, k, h, w) if offsets is None else offsets[0].float()
    return {"crop": crop, "gt": transform.to_crop(landmarks), "heatmaps": heat.cpu(), "offsets": offsets.cpu(),
            "input_size": size, "scheme": model.scheme}


def decode_view(view: dict, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (K, 2) crop pixels, errors (K,) in % of the inter-ocular distance) at ``radius``."""
    from .decode import bali_decode
    from .metrics import normalization_distance

    heat, off = view["heatmaps"][None], view["offsets"][None]
    stride = view["input_size"] / heat.shape[-1]
    points = (bali_decode(heat, off[:, 0], off[:, 1], int(radius))[0] * stride).numpy().astype(np.float64)
    gt = view["gt"]
    norm = normalization_distance(gt[None], "io", view["scheme"])[0]
    return points, 100 * np.linalg.norm(points - gt, axis=1) / norm


def draw_model_view(view: dict, landmark: int, radius: int, title: str = ""):
    """Crop with ground truth (green) and decoded points (red), landmark ``landmark``'s heatmap with
    the (2r+1)^2 decoding window, its BALI fields B_u and B_v, and every point's error."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    points, errors = decode_view(view, radius)
    heat, off = view["heatmaps"][landmark].numpy(), view["offsets"][:, landmark].numpy()
    h, w = heat.shape
    stride = view["input_size"] / w
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.8), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.5]})
    size = view["input_size"]
    axes[0].imshow(view["crop"], extent=(0, size, size, 0))
    gt = view["gt"]
    for (x0, y0), (x1, y1) in zip(gt, points):
        axes[0].plot([x0, x1], [y0, y1], color="yellow", lw=0.6)
    axes[0].scatter(gt[:, 0], gt[:, 1], s=6, color="lime", label="ground truth")
    axes[0].scatter(points[:, 0], points[:, 1], s=6, color="red", label="decoded")
    axes[0].scatter(*points[landmark], s=80, facecolors="none", edgecolors="cyan", lw=1.5)
    axes[0].set_title(f"crop {size}px: landmark {landmark} error {errors[landmark]:.2f}%", fontsize=8)
    axes[0].legend(fontsize=6, loc="lower left")
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    extent = (0, w, h, 0)
    shown = axes[1].imshow(heat, cmap="magma", extent=extent)
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[1].add_patch(Rectangle((peak[1] - radius, peak[0] - radius), 2 * radius + 1, 2 * radius + 1,
                                fill=False, color="cyan", lw=1))
    axes[1].plot(*(points[landmark] / stride), "+", color="red", ms=14, mew=2.5, label="decoded")
    axes[1].plot(*(gt[landmark] / stride), "x", color="lime", ms=10, mew=2, label="ground truth")
    axes[1].set_title(f"heatmap {landmark} (softmax), window r={radius}", fontsize=8)
    limit = max(1e-6, float(np.abs(off).max()))
    for ax, field, name in zip(axes[2:4], off, ("B_u (x offset)", "B_v (y offset)")):
        shown = ax.imshow(field, cmap="coolwarm", vmin=-limit, vmax=limit, extent=extent)
        fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(f"{name}, landmark {landmark}", fontsize=8)
    span = max(radius + 3, 8)  # zoom the maps on the landmark: the fields are learnt near it only
    for ax in axes[1:4]:
        ax.set(xlim=(max(0, peak[1] - span), min(w, peak[1] + span + 1)),
               ylim=(min(h, peak[0] + span + 1), max(0, peak[0] - span)))
    for ax in axes[:4]:
        ax.axis("off")
    colours = ["cyan" if i == landmark else "tab:red" for i in range(len(errors))]
    axes[4].bar(np.arange(len(errors)), errors, color=colours)
    axes[4].set(xlabel="landmark", ylabel="error (% inter-ocular)",
                title=f"every point: mean {errors.mean():.2f}% (NME_io), r={radius}")
    axes[4].title.set_fontsize(8)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.14, top=0.84, wspace=0.45)  # fixed: redraws fast
    return fig


def outputs_note(*paths: str | Path | None) -> str:
    """One line saying where this run writes: the scratch folder (a run by hand) or the study."""
    shown = ", ".join(f"`{p}`" for p in paths if p is not None)
    if writes_to_study(*paths):
        return f"This run updates the study: {shown}."
    return (f"This run writes to the scratch folder `{INTERACTIVE}/` only ({shown}); the study's "
            "`results/` is unchanged (`dvc repro` updates it).")
