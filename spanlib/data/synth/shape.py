"""The 3D face model behind the synthetic faces: identity, expression, pose, projection.

Coordinates of the model: x to the image right (the subject's left), y down, z towards the camera,
in face units (half the jaw width at eye level is about 1; the outer eye corners sit at y = 0).
The frontal (x, y) layout follows the proportions of an average near-frontal 300-W face; z puts the
points on a head-like surface so that yaw moves near and far features the way a real head does.

The 68 points follow the iBUG 300-W order: jaw 0-16, right brow 17-21 (image left), left brow 22-26,
nose bridge 27-30, nostrils 31-35, right eye 36-41, left eye 42-47, outer lip 48-59, inner lip 60-67.

The jaw points are not fixed 3D points. As a 300-W annotator does, they are put on the visible face
outline: the face surface is sampled densely, projected, its outline taken as the convex hull, and
each jaw point is moved along the ray from the head centre through its 3D position onto that
outline (the "landmark marching" of 3D face alignment). Under yaw the far-side points land on the
cheek silhouette and the near-side ones on the jaw line.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from spanlib.data.synth import portable

NUM_POINTS = 68

# Frontal right half (image left) of the template; the left half is its mirror.
_JAW_RIGHT = [(-0.99, 0.02), (-0.97, 0.28), (-0.94, 0.54), (-0.88, 0.79), (-0.78, 1.03),
              (-0.62, 1.23), (-0.42, 1.39), (-0.22, 1.52)]
_BROW_RIGHT = [(-0.85, -0.17), (-0.73, -0.29), (-0.55, -0.33), (-0.36, -0.30), (-0.19, -0.25)]
_EYE_RIGHT = [(-0.63, 0.0), (-0.52, -0.065), (-0.38, -0.065), (-0.27, 0.025), (-0.39, 0.05), (-0.53, 0.05)]


def _template() -> np.ndarray:
    """(68, 2) frontal template in face units (neutral expression, mouth closed)."""
    p = np.zeros((NUM_POINTS, 2))
    jaw = np.array(_JAW_RIGHT)
    p[0:8] = jaw
    p[8] = (0.0, 1.56)
    p[9:17] = jaw[::-1] * (-1, 1)
    brow = np.array(_BROW_RIGHT)
    p[17:22] = brow
    p[22:27] = brow[::-1] * (-1, 1)
    p[27:31] = [(0, -0.03), (0, 0.14), (0, 0.32), (0, 0.49)]
    p[31:36] = [(-0.21, 0.60), (-0.11, 0.63), (0, 0.66), (0.11, 0.63), (0.21, 0.60)]
    eye = np.array(_EYE_RIGHT)
    p[36:42] = eye
    # left eye: 42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid (mirror of 39..36)
    p[42:48] = eye[[3, 2, 1, 0, 5, 4]] * (-1, 1)
    p[48:55] = [(-0.39, 0.93), (-0.25, 0.86), (-0.10, 0.84), (0, 0.86), (0.10, 0.84), (0.25, 0.86), (0.39, 0.93)]
    p[55:60] = [(0.26, 1.06), (0.12, 1.12), (0, 1.13), (-0.12, 1.12), (-0.26, 1.06)]
    p[60:65] = [(-0.34, 0.935), (-0.11, 0.945), (0, 0.95), (0.11, 0.945), (0.34, 0.935)]
    p[65:68] = [(0.11, 0.945), (0, 0.95), (-0.11, 0.945)]
    return p


TEMPLATE = _template()

JAW = np.arange(0, 17)
RIGHT_BROW, LEFT_BROW = np.arange(17, 22), np.arange(22, 27)
NOSE_BRIDGE, NOSTRILS = np.arange(27, 31), np.arange(31, 36)
RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)
OUTER_LIP, INNER_LIP = np.arange(48, 60), np.arange(60, 68)
# index sets used per face, built once (np.r_ is slow in a hot path)
_MOUTH = np.r_[OUTER_LIP, INNER_LIP]
_UPPER_LIPS, _LOWER_LIPS = np.r_[48:55, 60:65], np.r_[55:60, 65:68]
_CHIN_RANGE = np.abs(np.arange(4, 13) - 8)
_JAW_FROM_CHIN = np.abs(np.arange(17) - 8)
UPPER_LID = {"right": [36, 37, 38, 39], "left": [42, 43, 44, 45]}
LOWER_LID = {"right": [39, 40, 41, 36], "left": [45, 46, 47, 42]}


@dataclass
class Identity:
    """Shape parameters of one person (all multiplicative factors are 1 for the template)."""

    face_length: float
    jaw_width: float
    chin_width: float
    eye_spacing: float
    eye_size: float
    eye_open: float
    eye_tilt: float
    brow_height: float
    brow_arch: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_y: float
    lip_upper: float
    lip_lower: float
    head_depth: float
    jitter: np.ndarray  # (68, 2) small per-point offsets


@dataclass
class Expression:
    mouth_open: float   # 0 closed .. 1 wide open (jaw drops)
    smile: float        # -0.5 (corners down) .. 1 (broad smile)
    brow_raise: float   # -1 (frown) .. 1 (raised)
    eye_closure: tuple[float, float]  # (right, left): 0 open .. 1 closed


def sample_identity(rng: np.random.Generator) -> Identity:
    u = rng.uniform
    return Identity(
        face_length=u(0.92, 1.10), jaw_width=u(0.88, 1.08), chin_width=u(0.85, 1.2),
        eye_spacing=u(0.92, 1.08), eye_size=u(0.88, 1.12), eye_open=u(0.8, 1.25), eye_tilt=u(-0.03, 0.04),
        brow_height=u(-0.05, 0.06), brow_arch=u(0.6, 1.5), brow_thickness=u(0.045, 0.09),
        nose_length=u(0.9, 1.1), nose_width=u(0.85, 1.2), mouth_width=u(0.88, 1.12), mouth_y=u(-0.04, 0.04),
        lip_upper=u(0.7, 1.3), lip_lower=u(0.7, 1.3), head_depth=u(0.85, 1.05),
        jitter=rng.normal(0.0, 0.008, size=(NUM_POINTS, 2)),
    )


def face_points_2d(ident: Identity, expr: Expression) -> np.ndarray:
    """(68, 2) frontal points in face units for this identity and expression."""
    p = TEMPLATE.copy()
    # identity: jaw and face length
    lower = p[JAW, 1] > 0.5
    p[JAW, 0] *= np.where(lower, ident.jaw_width, 0.5 + 0.5 * ident.jaw_width)
    p[4:13, 0] *= np.interp(_CHIN_RANGE, [0, 4], [ident.chin_width, 1.0])
    p[:, 1] = np.where(p[:, 1] > 0, p[:, 1] * ident.face_length, p[:, 1])
    # eyes: spacing, size, opening, tilt (outer corners up for positive tilt)
    for idx, side in ((RIGHT_EYE, -1.0), (LEFT_EYE, 1.0)):
        c = p[idx].mean(0)
        q = p[idx] - c
        q[:, 0] *= ident.eye_size
        q[:, 1] *= ident.eye_size * ident.eye_open
        q[:, 1] -= ident.eye_tilt * q[:, 0] * side
        p[idx] = q + (c[0] * ident.eye_spacing, c[1])
    # brows: height and arch
    for idx in (RIGHT_BROW, LEFT_BROW):
        mid = p[idx, 1].max()
        p[idx, 1] = mid + (p[idx, 1] - mid) * ident.brow_arch - ident.brow_height
        p[idx, 0] *= 0.5 + 0.5 * ident.eye_spacing
    # nose length from the bridge top, width of the nostrils
    p[28:36, 1] = p[27, 1] + (p[28:36, 1] - p[27, 1]) * ident.nose_length
    p[NOSTRILS, 0] *= ident.nose_width
    # mouth: width, height, lip thickness around the closed lip line
    mouth, upper, lower = _MOUTH, _UPPER_LIPS, _LOWER_LIPS
    seam = p[62, 1]
    p[mouth, 0] *= ident.mouth_width
    p[upper, 1] = seam + (p[upper, 1] - seam) * np.where(p[upper, 1] < seam - 0.02, ident.lip_upper, 1.0)
    p[lower, 1] = seam + (p[lower, 1] - seam) * np.where(p[lower, 1] > seam + 0.02, ident.lip_lower, 1.0)
    p[mouth, 1] += ident.mouth_y
    p += ident.jitter
    return _apply_expression(p, expr)


def _apply_expression(p: np.ndarray, expr: Expression) -> np.ndarray:
    p = p.copy()
    # smile: corners out and up, the lower lip curves with them
    s = expr.smile
    corners = {48: -1, 60: -1, 54: 1, 64: 1}
    for k, side in corners.items():
        p[k, 0] += side * 0.05 * max(s, 0.0)
        p[k, 1] -= 0.09 * s
    for k, w in ((49, 0.4), (53, 0.4), (59, 0.5), (55, 0.5), (61, 0.3), (63, 0.3), (67, 0.3), (65, 0.3)):
        p[k, 1] -= 0.09 * s * w
    # mouth opening: the lower lip and the chin drop with the jaw; the upper inner lip lifts a little
    o = expr.mouth_open
    drop = 0.32 * o
    p[55:60, 1] += drop
    p[65:68, 1] += drop
    p[61:64, 1] -= 0.02 * o
    jaw_w = np.interp(_JAW_FROM_CHIN, [0, 5, 8], [1.0, 0.0, 0.0])
    p[JAW, 1] += drop * 0.85 * jaw_w
    p[60, 1] += drop * 0.1
    p[64, 1] += drop * 0.1
    # brows: raise lifts the whole brow, frown lowers and pulls the inner ends in
    b = expr.brow_raise
    for idx, inner in ((RIGHT_BROW, 21), (LEFT_BROW, 22)):
        p[idx, 1] -= 0.07 * b
        if b < 0:
            p[inner, 0] -= np.sign(p[inner, 0]) * 0.03 * b
            p[inner, 1] -= 0.03 * b
    # eye closure: upper lid points move onto the lower lid
    for (up, low_pts), c in zip((((37, 38), (41, 40)), ((43, 44), (47, 46))), expr.eye_closure):
        for u_k, l_k in zip(up, low_pts):
            p[u_k] += c * (p[l_k] - p[u_k])
    return p


def _surface_z(x: np.ndarray, y: np.ndarray, half_width: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """z of the face surface: elliptical cross-sections, z = 0 on the midline, -depth at the sides."""
    r = np.clip(x / np.maximum(half_width, 1e-3), -1.0, 1.0)
    return -depth * (1.0 - np.sqrt(1.0 - r * r))


# z of each point above the face surface (the nose and lips stand out, the eyes sit back)
_PROTRUSION = np.zeros(NUM_POINTS)
_PROTRUSION[17:27] = 0.04
_PROTRUSION[27:31] = [0.08, 0.2, 0.33, 0.45]
_PROTRUSION[31:36] = [0.08, 0.2, 0.26, 0.2, 0.08]
_PROTRUSION[36:48] = -0.06
_PROTRUSION[48:68] = 0.08
_PROTRUSION[[48, 54, 60, 64]] = 0.0


@dataclass
class Head:
    """Everything 3D about one face, ready to project."""

    points: np.ndarray        # (68, 3) landmarks (jaw ones on the frontal outline)
    shell: np.ndarray         # (M, 3) face surface samples whose projected hull is the face outline
    half_width: callable      # y -> half width of the face at height y
    centre: np.ndarray        # (3,) a point inside the head, the origin of the jaw rays
    depth: float


def build_head(ident: Identity, expr: Expression) -> Head:
    p2 = face_points_2d(ident, expr)
    depth = 0.95 * ident.head_depth
    # face outline from the (smooth) jaw curve, per side, as functions of height
    jaw = catmull_rom(p2[JAW], samples=6, closed=False)
    chin = int(np.argmax(jaw[:, 1]))
    right, left = jaw[: chin + 1], jaw[chin:][::-1]
    y_top_jaw = max(right[0, 1], left[0, 1])
    y_chin = jaw[chin, 1]
    ys_r, xs_r = _monotone(right)
    ys_l, xs_l = _monotone(left)
    w0 = 0.5 * (xs_l[0] - xs_r[0])
    c0 = 0.5 * (xs_l[0] + xs_r[0])

    def half_width(y):
        y = np.asarray(y, dtype=np.float64)
        w_jaw = 0.5 * (np.interp(y, ys_l, xs_l) - np.interp(y, ys_r, xs_r))
        w_head = w0 * np.sqrt(np.clip(1.0 - ((y_top_jaw - y) / 1.8) ** 2, 0.0, 1.0))
        return np.where(y >= y_top_jaw, w_jaw, w_head)

    def centre_x(y):
        y = np.asarray(y, dtype=np.float64)
        c_jaw = 0.5 * (np.interp(y, ys_l, xs_l) + np.interp(y, ys_r, xs_r))
        return np.where(y >= y_top_jaw, c_jaw, c0)

    # surface samples: cross-section ellipses from the forehead top to the chin, front half plus a
    # strip behind the cheeks (the side of the head up to the ear)
    s = np.linspace(0.0, 1.0, 22)
    levels = np.concatenate([np.linspace(-1.72, y_top_jaw, 11)[:-1],
                             y_top_jaw + (y_chin - y_top_jaw) * (1 - (1 - s) ** 2)])
    phi = np.linspace(-np.pi / 2 - 0.45, np.pi / 2 + 0.45, 27)
    sin_phi, cos_phi = portable.sincos(phi)
    w = half_width(levels)[:, None]
    d = depth * np.maximum(w, 0.35)
    cx = centre_x(levels)[:, None]
    shell = np.stack(
        [cx + w * sin_phi[None], np.broadcast_to(levels[:, None], (len(levels), len(phi))),
         -d * (1 - cos_phi)[None]], axis=-1).reshape(-1, 3)
    shell = np.concatenate([shell, [[jaw[chin, 0], y_chin, 0.0]]])
    # 3D points: features on the surface plus their protrusion; jaw points on the frontal outline
    hw = half_width(p2[:, 1])
    z = _surface_z(p2[:, 0] - centre_x(p2[:, 1]), p2[:, 1], hw, depth * np.maximum(hw, 0.35)) + _PROTRUSION
    pts = np.column_stack([p2, z])
    pts[JAW, 2] = -depth * np.maximum(half_width(p2[JAW, 1]), 0.35)
    pts[8, 2] = 0.0
    pts[[7, 9], 2] *= 0.3
    pts[[6, 10], 2] *= 0.7
    return Head(points=pts, shell=shell, half_width=half_width, centre=np.array([0.0, 0.55, -0.45 * depth]),
                depth=depth)


def _monotone(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make y strictly increasing along a half jaw so x can be interpolated as a function of y."""
    y = np.maximum.accumulate(curve[:, 1])
    y = y + np.arange(len(y)) * 1e-6
    return y, curve[:, 0]


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Rx(pitch) Ry(yaw), angles in degrees. Positive yaw turns the nose to the image
    right, positive pitch tips the chin down, positive roll turns the face clockwise on screen."""
    # portable sin/cos and a BLAS-free product: the same bits on every CPU (portable.py)
    (sa, ca), (sb, cb), (sc, cc) = (portable.sincos(float(v) * portable.DEG) for v in (yaw, pitch, roll))
    ry = [[ca, 0.0, sa], [0.0, 1.0, 0.0], [-sa, 0.0, ca]]
    rx = [[1.0, 0.0, 0.0], [0.0, cb, sb], [0.0, -sb, cb]]
    rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]]
    return portable.matmul3(portable.matmul3(rz, rx), ry)


@dataclass
class Projection:
    """Weak perspective: image point = scale * (R p)[:2] + offset (pixels, corner origin)."""

    rotation: np.ndarray
    scale: float
    offset: np.ndarray

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        # three products summed in a fixed order, not ``pts @ R[:2].T`` (BLAS differs per CPU)
        xy = np.stack([portable.rows_dot(pts, self.rotation[0]), portable.rows_dot(pts, self.rotation[1])], axis=1)
        return xy * self.scale + self.offset

    def depth(self, pts: np.ndarray) -> np.ndarray:
        return portable.rows_dot(pts, self.rotation[2])


def face_outline(head: Head, proj: Projection) -> np.ndarray:
    """(N, 2) convex outline of the projected face surface, counter-clockwise on screen."""
    hull = cv2.convexHull(proj(head.shell).astype(np.float32), clockwise=False)
    return hull.reshape(-1, 2).astype(np.float64)


def snap_to_outline(points: np.ndarray, origin: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each point along the ray origin -> point onto the (convex) outline polygon; returns the
    points and their arc-length positions along the outline (from vertex 0)."""
    a = outline
    b = np.roll(outline, -1, axis=0)
    e = b - a                                   # (S, 2) edges
    d = points - origin                         # (P, 2) ray directions
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    # solve origin + t d = a + u e for every (ray, edge)
    w = a[None] - origin                        # (1, S, 2)
    den = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    t = (w[..., 0] * e[None, :, 1] - w[..., 1] * e[None, :, 0]) / den
    u = (w[..., 0] * d[:, None, 1] - w[..., 1] * d[:, None, 0]) / den
    ok = (u >= -1e-9) & (u <= 1 + 1e-9) & (t > 0)
    t = np.where(ok, t, np.inf)
    edge = t.argmin(axis=1)
    rows = np.arange(len(points))
    lengths = np.linalg.norm(e, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])[edge] + np.clip(u[rows, edge], 0, 1) * lengths[edge]
    return origin + d * t[rows, edge][:, None], arc


def keep_inside(points: np.ndarray, outline: np.ndarray, margin: float) -> np.ndarray:
    """Points closer than ``margin`` to the edge of the convex polygon ``outline`` (or outside it)
    are moved to the nearest point of the edge and then ``margin`` inwards."""
    a = outline
    e = np.roll(outline, -1, axis=0) - a
    area2 = np.sum(a[:, 0] * np.roll(a[:, 1], -1) - np.roll(a[:, 0], -1) * a[:, 1])
    normal = np.stack([-e[:, 1], e[:, 0]], axis=1)
    inward = np.sign(area2) * normal / np.maximum(np.linalg.norm(e, axis=1), 1e-9)[:, None]
    rel = points[:, None, :] - a[None]                                    # (P, S, 2)
    signed = (rel * inward[None]).sum(-1)                                 # > 0 inside each edge
    depth = signed.min(axis=1)                                            # distance inside the polygon
    out = points.copy()
    for k in np.nonzero(depth < margin)[0]:
        u = np.clip((rel[k] * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-12), 0, 1)
        near = a + u[:, None] * e
        j = np.argmin(np.linalg.norm(near - points[k], axis=1))
        out[k] = near[j] + inward[j] * margin
    return out


def point_at_arc(outline: np.ndarray, arc: np.ndarray) -> np.ndarray:
    """Points of the closed polygon ``outline`` at arc-length positions ``arc`` (taken modulo its length)."""
    closed = np.concatenate([outline, outline[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    arc = np.mod(arc, cum[-1])
    return np.stack([np.interp(arc, cum, closed[:, 0]), np.interp(arc, cum, closed[:, 1])], axis=1)


def jaw_on_outline(jaw_2d: np.ndarray, template_jaw: np.ndarray, origin: np.ndarray,
                   outline: np.ndarray) -> np.ndarray:
    """The 17 contour points on the visible outline: points 0, 8 and 16 are their 3D positions
    moved onto the outline along rays from the head centre; the others are spread between them
    along the outline in the proportions of the frontal contour (as annotators space them)."""
    snapped, arc = snap_to_outline(jaw_2d, origin, outline)
    total = np.linalg.norm(np.diff(np.concatenate([outline, outline[:1]]), axis=0), axis=1).sum()
    out = snapped.copy()
    for lo, hi, mid in ((0, 8, 4), (8, 16, 12)):
        # walk from lo to hi the way round the outline that passes the middle point
        fwd = np.mod(arc[hi] - arc[lo], total)
        if np.mod(arc[mid] - arc[lo], total) > fwd:
            fwd = fwd - total
        seg = template_jaw[lo : hi + 1]
        frac = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(seg, axis=0), axis=1))])
        frac /= frac[-1]
        out[lo : hi + 1] = point_at_arc(outline, arc[lo] + frac * fwd)
    return out


@functools.lru_cache(maxsize=None)
def _basis(samples: int) -> np.ndarray:
    """(samples, 4) Catmull-Rom weights of the four control points at t = k / samples."""
    t = np.arange(samples) / samples
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=1)


@functools.lru_cache(maxsize=None)
def _segment_index(n_seg: int) -> np.ndarray:
    """(n_seg, 4) rows of the four control points of each segment in the extended point list."""
    return np.arange(n_seg)[:, None] + np.arange(4)[None]


def catmull_rom(points: np.ndarray, samples: int = 8, closed: bool = False) -> np.ndarray:
    """A Catmull-Rom spline through ``points`` (N, 2), ``samples`` per segment; it passes through
    every input point (they are the samples at t = 0), and ends with the last point when open."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    # preallocated arrays instead of vstack: ~21 splines a face make the call overhead count
    ext = np.empty((n + 3 if closed else n + 2, 2))
    ext[1 : n + 1] = p
    if closed:
        ext[0] = p[-1]
        ext[n + 1 :] = p[:2]
    else:
        ext[0] = 2 * p[0] - p[1]
        ext[n + 1] = 2 * p[-1] - p[-2]
    n_seg = n if closed else n - 1
    out = np.empty((n_seg * samples + (0 if closed else 1), 2))
    # the weighted sum of the four control points, term by term in a fixed order: np.matmul would
    # go to BLAS, whose kernels (with or without FMA) differ in the last bit between CPUs
    b = _basis(samples)[None, :, :, None]                        # (1, samples, 4, 1)
    c = ext[_segment_index(n_seg)][:, None]                      # (n_seg, 1, 4, 2)
    seg = out[: n_seg * samples].reshape(n_seg, samples, 2)
    np.multiply(b[:, :, 0], c[:, :, 0], out=seg)
    for k in (1, 2, 3):
        seg += b[:, :, k] * c[:, :, k]
    if not closed:
        out[-1] = p[-1]
    return out
