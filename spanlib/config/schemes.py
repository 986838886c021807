"""Landmark schemes: 68 points (300W, Menpo, 300VW, COFW-68), 98 (WFLW), 29 (COFW), 19 (AFLW).

Each scheme carries the facial boundaries drawn as boundary heatmaps (eq. 3), the mirror
permutation of points and of boundaries, and the normalisation points of NME_io (outer eye corners)
and NME_ip (eye centres or pupils).

Indices are 0-based. "Left" and "right" in boundary names are the IMAGE's left and right (the
subject's right eye is the image-left eye), so a boundary name never depends on who looks.

Boundaries for 68 and 98 follow the 13-boundary convention of LAB (Wu et al. 2018) and MMDN: face
contour, two eyebrows, nose bridge, nose boundary, four eyelids, upper and lower outer lip, upper
and lower inner lip. The sparse schemes have no contour and one point per eyelid, so they get the
boundaries their points can draw:
- 29 (COFW): two eyebrows and two eyes as closed four-point loops, the nose (ala, tip, ala) and the
  four lip lines from mouth corner to mouth corner through the upper-lip top, upper-lip bottom,
  lower-lip top and lower-lip bottom points: 9 boundaries.
- 19 (AFLW): two eyebrows (three points each), two eyes (outer corner, centre, inner corner), the
  nose (left, tip, right) and the mouth (left corner, centre, right corner): 6 boundaries; the chin
  is a single point and draws no boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spanlib.utils.errors import ParamError


@dataclass(frozen=True)
class Boundary:
    name: str
    indices: tuple[int, ...]
    closed: bool = False


@dataclass(frozen=True, eq=False)
class Scheme:
    name: str
    num_points: int
    boundaries: tuple[Boundary, ...]
    flip_perm: np.ndarray = field(repr=False)  # mirrored point k is original point flip_perm[k]
    boundary_flip_perm: np.ndarray = field(repr=False)  # same for boundary channels
    io_indices: tuple[int, int]  # image-left and image-right outer eye corners (NME_io)
    ip_groups: tuple[tuple[int, ...], tuple[int, ...]]  # means = eye centres or pupils (NME_ip)

    @property
    def num_boundaries(self) -> int:
        return len(self.boundaries)

    @property
    def boundary_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.boundaries)

    def ip_points(self, points: np.ndarray) -> np.ndarray:
        """(..., K, 2) -> (..., 2, 2): the two points whose distance is the NME_ip norm."""
        points = np.asarray(points)
        return np.stack([points[..., list(g), :].mean(axis=-2) for g in self.ip_groups], axis=-2)


def _perm_from_pairs(num_points: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    perm = np.arange(num_points)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def _range(a: int, b: int) -> tuple[int, ...]:
    """Inclusive range a..b (what annotation guides write)."""
    return tuple(range(a, b + 1))


def _boundary_perm(boundaries: tuple[Boundary, ...], swaps: list[tuple[str, str]]) -> np.ndarray:
    names = [b.name for b in boundaries]
    perm = np.arange(len(boundaries))
    for a, b in swaps:
        ia, ib = names.index(a), names.index(b)
        perm[ia], perm[ib] = ib, ia
    return perm


_LAB_SWAPS = [
    ("left_eyebrow", "right_eyebrow"),
    ("left_upper_eyelid", "right_upper_eyelid"),
    ("left_lower_eyelid", "right_lower_eyelid"),
]
# the sparse schemes (29, 19) draw whole eyes
_EYE_SWAPS = [("left_eyebrow", "right_eyebrow"), ("left_eye", "right_eye")]


def _scheme(name: str, boundaries: tuple[Boundary, ...], pairs: list[tuple[int, int]], swaps: list[tuple[str, str]],
            io_indices: tuple[int, int], ip_groups: tuple[tuple[int, ...], tuple[int, ...]]) -> Scheme:
    """The scheme of ``int(name)`` points: mirror permutations from the point ``pairs`` and the
    boundary ``swaps`` that a horizontal flip exchanges."""
    num_points = int(name)
    return Scheme(name=name, num_points=num_points, boundaries=boundaries,
                  flip_perm=_perm_from_pairs(num_points, pairs),
                  boundary_flip_perm=_boundary_perm(boundaries, swaps),
                  io_indices=io_indices, ip_groups=ip_groups)


def _scheme_68() -> Scheme:
    boundaries = (
        Boundary("contour", _range(0, 16)),
        Boundary("left_eyebrow", _range(17, 21)),
        Boundary("right_eyebrow", _range(22, 26)),
        Boundary("nose_bridge", _range(27, 30)),
        Boundary("nose_boundary", _range(31, 35)),
        Boundary("left_upper_eyelid", _range(36, 39)),
        Boundary("left_lower_eyelid", (39, 40, 41, 36)),
        Boundary("right_upper_eyelid", _range(42, 45)),
        Boundary("right_lower_eyelid", (45, 46, 47, 42)),
        Boundary("upper_outer_lip", _range(48, 54)),
        Boundary("upper_inner_lip", _range(60, 64)),
        Boundary("lower_outer_lip", (54, 55, 56, 57, 58, 59, 48)),
        Boundary("lower_inner_lip", (64, 65, 66, 67, 60)),
    )
    pairs = [(i, 16 - i) for i in range(8)]
    pairs += [(17 + i, 26 - i) for i in range(5)]
    pairs += [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    return _scheme("68", boundaries, pairs, _LAB_SWAPS, (36, 45), (_range(36, 41), _range(42, 47)))


def _scheme_98() -> Scheme:
    boundaries = (
        Boundary("contour", _range(0, 32)),
        Boundary("left_eyebrow", _range(33, 41), closed=True),
        Boundary("right_eyebrow", _range(42, 50), closed=True),
        Boundary("nose_bridge", _range(51, 54)),
        Boundary("nose_boundary", _range(55, 59)),
        Boundary("left_upper_eyelid", _range(60, 64)),
        Boundary("left_lower_eyelid", (64, 65, 66, 67, 60)),
        Boundary("right_upper_eyelid", _range(68, 72)),
        Boundary("right_lower_eyelid", (72, 73, 74, 75, 68)),
        Boundary("upper_outer_lip", _range(76, 82)),
        Boundary("upper_inner_lip", _range(88, 92)),
        Boundary("lower_outer_lip", (82, 83, 84, 85, 86, 87, 76)),
        Boundary("lower_inner_lip", (92, 93, 94, 95, 88)),
    )
    pairs = [(i, 32 - i) for i in range(16)]
    pairs += [(33 + i, 46 - i) for i in range(5)]  # upper brow edges
    pairs += [(38 + i, 50 - i) for i in range(4)]  # lower brow edges
    pairs += [(55, 59), (56, 58)]
    pairs += [(60 + i, 72 - i) for i in range(5)]  # corners and upper eyelids
    pairs += [(65, 75), (66, 74), (67, 73)]  # lower eyelids
    pairs += [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    pairs += [(88, 92), (89, 91), (93, 95), (96, 97)]
    return _scheme("98", boundaries, pairs, _LAB_SWAPS, (60, 72), ((96,), (97,)))


def _scheme_29() -> Scheme:
    # COFW order (0-based): 0/1 brow outer corners, 2/3 brow inner corners, 4/6 brow tops, 5/7 brow
    # bottoms, 8/9 eye outer corners, 10/11 eye inner corners, 12/14 eye tops, 13/15 eye bottoms,
    # 16/17 pupils, 18/19 nose alae, 20 nose tip, 21 nose bottom, 22/23 mouth corners, 24 upper-lip
    # top, 25 upper-lip bottom, 26 lower-lip top, 27 lower-lip bottom, 28 chin.
    boundaries = (
        Boundary("left_eyebrow", (0, 4, 2, 5), closed=True),
        Boundary("right_eyebrow", (1, 6, 3, 7), closed=True),
        Boundary("left_eye", (8, 12, 10, 13), closed=True),
        Boundary("right_eye", (9, 14, 11, 15), closed=True),
        Boundary("nose_boundary", (18, 20, 19)),
        Boundary("upper_outer_lip", (22, 24, 23)),
        Boundary("upper_inner_lip", (22, 25, 23)),
        Boundary("lower_outer_lip", (22, 27, 23)),
        Boundary("lower_inner_lip", (22, 26, 23)),
    )
    pairs = [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17),
             (18, 19), (22, 23)]
    return _scheme("29", boundaries, pairs, _EYE_SWAPS, (8, 9), ((16,), (17,)))


def _scheme_19() -> Scheme:
    # AFLW-19 order (0-based): 0-2 image-left brow (outer, centre, inner), 3-5 image-right brow
    # (inner, centre, outer), 6-8 image-left eye (outer corner, centre, inner corner), 9-11
    # image-right eye (inner corner, centre, outer corner), 12-14 nose (left, tip, right), 15-17
    # mouth (left corner, centre, right corner), 18 chin.
    boundaries = (
        Boundary("left_eyebrow", (0, 1, 2)),
        Boundary("right_eyebrow", (3, 4, 5)),
        Boundary("left_eye", (6, 7, 8)),
        Boundary("right_eye", (9, 10, 11)),
        Boundary("nose_boundary", (12, 13, 14)),
        Boundary("mouth", (15, 16, 17)),
    )
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
    return _scheme("19", boundaries, pairs, _EYE_SWAPS, (6, 11), ((7,), (10,)))


SCHEMES: dict[str, Scheme] = {s.name: s for s in (_scheme_68(), _scheme_98(), _scheme_29(), _scheme_19())}

# data source -> its number of landmarks: the one table of sources (the params schema's choices and
# spanlib.data.sources, which adds each source's reader). None: any count, read from the files (pts,
# csv: 68 points as a scheme alias), or no landmarks at all (UNLABELED_SOURCES).
SOURCE_POINTS: dict[str, int | None] = {
    "300w": 68, "synthetic": 68, "pts": None, "menpo": 68, "wflw": 98, "cofw": 29, "cofw68": 68, "aflw": 19,
    "300vw": 68, "unlabeled": None, "celeba": None, "csv": None, "300wlp": 68,
}
UNLABELED_SOURCES = ("unlabeled", "celeba")
# a source's name as a scheme name for get_scheme: its landmark count (68 for pts and csv)
ALIASES = {source: str(n or 68) for source, n in SOURCE_POINTS.items() if source not in UNLABELED_SOURCES}


def get_scheme(name_or_num_points: str | int) -> Scheme:
    """A scheme by name ("68", "98", "29", "19"), dataset alias ("300w", "wflw", "cofw", "aflw", ...)
    or number of points."""
    key = str(name_or_num_points).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEMES:
        known = sorted(SCHEMES) + sorted(ALIASES)
        raise ParamError(f"scheme: unknown landmark scheme {name_or_num_points!r}; expected one of {known}")
    return SCHEMES[key]


def mirror_landmarks(points: np.ndarray, width: float, scheme: Scheme) -> np.ndarray:
    """Landmarks of the horizontally mirrored image: x' = width - x (corner-origin convention, so a
    pixel edge maps onto a pixel edge), then permuted so that index k keeps its meaning."""
    points = np.asarray(points)
    if points.shape[-2:] != (scheme.num_points, 2):
        raise ParamError(
            f"points: expected shape (..., {scheme.num_points}, 2) for scheme {scheme.name}, "
            f"got {points.shape}"
        )
    mirrored = points.copy()
    mirrored[..., 0] = width - points[..., 0]
    return mirrored[..., scheme.flip_perm, :]
