"""Landmark accuracy: NME under each normalisation of eq. 21, failure rate, CED and its AUC.

All errors are fractions of the normalising distance (multiply by 100 for the paper's %).

Normalisations (``norm``), for ground truth G (K, 2):
- ``io``: inter-ocular, distance between the outer eye corners (``scheme.io_indices``: 36/45 for
  68 points, 60/72 for 98, 8/9 for COFW-29, 6/11 for AFLW-19).
- ``ip``: inter-pupil, distance between the means of ``scheme.ip_groups`` (the eye centres, means
  of each eye's six points for 68; the pupil points 96/97 for 98 and 16/17 for COFW-29).
- ``box``: a face's provided box size where the dataset gives one (``box_sizes``: AFLW's
  ``box_size`` column, the protocol of the paper's Table III), else sqrt(w * h) of the
  ground-truth box; when no box is given, the tight box of G.
- ``diag``: the diagonal of the tight box of G (AFLW's usual normalisation is the box size; see
  the README's "Deviations").

AUC at threshold t: the area under the cumulative error distribution (CED) F(e) = P(error <= e)
on [0, t], divided by t, integrated by Simpson's rule (``scipy.integrate.simpson``) on the grid
0, 1e-4, 2e-4, ..., t, the protocol of PIPNet / STAR / HRNet's evaluation scripts.
``auc_exact`` gives the closed form of the same integral for the step-function CED,
(1 / t) * mean(max(0, t - e_i)), which the tests use as an independent second computation.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy.integrate import simpson

from spanlib.utils.errors import DataError, ParamError

NORMS = ("io", "ip", "box", "diag")
DEFAULT_THRESHOLDS = (0.08, 0.1)
AUC_STEP = 1e-4


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 2:
        raise DataError(f"{name}: expected landmarks of shape (N, K, 2), got {points.shape}")
    return points


def _tight_boxes(gt: np.ndarray) -> np.ndarray:
    return np.concatenate([np.nanmin(gt, axis=1), np.nanmax(gt, axis=1)], axis=1)


def normalization_distance(gt: np.ndarray, norm: str, scheme=None, boxes: np.ndarray | None = None,
                           box_sizes: np.ndarray | None = None) -> np.ndarray:
    """(N,) normalising distance of eq. 21 for ground truth ``gt`` (N, K, 2).

    ``scheme`` (a ``spanlib.config.schemes.Scheme`` or anything with ``io_indices`` and ``ip_groups``) is
    needed for ``io`` and ``ip``; ``boxes`` (N, 4) optionally sets the box of ``box``, and
    ``box_sizes`` (N,) the distance of ``box`` itself where finite (NaN: that face uses the box).
    """
    gt = _check_points(gt, "ground truth")
    if norm == "io":
        if scheme is None:
            raise ParamError("evaluate.nme_norm=io: needs the landmark scheme (outer eye corners)")
        left, right = scheme.io_indices
        dist = np.linalg.norm(gt[:, left] - gt[:, right], axis=-1)
    elif norm == "ip":
        if scheme is None:
            raise ParamError("evaluate.nme_norm=ip: needs the landmark scheme (eye centres or pupils)")
        centres = [gt[:, list(group)].mean(axis=1) for group in scheme.ip_groups]
        dist = np.linalg.norm(centres[0] - centres[1], axis=-1)
    elif norm in ("box", "diag"):
        if norm == "box" and boxes is not None:
            box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            if len(box) != len(gt):
                raise DataError(f"boxes: expected {len(gt)} boxes (one per face), got {len(box)}")
        else:
            box = _tight_boxes(gt)
        w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        dist = np.sqrt(w * h) if norm == "box" else np.hypot(w, h)
        if norm == "box" and box_sizes is not None:
            dist = _provided_sizes(dist, box_sizes)
    else:
        raise ParamError(f"evaluate.nme_norm: unknown normalisation {norm!r}; expected one of {NORMS}")
    if not np.all(np.isfinite(dist) & (dist > 0)):
        bad = np.flatnonzero(~(np.isfinite(dist) & (dist > 0)))
        raise DataError(f"NME_{norm}: normalising distance is zero or not finite for faces {bad[:10].tolist()}")
    return dist


def _provided_sizes(dist: np.ndarray, box_sizes) -> np.ndarray:
    """``dist`` with each face's provided box size put in where it is finite."""
    sizes = np.asarray(box_sizes, dtype=np.float64).reshape(-1)
    if len(sizes) != len(dist):
        raise DataError(f"box_sizes: expected {len(dist)} sizes (one per face, NaN for none), got {len(sizes)}")
    return np.where(np.isfinite(sizes), sizes, dist)


def point_errors(pred: np.ndarray, gt: np.ndarray, norm: str, scheme=None,
                 boxes: np.ndarray | None = None, box_sizes: np.ndarray | None = None) -> np.ndarray:
    """(N, K) Euclidean error of each point divided by its face's normalising distance."""
    pred, gt = _check_points(pred, "predictions"), _check_points(gt, "ground truth")
    if pred.shape != gt.shape:
        raise DataError(f"predictions {pred.shape} and ground truth {gt.shape}: expected the same shape")
    if not np.all(np.isfinite(pred)):
        raise DataError("predictions: contain non-finite values")
    dist = normalization_distance(gt, norm, scheme, boxes, box_sizes)
    return np.linalg.norm(pred - gt, axis=-1) / dist[:, None]


def nme_per_face(pred, gt, norm: str, scheme=None, boxes=None, box_sizes=None) -> np.ndarray:
    """(N,) NME of eq. 21: mean over the K points of the normalised error, per face."""
    return point_errors(pred, gt, norm, scheme, boxes, box_sizes).mean(axis=1)


def nme_per_landmark(pred, gt, norm: str, scheme=None, boxes=None) -> np.ndarray:
    """(K,) mean over faces of each point's normalised error."""
    return point_errors(pred, gt, norm, scheme, boxes).mean(axis=0)


def failure_rate(errors: Sequence[float], threshold: float) -> float:
    """Fraction of faces whose NME is strictly above ``threshold``."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        raise DataError("failure_rate: no errors given (empty subset)")
    return float(np.mean(errors > threshold))


def ced(errors: Sequence[float], threshold: float, step: float = AUC_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on the grid 0, step, ..., threshold: (grid, fraction <= grid)."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if errors.size == 0:
        raise DataError("ced: no errors given (empty subset)")
    if not threshold > 0 or not 0 < step <= threshold:
        raise ParamError(f"AUC threshold {threshold} / step {step}: expected 0 < step <= threshold")
    n = int(round(threshold / step))
    grid = np.linspace(0.0, n * step, n + 1)
    fraction = np.searchsorted(errors, grid, side="right") / errors.size
    return grid, fraction


def auc(errors: Sequence[float], threshold: float, step: float = AUC_STEP) -> float:
    """AUC_threshold: Simpson's rule on the CED grid (step 1e-4), divided by the threshold."""
    grid, fraction = ced(errors, threshold, step)
    return float(simpson(fraction, x=grid) / grid[-1])


def threshold_metric(kind: str, errors: Sequence[float], threshold: float) -> float:
    """FR (``kind`` "fr") or AUC ("auc") at ``threshold`` of per-face NME ``errors``, a fraction."""
    if kind not in ("fr", "auc"):
        raise ValueError(f"threshold_metric: kind must be 'fr' or 'auc', got {kind!r}")
    return (auc if kind == "auc" else failure_rate)(errors, float(threshold))


def subset_threshold_metric(subset: dict, kind: str, norm: str, threshold: str | float) -> float | None:
    """FR or AUC (fraction) of one subset entry of a metrics JSON under ``norm`` at ``threshold``
    (0.07 or "0.07"): the stored value (``fr_by_norm`` / ``auc_by_norm``, or ``fr`` / ``auc`` when
    the subset's own ``norm`` is ``norm``), else computed from its per-face NME under ``norm``;
    None when neither is there."""
    key = f"{float(threshold):g}"
    by_norm = subset.get(f"{kind}_by_norm", {}).get(norm)
    if by_norm is None and subset.get("norm") == norm:
        by_norm = subset.get(kind)
    value = None if by_norm is None else by_norm.get(key)
    if value is None:
        errors = subset.get("per_face_nme", {}).get(norm)
        if errors:
            value = threshold_metric(kind, errors, float(key))
    return value


def auc_exact(errors: Sequence[float], threshold: float) -> float:
    """Closed form of the AUC for the step-function CED: (1/t) * mean(max(0, t - e_i))."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.mean(np.clip(threshold - errors, 0.0, None)) / threshold)


def subset_metrics(pred: np.ndarray, gt: np.ndarray, scheme, boxes: np.ndarray | None = None,
                   thresholds: Iterable[float] = DEFAULT_THRESHOLDS, norm: str = "io",
                   norms: Iterable[str] = NORMS, box_sizes: np.ndarray | None = None) -> dict:
    """One subset's entry of the metrics JSON (docs/architecture.md, "Metrics JSON").

    ``nme`` holds the mean NME under each normalisation in ``norms`` that the scheme supports;
    FR and AUC are computed on the per-face NME under ``norm`` (the one stated in provenance) and
    the same is given per normalisation under ``fr_by_norm`` / ``auc_by_norm`` so that Table II
    (AUC_box) and Table IV (FR under ip) can be read without re-running. ``box_sizes`` (N,) are
    provided box sizes for NME_box (AFLW; NaN where a face has none).
    """
    pred, gt = _check_points(pred, "predictions"), _check_points(gt, "ground truth")
    thresholds = [float(t) for t in thresholds]
    per_face: dict[str, np.ndarray] = {}
    for name in norms:
        box_args = (boxes, box_sizes) if name == "box" else (None, None)
        per_face[name] = nme_per_face(pred, gt, name, scheme, *box_args)
    if norm not in per_face:
        raise ParamError(f"evaluate.nme_norm: {norm!r} is not among the computed norms {list(per_face)}")
    key = lambda t: f"{t:g}"  # noqa: E731  "0.08", "0.1"
    return {
        "n": int(len(gt)),
        "norm": norm,
        "nme": {name: float(v.mean()) for name, v in per_face.items()},
        "fr": {key(t): failure_rate(per_face[norm], t) for t in thresholds},
        "auc": {key(t): auc(per_face[norm], t) for t in thresholds},
        "fr_by_norm": {name: {key(t): failure_rate(v, t) for t in thresholds} for name, v in per_face.items()},
        "auc_by_norm": {name: {key(t): auc(v, t) for t in thresholds} for name, v in per_face.items()},
        "per_landmark_nme_io": nme_per_landmark(pred, gt, "io", scheme).tolist(),
        "per_face_nme": {name: v.tolist() for name, v in per_face.items()},
    }


def format_metrics(metrics: dict, norm: str | None = None) -> str:
    """One line per subset, always naming the normalisation: 'common  n=300  NME_io 3.41%  ...'."""
    lines = []
    for name, m in metrics.items():
        chosen = norm or m.get("norm", "io")
        nmes = "  ".join(f"NME_{k} {100 * v:.2f}%" for k, v in m["nme"].items())
        frs = "  ".join(f"FR_{chosen}@{t} {100 * v:.2f}%" for t, v in m["fr"].items())
        aucs = "  ".join(f"AUC_{chosen}@{t} {v:.4f}" for t, v in m["auc"].items())
        lines.append(f"{name:<14} n={m['n']:<5} {nmes}  {frs}  {aucs}")
    return "\n".join(lines)
