"""The seeded validation split held out of a training folder (300W's training folders have no
labeled split of their own to validate on)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spanlib.utils.errors import ParamError


def held_out_split(samples: Sequence, fraction: float, seed: int = 0) -> tuple[list, list]:
    """``(train, held_out)``: a fraction of ``samples`` chosen by ``seed`` alone (``train.val_seed``,
    not the training seed, so every training seed is validated on the same faces), both in the
    original order. ``fraction`` 0 keeps everything for training."""
    samples = list(samples)
    if not fraction or fraction <= 0:
        return samples, []
    order = np.random.default_rng([int(seed), 7919]).permutation(len(samples))
    n_val = max(1, int(round(fraction * len(samples))))
    if n_val >= len(samples):
        raise ParamError(f"train.val_fraction: {fraction} leaves no training face of {len(samples)}")
    held = set(order[:n_val].tolist())
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])
