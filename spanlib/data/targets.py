"""Training targets (issue 2, section 7): landmark heatmaps, boundary heatmaps (eq. 3) and BALI
fields (eq. 2), per sample in numpy, at every stage resolution.

Grid convention (docs/architecture.md): a map of h x h for a crop of S x S has stride s = S / h; a
crop point p is the map point p / s, and map pixel (i, j) is evaluated at its centre
(j + 0.5, i + 0.5). Points that are NaN (unlabeled or missing) give all-zero heatmaps, xi boundary
maps when a whole boundary is missing, and a zero field mask.
"""

from __future__ import annotations

import numpy as np

from spanlib.config.schema import as_group
from spanlib.utils.errors import ParamError

DISTRIBUTIONS = ("gaussian", "ged", "student_t")


def _centres(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.float32) + np.float32(0.5)


def _array_ops(q):
    """(exp, scalar) for ``q``: numpy's on arrays (constants as float32, so the float32 maths stays
    float32), the tensor's own on torch tensors (``spanlib.data.targets_torch``), so Table VII's
    formulas below have one home for both."""
    if isinstance(q, np.ndarray):
        return np.exp, np.float32
    return (lambda x: x.exp()), float


def check_distribution(distribution: str, ged_shape: float = 0.0, student_df: float = 3.0) -> None:
    """ParamError unless ``distribution`` is one of Table VII's with a valid shape parameter."""
    if distribution not in DISTRIBUTIONS:
        raise ParamError(f"targets.distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")
    if distribution == "ged" and not ged_shape > -1:
        raise ParamError(f"targets.ged_shape: expected d > -1 (d = 0: Gaussian), got {ged_shape}")
    if distribution == "student_t" and student_df <= 0:
        raise ParamError(f"targets.student_df: expected > 0, got {student_df}")


def check_width(key: str, value: float) -> None:
    """ParamError unless the width ``targets.<key>`` (sigma, boundary_sigma) is > 0."""
    if value <= 0:
        raise ParamError(f"targets.{key}: expected > 0, got {value}")


def check_radius(radius: int) -> None:
    """ParamError unless the BALI mask radius ``targets.field_radius`` is >= 0."""
    if radius < 0:
        raise ParamError(f"targets.field_radius: expected >= 0, got {radius}")


def distribution_values(q, distribution: str, ged_shape: float = 0.0, student_df: float = 3.0):
    """Table VII's heatmap distributions as functions of q, the squared normalised distance (q = r^2 /
    sigma^2 for a landmark, q = Dist / sigma^2 for a boundary, eq. 3), all with value 1 at q = 0:

    - gaussian:  exp(-q / 2)
    - ged:       exp(-q^(1 / (1 + d)) / 2), d = ``ged_shape`` > -1: the generalised error (exponential
      power) distribution in Box and Tiao's parameterisation, exp(-|r / sigma|^(2 / (1 + d)) / 2), so
      that d = 0 is the Gaussian as the paper says (its runs: d = 0.2, 0.1, -0.1; d > 0 heavier
      tails, d < 0 flatter top). Our reading: the paper gives no formula (README, Deviations).
    - student_t: (1 + q / df)^(-(df + 2) / 2), the 2-D Student-t density's shape (df -> inf: Gaussian)

    ``q``: a numpy array (float32 result) or a torch tensor (same dtype and device).
    """
    check_distribution(distribution, ged_shape, student_df)
    if not hasattr(q, "exp"):  # not a tensor: a numpy array
        q = np.asarray(q, dtype=np.float32)
    exp, scalar = _array_ops(q)
    if distribution == "gaussian":
        return exp(scalar(-0.5) * q)
    if distribution == "ged":
        return exp(scalar(-0.5) * q ** scalar(1.0 / (1.0 + ged_shape)))
    return (1 + q / scalar(student_df)) ** scalar(-(student_df + 2) / 2)


def landmark_heatmaps(points_map: np.ndarray, size: int, sigma: float, distribution: str = "gaussian",
                      ged_shape: float = 0.0, student_df: float = 3.0) -> np.ndarray:
    """(K, size, size) float32 heatmaps with peak 1 at each point (Table VII distributions,
    ``distribution_values`` of q = r^2 / sigma^2, r the distance from a pixel centre to the point; the
    Gaussian is computed separably, as an outer product)."""
    check_width("sigma", sigma)
    points = np.asarray(points_map, dtype=np.float32).reshape(-1, 2)
    finite = np.all(np.isfinite(points), axis=1)
    if not finite.all():
        points = np.where(finite[:, None], points, np.float32(0))
    c = _centres(size)
    dx = c[None, :] - points[:, :1]  # (K, size) along x (columns)
    dy = c[None, :] - points[:, 1:]  # (K, size) along y (rows)
    if distribution == "gaussian":
        inv = np.float32(-0.5 / sigma**2)
        gx, gy = np.exp(dx * dx * inv), np.exp(dy * dy * inv)
        maps = gy[:, :, None] * gx[:, None, :]
    elif distribution in ("ged", "student_t"):
        r2 = (dy * dy)[:, :, None] + (dx * dx)[:, None, :]
        maps = distribution_values(r2 / np.float32(sigma**2), distribution, ged_shape, student_df)
    else:
        raise ParamError(f"targets.distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")
    maps = maps.astype(np.float32, copy=False)
    maps[~finite] = 0.0
    return maps


def segment_distance(segments: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) float32: exact Euclidean distance from each pixel centre to each segment.

    ``segments`` is (N, 2, 2): endpoints (x, y) in map pixels; a zero-length segment is a point.
    """
    c = _centres(size)
    a, b = segments[:, 0].astype(np.float32), segments[:, 1].astype(np.float32)
    d = b - a
    length2 = np.maximum((d * d).sum(axis=1), np.float32(1e-12))
    px = c[None, None, :] - a[:, 0, None, None]  # (N, 1, size)
    py = c[None, :, None] - a[:, 1, None, None]  # (N, size, 1)
    t = (px * d[:, 0, None, None] + py * d[:, 1, None, None]) / length2[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)
    ex = px - t * d[:, 0, None, None]
    ey = py - t * d[:, 1, None, None]
    return np.sqrt(ex * ex + ey * ey)


def banded_boundary_distance(segments: np.ndarray, owner: np.ndarray, num: int, size: int,
                             cutoff: float) -> np.ndarray:
    """(num, size, size) float32: per boundary, the exact distance from each pixel centre to its
    nearest segment where that distance is < ``cutoff``, inf elsewhere.

    Each segment only touches pixels within ``cutoff`` of its bounding box, so distances are computed
    in one fixed-size window per segment (vectorised over segments) and merged with a minimum
    scatter, about 20x less work than the full (segments x pixels) distance table.
    """
    dist = np.full(num * size * size, np.inf, dtype=np.float32)
    if len(segments) == 0:
        return dist.reshape(num, size, size)
    seg = segments.astype(np.float32, copy=False)
    lo = np.clip(np.floor(seg.min(axis=1) - cutoff).astype(np.int64), 0, size)  # (N, 2) x, y
    hi = np.clip(np.ceil(seg.max(axis=1) + cutoff).astype(np.int64), 0, size)
    width = max(1, int((hi - lo).max()))
    steps = np.arange(width)
    ix = lo[:, 0, None] + steps  # (N, W) columns
    iy = lo[:, 1, None] + steps  # (N, W) rows
    a, d = seg[:, 0], seg[:, 1] - seg[:, 0]
    inv_length2 = 1.0 / np.maximum((d * d).sum(axis=1), np.float32(1e-12))
    px = ix + np.float32(0.5) - a[:, 0, None]
    py = iy + np.float32(0.5) - a[:, 1, None]
    # window cells past the segment's own window (or the map) are pushed far away, so the
    # distance test below drops them without a separate bounds mask
    px[ix >= hi[:, 0, None]] = np.float32(1e6)
    py[iy >= hi[:, 1, None]] = np.float32(1e6)
    px, py = px[:, None, :], py[:, :, None]  # (N, 1, W), (N, W, 1)
    dx, dy = d[:, 0, None, None], d[:, 1, None, None]
    t = np.multiply(py, dy) + px * dx  # (N, W, W)
    t *= inv_length2[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)
    ex = t * dx
    np.subtract(px, ex, out=ex)
    t *= dy
    np.subtract(py, t, out=t)
    ex *= ex
    t *= t
    ex += t  # squared distance
    n, r, c = np.nonzero(ex < np.float32(cutoff) ** 2)
    flat = (owner[n] * size + iy[n, r]) * size + ix[n, c]
    np.minimum.at(dist, flat, np.sqrt(ex[n, r, c]))
    return dist.reshape(num, size, size)


_SEGMENT_INDEX: dict = {}


def segment_index(scheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, owner) point indices of every boundary segment of ``scheme``, cached: consecutive
    points are joined (and the last to the first for closed boundaries); a boundary of one point is
    one zero-length segment. ``owner`` (the boundary index) is non-decreasing."""
    key = (scheme.name, scheme.num_points, tuple((b.indices, b.closed) for b in scheme.boundaries))
    if key not in _SEGMENT_INDEX:
        starts, ends, owner = [], [], []
        for c, boundary in enumerate(scheme.boundaries):
            idx = list(boundary.indices)
            if len(idx) == 1:
                a, b = idx, idx
            else:
                a = idx[:-1] + ([idx[-1]] if boundary.closed else [])
                b = idx[1:] + ([idx[0]] if boundary.closed else [])
            starts += a
            ends += b
            owner += [c] * len(a)
        _SEGMENT_INDEX[key] = (np.asarray(starts), np.asarray(ends), np.asarray(owner))
    return _SEGMENT_INDEX[key]


def boundary_segments(points_map: np.ndarray, scheme) -> tuple[np.ndarray, np.ndarray]:
    """All boundaries' polyline segments (N, 2, 2) in map pixels and the boundary index of each
    (N,), see ``segment_index``. Segments with a NaN end are dropped."""
    points = np.asarray(points_map, dtype=np.float32)
    starts, ends, owner = segment_index(scheme)
    segments = np.stack([points[starts], points[ends]], axis=1)
    keep = np.isfinite(segments).all(axis=(1, 2))
    if keep.all():
        return segments, owner
    return segments[keep], owner[keep]


def boundary_heatmaps(points_map: np.ndarray, scheme, size: int, sigma: float,
                      xi: float = 0.0, distribution: str = "gaussian", ged_shape: float = 0.0,
                      student_df: float = 3.0) -> np.ndarray:
    """(C, size, size) float32 boundary heatmaps, eq. 3.

    B_c = exp(-Dist / (2 sigma^2)) where Dist < 2 sigma, else xi (the Gaussian distribution; Table VII's
    other distributions replace the exponential by ``distribution_values`` of q = Dist / sigma^2, as the paper
    applies them to the landmark and the boundary heatmaps); Dist is the distance from a pixel
    centre to boundary c. Eq. 3 asks for the distance transform of the boundary line made dense by
    interpolation between its points; the distance to a line that is dense in the limit is the
    exact point-to-segment distance, which is computed here directly (vectorised over all segments
    and pixels). A rasterised line plus ``scipy.ndimage.distance_transform_edt`` would add up to
    about half a pixel of raster error to Dist; the test compares both.
    """
    check_width("boundary_sigma", sigma)
    num = len(scheme.boundaries)
    segments, owner = boundary_segments(points_map, scheme)
    dist = banded_boundary_distance(segments, owner, num, size, cutoff=2 * sigma)
    inside = dist < 2 * sigma
    out = np.full((num, size, size), xi, dtype=np.float32)
    if distribution == "gaussian":
        out[inside] = np.exp(dist[inside] * np.float32(-0.5 / sigma**2))
    else:
        out[inside] = distribution_values(dist[inside] / np.float32(sigma**2), distribution, ged_shape, student_df)
    return out


def bali_fields(points_map: np.ndarray, size: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """BALI fields and mask, eq. 2, in map pixels.

    fields[0, k, i, j] = x_k - (j + 0.5), fields[1, k, i, j] = y_k - (i + 0.5); mask[k] = 1 on the
    (2R+1)^2 pixels centred on the pixel that contains landmark k (clipped at the borders; empty
    for NaN points).
    """
    check_radius(radius)
    points = np.asarray(points_map, dtype=np.float32).reshape(-1, 2)
    k = len(points)
    c = _centres(size)
    finite = np.all(np.isfinite(points), axis=1)
    safe = np.where(finite[:, None], points, np.float32(0))
    fields = np.empty((2, k, size, size), dtype=np.float32)
    np.copyto(fields[0], (safe[:, 0, None] - c[None, :])[:, None, :])
    np.copyto(fields[1], (safe[:, 1, None] - c[None, :])[:, :, None])
    cell = np.floor(safe).astype(np.int64)  # (K, 2): column, row of the containing pixel
    idx = np.arange(size)
    in_x = np.abs(idx[None, :] - cell[:, :1]) <= radius  # (K, size)
    in_y = np.abs(idx[None, :] - cell[:, 1:]) <= radius
    mask = (in_y[:, :, None] & in_x[:, None, :] & finite[:, None, None]).astype(np.float32)
    fields[:, ~finite] = 0.0
    return fields, mask


def sigma_at(sigma: float, resolution: int, resolutions) -> float:
    """``sigma`` is given in pixels of the coarsest stage map; the same width in crop pixels at
    every other resolution."""
    return float(sigma) * resolution / min(resolutions)


def build_targets(points_crop: np.ndarray, scheme, crop_size: int, resolutions, field_resolution: int,
                  settings, kinds=("heatmaps", "boundaries", "field")) -> dict:
    """All targets of one face: {"heatmaps": {res: (K, res, res)}, "boundaries": {res: (C, res, res)},
    "field": (2, K, r, r), "field_mask": (K, r, r)} with r = field_resolution.

    ``settings`` is the ``targets`` group (a TargetsConfig, or a mapping checked by the schema);
    sigma and boundary_sigma are in pixels of the coarsest resolution in ``resolutions`` and scale
    with the resolution (same width in crop pixels). ``kinds`` limits the work to the targets a
    model variant uses (absent keys are not built).
    """
    t = as_group("targets", settings)
    points = np.asarray(points_crop, dtype=np.float32)
    if points.shape != (scheme.num_points, 2):
        raise ParamError(f"build_targets: expected ({scheme.num_points}, 2) points for scheme "
                         f"{scheme.name}, got {points.shape}")
    resolutions = sorted({int(r) for r in resolutions})
    heatmaps, boundaries = {}, {}
    out = {}
    for res in resolutions:
        pm = points * np.float32(res / crop_size)
        if "heatmaps" in kinds:
            heatmaps[res] = landmark_heatmaps(
                pm, res, sigma_at(t.sigma, res, resolutions), t.distribution, t.ged_shape, t.student_df)
        if "boundaries" in kinds:
            boundaries[res] = boundary_heatmaps(
                pm, scheme, res, sigma_at(t.boundary_sigma, res, resolutions), t.boundary_xi, t.distribution,
                t.ged_shape, t.student_df)
    if "heatmaps" in kinds:
        out["heatmaps"] = heatmaps
    if "boundaries" in kinds:
        out["boundaries"] = boundaries
    if "field" in kinds:
        out["field"], out["field_mask"] = bali_fields(
            points * np.float32(field_resolution / crop_size), field_resolution, int(t.field_radius))
    return out
