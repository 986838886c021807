"""Disturbances that make the (original, disturbed) training pair (Fig. 4, section IV-A).

Geometric disturbances (mirror flip, rotation within +-max_rotation degrees, scaling within
scale_range, all about the crop centre, then a translation within +-max_translation of the crop
side) compose into one affine D: crop-a pixels -> crop-b pixels, plus the mirror's channel
permutation. Translation is named among the spatial transformations in section III-B but is not in
section IV-A's list (rotation, scaling, mirror flip) and has no range in the paper: it is off by
default (``p_translate: 0``, which draws no random number, so runs without it repeat bit for bit). Texture disturbances (Gaussian noise, salt noise, blur by
bicubic down- and up-sampling, occlusion by a black box or by a patch of the same face) leave D
unchanged. Each disturbance is drawn independently with its probability from params["disturb"], so
any combination can occur.

Order: geometry first (one resampling, from a larger context crop when given, so the disturbed view
shows real surroundings instead of black corners), then blur, occlusion, and noise last (noise is
added to the image the network sees, not smoothed away by blur).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from spanlib.config.schema import as_group
from spanlib.data.crop import apply_affine, compose_affine, invert_affine, warp_image
from spanlib.utils.errors import ParamError

TEXTURE_KINDS = ("blur", "occlusion_box", "occlusion_patch", "gaussian_noise", "salt_noise")


@dataclass(frozen=True)
class Warp:
    """D: ``theta`` (2, 3) float32 maps crop-a pixels to crop-b pixels; ``flipped``: the pair is
    mirrored, so channel k of view b is channel flip_perm[k] of view a."""

    theta: np.ndarray
    flipped: bool

    @staticmethod
    def identity() -> "Warp":
        return Warp(np.eye(2, 3, dtype=np.float32), False)


@dataclass(frozen=True)
class Disturbed:
    image: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray | None  # (K, 2) float32 crop-b pixels, or None for unlabeled faces
    D: Warp
    applied: tuple[str, ...] = field(default=())  # names of the disturbances drawn, in order


def geometric_theta(size: int, angle_deg: float = 0.0, scale: float = 1.0,
                    flip: bool = False, shift: tuple[float, float] = (0.0, 0.0),
                    mirror_offset: float = 0.0) -> np.ndarray:
    """(2, 3) float64 crop-a -> crop-b: optional mirror x -> S - x + 2 ``mirror_offset``, then
    rotation by ``angle_deg`` (counter-clockwise as seen on screen) and scaling by ``scale``, both
    about the crop centre, then a translation by ``shift`` = (dx, dy) crop-b pixels (the content
    moves right and down). ``mirror_offset`` (crop-a px): labels that sit that far right of their
    mirror-symmetric place keep that convention when mirrored (0 for the image itself)."""
    c = size / 2.0
    mirror = (np.array([[-1.0, 0.0, float(size) + 2.0 * mirror_offset], [0.0, 1.0, 0.0]]) if flip
              else np.eye(2, 3))
    a = np.deg2rad(angle_deg)
    # y points down, so a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]]
    lin = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    rot = np.hstack([lin, (np.array([c, c]) - lin @ np.array([c, c]))[:, None]])
    theta = compose_affine(rot, mirror)
    if tuple(shift) != (0.0, 0.0):  # only then: without a shift theta is bit for bit as before
        theta = compose_affine(np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]]), theta)
    return theta


def transform_landmarks(landmarks: np.ndarray, D: Warp, flip_perm: np.ndarray) -> np.ndarray:
    """Landmarks of view b from those of view a: moved by theta, relabelled when mirrored."""
    moved = apply_affine(D.theta, np.asarray(landmarks, dtype=np.float32))
    return moved[np.asarray(flip_perm)] if D.flipped else moved


def sample_shift(settings, rng: np.random.Generator, size: int) -> tuple[float, float]:
    """The translation (section III-B): with probability ``p_translate``, (dx, dy) drawn uniformly
    in [-1, 1]^2 times ``max_translation`` times the crop side, in crop-b pixels; else (0, 0).
    ``p_translate`` 0 draws nothing, so the other draws keep their place in the stream."""
    p = float(settings.p_translate)
    if p <= 0.0 or not rng.random() < p:
        return (0.0, 0.0)
    dx, dy = rng.uniform(-1, 1, 2) * float(settings.max_translation) * size
    return (float(dx), float(dy))


def sample_plan(settings, rng: np.random.Generator, size: int) -> dict:
    """Draw which disturbances apply and their geometric parameters (all randomness but the noise
    values): {"flip", "angle", "scale", "shift", "texture": [(kind, args), ...]}. ``settings``: the
    ``disturb`` group (a DisturbConfig, or a mapping checked by the schema; absent keys draw nothing)."""
    d = as_group("disturb", settings)
    flip = bool(rng.random() < d.p_flip)
    angle = float(rng.uniform(-1, 1) * d.max_rotation) if rng.random() < d.p_rotate else 0.0
    scale = float(rng.uniform(*d.scale_range)) if rng.random() < d.p_scale else 1.0
    shift = sample_shift(d, rng, size)
    texture = []
    if rng.random() < d.p_blur:
        sizes = d.blur_sizes
        target = int(sizes[rng.integers(len(sizes))])
        texture.append(("blur", max(2, int(round(target * size / d.blur_reference_size)))))
    max_frac = float(d.occlusion_max_fraction)
    for kind in ("occlusion_box", "occlusion_patch"):
        if rng.random() < getattr(d, f"p_{kind}"):
            w, h = (np.maximum(2, rng.uniform(0.1, max_frac, 2) * size)).astype(int)
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if kind == "occlusion_patch":
                sx, sy = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                texture.append((kind, (x0, y0, w, h, sx, sy)))
            else:
                texture.append((kind, (x0, y0, w, h)))
    if rng.random() < d.p_gaussian_noise:
        texture.append(("gaussian_noise", float(d.noise_std)))
    if rng.random() < d.p_salt_noise:
        texture.append(("salt_noise", float(d.salt_fraction)))
    return {"flip": flip, "angle": angle, "scale": scale, "shift": shift, "texture": texture}


def apply_texture(image: np.ndarray, kind: str, args, rng: np.random.Generator) -> np.ndarray:
    """One texture disturbance; returns a new uint8 image of the same size."""
    size_y, size_x = image.shape[:2]
    if kind == "blur":  # bicubic down to args x args and back (Fig. 4)
        if args >= min(size_x, size_y):
            return image.copy()
        small = cv2.resize(image, (args, args), interpolation=cv2.INTER_CUBIC)
        return cv2.resize(small, (size_x, size_y), interpolation=cv2.INTER_CUBIC)
    out = image.copy()
    if kind == "occlusion_box":
        x0, y0, w, h = args
        out[y0:y0 + h, x0:x0 + w] = 0
    elif kind == "occlusion_patch":  # a patch of the same face pasted elsewhere
        x0, y0, w, h, sx, sy = args
        out[y0:y0 + h, x0:x0 + w] = image[sy:sy + h, sx:sx + w]
    elif kind == "gaussian_noise":
        noisy = out.astype(np.float32) + rng.normal(0.0, args, out.shape).astype(np.float32)
        out = np.clip(noisy, 0, 255).astype(np.uint8)
    elif kind == "salt_noise":
        hit = rng.random(out.shape[:2]) < args
        out[hit] = 255
    else:
        raise ParamError(f"disturb: unknown texture disturbance {kind!r}, expected {TEXTURE_KINDS}")
    return out


def apply_plan(image: np.ndarray, landmarks: np.ndarray | None, scheme, plan: dict,
               rng: np.random.Generator, context: tuple[np.ndarray, np.ndarray] | None = None,
               mirror_offset: float = 0.0) -> Disturbed:
    """Apply a drawn plan to crop a (``image``, (S, S, 3) uint8). ``context`` = (larger image,
    (2, 3) matrix crop-a points -> its points) supplies the pixels that the geometric warp brings
    in from outside crop a. A plan without "shift" (drawn before translation existed) has none.

    ``mirror_offset`` (crop-a px, ``disturb.mirror_offset`` times the crop's scale): the labels'
    x offset from mirror symmetry. A flip mirrors the image exactly, but the landmarks and D (which
    the consistency loss warps label maps with) by x -> S - x + 2 offset, so a mirrored view's
    labels keep the dataset's convention instead of reversing it."""
    size = image.shape[0]
    shift = tuple(plan.get("shift", (0.0, 0.0)))
    theta = geometric_theta(size, plan["angle"], plan["scale"], plan["flip"], shift)
    label_theta = (geometric_theta(size, plan["angle"], plan["scale"], True, shift, mirror_offset)
                   if plan["flip"] and mirror_offset else theta)
    D = Warp(label_theta.astype(np.float32), bool(plan["flip"]))
    applied = [name for name, on in (("flip", plan["flip"]), ("rotate", plan["angle"] != 0.0),
                                     ("scale", plan["scale"] != 1.0), ("translate", shift != (0.0, 0.0)))
               if on]
    if applied:
        if context is not None:
            source, to_context = context
            out = warp_image(source, compose_affine(theta, invert_affine(to_context)), size)
        else:
            out = warp_image(image, theta, size)
    else:
        out = image.copy()
    for kind, args in plan["texture"]:
        out = apply_texture(out, kind, args, rng)
        applied.append(kind)
    points = None if landmarks is None else transform_landmarks(landmarks, D, scheme.flip_perm)
    return Disturbed(out, points, D, tuple(applied))


def disturb(image: np.ndarray, landmarks: np.ndarray | None, scheme, settings,
            rng: np.random.Generator, context: tuple[np.ndarray, np.ndarray] | None = None,
            mirror_offset: float = 0.0) -> Disturbed:
    """A random combination of disturbances with the probabilities of ``settings`` (the
    ``disturb`` group): the disturbed image, its landmarks and D. ``mirror_offset``: crop-a px
    (:func:`apply_plan`)."""
    plan = sample_plan(settings, rng, image.shape[0])
    return apply_plan(image, landmarks, scheme, plan, rng, context, mirror_offset)
