"""The paired comparison of two settings over seeds and its one significance mark
(spanlib.evaluation.compare), against hand-computed cases."""

import numpy as np
import pytest

from spanlib.evaluation.compare import (comparison_note, difference_text, paired_difference, same_faces,
                                        significance_mark)
from spanlib.evaluation.metrics import subset_threshold_metric, threshold_metric
from spanlib.evaluation.stats import PairedDifference


def test_paired_difference_pairs_seed_i_with_seed_i_over_the_first_min_seeds():
    a = [np.array([0.10, 0.20, 0.30]), np.array([0.20, 0.20, 0.20]), np.array([9.0, 9.0, 9.0])]  # 3 seeds
    b = [np.array([0.05, 0.10, 0.30]), np.array([0.10, 0.30, 0.20])]                             # 2 seeds
    d = paired_difference(a, b)
    # by hand: seed 0: .05, .10, 0; seed 1: .10, -.10, 0 -> mean .15 / 6 = .025; a's third seed is left out
    assert (d.n_seeds, d.n_faces) == (2, 3)
    assert d.mean == pytest.approx(0.025)
    assert d.low <= d.mean <= d.high


def test_a_constant_shift_is_significant_and_marked_by_its_sign():
    base = [np.linspace(0.02, 0.08, 10), np.linspace(0.03, 0.09, 10)]
    worse = paired_difference([x + 0.01 for x in base], base)
    # every resample of a constant difference has mean 0.01 exactly: the interval is [0.01, 0.01]
    assert worse.low == pytest.approx(0.01) and worse.high == pytest.approx(0.01) and worse.significant
    assert significance_mark(worse) == " ▲"
    better = paired_difference([x - 0.01 for x in base], base)
    assert significance_mark(better) == " ▼"
    assert difference_text(better) == "-1.00 [-1.00, -1.00] ▼"


def test_a_difference_whose_interval_holds_0_is_not_marked():
    base = [np.full(4, 0.05), np.full(4, 0.05)]
    d = paired_difference([base[0] + [0.01, -0.01, 0.01, -0.01], base[1] + [-0.01, 0.01, -0.01, 0.01]], base)
    assert d.mean == pytest.approx(0.0) and d.low < 0 < d.high and not d.significant
    assert significance_mark(d) == "" and significance_mark(None) == ""
    assert not difference_text(d).endswith(("▼", "▲", "*"))


def test_the_mark_follows_the_interval_not_the_mean_alone():
    assert significance_mark(PairedDifference(-0.02, -0.03, 0.001, 3, 10)) == ""   # holds 0
    assert significance_mark(PairedDifference(-0.02, -0.03, -0.001, 3, 10)) == " ▼"
    assert significance_mark(PairedDifference(0.02, 0.001, 0.03, 3, 10)) == " ▲"


def test_mismatched_faces_are_refused():
    a = [np.zeros(5), np.zeros(5)]
    assert not same_faces(a, [np.zeros(5), np.zeros(6)])
    assert not same_faces(a, [np.zeros(5), None])
    assert not same_faces(a, [])
    assert same_faces(a, [np.zeros(5), np.zeros(5), np.zeros(7)])  # the third seed is not paired
    with pytest.raises(ValueError, match="same faces"):
        paired_difference(a, [np.zeros(6), np.zeros(6)])
    with pytest.raises(ValueError, match="same faces"):
        paired_difference([np.zeros(5), np.zeros(4)], [np.zeros(5), np.zeros(5)])
    with pytest.raises(ValueError, match="no seeds"):
        paired_difference(a, [])


def test_comparison_note_is_one_line_with_interval_mark_and_counts():
    d = PairedDifference(-0.0157, -0.0188, -0.0120, 3, 300)
    assert comparison_note("scpan", "shn", "common NME_io (%)", d) == (
        "scpan − shn, common NME_io (%): -1.57 [-1.88, -1.20] ▼ points over 3 seed(s) x 300 faces (significant)")
    n = PairedDifference(0.001, -0.002, 0.004, 2, 50)
    assert comparison_note("a", "b", "x", n) == "a − b, x: +0.10 [-0.20, +0.40] points over 2 seed(s) x 50 faces " \
                                                 "(within noise)"


def test_fr_and_auc_come_stored_or_from_per_face_nme():
    errors = [0.02, 0.05, 0.09, 0.12]
    assert threshold_metric("fr", errors, 0.08) == pytest.approx(0.5)          # 0.09 and 0.12 above
    assert threshold_metric("auc", [0.05], 0.1) == pytest.approx(0.5, abs=1e-3)  # (0.1 - 0.05) / 0.1
    with pytest.raises(ValueError, match="kind"):
        threshold_metric("nme", errors, 0.08)
    subset = {"norm": "io", "fr": {"0.1": 0.25}, "fr_by_norm": {"ip": {"0.1": 0.75}},
              "per_face_nme": {"io": errors, "ip": errors}}
    assert subset_threshold_metric(subset, "fr", "ip", 0.1) == 0.75        # stored under ip
    assert subset_threshold_metric(subset, "fr", "io", "0.1") == 0.25      # stored for the subset's own norm
    assert subset_threshold_metric(subset, "fr", "ip", 0.08) == pytest.approx(0.5)  # not stored: computed
    assert subset_threshold_metric(subset, "fr", "box", 0.1) is None       # neither


def test_compare_runs_and_its_table_use_the_one_mark(monkeypatch):
    """``spanlib compare``'s rows (study.experiments.compare_runs) on fake per-face errors: the
    difference to the reference is the hand-computed paired mean, marked as in the paper tables."""
    from spanlib.study import experiments

    base = np.linspace(0.02, 0.08, 12)
    per_face = {"ref/s0": base, "ref/s1": base + 0.001, "good/s0": base - 0.01, "good/s1": base - 0.009,
                "same/s0": base + [0.001, -0.001] * 6, "same/s1": base + 0.001 + [-0.001, 0.001] * 6}

    def fake_run_errors(checkpoint, source, root, split, settings=None, held_out=True, progress=False):
        e = per_face[checkpoint]
        return {"per_face": e, "per_landmark": np.full(68, 0.05), "fr": {"0.08": float(np.mean(e > 0.08))},
                "auc": {}, "n": len(e), "iteration": 1, "checkpoint_sha256": checkpoint,
                "held_out": {"n": len(e), "fraction": 0.1, "seed": 0}}

    monkeypatch.setattr(experiments, "run_errors", fake_run_errors)
    runs = {"ref": ["ref/s0", "ref/s1"], "good": ["good/s0", "good/s1"], "same": ["same/s0", "same/s1"]}
    result = experiments.compare_runs(runs, "ref", "300w", "/nowhere", "train", progress=False)
    good, same = result["rows"]["good"], result["rows"]["same"]
    assert good["vs_reference"] == pytest.approx(-0.01) and good["vs_reference_significant"]
    assert good["vs_reference_text"] == "-1.00 [-1.00, -1.00] ▼"
    assert same["vs_reference"] == pytest.approx(0.0) and not same["vs_reference_significant"]
    text = experiments.comparison_markdown(result, "t")
    assert "| good | 2 |" in text and "| -1.00 [-1.00, -1.00] ▼ |" in text and "| reference |" in text
    assert "▼ / ▲ = significantly lower / higher" in text and "*" not in text
