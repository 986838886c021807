"""One synthetic face: its random specification (``sample_face``) and its drawing (``render_face``).

Face ``i`` of split ``s`` depends only on ``(seed, s, i)``: its generator is
``np.random.default_rng([seed, SPLIT_CODES[s], i])`` (geometry, colours, occluders) and the texture
generator (background clutter, noise) is ``default_rng([seed, SPLIT_CODES[s], i, 1])``. So resuming,
changing the number of faces or generating in parallel never changes a face.

Styles mirror 300-W: ``common`` is near-frontal (|yaw| <= 15, |pitch| <= 10, |roll| <= 8 degrees),
unoccluded, with mild expressions; ``challenging`` has large yaw (up to 45), pitch (25) and roll
(35), strong expressions (wide open mouth, broad smile, frown, closed eyes), occluders (hands,
bars, sunglasses, masks, objects) in 70 % of faces, stronger blur, noise and lighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from spanlib.data.synth import portable
from spanlib.data.synth.shape import (
    LOWER_LID, UPPER_LID, Expression, Projection, build_head, catmull_rom, face_outline, rotation_matrix,
    jaw_on_outline, keep_inside, sample_identity,
)

SPLIT_CODES = {"train": 0, "common": 1, "challenging": 2, "unlabeled": 3}
STYLES = ("common", "challenging")
# train and unlabeled faces: every 4th face (i % 4 == 3) is drawn in the challenging style, the
# rest in the common style (300-W's training set is mostly near-frontal too)
TRAIN_CHALLENGING_EVERY = 4

_SKIN = np.array([(255, 224, 200), (241, 194, 160), (224, 172, 125), (198, 134, 90), (160, 100, 62),
                  (120, 74, 45), (82, 52, 34)], dtype=np.float64)
_HAIR = np.array([(22, 18, 16), (55, 38, 26), (98, 66, 40), (196, 160, 98), (140, 66, 32), (150, 150, 150),
                  (40, 30, 25)], dtype=np.float64)
_IRIS = np.array([(92, 56, 30), (50, 32, 22), (70, 110, 160), (85, 115, 70), (110, 120, 128)], dtype=np.float64)
_SHIFT = 4           # OpenCV sub-pixel bits: coordinates are drawn with 1/16 pixel precision
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
# brow, eye and mouth points (kept inside the face outline)
_FEATURES = np.r_[17:27, 36:48, 48:68]


def style_of(split: str, index: int) -> str:
    """The style of face ``index`` of ``split`` (see TRAIN_CHALLENGING_EVERY)."""
    if split in STYLES:
        return split
    return "challenging" if index % TRAIN_CHALLENGING_EVERY == TRAIN_CHALLENGING_EVERY - 1 else "common"


@dataclass
class FaceSpec:
    """Everything needed to draw one face, and what the manifest records about it."""

    split: str
    index: int
    style: str
    size: int
    landmarks: np.ndarray            # (68, 2) float32 image pixels, corner origin
    geometry: dict                   # projected drawing polygons (image pixels)
    colours: dict
    occluders: list                  # drawing ops, see _draw_ops
    meta: dict = field(default_factory=dict)
    texture_seed: list = field(default_factory=list)


def _uniform_sym(rng, limit):
    return float(rng.uniform(-limit, limit))


def _sample_pose_expression(rng: np.random.Generator, style: str) -> tuple[dict, Expression]:
    if style == "common":
        pose = {"yaw": _uniform_sym(rng, 15), "pitch": _uniform_sym(rng, 10), "roll": _uniform_sym(rng, 8)}
        mouth = 0.0 if rng.random() < 0.6 else float(rng.uniform(0, 0.3))
        expr = Expression(mouth_open=mouth, smile=float(rng.uniform(-0.1, 0.5)),
                          brow_raise=float(rng.uniform(-0.3, 0.4)),
                          eye_closure=(float(rng.uniform(0, 0.25)),) * 2)
        return pose, expr
    # challenging: at least one of large yaw / pitch / roll, the others moderate
    big = rng.integers(3)
    yaw = float(rng.choice([-1, 1]) * rng.uniform(25, 45)) if big == 0 else _uniform_sym(rng, 30)
    pitch = float(rng.choice([-1, 1]) * rng.uniform(15, 25)) if big == 1 else _uniform_sym(rng, 15)
    roll = float(rng.choice([-1, 1]) * rng.uniform(20, 35)) if big == 2 else _uniform_sym(rng, 20)
    mouth = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.55 else float(rng.uniform(0, 0.2))
    closure = rng.uniform(0, 0.3, size=2)
    if rng.random() < 0.3:
        closure[rng.integers(2):] = rng.uniform(0.7, 1.0)   # wink (one eye) or both closed
    expr = Expression(mouth_open=mouth, smile=float(rng.uniform(-0.5, 1.0)), brow_raise=float(rng.uniform(-1, 1)),
                      eye_closure=(float(closure[0]), float(closure[1])))
    return {"yaw": yaw, "pitch": pitch, "roll": roll}, expr


def _pick(rng, table):
    """A random colour between two neighbouring entries of ``table``."""
    i = rng.integers(len(table) - 1)
    t = rng.random()
    return table[i] * (1 - t) + table[i + 1] * t


def _colours(rng: np.random.Generator) -> dict:
    skin = np.clip(_pick(rng, _SKIN) + rng.normal(0, 6, 3), 30, 255)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15)
    brow = np.minimum(hair, skin * 0.55) * rng.uniform(0.8, 1.0)
    lip_tint = np.array([1.0, 0.62, 0.62]) * rng.uniform(0.78, 0.92)
    lips = np.clip(skin * lip_tint + (18, 0, 6), 0, 255)
    return {
        "skin": skin, "neck": skin * rng.uniform(0.62, 0.8), "ear": skin * 0.9, "hair": np.clip(hair, 0, 255),
        "brow": brow, "lip_upper": lips * 0.88, "lip_lower": lips, "mouth": np.array((60, 18, 24.0)),
        "teeth": np.array((236, 232, 218.0)) * rng.uniform(0.85, 1.0), "sclera": np.array((242, 240, 236.0)) *
        rng.uniform(0.9, 1.0), "iris": _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2),
        "lid": skin * 0.35, "crease": skin * 0.78, "nose_dark": skin * 0.55, "nose_shadow": skin * 0.86,
        "nose_light": np.minimum(skin * 1.08 + 6, 255), "clothes": rng.uniform(20, 235, 3),
    }


def sample_face(seed: int, split: str, index: int, size: int = 256) -> FaceSpec:
    """The specification of face ``index`` of ``split`` (no pixels drawn: cheap)."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    style = style_of(split, index)
    ident = sample_identity(rng)
    pose, expr = _sample_pose_expression(rng, style)
    head = build_head(ident, expr)
    scale = size * (rng.uniform(0.19, 0.235) if style == "common" else rng.uniform(0.16, 0.245))
    shift = 0.04 if style == "common" else 0.08
    target = size * np.array([0.5 + _uniform_sym(rng, shift), 0.52 + _uniform_sym(rng, shift)])
    rot = rotation_matrix(pose["yaw"], pose["pitch"], pose["roll"])
    proj = Projection(rot, scale, np.zeros(2))
    proj.offset = target - proj(np.array([[0.0, 0.55, 0.0]]))[0]

    outline = face_outline(head, proj)
    pts = proj(head.points)
    pts[:17] = jaw_on_outline(pts[:17], head.points[:17, :2], proj(head.centre[None])[0], outline)
    # keep every point inside the image, as in 300-W crops
    lo, hi = pts.min(0), pts.max(0)
    move = np.maximum(3 - lo, 0) - np.maximum(hi - (size - 3), 0)
    proj.offset = proj.offset + move
    pts += move
    outline += move

    # brow, eye and mouth points that the head turns past the silhouette are seen on it (as an
    # annotator marks a far brow end), 1 px inside
    pts[_FEATURES] = keep_inside(pts[_FEATURES], outline, margin=1.0)

    colours = _colours(rng)
    geometry = _geometry(head, ident, expr, proj, pts, outline, rng, pose)
    occluders = _sample_occluders(rng, pts, scale, colours) if style == "challenging" and rng.random() < 0.7 else []
    blur = float(rng.uniform(0, 0.8) if style == "common" else rng.uniform(0, 2.0))
    noise = float(rng.uniform(0, 4) if style == "common" else rng.uniform(0, 10))
    light = {"gradient": float(rng.uniform(0, 0.3) if style == "common" else rng.uniform(0.1, 0.6)),
             "angle": float(rng.uniform(0, 2 * np.pi)), "ambient": float(rng.uniform(0.85, 1.08)),
             "tint": rng.uniform(0.93, 1.07, 3)}
    spec = FaceSpec(split=split, index=index, style=style, size=size, landmarks=pts.astype(np.float32),
                    geometry=geometry, colours=colours, occluders=occluders,
                    texture_seed=[seed, SPLIT_CODES[split], index, 1])
    spec.meta = {
        "name": face_name(split, index), "split": split, "index": index, "style": style,
        "pose": {k: round(v, 3) for k, v in pose.items()},
        "expression": {"mouth_open": round(expr.mouth_open, 3), "smile": round(expr.smile, 3),
                       "brow_raise": round(expr.brow_raise, 3),
                       "eye_closure": [round(c, 3) for c in expr.eye_closure]},
        "occluders": [op["kind"] for op in occluders],
        "occluded_points": _occluded_points(occluders, pts, size),
        "interocular_px": round(portable.length(pts[36] - pts[45]), 2),
        "blur_sigma": round(blur, 3), "noise_std": round(noise, 3),
        "light": {"gradient": round(light["gradient"], 3), "angle": round(light["angle"], 3),
                  "ambient": round(light["ambient"], 3)},
        "skin_rgb": [int(round(c)) for c in colours["skin"]],
    }
    spec.geometry["blur"], spec.geometry["noise"], spec.geometry["light"] = blur, noise, light
    return spec


def face_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _geometry(head, ident, expr, proj, pts, outline, rng, pose) -> dict:
    """Projected polygons of every drawn part; feature edges are splines through the landmarks.
    The parts draw from ``rng`` in this order (eyes, then body, then front hair)."""
    g = {"outline": outline}
    g.update(_brows(head.points, ident, proj, pts))
    g.update(_eyes(head.points, ident, expr, proj, pts, rng))
    g["nose"] = _nose(head.points, proj, pts)
    g.update(_mouth(proj, pts))
    g.update(_body(head, proj, rng))
    g["ears"] = _ears(head, proj, pose)
    g["hair_front"] = _hair_front(head, proj, rng)
    return g


def _brows(P, ident, proj, pts) -> dict:
    """Brows: upper edge through the landmarks, lower edge a thickness below (thinner at the tail)."""
    g = {}
    for name, idx, outer_first in (("brow_r", np.arange(17, 22), True), ("brow_l", np.arange(22, 27), False)):
        thick = ident.brow_thickness * np.linspace(0.45, 1.0, 5)
        if not outer_first:
            thick = thick[::-1]
        offset = np.zeros((5, 3))
        offset[:, 1] = thick
        lower = P[idx] + offset
        top = catmull_rom(pts[idx], 5)
        bottom = catmull_rom(proj(lower), 5)[::-1]
        g[name] = np.concatenate([top, bottom])
    return g


def _eyes(P, ident, expr, proj, pts, rng) -> dict:
    """Eyes: lids as splines through the corner and lid points, creases above, iris."""
    g = {}
    for side, idx in (("r", np.arange(36, 42)), ("l", np.arange(42, 48))):
        key = "right" if side == "r" else "left"
        up = catmull_rom(pts[UPPER_LID[key]], 6)
        low = catmull_rom(pts[LOWER_LID[key]], 6)
        g[f"eye_{side}"] = np.concatenate([up[:-1], low[:-1]])
        g[f"lid_up_{side}"] = up
        g[f"lid_low_{side}"] = low
        closure = expr.eye_closure[0 if side == "r" else 1]
        crease3 = P[UPPER_LID[key]] + np.array([[0, -0.02, 0.01], [0, -0.07, 0.02], [0, -0.07, 0.02], [0, -0.02, 0.01]])
        crease3[:, 1] -= 0.04 * closure
        g[f"crease_{side}"] = catmull_rom(proj(crease3), 5)
        centre = P[idx].mean(0) + np.array([rng.normal(0, 0.025), rng.normal(0, 0.012), 0.06])
        r = 0.085 * ident.eye_size
        g[f"iris_{side}"] = (proj(centre[None])[0], r * proj.scale, closure)
    return g


def _nose(P, proj, pts) -> dict:
    """Nose: base line, nostrils, ridge, sides, tip and the skin patch under them."""
    nose = {}
    nose["base"] = catmull_rom(pts[31:36], 5)
    wing = []
    for k, sx in ((31, -1.0), (35, 1.0)):
        a3 = P[k] + np.array([[0, 0, 0], [sx * 0.035, -0.06, -0.03], [sx * 0.01, -0.13, -0.02],
                              [-sx * 0.04, -0.15, 0.03]])
        wing.append(catmull_rom(proj(a3), 4))
    # one line from the right wing round the nose base to the left wing (31 and 35 mid-line)
    nose["base"] = np.concatenate([wing[0][::-1], nose["base"][1:-1], wing[1]])
    nose["nostrils"] = [proj((0.55 * P[k1] + 0.45 * P[k2] + np.array([0, -0.025, -0.02]))[None])[0]
                        for k1, k2 in ((32, 31), (34, 35))]
    nose["ridge"] = catmull_rom(pts[27:31], 4)
    nose["sides"] = [catmull_rom(proj(P[[27, 28, 29]] + np.array([[sx * 0.07, 0.04, -0.06], [sx * 0.075, 0, -0.1],
                                                                   [sx * 0.09, 0, -0.12]])), 4)
                     for sx in (-1.0, 1.0)]
    nose["tip"] = proj((P[30] + np.array([0, 0.025, 0.0]))[None])[0]
    nose["skin"] = cv2.convexHull(np.concatenate([pts[27:36], *wing]).astype(np.float32)).reshape(-1, 2)
    return nose


def _mouth(proj, pts) -> dict:
    """Mouth: outer and inner lip splines, the gap between the lips, and teeth under the upper lip."""
    g = {}
    outer_up = catmull_rom(pts[48:55], 5)
    outer_low = catmull_rom(pts[[54, 55, 56, 57, 58, 59, 48]], 5)
    inner_up = catmull_rom(pts[60:65], 5)
    inner_low = catmull_rom(pts[[64, 65, 66, 67, 60]], 5)
    g["lips_outer"] = np.concatenate([outer_up[:-1], outer_low[:-1]])
    g["lip_upper"] = np.concatenate([outer_up, pts[64:65], inner_up[::-1], pts[48:49]])
    g["mouth_inner"] = np.concatenate([inner_up[:-1], inner_low[:-1]])
    g["inner_up"] = inner_up
    gap = float(np.max(np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1)))
    g["mouth_gap"] = gap
    # teeth: a band under the upper inner lip
    teeth_h = min(0.07 * proj.scale, 0.45 * gap)
    down = proj(np.array([[0, 1.0, 0]])) - proj(np.array([[0, 0.0, 0]]))
    down = down[0] / portable.length(down[0])
    g["teeth"] = np.concatenate([inner_up, inner_up[::-1] + down * teeth_h]) if gap > 2 else None
    return g


def _body(head, proj, rng) -> dict:
    """Back hair (long in 35 % of faces), neck and clothes (all 3D, projected)."""
    d = head.depth
    w0 = float(head.half_width(0.0))
    top = head.shell[head.shell[:, 1] < 0.25]
    back = np.stack([top[:, 0] * 1.15, top[:, 1] * 1.06 - 0.08, top[:, 2] * 1.15 - 0.12], axis=1)
    long_hair = rng.random() < 0.35
    if long_hair:
        back = np.concatenate([back, [[-(w0 + 0.25), 1.5, -0.9 * d], [w0 + 0.25, 1.5, -0.9 * d]]])
    g = {"hair_back": cv2.convexHull(proj(back).astype(np.float32)).reshape(-1, 2)}
    jaw_w = float(head.half_width(1.1))
    g["neck"] = proj(np.array([[-0.8 * jaw_w, 0.9, -0.5 * d], [0.8 * jaw_w, 0.9, -0.5 * d], [0.62, 3.5, -0.5 * d],
                               [-0.62, 3.5, -0.5 * d]]))
    g["clothes"] = proj(np.array([[-0.62, 2.05, -0.5 * d], [-0.2, 2.3 + rng.uniform(0, 0.3), -0.3], [0.2, 2.3, -0.3],
                                  [0.62, 2.05, -0.5 * d], [2.6, 2.6, -0.8], [2.8, 5, -0.8], [-2.8, 5, -0.8],
                                  [-2.6, 2.6, -0.8]]))
    return g


def _ears(head, proj, pose) -> list:
    """(centre, axes, angle) of the two ear ellipses, wider on the side the head turns away from."""
    w0 = float(head.half_width(0.0))
    ears = []
    for sx in (-1.0, 1.0):
        c = proj(np.array([[sx * (w0 - 0.03), 0.27, -0.85 * head.depth]]))[0]
        facing = max(0.0, portable.sin(-sx * pose["yaw"] * portable.DEG))
        ears.append((c, (proj.scale * (0.07 + 0.13 * facing), proj.scale * 0.27), pose["roll"]))
    return ears


def _hair_front(head, proj, rng):
    """Front hair in 90 % of faces: (hairline band polygon, crown hull); else None."""
    d = head.depth
    h0, h1 = rng.uniform(-1.15, -0.8), rng.uniform(0.0, 0.35)
    phi = np.linspace(-np.pi / 2 - 0.4, np.pi / 2 + 0.4, 17)
    sin_phi, cos_phi = portable.sincos(phi)
    yh = h0 + h1 * (sin_phi * sin_phi)
    wh = head.half_width(yh)
    dh = d * np.maximum(wh, 0.35)
    line = np.stack([wh * sin_phi, yh, -dh * (1 - cos_phi)], axis=1)
    band = np.stack([line[:, 0] * 1.03, yh - 0.7, line[:, 2] * 1.03 + 0.02], axis=1)
    crown = head.shell[head.shell[:, 1] < h0 - 0.1] * (1.04, 1.0, 1.04) + (0, -0.04, 0.02)
    if rng.random() < 0.9:
        return (proj(np.concatenate([line, band[::-1]])),
                cv2.convexHull(proj(crown).astype(np.float32)).reshape(-1, 2))
    return None


def _sample_occluders(rng, pts, scale, colours) -> list:
    """Drawing ops of 1-2 occluders over the face (the points keep their true positions)."""
    ops = []
    for _ in range(1 if rng.random() < 0.75 else 2):
        kind = ["hand", "bar", "sunglasses", "mask", "object"][rng.choice(5, p=[0.3, 0.2, 0.2, 0.15, 0.15])]
        if kind == "hand":
            centre = pts[rng.choice([57, 30, 3, 13, 8, 36, 45])] + rng.normal(0, 0.15 * scale, 2)
            ang = rng.uniform(0, 2 * np.pi)
            tone = np.clip(_pick(rng, _SKIN) * rng.uniform(0.9, 1.05), 0, 255)
            prims = [("ellipse", centre, (0.3 * scale, 0.36 * scale), np.rad2deg(ang))]
            direction = np.array(portable.sincos(ang)[::-1])
            across = np.array([-direction[1], direction[0]])
            for f, length in zip(np.linspace(-0.22, 0.22, 4), rng.uniform(0.5, 0.7, 4)):
                base = centre + across * f * scale + direction * 0.25 * scale
                prims.append(("line", base, base + direction * length * scale, 0.11 * scale))
            thumb = centre - across * 0.3 * scale
            prims.append(("line", thumb, thumb - across * 0.3 * scale + direction * 0.2 * scale, 0.12 * scale))
            ops.append({"kind": kind, "colour": tone, "prims": prims})
        elif kind == "bar":
            through = pts[rng.integers(17, 68)]
            ang = rng.uniform(0, np.pi)
            direction = np.array(portable.sincos(ang)[::-1]) * 3 * scale
            ops.append({"kind": kind, "colour": rng.uniform(0, 255, 3),
                        "prims": [("line", through - direction, through + direction, rng.uniform(0.12, 0.35) * scale)]})
        elif kind == "sunglasses":
            er, el = pts[36:42].mean(0), pts[42:48].mean(0)
            v = el - er
            # the lenses as polygons along the eye line (no atan2: libm's differs between CPUs)
            ax = (0.24 * scale, 0.17 * scale)
            frame = rng.uniform(0, 80, 3)
            prims = [("poly", _ellipse_poly(er, ax, v)), ("poly", _ellipse_poly(el, ax, v)),
                     ("line", er + 0.3 * v, el - 0.3 * v, 0.04 * scale),
                     ("line", er - 0.45 * v, pts[0], 0.03 * scale), ("line", el + 0.45 * v, pts[16], 0.03 * scale)]
            ops.append({"kind": kind, "colour": frame * 0.5, "prims": prims})
        elif kind == "mask":
            top = [pts[1] * 0.6 + pts[29] * 0.4, pts[29], pts[15] * 0.6 + pts[29] * 0.4]
            poly = np.vstack([pts[1:16], top[::-1]])
            ops.append({"kind": kind, "colour": rng.choice([np.array((200, 220, 235.0)), np.array((235, 235, 235.0)),
                                                            np.array((30, 30, 35.0))]) * rng.uniform(0.85, 1.0),
                        "prims": [("poly", poly)]})
        else:
            centre = pts[rng.integers(0, 68)] + rng.normal(0, 0.2 * scale, 2)
            r = rng.uniform(0.2, 0.45) * scale
            ops.append({"kind": kind, "colour": rng.uniform(0, 255, 3),
                        "prims": [("ellipse", centre, (r, r * rng.uniform(0.6, 1.4)), rng.uniform(0, 180))]})
    return ops


# unit circle in 64 steps for _ellipse_poly (cv2.ellipse draws a polygon of similar resolution)
_CIRCLE = np.stack(portable.sincos(np.arange(64) * (2 * np.pi / 64))[::-1], axis=1)


def _ellipse_poly(centre, axes, direction) -> np.ndarray:
    """(64, 2) polygon of the ellipse with half-axes ``axes``, the first along ``direction``."""
    u = np.asarray(direction, dtype=np.float64) / portable.length(direction)
    a = _CIRCLE[:, :1] * axes[0]
    b = _CIRCLE[:, 1:] * axes[1]
    return np.asarray(centre, dtype=np.float64) + a * u + b * np.array([-u[1], u[0]])


def _fix(p) -> np.ndarray:
    """Corner-origin pixel coordinates -> OpenCV fixed point (OpenCV puts pixel centres on integers)."""
    # np.rint is what np.round(x) (decimals=0) calls, without its Python wrapper
    return np.rint((np.asarray(p, dtype=np.float64) - 0.5) * _ONE).astype(np.int32)


def _len(v: float) -> int:
    return max(int(round(v * _ONE)), 1)


def _col(c) -> tuple:
    if np.ndim(c) == 0:
        v = min(max(float(c), 0.0), 255.0)
        return (v, v, v)
    return tuple([min(max(x, 0.0), 255.0) for x in np.asarray(c, dtype=np.float64).tolist()])


def fill(img, poly, colour) -> None:
    cv2.fillPoly(img, [_fix(poly).reshape(-1, 1, 2)], _col(colour), _AA, _SHIFT)


def polyline(img, pts, colour, thickness=1) -> None:
    cv2.polylines(img, [_fix(pts).reshape(-1, 1, 2)], False, _col(colour), thickness, _AA, _SHIFT)


def ellipse(img, centre, axes, angle, colour, thickness=-1) -> None:
    c = _fix(centre)
    cv2.ellipse(img, (int(c[0]), int(c[1])), (_len(axes[0]), _len(axes[1])), float(angle), 0, 360,
                _col(colour), thickness, _AA, _SHIFT)


def _draw_ops(img, ops, mask_value=None) -> None:
    for op in ops:
        colour = op["colour"] if mask_value is None else mask_value
        for prim in op["prims"]:
            if prim[0] == "ellipse":
                ellipse(img, prim[1], prim[2], prim[3], colour)
            elif prim[0] == "line":
                p0, p1 = _fix(prim[1]), _fix(prim[2])
                # cv2.line takes an integer thickness in whole pixels
                cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), _col(colour),
                         max(int(round(prim[3])), 1), _AA, _SHIFT)
            else:
                fill(img, prim[1], colour)


def _occluded_points(ops, pts, size) -> list[int]:
    if not ops:
        return []
    mask = np.zeros((size, size), np.uint8)
    _draw_ops(mask, ops, 255)
    ij = np.clip(np.floor(pts).astype(int), 0, size - 1)
    return [int(k) for k in np.nonzero(mask[ij[:, 1], ij[:, 0]] > 127)[0]]


def _clipped(img, poly, draw) -> None:
    """Run ``draw(layer, origin)`` on a copy of the polygon's bounding box and keep the result only
    inside the polygon (irises inside the eye, teeth inside the mouth)."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int) - 1
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    roi = img[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    origin = np.array([x0, y0], dtype=np.float64)
    fill(mask, poly - origin, 255)
    layer = roi.copy()
    draw(layer, origin)
    a = mask[..., None].astype(np.float32) / 255.0
    roi[:] = np.round(roi * (1 - a) + layer * a).astype(np.uint8)


def _background(rng, size) -> np.ndarray:
    # a smooth, muted colour field (random colours pulled towards their grey), a fine texture, shapes
    base = rng.uniform(20, 235, (3, 3, 3))
    base = base + (base.mean(-1, keepdims=True) - base) * rng.uniform(0.3, 0.8)
    img = cv2.resize(base.astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    tex = cv2.resize(rng.integers(0, 40, (32, 32, 1), dtype=np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    img = cv2.add(img, cv2.merge([tex, tex, tex]))
    for _ in range(int(rng.integers(3, 12))):
        kind = rng.integers(4)
        colour = rng.uniform(0, 255, 3)
        colour = colour + (colour.mean() - colour) * rng.uniform(0.0, 0.7)
        c = rng.uniform(0, size, 2)
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 6))
        if kind == 0:
            ellipse(img, c, rng.uniform(4, size / 4, 2), rng.uniform(0, 180), colour, thick)
        elif kind == 1:
            poly = c + rng.uniform(-size / 4, size / 4, (int(rng.integers(3, 6)), 2))
            fill(img, poly, colour) if thick < 0 else polyline(img, np.concatenate([poly, poly[:1]]), colour, thick)
        elif kind == 2:
            polyline(img, np.vstack([c, rng.uniform(0, size, 2)]), colour, int(rng.integers(1, 8)))
        else:
            wh = rng.uniform(5, size / 3, 2)
            fill(img, np.array([c, c + (wh[0], 0), c + wh, c + (0, wh[1])]), colour)
    return img


def render_face(spec: FaceSpec, clean: bool = False) -> np.ndarray:
    """Draw the face: RGB uint8 (size, size, 3). ``clean=True`` draws flat colours on a plain
    background with no occluders, lighting, blur or noise (used by the tests to find the drawn edges)."""
    size, g, c = spec.size, spec.geometry, spec.colours
    rng = np.random.default_rng(spec.texture_seed)
    img = np.full((size, size, 3), 128, np.uint8) if clean else _background(rng, size)
    fill(img, g["hair_back"], c["hair"])
    fill(img, g["neck"], c["neck"])
    fill(img, g["clothes"], c["clothes"])
    for centre, axes, angle in g["ears"]:
        ellipse(img, centre, axes, angle, c["ear"])
    fill(img, g["outline"], c["skin"])
    if g["hair_front"] is not None:
        for poly in g["hair_front"]:
            fill(img, poly, c["hair"])
    # the features are clipped to the face outline: at large yaw a far brow or eye corner ends at
    # the silhouette instead of spilling over the background
    x0, y0 = np.maximum(np.floor(g["outline"].min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(g["outline"].max(0)).astype(int) + 3, size)
    under = img[y0:y1, x0:x1].copy()
    fill(img, g["brow_r"], c["brow"])
    fill(img, g["brow_l"], c["brow"])
    _draw_eyes(img, g, c)
    _draw_mouth(img, g, c)
    face = np.zeros(under.shape[:2], np.uint8)
    fill(face, g["outline"] - (x0, y0), 255)
    roi = img[y0:y1, x0:x1]
    cv2.copyTo(under, cv2.bitwise_not(face), roi)   # outside the outline: as before the features
    # the nose is not clipped: at large yaw its tip stands out of the cheek line, in skin
    fill(img, g["nose"]["skin"], c["skin"])
    _draw_nose(img, g["nose"], c, spec)
    if clean:
        return img
    _draw_ops(img, spec.occluders)
    return _finish(img, g["light"], g["blur"], g["noise"], rng, size)


def _draw_eyes(img, g, c) -> None:
    for side in ("r", "l"):
        eye = g[f"eye_{side}"]
        polyline(img, g[f"crease_{side}"], c["crease"])
        centre, radius, closure = g[f"iris_{side}"]
        if closure < 0.95:
            fill(img, eye, c["sclera"])

            def iris(layer, origin, centre=centre, radius=radius):
                ellipse(layer, centre - origin, (radius, radius), 0, c["iris"])
                ellipse(layer, centre - origin, (radius * 0.45, radius * 0.45), 0, (12, 10, 10))
                ellipse(layer, centre - origin + (radius * 0.3, -radius * 0.3), (radius * 0.18, radius * 0.18), 0,
                        (250, 250, 250))

            _clipped(img, eye, iris)
        polyline(img, g[f"lid_up_{side}"], c["lid"])
        polyline(img, g[f"lid_low_{side}"], c["lid"] * 1.5)


def _draw_nose(img, n, c, spec) -> None:
    for side in n["sides"]:
        polyline(img, side, c["nose_shadow"], 2)
    scale = portable.length(spec.landmarks[27] - spec.landmarks[30]) / 0.52
    yaw = spec.meta["pose"]["yaw"] if spec.meta else 0.0
    for k, nostril in enumerate(n["nostrils"]):
        # the far nostril hides behind the tip when the head turns
        far = (k == 0 and yaw < -12) or (k == 1 and yaw > 12)
        if not far:
            ellipse(img, nostril, (0.045 * scale, 0.022 * scale), 0, c["nose_dark"] * 0.6)
    polyline(img, n["ridge"], c["nose_light"], 2)
    ellipse(img, n["tip"], (0.07 * scale, 0.055 * scale), 0, c["nose_light"])
    polyline(img, n["base"], c["nose_dark"])


def _draw_mouth(img, g, c) -> None:
    fill(img, g["lips_outer"], c["lip_lower"])
    if g["mouth_gap"] > 0.8:
        fill(img, g["mouth_inner"], c["mouth"])
        if g["teeth"] is not None:
            teeth = g["teeth"]
            _clipped(img, g["mouth_inner"], lambda layer, origin: fill(layer, teeth - origin, c["teeth"]))
    fill(img, g["lip_upper"], c["lip_upper"])
    polyline(img, g["inner_up"], c["mouth"])


def _finish(img, light, blur, noise, rng, size) -> np.ndarray:
    """Lighting (a shading gradient across the image and a colour tint), blur, sensor noise.

    OpenCV saturating arithmetic on uint8 keeps this step under a millisecond. The shading field
    is computed with NumPy (float64 per row and column, float32 per pixel), not cv2.resize: a
    float resize goes to Intel IPP, whose SSE4.2, AVX2 and AVX-512 code round differently (the
    bytes then depended on the CPU, docs/reproducibility.md)."""
    sa, ca = portable.sincos(light["angle"])
    # what bilinear up-sampling of a 4x4 grid of a linear function gives (OpenCV's pixel-centre
    # mapping): linear inside, flat at the borders; grid cell i sits at (i + 0.5) / 4 - 0.5
    u = np.clip((np.arange(size) + 0.5) * (4.0 / size) - 0.5, 0.0, 3.0)
    g = (u + 0.5) / 4 - 0.5
    gy = (light["ambient"] + light["gradient"] * (sa * g)).astype(np.float32)
    gx = (light["gradient"] * (ca * g)).astype(np.float32)
    shade = (gy[:, None] + gx[None, :])[..., None] * np.asarray(light["tint"], dtype=np.float32)
    out = cv2.multiply(img, shade, dtype=cv2.CV_8U)
    if blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise > 0.2:
        cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))   # per-face seed: deterministic
        grain = cv2.randn(np.empty((size, size, 3), np.int16), (0.0, 0.0, 0.0), (noise, noise, noise))
        out = cv2.add(out, grain, dtype=cv2.CV_8U)
    return out
