import numpy as np
import pytest

from spanlib.utils.errors import ParamError
from spanlib.config.schemes import SCHEMES, get_scheme, mirror_landmarks


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_mirroring_twice_is_identity_and_perms_are_involutions(name):
    scheme = SCHEMES[name]
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 200, size=(3, scheme.num_points, 2)).astype(np.float32)
    once = mirror_landmarks(points, 200.0, scheme)
    assert not np.allclose(once, points)
    np.testing.assert_allclose(mirror_landmarks(once, 200.0, scheme), points, atol=1e-4)
    k = scheme.num_points
    assert sorted(scheme.flip_perm.tolist()) == list(range(k))
    assert (scheme.flip_perm[scheme.flip_perm] == np.arange(k)).all()
    c = scheme.num_boundaries
    assert (scheme.boundary_flip_perm[scheme.boundary_flip_perm] == np.arange(c)).all()
    for b in scheme.boundaries:
        assert all(0 <= i < k for i in b.indices) and len(b.indices) >= 3


def _same_curve(a, b, closed):
    a, b = list(a), list(b)
    if closed:  # same cycle up to rotation and direction
        rotations = [b[i:] + b[:i] for i in range(len(b))]
        return a in rotations or a[::-1] in rotations
    return a == b or a == b[::-1]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_boundary_flip_perm_maps_each_boundary_onto_its_mirror(name):
    scheme = SCHEMES[name]
    for c, boundary in enumerate(scheme.boundaries):
        # mirrored boundary c is drawn through mirrored points boundary.indices, i.e. original
        # points flip_perm[indices]: they must form original boundary boundary_flip_perm[c]
        source = scheme.boundaries[scheme.boundary_flip_perm[c]]
        assert source.closed == boundary.closed
        assert _same_curve(scheme.flip_perm[list(boundary.indices)], source.indices, boundary.closed), boundary.name


def test_published_conventions():
    s68, s98, s29, s19 = (get_scheme(n) for n in ("300w", "wflw", "cofw", "aflw"))
    assert [s.num_boundaries for s in (s68, s98)] == [13, 13]
    assert s68.io_indices == (36, 45) and s98.io_indices == (60, 72)
    assert s98.ip_groups == ((96,), (97,)) and s29.ip_groups == ((16,), (17,))
    assert s68.ip_groups == (tuple(range(36, 42)), tuple(range(42, 48)))
    # hand-checked pairs: jaw ends, eye corners, mouth corners, pupils
    assert s68.flip_perm[0] == 16 and s68.flip_perm[36] == 45 and s68.flip_perm[48] == 54 and s68.flip_perm[30] == 30
    assert s98.flip_perm[60] == 72 and s98.flip_perm[96] == 97 and s98.flip_perm[16] == 16
    assert s19.flip_perm[6] == 11 and s19.flip_perm[18] == 18
    assert get_scheme(68) is s68 and get_scheme("98") is s98
    with pytest.raises(ParamError, match="unknown landmark scheme"):
        get_scheme(42)
    with pytest.raises(ParamError, match="points"):
        mirror_landmarks(np.zeros((5, 2)), 10, s68)
    np.testing.assert_allclose(s68.ip_points(np.tile(np.arange(68.0)[:, None], (1, 2)))[:, 0], [38.5, 44.5])


def _real_300w(shared_data, n=120):
    from spanlib.data.sources import read_source

    import warnings

    with warnings.catch_warnings():  # the shared copy holds afw and helen/trainset only
        warnings.simplefilter("ignore")
        samples = read_source("300w", shared_data / "300w", "train")
    return samples[:: max(1, len(samples) // n)]


def test_mirrored_mean_shape_of_real_faces_matches_the_mirror_image(shared_data):
    import cv2

    scheme = get_scheme("68")
    samples = _real_300w(shared_data)
    shapes, mirrored, pixel_checks = [], [], 0
    for s in samples:
        image = s.image
        w = image.shape[1]
        flipped = cv2.flip(image, 1)
        m = mirror_landmarks(s.landmarks, w, scheme)
        # the mirrored point k sits on the flipped image where original point flip_perm[k] sat
        for k in (0, 8, 36, 45, 48, 54):
            xo, yo = np.floor(s.landmarks[scheme.flip_perm[k]]).astype(int)
            xm, ym = np.floor(m[k]).astype(int)
            if 0 <= xo < w and 0 <= yo < image.shape[0] and abs(xo + 0.5 - s.landmarks[scheme.flip_perm[k], 0]) < 0.49:
                assert ym == yo and xm == w - 1 - xo
                np.testing.assert_array_equal(flipped[ym, xm], image[yo, xo])
                pixel_checks += 1
        shapes.append(s.landmarks)
        mirrored.append(m)
    assert pixel_checks > 100
    mean, mean_mirrored = np.mean(shapes, axis=0), np.mean(mirrored, axis=0)
    io = np.linalg.norm(mean[36] - mean[45])
    # 300W crops are centred on the face, so the mean face is near-symmetric: the mirrored set has
    # the same mean shape point by point; a mirror without the permutation does not
    err = np.linalg.norm(mean_mirrored - mean, axis=1).max() / io
    unpermuted = mean.copy()
    unpermuted[:, 0] = samples[0].image.shape[1] - unpermuted[:, 0]
    err_unpermuted = np.linalg.norm(unpermuted - mean, axis=1).max() / io
    assert err < 0.15, err  # measured 0.083 on afw + helen/trainset (pose imbalance)
    assert err_unpermuted > 0.5, err_unpermuted
