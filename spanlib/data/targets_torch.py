"""Training targets of a whole batch in torch, on any device (issue 25: ``train.device_targets``).

The same targets as :func:`spanlib.data.targets.build_targets` (landmark heatmaps, eq. 3 boundary
heatmaps, eq. 2 BALI fields), same grid convention and NaN handling, computed from the batch of
landmarks (N, K, 2) in crop pixels, vectorised over faces, landmarks and segments. Why: the
DataLoader workers building them in numpy per view cost ~2/3 of an item and ~1.3 MB of
host-to-device traffic per image at the paper's size; on the GPU they are a few small kernels.

The formulas are those of ``spanlib.data.targets`` (``distribution_values``, ``sigma_at``,
``segment_index``, the parameter checks), imported, not restated. Float32 throughout: values agree
with the numpy targets to ~1e-6 of the peak (tests/test_targets_torch.py), except where a pixel's
distance to a boundary lies within float32 rounding (~1e-6 px) of eq. 3's cutoff 2 sigma, where
either side of the discontinuity may be taken.
"""

from __future__ import annotations

import torch

from spanlib.config.schema import as_group
from spanlib.data.targets import (check_distribution, check_radius, check_width, distribution_values,
                                  segment_index, sigma_at)
from spanlib.utils.errors import ParamError


def _centres(size: int, like: torch.Tensor) -> torch.Tensor:
    """Map pixel centres j + 0.5 (docs/architecture.md's grid convention)."""
    return torch.arange(size, dtype=like.dtype, device=like.device) + 0.5


def _finite_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(safe points with non-finite rows set to 0, (N, K) bool finite); NaN rows are missing points."""
    finite = torch.isfinite(points).all(dim=-1)
    return torch.where(finite[..., None], points, torch.zeros_like(points)), finite


def landmark_heatmaps(points_map: torch.Tensor, size: int, sigma: float, distribution: str = "gaussian",
                      ged_shape: float = 0.0, student_df: float = 3.0) -> torch.Tensor:
    """(N, K, size, size) heatmaps with peak 1 at each point of ``points_map`` (N, K, 2) in map
    pixels: Table VII's ``distribution_values`` of q = r^2 / sigma^2; all-zero for non-finite
    points. The Gaussian is separable (exp(-(qx + qy) / 2) = exp(-qx / 2) exp(-qy / 2)): an outer
    product of two (N, K, size) factors, as the numpy version computes it."""
    check_width("sigma", sigma)
    check_distribution(distribution, ged_shape, student_df)
    safe, finite = _finite_points(points_map)
    c = _centres(size, safe)
    dx = c - safe[..., 0:1]  # (N, K, size) along x (columns)
    dy = c - safe[..., 1:2]  # (N, K, size) along y (rows)
    s2 = float(sigma) ** 2
    if distribution == "gaussian":
        gx = distribution_values(dx * dx / s2, distribution)
        gy = distribution_values(dy * dy / s2, distribution)
        maps = gy[..., :, None] * gx[..., None, :]
    else:
        r2 = (dy * dy)[..., :, None] + (dx * dx)[..., None, :]
        maps = distribution_values(r2 / s2, distribution, ged_shape, student_df)
    return maps * finite[..., None, None].to(maps.dtype)


def boundary_distance(points_map: torch.Tensor, scheme, size: int) -> torch.Tensor:
    """(N, C, size, size): per boundary of ``scheme``, the exact Euclidean distance from each pixel
    centre to its nearest segment (``segment_index``: the polyline through its points, closed where
    the boundary is; one point is a zero-length segment); inf where all its segments have a
    non-finite end (such segments are left out, as in ``boundary_segments``).

    All (segment, pixel) pairs at once, (N, S, size, size): no window as in the numpy version's
    ``banded_boundary_distance`` (scatters cost more than the arithmetic on a GPU), then a minimum over
    each boundary's run of segments (``owner`` is non-decreasing)."""
    starts, ends, owner = segment_index(scheme)
    dev = points_map.device
    a = points_map[:, torch.as_tensor(starts, device=dev)]  # (N, S, 2)
    b = points_map[:, torch.as_tensor(ends, device=dev)]
    keep = torch.isfinite(a).all(dim=-1) & torch.isfinite(b).all(dim=-1)  # (N, S)
    d = b - a
    inv_length2 = 1.0 / (d * d).sum(dim=-1).clamp_min(1e-12)  # (N, S)
    c = _centres(size, points_map)
    px = (c - a[..., 0:1])[..., None, :]  # (N, S, 1, size)
    py = (c - a[..., 1:2])[..., :, None]  # (N, S, size, 1)
    dx, dy = d[..., 0, None, None], d[..., 1, None, None]
    t = ((py * dy + px * dx) * inv_length2[..., None, None]).clamp_(0.0, 1.0)  # nearest point's place on the segment
    ex, ey = px - t * dx, py - t * dy
    d2 = ex * ex + ey * ey
    d2 = torch.where(keep[..., None, None], d2, torch.full_like(d2, float("inf")))
    # boundary c owns the next counts[c] segments of the segment axis
    counts = [int((owner == k).sum()) for k in range(len(scheme.boundaries))]
    nearest = torch.stack([part.amin(dim=1) for part in torch.split(d2, counts, dim=1)], dim=1)
    return nearest.sqrt()


def boundary_heatmaps(points_map: torch.Tensor, scheme, size: int, sigma: float, xi: float = 0.0,
                      distribution: str = "gaussian", ged_shape: float = 0.0, student_df: float = 3.0) -> torch.Tensor:
    """(N, C, size, size) boundary heatmaps, eq. 3: B_c = f(Dist / sigma^2) where Dist < 2 sigma, else
    xi, with f = Table VII's ``distribution_values`` (exp(-q / 2) for the Gaussian) and Dist the exact
    distance from a pixel centre to boundary c (``boundary_distance``; see
    ``spanlib.data.targets.boundary_heatmaps`` for why the exact point-to-segment distance)."""
    check_width("boundary_sigma", sigma)
    check_distribution(distribution, ged_shape, student_df)
    dist = boundary_distance(points_map, scheme, size)
    inside = dist < 2 * sigma
    values = distribution_values(torch.where(inside, dist, torch.zeros_like(dist)) / float(sigma) ** 2,
                                 distribution, ged_shape, student_df)
    return torch.where(inside, values, torch.full_like(values, float(xi)))


def bali_fields(points_map: torch.Tensor, size: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BALI fields (N, 2, K, size, size) and mask (N, K, size, size), eq. 2, in map pixels:
    fields[:, 0, k, i, j] = x_k - (j + 0.5), fields[:, 1, k, i, j] = y_k - (i + 0.5); the mask is 1 on
    the (2R+1)^2 pixels centred on the pixel holding landmark k (clipped at the borders); fields
    and mask are 0 for non-finite points."""
    check_radius(radius)
    safe, finite = _finite_points(points_map)
    n, k = safe.shape[:2]
    c = _centres(size, safe)
    keep = finite[..., None, None].to(safe.dtype)  # (N, K, 1, 1)
    fx = (safe[..., 0:1] - c)[..., None, :].expand(n, k, size, size) * keep
    fy = (safe[..., 1:2] - c)[..., :, None].expand(n, k, size, size) * keep
    cell = torch.floor(safe)  # (N, K, 2): column, row of the containing pixel
    idx = c - 0.5
    in_x = (idx - cell[..., 0:1]).abs() <= radius  # (N, K, size)
    in_y = (idx - cell[..., 1:2]).abs() <= radius
    mask = (in_y[..., :, None] & in_x[..., None, :] & finite[..., None, None]).to(safe.dtype)
    return torch.stack([fx, fy], dim=1), mask


def build_targets(points_crop: torch.Tensor, scheme, crop_size: int, resolutions, field_resolution: int,
                  settings, kinds=("heatmaps", "boundaries", "field")) -> dict:
    """The targets of a batch of faces, as :func:`spanlib.data.targets.build_targets` gives them per
    face, stacked: {"heatmaps": {res: (N, K, res, res)}, "boundaries": {res: (N, C, res, res)},
    "field": (N, 2, K, r, r), "field_mask": (N, K, r, r)}, r = ``field_resolution``, float32 on the
    device of ``points_crop`` (N, K, 2), landmarks in crop pixels (NaN rows: missing points).

    ``settings``: the ``targets`` group; sigma and boundary_sigma scale with the resolution
    (``sigma_at``); ``kinds`` limits the work to the targets a model variant uses."""
    t = as_group("targets", settings)
    points = torch.as_tensor(points_crop).float()
    if points.dim() != 3 or tuple(points.shape[1:]) != (scheme.num_points, 2):
        raise ParamError(f"build_targets: expected (N, {scheme.num_points}, 2) points for scheme "
                         f"{scheme.name}, got {tuple(points.shape)}")
    resolutions = sorted({int(r) for r in resolutions})
    out = {}
    heatmaps, boundaries = {}, {}
    for res in resolutions:
        pm = points * (res / crop_size)
        if "heatmaps" in kinds:
            heatmaps[res] = landmark_heatmaps(pm, res, sigma_at(t.sigma, res, resolutions), t.distribution,
                                              t.ged_shape, t.student_df)
        if "boundaries" in kinds:
            boundaries[res] = boundary_heatmaps(pm, scheme, res, sigma_at(t.boundary_sigma, res, resolutions),
                                                t.boundary_xi, t.distribution, t.ged_shape, t.student_df)
    if "heatmaps" in kinds:
        out["heatmaps"] = heatmaps
    if "boundaries" in kinds:
        out["boundaries"] = boundaries
    if "field" in kinds:
        out["field"], out["field_mask"] = bali_fields(points * (field_resolution / crop_size), field_resolution,
                                                      int(t.field_radius))
    return out
