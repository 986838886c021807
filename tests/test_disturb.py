"""Disturbances and D: image, landmarks and targets of the disturbed view agree with D."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from spanlib.data.crop import apply_affine
from spanlib.data.disturb import (Warp, apply_plan, apply_texture, disturb, geometric_theta,
                                  sample_plan, transform_landmarks)
from spanlib.data.targets import boundary_heatmaps, landmark_heatmaps
from spanlib.data.warp import apply_warp
from spanlib.utils.errors import ParamError
from spanlib.config.schemes import get_scheme

from test_targets import mean_face

SCHEME = get_scheme("68")
ALL_ON = {"p_gaussian_noise": 1.0, "noise_std": 12.0, "p_salt_noise": 1.0, "salt_fraction": 0.02,
          "p_blur": 1.0, "blur_sizes": [64], "blur_reference_size": 128, "p_occlusion_box": 1.0,
          "p_occlusion_patch": 1.0, "occlusion_max_fraction": 0.4, "p_flip": 1.0, "p_rotate": 1.0,
          "max_rotation": 60, "p_scale": 1.0, "scale_range": [0.5, 1.0]}
ALL_OFF = {key: (0.0 if key.startswith("p_") else value) for key, value in ALL_ON.items()}


def plan(flip=False, angle=0.0, scale=1.0, texture=()):
    return {"flip": flip, "angle": angle, "scale": scale, "texture": list(texture)}


def test_geometric_theta_hand_values():
    size = 100
    np.testing.assert_allclose(apply_affine(geometric_theta(size, flip=True), np.array([[10.0, 7.0]])),
                               [[90.0, 7.0]])
    # 90 degrees counter-clockwise on screen (y down): right of centre -> above centre
    theta = geometric_theta(size, angle_deg=90)
    np.testing.assert_allclose(apply_affine(theta, np.array([[60.0, 50.0]])), [[50.0, 40.0]], atol=1e-12)
    theta = geometric_theta(size, scale=0.5)
    np.testing.assert_allclose(apply_affine(theta, np.array([[0.0, 0.0], [50.0, 50.0]])),
                               [[25.0, 25.0], [50.0, 50.0]])


def test_flip_relabels_landmarks_and_twice_is_identity():
    points = mean_face(128)
    D = Warp(geometric_theta(128, flip=True).astype(np.float32), True)
    once = transform_landmarks(points, D, SCHEME.flip_perm)
    np.testing.assert_allclose(transform_landmarks(once, D, SCHEME.flip_perm), points, atol=1e-4)
    # the mean face is symmetric: the mirrored, relabelled face is the same face
    np.testing.assert_allclose(once, points, atol=0.02 * 128)


def blobs_image(points: np.ndarray, size: int, sigma: float = 1.6) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size] + 0.5
    image = np.zeros((size, size), np.float64)
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def blob_centroid(image: np.ndarray, point: np.ndarray, radius: int = 5) -> np.ndarray:
    gray = image[..., 0].astype(np.float64)
    x0, y0 = np.floor(point).astype(int) - radius
    patch = gray[max(y0, 0):y0 + 2 * radius + 1, max(x0, 0):x0 + 2 * radius + 1]
    ys, xs = np.mgrid[max(y0, 0):max(y0, 0) + patch.shape[0], max(x0, 0):max(x0, 0) + patch.shape[1]] + 0.5
    return np.array([(patch * xs).sum(), (patch * ys).sum()]) / patch.sum()


@pytest.mark.parametrize("use_context", [False, True])
def test_image_content_moves_with_landmarks(use_context):
    """Bright blobs drawn at a few well-separated landmarks of view a appear at the landmarks of
    view b (flip + rotation + scale), found by their centroids to 0.1 px (blob sigma 1.6 px, uint8
    rounding and bilinear resampling; a half-pixel convention error would be 0.5 px or more)."""
    size, m = 96, 16
    points = mean_face(size)
    chosen = [0, 8, 16, 19, 24, 30, 36, 45, 48, 54]
    # view b's landmark k shows view a's landmark flip_perm[k]: draw blobs on a symmetric set
    chosen = sorted(set(chosen) | set(SCHEME.flip_perm[chosen].tolist()))
    if use_context:
        big = blobs_image(points[chosen] + m, size + 2 * m)
        image = big[m:m + size, m:m + size]
        context = (big, np.array([[1.0, 0, m], [0, 1.0, m]]))
    else:
        image, context = blobs_image(points[chosen], size), None
    out = apply_plan(image, points, SCHEME, plan(flip=True, angle=23.0, scale=0.8),
                     np.random.default_rng(0), context=context)
    assert out.D.flipped and out.applied == ("flip", "rotate", "scale")
    np.testing.assert_allclose(out.landmarks,
                               apply_affine(out.D.theta, points)[SCHEME.flip_perm], atol=1e-4)
    for k in chosen:
        target = out.landmarks[k]
        if not ((target > 6) & (target < size - 6)).all():
            continue
        np.testing.assert_allclose(blob_centroid(out.image, target), target, atol=0.1)


def scipy_warp_reference(maps: np.ndarray, theta: np.ndarray, crop_size: int) -> np.ndarray:
    """float64 reference of D applied to (C, h, h) maps with scipy's bilinear map_coordinates."""
    h = maps.shape[-1]
    s = crop_size / h
    full = np.vstack([theta.astype(np.float64), [0, 0, 1]])
    inverse = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[:h, :h] + 0.5
    crop_b = np.stack([xs * s, ys * s], -1)
    src = apply_affine(inverse, crop_b) / s - 0.5  # pixel-centre indices in map a
    return np.stack([ndimage.map_coordinates(m.astype(np.float64), [src[..., 1], src[..., 0]],
                                             order=1, mode="constant", cval=0.0) for m in maps])


def test_apply_warp_matches_scipy_reference_and_permutes():
    rng = np.random.default_rng(5)
    maps = rng.random((2, 4, 16, 16)).astype(np.float32)
    theta = np.stack([geometric_theta(64, 30, 0.7, flip=False), geometric_theta(64, -12, 0.9, True)])
    perm = np.array([1, 0, 3, 2])
    warped, valid = apply_warp(torch.from_numpy(maps), torch.from_numpy(theta.astype(np.float32)),
                               torch.tensor([False, True]), perm, crop_size=64)
    assert warped.shape == (2, 4, 16, 16) and valid.shape == (2, 1, 16, 16)
    for b in range(2):
        source = maps[b][perm] if b == 1 else maps[b]
        ref = scipy_warp_reference(source, theta[b], 64)
        inside = valid[b, 0].numpy() > 0
        assert inside.sum() > 50
        np.testing.assert_allclose(warped[b].numpy()[:, inside], ref[:, inside], atol=1e-4)
    # valid: a zoom-out by 0.5 sees the original only in the central half
    _, valid = apply_warp(torch.zeros(1, 1, 16, 16), torch.from_numpy(
        geometric_theta(64, scale=0.5)[None].astype(np.float32)), torch.tensor([False]), [0], 64)
    assert valid[0, 0, 4:12, 4:12].all() and valid.sum() == 64
    _, valid = apply_warp(torch.zeros(1, 1, 16, 16), torch.eye(2, 3)[None], torch.tensor([False]), [0], 64)
    assert valid.all()


def test_apply_warp_is_differentiable():
    maps = torch.rand(1, 2, 8, 8, requires_grad=True)
    warped, valid = apply_warp(maps, torch.from_numpy(geometric_theta(32, 10, 0.8)[None].astype(np.float32)),
                               torch.tensor([False]), [0, 1], 32)
    (warped * valid).sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0


@pytest.mark.parametrize("flip, angle", [(False, 37.0), (True, -55.0), (True, 0.0)])
def test_targets_of_disturbed_view_equal_D_of_original_targets(flip, angle):
    """Heatmaps built from view b's landmarks equal apply_warp(D, heatmaps of view a) inside the
    valid region. Tolerance: bilinear interpolation of a unit-peak Gaussian of width sigma (map px)
    errs by at most h^2/8 * |f''| per axis, i.e. 1/(8 sigma^2) per axis and 1/(4 sigma^2) in all
    (0.0625 at sigma = 2); a 0.5 px misplacement would err by up to 0.15, a wrong channel by ~1."""
    crop, res, sigma = 128, 32, 2.0
    points = mean_face(crop)
    out = apply_plan(np.zeros((crop, crop, 3), np.uint8), points, SCHEME, plan(flip, angle),
                     np.random.default_rng(0))
    s = crop / res
    heat_a = landmark_heatmaps(points / s, res, sigma)
    heat_b = landmark_heatmaps(out.landmarks / s, res, sigma)
    warped, valid = apply_warp(torch.from_numpy(heat_a)[None], torch.from_numpy(out.D.theta)[None],
                               torch.tensor([out.D.flipped]), SCHEME.flip_perm, crop)
    inside = valid[0, 0].numpy() > 0
    error = np.abs(warped[0].numpy() - heat_b)[:, inside]
    assert error.max() < 1 / (4 * sigma**2) + 1e-3
    assert error.mean() < 2e-3
    # boundary maps: eq. 3 jumps to xi at Dist = 2 sigma, so bilinear interpolation cannot match
    # there; on the core of the band (Dist < 2 sigma - 1 px) the map is continuous with slope at
    # most 1/(2 sigma^2) = 0.125 per px (kink on the line itself), so interpolation errs by at most
    # about half that plus curvature: 0.08. A wrong boundary channel errs by ~1 there.
    bsig = 2.0
    b_a = boundary_heatmaps(points / s, SCHEME, res, bsig)
    b_b = boundary_heatmaps(out.landmarks / s, SCHEME, res, bsig)[:, inside]
    warped_b, _ = apply_warp(torch.from_numpy(b_a)[None], torch.from_numpy(out.D.theta)[None],
                             torch.tensor([out.D.flipped]), SCHEME.boundary_flip_perm, crop)
    dist_b = np.where(b_b > 0, -2 * bsig**2 * np.log(np.maximum(b_b, 1e-30)), np.inf)
    core = dist_b < 2 * bsig - 1
    assert core.sum() > 100
    assert np.abs(warped_b[0].numpy()[:, inside] - b_b)[core].max() < 0.08


def test_scaled_view_matches_with_scaled_sigma():
    """Under scaling by s, D(H_a) is the heatmap of view b with sigma * s: with that sigma the
    targets agree (so the geometry is exact); targets built with the fixed sigma differ by design
    (see docs/readme/targets.md)."""
    crop, res, sigma, scale = 128, 32, 3.0, 0.6
    points = mean_face(crop)
    out = apply_plan(np.zeros((crop, crop, 3), np.uint8), points, SCHEME, plan(False, 20.0, scale),
                     np.random.default_rng(0))
    s = crop / res
    warped, valid = apply_warp(torch.from_numpy(landmark_heatmaps(points / s, res, sigma))[None],
                               torch.from_numpy(out.D.theta)[None], torch.tensor([False]),
                               SCHEME.flip_perm, crop)
    inside = valid[0, 0].numpy() > 0
    scaled = landmark_heatmaps(out.landmarks / s, res, sigma * scale)
    assert np.abs(warped[0].numpy() - scaled)[:, inside].max() < 1 / (4 * (sigma * scale) ** 2) + 1e-3
    fixed = landmark_heatmaps(out.landmarks / s, res, sigma)
    assert np.abs(warped[0].numpy() - fixed)[:, inside].max() > 0.2


def test_texture_disturbances():
    rng = np.random.default_rng(2)
    image = rng.integers(30, 220, (64, 64, 3), dtype=np.uint8)
    box = apply_texture(image, "occlusion_box", (5, 7, 10, 12), rng)
    assert (box[7:19, 5:15] == 0).all() and (box[:7] == image[:7]).all()
    patch = apply_texture(image, "occlusion_patch", (5, 7, 10, 12, 40, 30), rng)
    np.testing.assert_array_equal(patch[7:19, 5:15], image[30:42, 40:50])
    noisy = apply_texture(image, "gaussian_noise", 12.0, rng).astype(float) - image
    assert 10.5 < noisy.std() < 13.0 and abs(noisy.mean()) < 0.5
    salt = apply_texture(image, "salt_noise", 0.05, rng)
    hit = (salt == 255).all(axis=2) & (image != 255).any(axis=2)
    assert 0.03 < hit.mean() < 0.07
    blurred = apply_texture(image, "blur", 16, rng)
    assert blurred.shape == image.shape
    # bicubic down to 16 and back removes high frequencies: neighbouring pixels agree more
    rough = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    assert rough(blurred) < 0.5 * rough(image)
    np.testing.assert_array_equal(apply_texture(image, "blur", 64, rng), image)
    with pytest.raises(ParamError, match="unknown texture"):
        apply_texture(image, "sparkle", 1, rng)


def test_random_combinations_and_probabilities():
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    points = mean_face(64)
    off = disturb(image, points, SCHEME, ALL_OFF, np.random.default_rng(1))
    assert off.applied == () and not off.D.flipped
    np.testing.assert_array_equal(off.image, image)
    np.testing.assert_allclose(off.D.theta, np.eye(2, 3))
    np.testing.assert_allclose(off.landmarks, points)
    on = disturb(image, points, SCHEME, ALL_ON, np.random.default_rng(1))
    assert set(on.applied) == {"flip", "rotate", "scale", "blur", "occlusion_box",
                               "occlusion_patch", "gaussian_noise", "salt_noise"}
    # texture only: D is the identity and landmarks do not move
    texture_only = dict(ALL_ON, p_flip=0.0, p_rotate=0.0, p_scale=0.0)
    tex = disturb(image, points, SCHEME, texture_only, np.random.default_rng(3))
    np.testing.assert_allclose(tex.D.theta, np.eye(2, 3))
    np.testing.assert_allclose(tex.landmarks, points)
    # repeatable from the generator; different seeds differ; angles and scales stay in range
    again = disturb(image, points, SCHEME, ALL_ON, np.random.default_rng(1))
    np.testing.assert_array_equal(again.image, on.image)
    params = dict(ALL_OFF, p_rotate=1.0, p_scale=1.0, max_rotation=60, scale_range=[0.5, 1.0])
    for seed in range(30):
        p = sample_plan(params, np.random.default_rng(seed), 64)
        assert -60 <= p["angle"] <= 60 and 0.5 <= p["scale"] <= 1.0
    # an unlabeled face keeps landmarks None
    assert disturb(image, None, SCHEME, ALL_ON, np.random.default_rng(1)).landmarks is None
    with pytest.raises(ParamError, match="disturb.p_flip"):
        disturb(image, points, SCHEME, dict(ALL_ON, p_flip=1.5), np.random.default_rng(1))


def test_translation_moves_image_and_landmarks_by_the_shift():
    """Section III-B's translation: view b's landmarks are view a's plus (dx, dy), hand-computed;
    with an integer shift the image is the same pixels moved (exactly); mirrored and shifted,
    x -> S - x + dx, y -> y + dy, relabelled."""
    size = 64
    image = np.random.default_rng(4).integers(0, 255, (size, size, 3), dtype=np.uint8)
    points = mean_face(size)
    out = apply_plan(image, points, SCHEME, dict(plan(), shift=(5.0, -3.0)), np.random.default_rng(0))
    assert out.applied == ("translate",) and not out.D.flipped
    np.testing.assert_allclose(out.D.theta, [[1, 0, 5], [0, 1, -3]])
    np.testing.assert_allclose(out.landmarks, points + np.array([5.0, -3.0], np.float32), atol=1e-5)
    np.testing.assert_array_equal(out.image[:size - 3, 5:], image[3:, :size - 5])
    mirrored = apply_plan(image, points, SCHEME, dict(plan(flip=True), shift=(2.5, 4.0)), np.random.default_rng(0))
    hand = np.stack([size - points[:, 0] + 2.5, points[:, 1] + 4.0], axis=1)[SCHEME.flip_perm]
    np.testing.assert_allclose(mirrored.landmarks, hand, atol=1e-4)
    assert mirrored.applied == ("flip", "translate")
    # the shift is applied last, in view-b pixels: rotation and scale about the centre, then + shift
    np.testing.assert_allclose(geometric_theta(100, 30.0, 0.8, shift=(7.0, -2.0)),
                               geometric_theta(100, 30.0, 0.8) + [[0, 0, 7.0], [0, 0, -2.0]], atol=1e-12)


@pytest.mark.parametrize("use_context", [False, True])
def test_translated_view_content_and_warp_agree(use_context):
    """Rotation + scale + fractional shift: blobs drawn at view a's landmarks appear at view b's
    (0.1 px), and D (apply_warp) maps view a's heatmaps onto the heatmaps of view b's landmarks,
    within the bilinear bound of test_targets_of_disturbed_view_equal_D_of_original_targets."""
    size, m = 96, 16
    points = mean_face(size)
    chosen = [0, 8, 16, 19, 24, 30, 36, 45, 48, 54]
    if use_context:
        big = blobs_image(points[chosen] + m, size + 2 * m)
        image, context = big[m:m + size, m:m + size], (big, np.array([[1.0, 0, m], [0, 1.0, m]]))
    else:
        image, context = blobs_image(points[chosen], size), None
    shift = (6.4, -9.2)
    out = apply_plan(image, points, SCHEME, dict(plan(angle=-17.0, scale=0.85), shift=shift),
                     np.random.default_rng(0), context=context)
    assert out.applied == ("rotate", "scale", "translate")
    np.testing.assert_allclose(out.landmarks, apply_affine(geometric_theta(size, -17.0, 0.85), points) + shift,
                               atol=1e-4)
    for k in chosen:
        target = out.landmarks[k]
        if ((target > 6) & (target < size - 6)).all():
            np.testing.assert_allclose(blob_centroid(out.image, target), target, atol=0.1)
    res, sigma = 32, 2.0
    s = size / res
    warped, valid = apply_warp(torch.from_numpy(landmark_heatmaps(points / s, res, sigma))[None],
                               torch.from_numpy(out.D.theta)[None], torch.tensor([False]), SCHEME.flip_perm, size)
    inside = valid[0, 0].numpy() > 0
    # D(H_a) is the heatmap of view b with sigma * scale (test_scaled_view_matches_with_scaled_sigma)
    error = np.abs(warped[0].numpy() - landmark_heatmaps(out.landmarks / s, res, sigma * 0.85))[:, inside]
    assert inside.mean() > 0.5 and error.max() < 1 / (4 * (sigma * 0.85) ** 2) + 1e-3


def test_translation_off_draws_nothing_and_on_stays_in_range():
    """p_translate 0 (or absent) consumes no random number: plans, the generator's state and the
    disturbed views are bit-identical to a params group without the keys."""
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    points = mean_face(64)
    explicit = dict(ALL_ON, p_translate=0.0, max_translation=0.3)
    for seed in range(20):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        assert sample_plan(ALL_ON, r1, 64) == sample_plan(explicit, r2, 64)
        assert r1.bit_generator.state == r2.bit_generator.state
        a = disturb(image, points, SCHEME, ALL_ON, np.random.default_rng(seed))
        b = disturb(image, points, SCHEME, explicit, np.random.default_rng(seed))
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.D.theta, b.D.theta)
        assert a.applied == b.applied and "translate" not in a.applied
    on = dict(ALL_OFF, p_translate=1.0, max_translation=0.25)
    shifts = np.array([sample_plan(on, np.random.default_rng(seed), 64)["shift"] for seed in range(200)])
    assert np.abs(shifts).max() <= 0.25 * 64 and np.abs(shifts).max() > 0.2 * 64
    assert (np.abs(shifts) > 0).all() and abs(shifts.mean()) < 2.0
    assert set(disturb(image, points, SCHEME, on, np.random.default_rng(1)).applied) == {"translate"}
    with pytest.raises(ParamError, match="disturb.max_translation"):
        disturb(image, points, SCHEME, dict(on, max_translation=-0.1), np.random.default_rng(1))
    with pytest.raises(ParamError, match="disturb.p_translate"):
        disturb(image, points, SCHEME, dict(on, p_translate=2.0), np.random.default_rng(1))


def test_new_disturb_keys_in_the_schema():
    import dataclasses

    from spanlib.config import schema as config

    fields = {f.name: f for f in dataclasses.fields(config.DisturbConfig)}
    assert fields["p_translate"].default == 0.0 and fields["max_translation"].default == 0.1
    assert fields["redraw"].default == "epoch"
    assert fields["redraw"].metadata["choices"] == ("epoch", "once")


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_mirror_offset_keeps_the_labels_convention_and_mirrors_the_image_exactly(angle):
    """Labels drawn ``o`` px right of the true points (p = t + (o, 0)) stay ``o`` right of the
    mirrored true points under a flip with ``mirror_offset=o``; the image is mirrored as without it."""
    size, o = 128, 1.5
    true = mean_face(size).astype(np.float64)
    labels = (true + [o, 0.0]).astype(np.float32)
    image = blobs_image(true, size)
    exact = apply_plan(image, true.astype(np.float32), SCHEME, plan(True, angle), np.random.default_rng(0))
    shifted = apply_plan(image, labels, SCHEME, plan(True, angle), np.random.default_rng(0), mirror_offset=o)
    np.testing.assert_array_equal(shifted.image, exact.image)
    # the mirrored true points moved by the view's direction of x: o px along D's image of (1, 0)
    direction = geometric_theta(size, angle)[:, 0]
    np.testing.assert_allclose(shifted.landmarks, exact.landmarks + o * direction, atol=1e-4)
    # D carries the same convention, so the consistency loss warps label maps consistently
    np.testing.assert_allclose(transform_landmarks(labels, shifted.D, SCHEME.flip_perm), shifted.landmarks, atol=1e-4)
    # without the offset, the mirrored labels land 2 o px the other way: the inconsistency it removes
    plain = apply_plan(image, labels, SCHEME, plan(True, angle), np.random.default_rng(0))
    np.testing.assert_allclose(plain.landmarks, exact.landmarks - o * direction, atol=1e-4)
    # no flip: the offset changes nothing
    kept = apply_plan(image, labels, SCHEME, plan(False, angle), np.random.default_rng(0), mirror_offset=o)
    unshifted = apply_plan(image, labels, SCHEME, plan(False, angle), np.random.default_rng(0))
    np.testing.assert_array_equal(kept.landmarks, unshifted.landmarks)
    np.testing.assert_array_equal(kept.D.theta, unshifted.D.theta)
