"""Figures of the study: CED curves, per-landmark error, landmark overlays, the maps of Figs. 3
and 6 (landmark heatmaps, boundary heatmaps, BALI fields), loss curves, sample grids, and a trained
model's view of one face (notebook 04).

Matplotlib figures are returned (a notebook shows them); ``save_figure`` writes a PNG atomically.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.dataset import to_tensor_image
from spanlib.data.draw import draw_landmarks  # noqa: F401  (figures.draw_landmarks)
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.data.synth.face import render_face, sample_face
from spanlib.data.targets import bali_fields, landmark_heatmaps
from spanlib.evaluation.metrics import ced, normalization_distance
from spanlib.model.decode import bali_decode
from spanlib.utils.errors import DataError
from spanlib.utils.files import atomic_path

PALETTE = [(230, 57, 70), (29, 120, 220), (46, 160, 67), (240, 160, 30), (150, 70, 200), (20, 170, 170)]


def shown_path(path: str | Path) -> str:
    """``path`` as a figure may print it: relative to the repository (``spanlib/inference/weights/x``, or
    ``../shared/data/...`` beside it), else only its name. A committed figure must not carry the
    folder of the machine that drew it (issue 26: a title read ``/work/main/spanlib/...``)."""
    repo = Path(__file__).resolve().parents[2]
    full = Path(path).resolve()
    relative = os.path.relpath(full, repo)
    if relative.startswith(os.pardir + os.sep + os.pardir) or relative == os.pardir:
        return full.name  # far from the repository: the folder says nothing to a reader
    return relative


def model_view_title(model, face_note: str, checkpoint: str | Path | None = None) -> str:
    """The title of notebook 04's model view: variant, model file (``shown_path``), face."""
    source = getattr(model, "checkpoint_path", None) or checkpoint
    return f"{model.variant} ({shown_path(source) if source else 'no file'}); {face_note}"


def _pyplot():
    import matplotlib  # lazy: matplotlib, only when drawing

    if matplotlib.get_backend().lower() not in ("agg",) and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    return plt


def _interactive() -> bool:
    try:
        from IPython import get_ipython  # lazy: IPython, only in notebooks

        return get_ipython() is not None
    except ImportError:
        return False


def save_figure(fig, path: str | Path, dpi: int = 120, close: bool = True) -> Path:
    """Write ``fig`` atomically as PNG (the format is fixed so the temporary name does not matter);
    ``close=False`` keeps it open, for a notebook cell that also shows it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if close:
        _pyplot().close(fig)
    return path


def plot_ced(curves: Mapping[str, Sequence[float]], threshold: float, norm: str, title: str = ""):
    """CED per run: fraction of faces with NME_norm <= x for x in [0, threshold]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, errors in curves.items():
        grid, frac = ced(errors, threshold)
        ax.plot(100 * grid, frac, label=label, lw=1.6)
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"NME_{norm} (%)")
    ax.set_ylabel("fraction of faces")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_per_landmark(errors: Mapping[str, Sequence[float]], norm: str = "io", title: str = ""):
    """Bar-like lines of each landmark's mean NME, one line per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    for label, values in errors.items():
        values = 100 * np.asarray(values)
        ax.plot(np.arange(len(values)), values, marker="o", ms=2.5, lw=1, label=label)
    ax.set_xlabel("landmark index (0-based)")
    ax.set_ylabel(f"mean NME_{norm} (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_examples(images: Sequence[np.ndarray], preds: Sequence[np.ndarray], scheme, gts=None,
                  titles: Sequence[str] | None = None, columns: int = 4):
    """A grid of overlays (prediction green, ground truth red)."""
    plt = _pyplot()
    n = len(images)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, pred) in enumerate(zip(images, preds)):
        gt = None if gts is None else gts[i]
        axes.flat[i].imshow(draw_landmarks(image, pred, scheme, gt=gt))
        if titles:
            axes.flat[i].set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_maps(crop: np.ndarray, outputs: dict, scheme, landmark: int | None = None, points=None):
    """Figs. 3 / 6: the crop with its points, the sum of the landmark heatmaps (softmax of the last
    stage), the sum of the boundary heatmaps (sigmoid of the last stage, when the variant has them)
    and the BALI fields B_u, B_v of one landmark (when it has them). ``outputs`` are one face's
    model outputs (batch of 1)."""
    plt = _pyplot()
    logits = outputs["heatmaps"][-1][0].float()
    k, h, w = logits.shape
    prob = torch.softmax(logits.reshape(k, -1), -1).reshape(k, h, w).cpu().numpy()
    panels = [("crop and prediction", draw_landmarks(crop, points, scheme) if points is not None else crop, None)]
    panels.append(("landmark heatmaps (sum of softmax)", prob.sum(0), "magma"))
    if outputs.get("boundaries"):
        b = torch.sigmoid(outputs["boundaries"][-1][0].float()).cpu().numpy()
        panels.append(("boundary heatmaps (max of sigmoid)", b.max(0), "viridis"))
    if outputs.get("offsets") is not None:
        lm = int(np.argmax(prob.reshape(k, -1).max(1))) if landmark is None else int(landmark)
        field = outputs["offsets"][0, :, lm].float().cpu().numpy()
        panels.append((f"BALI field B_u, landmark {lm}", field[0], "coolwarm"))
        panels.append((f"BALI field B_v, landmark {lm}", field[1], "coolwarm"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2), squeeze=False)
    for ax, (title, data, cmap) in zip(axes[0], panels):
        if cmap == "coolwarm":
            lim = float(np.abs(data).max()) or 1.0
            im = ax.imshow(data, cmap=cmap, vmin=-lim, vmax=lim)
            fig.colorbar(im, ax=ax, fraction=0.046)
        else:
            ax.imshow(data, cmap=cmap)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


# ---- training curves and data (notebooks 01, 02) ----------------------------------------------------

def plot_distributions(sigma: float, d: float = 0.2, df: float = 1.0, size: int = 24):
    """Notebook 04, section 1: a landmark at a pixel centre of a ``size`` x ``size`` map drawn by
    ``landmark_heatmaps`` as a Gaussian, a GED of shape ``d`` and a Student-t of ``df`` degrees of
    freedom (peak 1). Left: the cross-section through the peak (log); right: the maps (log10)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    point = np.array([[size / 2 + 0.5, size / 2 + 0.5]], dtype=np.float32)  # a pixel centre
    maps = {
        "gaussian": landmark_heatmaps(point, size, sigma, "gaussian")[0],
        f"GED d={d:g}": landmark_heatmaps(point, size, sigma, "ged", ged_shape=d)[0],
        f"Student-t df={df:g}": landmark_heatmaps(point, size, sigma, "student_t", student_df=df)[0],
    }
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    x = np.arange(size) + 0.5
    for name, m in maps.items():
        axes[0].semilogy(x, np.maximum(m[size // 2], 1e-8), label=name)
    axes[0].set(xlabel="x (map pixels)", ylabel="value through the peak", ylim=(1e-6, 2))
    axes[0].legend(fontsize=9)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        shown = ax.imshow(np.log10(np.maximum(m, 1e-4)), cmap="magma", vmin=-4, vmax=0, extent=(0, size, size, 0))
        ax.set_title(f"{name}, sigma={sigma:g} (log10)", fontsize=10)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[1:].tolist(), fraction=0.02)
    return fig


def plot_bali_fields(radius: int, point: Sequence[float] = (10.3, 9.7), size: int = 20):
    """Notebook 04, section 2 (Figs. 3 and 6): the BALI fields B_u, B_v of eq. 2 of one landmark at
    ``point`` on a ``size`` x ``size`` map, inside its (2R+1)^2 window, and the offsets as arrows
    (half length) pointing every window pixel to the landmark (red star)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    point = np.asarray([point], dtype=np.float32)
    fields, mask = bali_fields(point, size, radius)
    ii, jj = np.nonzero(mask[0])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, f, name in zip(axes[:2], fields[:, 0], ["B_u (x offset)", "B_v (y offset)"]):
        shown = ax.imshow(np.where(mask[0] > 0, f, np.nan), cmap="coolwarm", extent=(0, size, size, 0))
        fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(f"{name}, R = {radius}")
    axes[2].quiver(jj + 0.5, ii + 0.5, fields[0, 0, ii, jj], fields[1, 0, ii, jj],
                   angles="xy", scale_units="xy", scale=2, width=0.004, alpha=0.6)  # half length
    axes[2].plot(*point[0], "r*", ms=12)
    axes[2].set(xlim=(0, size), ylim=(size, 0), aspect="equal", title="offsets to the landmark")
    fig.tight_layout()
    return fig


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
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

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
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

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
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

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


# ---- a trained model's view of one face (notebook 04) ------------------------------------------------

def exploration_face(face_root: str | Path | None, params: dict, model=None):
    """``(image, landmarks, description)``: a real face for the notebooks' model exploration.

    From ``face_root`` (a 300W folder, e.g. ../shared/data/300w) when it exists: the first face
    the model did not train on when its params hold out a validation fraction, else the first face
    of the ``train`` split. Otherwise a synthetic ``common`` face drawn in memory (seed of params)."""
    root = Path(face_root) if face_root else None
    if root is not None and root.is_dir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lacks official parts": reported by 01_prepare_data
            faces = read_source("300w", root, "train")
        train = (model.params if model is not None else params).get("train", {})
        fraction = float(train.get("val_fraction") or 0.0)
        face, where = faces[0], "300w train split (a face the model may have trained on)"
        if fraction > 0:
            try:
                _, held_out = held_out_split(faces, fraction, int(train.get("val_seed", 0)))
                face, where = held_out[0], f"300w held-out validation face ({fraction:.0%} of train, never trained on)"
            except Exception:  # older checkpoints or no split helper: the first face
                pass
        return face.image, np.asarray(face.landmarks, dtype=np.float64), f"{where}: {shown_path(face.path)}"

    spec = sample_face(int(params["synth"]["seed"]), "common", 0, int(params["synth"]["size"]))
    return render_face(spec), spec.landmarks.astype(np.float64), "synthetic common face 0 (no real faces here)"


def model_view(model, image: np.ndarray, landmarks: np.ndarray) -> dict:
    """One forward pass of ``model`` on the face (cropped from its landmarks' box as in evaluation
    without a detector box): the crop, ground truth in crop pixels, last-stage softmax heatmaps
    (K, h, w), BALI offsets (2, K, h, w) or zeros, and the model's input size."""
    crop, transform = crop_for_model(image, box_from_landmarks(landmarks), model.params)
    with torch.no_grad():
        outputs = model(to_tensor_image(crop)[None].to(next(model.parameters()).device))
    logits = outputs["heatmaps"][-1][0].float()
    k, h, w = logits.shape
    heat = torch.softmax(logits.reshape(k, h * w), dim=-1).view(k, h, w)
    offsets = outputs.get("offsets")
    offsets = torch.zeros(2, k, h, w) if offsets is None else offsets[0].float()
    return {"crop": crop, "gt": transform.to_crop(landmarks), "heatmaps": heat.cpu(), "offsets": offsets.cpu(),
            "input_size": transform.size, "scheme": model.scheme}


def decode_view(view: dict, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (K, 2) crop pixels, errors (K,) in % of the inter-ocular distance) at ``radius``."""
    heat, off = view["heatmaps"][None], view["offsets"][None]
    stride = view["input_size"] / heat.shape[-1]
    points = (bali_decode(heat, off[:, 0], off[:, 1], int(radius))[0] * stride).numpy().astype(np.float64)
    gt = view["gt"]
    norm = normalization_distance(gt[None], "io", view["scheme"])[0]
    return points, 100 * np.linalg.norm(points - gt, axis=1) / norm


def draw_model_view(view: dict, landmark: int, radius: int, title: str = ""):
    """Crop with ground truth (green) and decoded points (red), landmark ``landmark``'s heatmap with
    the (2r+1)^2 decoding window, its BALI fields B_u and B_v, and every point's error."""
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing
    from matplotlib.patches import Rectangle  # lazy: matplotlib, only when drawing

    points, errors = decode_view(view, radius)
    heat, off = view["heatmaps"][landmark].numpy(), view["offsets"][:, landmark].numpy()
    h, w = heat.shape
    stride = view["input_size"] / w
    # two rows: the crop and the chosen landmark's three maps, then every point's error across the
    # width; text at 10-11 pt so that it reads at JupyterLab's width (five panels in a row did not)
    fig = plt.figure(figsize=(14, 7.4))
    grid = fig.add_gridspec(2, 4, height_ratios=[1.5, 0.8], hspace=0.3, wspace=0.3)
    axes = [fig.add_subplot(grid[0, i]) for i in range(4)] + [fig.add_subplot(grid[1, :])]
    size = view["input_size"]
    axes[0].imshow(view["crop"], extent=(0, size, size, 0))
    gt = view["gt"]
    for (x0, y0), (x1, y1) in zip(gt, points):
        axes[0].plot([x0, x1], [y0, y1], color="yellow", lw=0.6)
    axes[0].scatter(gt[:, 0], gt[:, 1], s=6, color="lime", label="ground truth")
    axes[0].scatter(points[:, 0], points[:, 1], s=6, color="red", label="decoded")
    axes[0].scatter(*points[landmark], s=80, facecolors="none", edgecolors="cyan", lw=1.5)
    axes[0].set_title(f"crop {size}px: landmark {landmark}\nerror {errors[landmark]:.2f}%", fontsize=11)
    axes[0].legend(fontsize=9, loc="lower left")
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    extent = (0, w, h, 0)
    shown = axes[1].imshow(heat, cmap="magma", extent=extent)
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[1].add_patch(Rectangle((peak[1] - radius, peak[0] - radius), 2 * radius + 1, 2 * radius + 1,
                                fill=False, color="cyan", lw=1))
    axes[1].plot(*(points[landmark] / stride), "+", color="red", ms=14, mew=2.5, label="decoded")
    axes[1].plot(*(gt[landmark] / stride), "x", color="lime", ms=10, mew=2, label="ground truth")
    axes[1].set_title(f"heatmap {landmark} (softmax)\nwindow r={radius}", fontsize=11)
    limit = max(1e-6, float(np.abs(off).max()))
    for ax, field, name in zip(axes[2:4], off, ("B_u (x offset)", "B_v (y offset)")):
        shown = ax.imshow(field, cmap="coolwarm", vmin=-limit, vmax=limit, extent=extent)
        fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(f"{name}\nlandmark {landmark}", fontsize=11)
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
    axes[4].title.set_fontsize(11)
    axes[4].xaxis.label.set_fontsize(10)
    axes[4].yaxis.label.set_fontsize(10)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.9)  # fixed: redraws fast
    return fig
