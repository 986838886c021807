"""Figures of the study: CED curves, per-landmark error, landmark overlays, and the maps of
Figs. 3 and 6 (landmark heatmaps, boundary heatmaps, BALI fields).

Matplotlib figures are returned (a notebook shows them); ``save_figure`` writes a PNG atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from .io import atomic_path
from .metrics import ced

PALETTE = [(230, 57, 70), (29, 120, 220), (46, 160, 67), (240, 160, 30), (150, 70, 200), (20, 170, 170)]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return path


def draw_landmarks(image: np.ndarray, points: np.ndarray, scheme=None, box: Sequence[float] | None = None,
                   label: str | None = None, color=(0, 255, 0), gt: np.ndarray | None = None) -> np.ndarray:
    """A copy of the RGB image with the points (and the scheme's boundaries as lines, the box, the
    ground truth in red when given). Points are corner-origin pixels; OpenCV draws at centres, so
    0.5 is subtracted."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(1, int(round(max(canvas.shape[:2]) / 300)))
    shift = 4  # sub-pixel drawing: coordinates * 16

    def pix(p):
        return tuple(int(round((v - 0.5) * (1 << shift))) for v in p)

    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(canvas, pix((x0, y0)), pix((x1, y1)), (255, 200, 0), scale, cv2.LINE_AA, shift)
    for pts, col in ((gt, (255, 40, 40)), (points, color)):
        if pts is None:
            continue
        pts = np.asarray(pts, dtype=np.float64)
        if scheme is not None:
            for boundary in scheme.boundaries:
                line = np.array([pix(pts[i]) for i in boundary.indices], dtype=np.int32)
                cv2.polylines(canvas, [line], boundary.closed, col, max(1, scale // 2), cv2.LINE_AA, shift)
        for p in pts:
            if np.all(np.isfinite(p)):
                cv2.circle(canvas, pix(p), (scale + 1) << shift, col, -1, cv2.LINE_AA, shift)
    if label and box is not None:
        cv2.putText(canvas, label, (int(box[0]), max(12, int(box[1]) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * scale, (255, 200, 0), max(1, scale // 2), cv2.LINE_AA)
    return canvas


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
    import torch

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
