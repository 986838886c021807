"""Crop protocol: exact point transform, and the pixels land where the transform says."""

import cv2
import numpy as np
import pytest

from spanlib.data.crop import (CropTransform, apply_affine, box_from_landmarks, crop_face, crop_for_model,
                               model_crop_size, square_crop_matrix, warp_image)
from spanlib.utils.errors import DataError, ParamError


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) in the corner-origin convention."""
    image = image.astype(np.float64)
    if image.ndim == 3:
        image = image.sum(axis=2)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]] + 0.5
    return np.array([(image * xs).sum(), (image * ys).sum()]) / image.sum()


def blob(shape, centre, sigma) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_crop_matrix_hand_computed():
    # box 40 x 20 centred at (30, 30); side 1.25 * 40 = 50 -> 100 px: 2 crop px per image px
    matrix = square_crop_matrix(np.array([10, 20, 50, 40]), size=100, scale=1.25)
    t = CropTransform(matrix, 100)
    np.testing.assert_allclose(t.to_crop(np.array([[30.0, 30.0], [5.0, 5.0], [55.0, 55.0]])),
                               [[50, 50], [0, 0], [100, 100]], atol=1e-12)
    assert t.scale == pytest.approx(2.0)


def test_points_round_trip_under_001_px():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0 = rng.uniform(-50, 500, 2)
        box = np.array([x0, y0, x0 + rng.uniform(5, 400), y0 + rng.uniform(5, 400)])
        t = CropTransform(square_crop_matrix(box, int(rng.integers(32, 300)), rng.uniform(0.8, 2.5)),
                          64)
        points = rng.uniform(-100, 900, (68, 2))
        back = t.to_image(t.to_crop(points))
        assert np.abs(back - points).max() < 1e-6  # the requirement is 0.01 px
        np.testing.assert_allclose(apply_affine(t.inverse_matrix, t.to_crop(points)), points,
                                   atol=1e-6)


@pytest.mark.parametrize("box, size, scale", [
    ((40.0, 50.0, 80.0, 90.0), 80, 1.0),      # 2x up, integer offset
    ((40.25, 50.75, 80.25, 90.75), 40, 1.0),  # 1:1, quarter-pixel offsets
    ((33.5, 47.0, 73.5, 87.0), 160, 1.0),     # 4x up
])
def test_single_bright_pixel_lands_where_the_transform_says(box, size, scale):
    """Bilinear interpolation of a single pixel is a tent whose centroid is exact when the crop
    samples it on a lattice of spacing 1/k (k integer) with offsets that are multiples of 1/32
    (OpenCV quantises coordinates to 1/32 px), so the crop centroid must map back to the pixel
    centre to 0.01 px. A wrong half-pixel convention is off by 0.5 (k - 1) / k px or more."""
    image = np.zeros((200, 200, 3), np.uint8)
    image[83, 61] = 255  # centre (61.5, 83.5)
    crop, t = crop_face(image, np.array(box), size, scale)
    found = t.to_image(centroid(crop)[None])[0]
    np.testing.assert_allclose(found, [61.5, 83.5], atol=0.01)


def test_smooth_blob_placement_any_offset_and_shrink():
    """Arbitrary sub-pixel offsets and a 3x shrink (block-averaging path): a smooth blob's centroid
    survives resampling, so it checks the pixel placement to within OpenCV's 1/64 px rounding."""
    centre = (211.37, 190.81)
    image = blob((420, 400), centre, sigma=9.0)
    for box, size in [((150.3, 140.7, 270.1, 251.2), 64), ((180.11, 170.9, 240.4, 215.3), 96)]:
        crop, t = crop_face(image, np.array(box), size, 1.25)
        found = t.to_image(centroid(crop)[None])[0]
        tol = 0.02 / t.scale  # 0.02 crop px (1/64 rounding + blob truncation), in image px
        np.testing.assert_allclose(found, centre, atol=max(tol, 0.01))


def test_warp_image_rotation_places_blob():
    centre = np.array([40.3, 27.9])
    image = blob((80, 80), centre, sigma=3.0)
    angle = np.deg2rad(37.0)
    lin = 1.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.hstack([lin, [[12.2], [-3.7]]])
    out = warp_image(image, matrix, 120)
    np.testing.assert_allclose(centroid(out), apply_affine(matrix, centre[None])[0], atol=0.02)


def test_crop_uses_opencv_like_pixels():
    """The crop equals a direct cv2.warpAffine with the half-pixel-shifted matrix (up-scaling)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)
    crop, t = crop_face(image, np.array([10.0, 12.0, 40.0, 38.0]), 64, 1.1)
    a, b = t.matrix[:, :2], t.matrix[:, 2]
    cv_matrix = np.hstack([a, (b + a @ [0.5, 0.5] - 0.5)[:, None]])
    expected = cv2.warpAffine(image, cv_matrix, (64, 64), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(crop, expected)


def test_bad_input_errors():
    with pytest.raises(DataError, match="finite"):
        box_from_landmarks(np.full((68, 2), np.nan))
    with pytest.raises(DataError, match="zero width"):
        square_crop_matrix(np.array([5, 5, 5, 5]), 64, 1.25)
    with pytest.raises(DataError, match="box"):
        square_crop_matrix(np.array([0, 0, np.inf, 5]), 64, 1.25)
    with pytest.raises(ParamError, match="scale"):
        square_crop_matrix(np.array([0, 0, 5, 5]), 64, 0.0)
    np.testing.assert_array_equal(box_from_landmarks(np.array([[1, 5], [np.nan, 0], [3, 2]])),
                                  [1, 2, 3, 5])


def test_crop_for_model_against_hand_built_affine():
    """crop_for_model: the model's crop.input_size / crop.scale, a matrix built by hand here, the
    pixels of a linear ramp where that matrix puts them, and an exact crop -> image round trip."""
    params = {"crop": {"input_size": 48, "scale": 1.5, "box": "dataset"}}
    assert model_crop_size(params) == (48, 1.5)
    box = np.array([30.0, 20.0, 70.0, 50.0])  # 40 x 30, centre (50, 35): side 60 image px
    ys, xs = np.mgrid[:100, :110].astype(np.float32)
    ramp = 2.0 * xs + ys + 10.0  # value at pixel centre (x + 0.5, y + 0.5): bilinear is exact on it
    crop, t = crop_for_model(ramp, box, params)
    k = 48 / 60  # crop px per image px, no pre-shrink (k > 1/2)
    expected = np.array([[k, 0.0, 24 - k * 50], [0.0, k, 24 - k * 35]])
    np.testing.assert_allclose(t.matrix, expected, rtol=0, atol=1e-12)
    assert t.size == 48 and crop.shape == (48, 48)
    # crop pixel centre q -> image point p = (q - 24) / k + centre; ramp there = 2 (px - 0.5) + (py - 0.5) + 10
    qy, qx = np.mgrid[:48, :48] + 0.5
    px, py = (qx - 24) / k + 50, (qy - 24) / k + 35
    np.testing.assert_allclose(crop, 2 * (px - 0.5) + (py - 0.5) + 10, atol=0.05)  # OpenCV's 1/32 px grid
    points = np.array([[0.0, 0.0], [47.5, 12.25], [24.0, 24.0]])
    np.testing.assert_allclose(t.to_image(points), np.stack([(points[:, 0] - 24) / k + 50,
                                                             (points[:, 1] - 24) / k + 35], axis=1), atol=1e-12)
    np.testing.assert_allclose(t.to_crop(t.to_image(points)), points, atol=1e-12)
    # the same crop, to the bit, as crop_face at the model's size and scale (uint8 image, with shrink)
    image = np.random.default_rng(3).integers(0, 255, (200, 220, 3), dtype=np.uint8)
    for face_box in (box, np.array([5.0, 5.0, 190.0, 180.0])):
        crop, t = crop_for_model(image, face_box, params)
        ref, ref_t = crop_face(image, face_box, 48, 1.5)
        np.testing.assert_array_equal(crop, ref)
        np.testing.assert_array_equal(t.matrix, ref_t.matrix)
