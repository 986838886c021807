"""Synthetic faces with 68 points: the study's embedded default data set.

``write_synthetic_dataset`` writes a 300-W-style folder (train/, common/, challenging/, unlabeled/);
``sample_face`` + ``render_face`` make one face in memory; ``make_grid`` draws the README's grid.
Modules: ``shape`` (3D face model, pose, projection, jaw outline), ``face`` (random specification
and drawing of one face), ``writer`` (files, manifest), ``grid`` (sample grid image), ``portable``
(float math that gives the same bits on every CPU: docs/reproducibility.md).
"""

from spanlib.data.synth.face import FaceSpec, render_face, sample_face, style_of
from spanlib.data.synth.writer import GENERATOR_VERSION, SPLIT_RATIO, SPLITS, split_counts, write_synthetic_dataset

__all__ = [
    "FaceSpec", "GENERATOR_VERSION", "SPLITS", "SPLIT_RATIO", "render_face", "sample_face", "split_counts",
    "style_of", "write_synthetic_dataset",
]
