"""Paired comparison of two settings over seeds, and its one significance mark.

Two settings are compared on the same faces: per-face NME of setting ``a`` against a reference
``b``, seed i of ``a`` paired with seed i of ``b`` (the first ``min`` seeds of each), with the 95 %
bootstrap interval of the mean per-face difference over faces and seeds
(``spanlib.evaluation.stats.paired_bootstrap``). A difference is significant when that interval
excludes 0, and it is marked the same way in every table (``significance_mark``): " ▼" when ``a``
is significantly lower (better) than the reference, " ▲" when higher (worse), nothing otherwise.
The paper tables (``spanlib.reporting.report``), the seed tables (``spanlib.training.seeds``) and
the real-face comparisons (``spanlib.study.experiments``) all use this module.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spanlib.evaluation.stats import PairedDifference, paired_bootstrap

LOWER = " ▼"    # a significantly lower (better) than the reference
HIGHER = " ▲"   # a significantly higher (worse)
MARKS = f"{LOWER.strip()} / {HIGHER.strip()}"
# when a difference counts as significant, in words (the legends of the tables quote it)
SIGNIFICANT_WHEN = "the 95 % paired bootstrap interval of the per-face difference, over faces and seeds, excludes 0"


def same_faces(a: Sequence, b: Sequence) -> bool:
    """Whether per-seed per-face arrays ``a`` and ``b`` can be paired: the first ``min`` seeds of
    each are present (not None) and all have the same number of faces."""
    n = min(len(a), len(b))
    rows = list(a[:n]) + list(b[:n])
    return n > 0 and all(r is not None for r in rows) and len({len(r) for r in rows}) == 1


def paired_difference(a: Sequence, b: Sequence) -> PairedDifference:
    """a − b in per-face NME, paired by face and by seed: ``a``, ``b`` are lists of per-face arrays,
    one per seed; seed i of ``a`` goes with seed i of ``b``, the first ``min(len(a), len(b))`` seeds
    of each. Raises ValueError when a setting has no seeds or the arrays are not of the same faces."""
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("paired_difference: a setting has no seeds")
    if not same_faces(a, b):
        sizes = [None if r is None else len(r) for r in list(a[:n]) + list(b[:n])]
        raise ValueError(f"paired_difference: not the same faces in every seed of both settings "
                         f"(faces per seed, a then b: {sizes})")
    return paired_bootstrap(np.stack([np.asarray(r, dtype=np.float64) for r in a[:n]]),
                            np.stack([np.asarray(r, dtype=np.float64) for r in b[:n]]))


def significance_mark(diff: PairedDifference | None) -> str:
    """" ▼" (significantly lower), " ▲" (significantly higher) or "" (within noise, or no comparison)."""
    if diff is None or not diff.significant:
        return ""
    return LOWER if diff.mean < 0 else HIGHER


def difference_text(diff: PairedDifference, scale: float = 100.0, digits: int = 2) -> str:
    """'-0.35 [-0.55, -0.09] ▼': the mean difference and its 95 % interval (points: x ``scale``), marked."""
    return (f"{scale * diff.mean:+.{digits}f} [{scale * diff.low:+.{digits}f}, "
            f"{scale * diff.high:+.{digits}f}]{significance_mark(diff)}")


def comparison_note(a: str, b: str, what: str, diff: PairedDifference) -> str:
    """One line for a comparison: 'a − b, what: Δ [interval] points over n seed(s) x m faces (significant)'."""
    return (f"{a} − {b}, {what}: {difference_text(diff)} points over {diff.n_seeds} seed(s) x {diff.n_faces} "
            f"faces ({'significant' if diff.significant else 'within noise'})")
