"""Seed summaries, paired bootstrap intervals and the dead-channel flag against hand-made cases."""

import numpy as np
import pytest

from spanlib.evaluation.stats import outlier_landmarks, over_seeds, paired_bootstrap


def test_over_seeds_uses_the_sample_standard_deviation():
    s = over_seeds([0.04, 0.05, 0.06])
    assert s.mean == pytest.approx(0.05)
    assert s.sd == pytest.approx(0.01)  # sqrt(((-.01)^2 + 0 + .01^2) / 2)
    assert s.format() == "5.00 ± 1.00"
    assert over_seeds([0.03]).format() == "3.00 (1 seed)"


def test_paired_bootstrap_separates_a_real_shift_from_noise():
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 0.02, size=(3, 200))
    shifted = base + 0.01 + rng.normal(0, 0.002, size=base.shape)
    d = paired_bootstrap(shifted, base, resamples=1000)
    assert d.mean == pytest.approx(0.01, abs=1e-3)
    assert d.low > 0 and d.significant
    noise = base + rng.normal(0, 0.002, size=base.shape)
    n = paired_bootstrap(noise, base, resamples=1000)
    assert n.low < 0 < n.high and not n.significant


def test_paired_bootstrap_needs_the_same_faces():
    with pytest.raises(ValueError, match="same faces"):
        paired_bootstrap(np.zeros((2, 5)), np.zeros((2, 6)))


def test_outlier_landmarks_flags_a_planted_dead_channel():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0.04, 0.08, size=68)
    assert outlier_landmarks(errors) == []
    errors[1] = 0.83  # the broken channel of the committed synthetic scpan run
    flagged = outlier_landmarks(errors)
    assert [i for i, _, _ in flagged] == [1]
    assert flagged[0][1] == pytest.approx(0.83)


def test_outlier_landmarks_leave_a_hard_contour_and_flag_a_swapped_pair():
    """From a detector's box the jaw (0-16) is harder as a whole: 3x the median landmark, but like
    its neighbours, so not flagged. Two swapped eye corners (36, 45) stand out from their eyes."""
    rng = np.random.default_rng(1)
    errors = rng.uniform(0.025, 0.035, size=68)
    errors[:17] = rng.uniform(0.10, 0.12, size=17)  # the whole jaw, > 3x the median 0.03
    assert outlier_landmarks(errors) == []
    errors[[36, 45]] = 0.6
    assert [i for i, _, _ in outlier_landmarks(errors)] == [36, 45]
    hand = np.full(68, 0.03)
    hand[10] = 0.2  # neighbours 8, 9, 11, 12 at 0.03: reference 0.03, 0.2 > 0.09
    assert outlier_landmarks(hand) == [(10, 0.2, pytest.approx(0.03))]


def test_code_version_hashes_code_not_results(tmp_path, monkeypatch):
    """The version changes with the library's code and ignores everything else (results, outputs)."""
    import spanlib.utils.provenance as prov

    pkg = tmp_path / "spanlib"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(prov, "PACKAGE", pkg)
    monkeypatch.setattr(prov, "PROJECT", tmp_path)
    prov.code_hash.cache_clear()
    first = prov.code_hash()
    (tmp_path / "results" / "m.json").write_text("{}")
    prov.code_hash.cache_clear()
    assert prov.code_hash() == first
    (pkg / "a.py").write_text("x = 2\n")
    prov.code_hash.cache_clear()
    assert prov.code_hash() != first
    prov.code_hash.cache_clear()
    info = prov.machine_info()
    prov.code_hash.cache_clear()  # the next caller hashes the real package again
    assert info["cpu"] and info["torch_cpu_capability"]
