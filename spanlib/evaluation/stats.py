"""Uncertainty of the numbers we publish: spread over seeds and paired bootstrap intervals.

A comparison between two variants is paired: the same faces, and seeds matched by index (seed s of
variant A against seed s of variant B). ``paired_bootstrap`` resamples faces and seeds with
replacement, independently, and gives the percentile interval of the mean per-face difference;
a difference is called significant when that 95 % interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    sd: float          # sample standard deviation over seeds (ddof = 1); 0 for a single seed
    values: tuple      # one value per seed

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        if len(self.values) == 1:
            return f"{scale * self.mean:.{digits}f} (1 seed)"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.sd:.{digits}f}"


def over_seeds(values) -> SeedSummary:
    """Mean and sample standard deviation of one number measured once per seed."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("over_seeds: no values")
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return SeedSummary(float(v.mean()), sd, tuple(float(x) for x in v))


@dataclass(frozen=True)
class PairedDifference:
    mean: float        # mean over seeds and faces of (a - b)
    low: float         # 95 % bootstrap interval
    high: float
    n_seeds: int
    n_faces: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(a, b, resamples: int = 4000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """Bootstrap interval of mean(a - b) for per-face errors ``a``, ``b`` of shape (seeds, faces)
    (or (faces,) for one seed), resampling seeds and faces independently with replacement."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap: shapes differ, {a.shape} and {b.shape} (same faces and seeds needed)")
    diff = a - b
    n_seeds, n_faces = diff.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, n_seeds, n_seeds)
        cols = rng.integers(0, n_faces, n_faces)
        means[i] = diff[np.ix_(rows, cols)].mean()
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high), n_seeds, n_faces)


NEIGHBOURS = 2  # landmarks on each side (by index) a landmark is compared with


def outlier_landmarks(per_landmark, factor: float = 3.0) -> list[tuple[int, float, float]]:
    """Landmarks whose mean error is more than ``factor`` times both the median landmark's error
    and the median of their index neighbours' (``NEIGHBOURS`` each side): a dead or swapped heatmap
    channel stands out from the points beside it. Neighbouring indices lie along one contour in
    every scheme we read (jaw, brows, eyes, lips), so a contour that is harder as a whole (the jaw
    from a detector's box) is not flagged. Returns ``[(index, its error, the larger reference)]``."""
    e = np.asarray(per_landmark, dtype=np.float64).ravel()
    median = float(np.median(e))
    found = []
    for i in np.flatnonzero(e > factor * median):
        around = np.r_[e[max(0, i - NEIGHBOURS):i], e[i + 1:i + 1 + NEIGHBOURS]]
        reference = max(median, float(np.median(around))) if len(around) else median
        if e[i] > factor * reference:
            found.append((int(i), float(e[i]), reference))
    return found


def flagged_landmarks(subsets: dict, factor: float = 3.0) -> dict[str, list[tuple[int, float, float]]]:
    """``outlier_landmarks`` of each subset of a metrics JSON (its ``per_landmark_nme_io``), only
    the subsets with a flagged landmark."""
    found = {}
    for name, entry in subsets.items():
        per_landmark = entry.get("per_landmark_nme_io")
        flagged = outlier_landmarks(per_landmark, factor) if per_landmark else []
        if flagged:
            found[name] = flagged
    return found
