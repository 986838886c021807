"""Synthetic faces: determinism, the .pts round trip, points on the drawn features, pose styles."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from spanlib.cli import main as cli_main
from spanlib.data.synth import render_face, sample_face, split_counts, write_synthetic_dataset
from spanlib.utils.errors import ParamError

SMALL = dict(n_train=4, n_common=2, n_challenging=2, n_unlabeled=2, size=128, seed=7, progress=False)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _parse_pts(text: str) -> np.ndarray:
    """An independent reader of the 300-W .pts format."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    assert lines[0] == "version: 1"
    assert lines[1].split(":")[0] == "n_points" and int(lines[1].split(":")[1]) == 68
    assert lines[2] == "{" and lines[-1] == "}"
    return np.array([[float(v) for v in ln.split()] for ln in lines[3:-1]])


def test_same_seed_gives_byte_identical_files_and_resume_redraws_only_missing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_synthetic_dataset(a, **SMALL)
    write_synthetic_dataset(b, **SMALL)
    files_a = _files(a)
    assert files_a == _files(b)
    assert len([f for f in files_a if f.endswith(".pts")]) == 8
    assert not any(f.startswith("unlabeled/") and f.endswith(".pts") for f in files_a)
    # resume: one image and one .pts removed, only that face is drawn again, bytes identical
    (a / "train" / "train_00002.jpg").unlink()
    (a / "common" / "common_00001.pts").unlink()
    manifest = write_synthetic_dataset(a, **SMALL)
    assert manifest["drawn"] == 2
    assert _files(a) == files_a
    # a face depends only on (seed, split, index): a larger run starts with the same faces
    c = tmp_path / "c"
    write_synthetic_dataset(c, **{**SMALL, "n_train": 6})
    files_c = _files(c)
    assert all(files_c[k] == v for k, v in files_a.items() if k != "manifest.json")


def test_other_seed_differs_and_is_refused_in_the_same_folder(tmp_path):
    write_synthetic_dataset(tmp_path, **SMALL)
    before = _files(tmp_path)
    with pytest.raises(ParamError, match="seed"):
        write_synthetic_dataset(tmp_path, **{**SMALL, "seed": 8})
    assert _files(tmp_path) == before
    other = sample_face(8, "train", 0, 128).landmarks
    assert np.abs(other - sample_face(7, "train", 0, 128).landmarks).max() > 1.0
    with pytest.raises(ParamError, match="n_common"):
        write_synthetic_dataset(tmp_path / "x", **{**SMALL, "n_common": -1})


def test_pts_round_trip_through_independent_parser_and_the_synthetic_reader(tmp_path):
    write_synthetic_dataset(tmp_path, **SMALL)
    spec = sample_face(7, "common", 1, 128)
    pts = _parse_pts((tmp_path / "common" / "common_00001.pts").read_text())
    assert pts.shape == (68, 2)
    np.testing.assert_allclose(pts, spec.landmarks, atol=1e-5)
    image = cv2.imread(str(tmp_path / "common" / "common_00001.jpg"))
    assert image.shape == (128, 128, 3)
    sources = pytest.importorskip("spanlib.data.sources")
    for split, n in (("train", 4), ("common", 2), ("challenging", 2), ("full", 4), ("unlabeled", 2)):
        samples = sources.read_source("synthetic", tmp_path, split)
        assert len(samples) == n
    full = sources.read_source("synthetic", tmp_path, "common")
    np.testing.assert_allclose(full[1].landmarks, spec.landmarks, atol=1e-5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["counts"]["train"] == 4 and manifest["complete"]
    assert [m["name"] for m in manifest["faces"]["common"]] == ["common_00000", "common_00001"]
    assert manifest["faces"]["train"][3]["style"] == "challenging"  # every 4th train face


# Part colours for a "paint by parts" render: each part gets its own flat colour, so a mask of
# the part is the set of pixels of that colour (anti-aliased edges are blends, hence the tolerance).
PAINT = {
    "skin": (200, 150, 120), "neck": (20, 20, 200), "ear": (0, 90, 255), "hair": (0, 255, 0),
    "brow": (0, 0, 0), "sclera": (255, 0, 255), "iris": (255, 0, 255), "lid": (255, 0, 255),
    "crease": (200, 150, 120), "lip_upper": (0, 255, 255), "lip_lower": (0, 255, 255), "mouth": (255, 0, 0),
    "teeth": (255, 0, 0), "nose_dark": (0, 128, 0), "nose_shadow": (200, 150, 120),
    "nose_light": (128, 0, 128), "clothes": (60, 60, 60),
}


def _painted(spec):
    spec = copy.deepcopy(spec)
    spec.colours.update({k: np.array(v, dtype=np.float64) for k, v in PAINT.items()})
    image = render_face(spec, clean=True)
    # the iris draws a near-black pupil and a white highlight: paint those as eye too
    return image


PALETTE = np.array(sorted(set(PAINT.values()) | {(12, 10, 10), (250, 250, 250), (128, 128, 128)}), dtype=int)


def _mask(image, colours):
    """Pixels whose nearest palette colour is one of ``colours`` (an anti-aliased edge pixel goes
    to the side that covers most of it)."""
    nearest = np.abs(image.astype(int)[:, :, None, :] - PALETTE[None, None]).sum(-1).argmin(-1)
    wanted = [i for i, c in enumerate(map(tuple, PALETTE)) if c in set(map(tuple, colours))]
    return np.isin(nearest, wanted)


def _distance_to_boundary(mask, points):
    """Distance (pixels) from each point to the boundary of ``mask``, the boundary being the
    midpoints between 4-neighbour pixel centres on opposite sides (corner-origin coordinates)."""
    i, j = np.nonzero(mask[:, :-1] != mask[:, 1:])
    edges = [np.c_[j + 1.0, i + 0.5]]
    i, j = np.nonzero(mask[:-1] != mask[1:])
    edges.append(np.c_[j + 0.5, i + 1.0])
    edges = np.vstack(edges)
    return np.sqrt(((points[:, None, :] - edges[None]) ** 2).sum(-1)).min(1)


def _faces():
    common = [sample_face(0, "common", i, 256) for i in range(6)]
    challenging = [sample_face(0, "challenging", i, 256) for i in range(12)]
    big_yaw = [s for s in challenging if abs(s.meta["pose"]["yaw"]) > 25]
    assert big_yaw, "expected large-yaw faces among the first challenging ones"
    return common + big_yaw


@pytest.mark.parametrize("part,indices,colours", [
    # the face region (skin and everything drawn on it) against neck, ears, hair and background
    ("jaw", range(0, 17), [PAINT[k] for k in ("skin", "brow", "sclera", "lip_upper", "mouth", "nose_dark",
                                               "nose_light")] + [(12, 10, 10), (250, 250, 250)]),
    ("brows", range(17, 27), [PAINT["brow"]]),
    ("eyes", range(36, 48), [PAINT["sclera"], (12, 10, 10), (250, 250, 250)]),
    ("outer lips", range(48, 60), [PAINT["lip_upper"], PAINT["mouth"]]),
])
def test_points_lie_on_the_drawn_part_boundaries(part, indices, colours):
    idx = np.array(list(indices))
    worst = []
    for spec in _faces():
        image = _painted(spec)
        mask = _mask(image, colours)
        if part == "eyes":
            keep = [k for k in idx if spec.meta["expression"]["eye_closure"][0 if k < 42 else 1] < 0.9]
            if not keep:
                continue
            sel = np.array(keep)
        else:
            sel = idx
        d = _distance_to_boundary(mask, spec.landmarks[sel])
        worst.append(d.max())
        assert d.max() <= 1.5, f"{part}: point {sel[d.argmax()]} of {spec.meta['name']} is {d.max():.2f} px off"
    assert worst


def test_inner_lips_nose_bridge_and_nostrils_lie_on_drawn_lines():
    for spec in _faces():
        image = _painted(spec)
        # inner lip points: on the edge of the lips (towards the mouth opening or the closed seam)
        lips = _mask(image, [PAINT["lip_upper"]])
        d = _distance_to_boundary(lips, spec.landmarks[60:68])
        assert d.max() <= 1.5, (spec.meta["name"], d.round(2))
        # the bridge points are on the light ridge line, the nostril points on the dark nose base
        # line: within 1.5 px of a pixel centre of that line
        for colour, idx in ((PAINT["nose_light"], slice(27, 31)), (PAINT["nose_dark"], slice(31, 36))):
            i, j = np.nonzero(_mask(image, [colour]))
            centres = np.c_[j + 0.5, i + 0.5]
            d = np.sqrt(((spec.landmarks[idx, None] - centres[None]) ** 2).sum(-1)).min(1)
            assert d.max() <= 1.5, (spec.meta["name"], d.round(2))


def test_mouth_centre_is_lip_coloured_and_outside_the_jaw_is_not_skin():
    for spec in _faces()[:6]:
        image = render_face(spec, clean=True).astype(int)
        skin = spec.colours["skin"]
        pts = spec.landmarks
        mid = (pts[48] + pts[54]) / 2
        centre_colour = image[int(mid[1]), int(mid[0])]
        lip_like = [spec.colours[k] for k in ("lip_upper", "lip_lower", "mouth", "teeth")]
        assert min(np.abs(centre_colour - c).max() for c in lip_like) < np.abs(centre_colour - skin).max()
        assert np.abs(centre_colour - skin).max() > 25
        # 3 px outwards from each jaw point (away from the nose) is not skin; 3 px inwards is
        for k in range(2, 15):
            n = pts[k] - pts[30]
            n /= np.linalg.norm(n)
            out, inn = pts[k] + 3 * n, pts[k] - 3 * n
            assert np.abs(image[int(out[1]), int(out[0])] - skin).max() > 10, (spec.meta["name"], k)
            assert np.abs(image[int(inn[1]), int(inn[0])] - skin).max() <= 3, (spec.meta["name"], k)


def test_common_faces_are_near_frontal_and_challenging_ones_include_large_poses():
    common = [sample_face(1, "common", i, 256) for i in range(40)]
    hard = [sample_face(1, "challenging", i, 256) for i in range(40)]
    assert max(abs(s.meta["pose"]["yaw"]) for s in common) <= 15
    assert all(not s.meta["occluders"] for s in common)
    assert sum(abs(s.meta["pose"]["yaw"]) > 25 for s in hard) >= 5
    assert sum(abs(s.meta["pose"]["roll"]) > 20 for s in hard) >= 5
    assert sum(bool(s.meta["occluders"]) for s in hard) >= 15

    # yaw is visible in the points: the nose tip moves off the jaw's midline towards the yaw sign
    def nose_offset(s):
        p = s.landmarks
        return (p[30, 0] - (p[0, 0] + p[16, 0]) / 2) / np.linalg.norm(p[16] - p[0])

    assert max(abs(nose_offset(s)) for s in common) < 0.3
    for s in hard:
        if abs(s.meta["pose"]["yaw"]) > 25 and abs(s.meta["pose"]["roll"]) < 15:
            assert np.sign(nose_offset(s)) == np.sign(s.meta["pose"]["yaw"])
            assert abs(nose_offset(s)) > 0.15


def test_split_counts_and_cli(tmp_path, capsys):
    assert split_counts(3450) == {"train": 2000, "common": 300, "challenging": 150, "unlabeled": 1000}
    assert sum(split_counts(101).values()) == 101
    rc = cli_main(["synth", "--out", str(tmp_path), "--n", "12", "--n-common", "1", "--size", "96", "--seed", "2",
                   "--quiet"])
    assert rc == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 8, "common": 1, "challenging": 0, "unlabeled": 3}
    assert len(list((tmp_path / "train").glob("*.pts"))) == 8
    assert cli_main(["synth", "--out", str(tmp_path), "--n", "12", "--seed", "3", "--quiet"]) == 2
    assert "seed" in capsys.readouterr().err
