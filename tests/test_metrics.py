import numpy as np
import pytest

from spanlib.evaluation import metrics
from spanlib.utils.errors import DataError, ParamError
from spanlib.config.schemes import get_scheme

S68 = get_scheme("68")


def _face_68(rng):
    pts = rng.uniform(20, 80, size=(68, 2))
    pts[36] = (30.0, 40.0)  # outer eye corners 40 px apart
    pts[45] = (70.0, 40.0)
    return pts


def test_io_ip_box_diag_by_hand():
    rng = np.random.default_rng(0)
    gt = _face_68(rng)
    # eye groups: set all six points of each eye so the centres are known
    gt[36:42] = [(30, 40), (34, 38), (38, 38), (42, 40), (38, 42), (34, 42)]  # mean (36, 40)
    gt[42:48] = [(58, 40), (62, 38), (66, 38), (70, 40), (66, 42), (62, 42)]  # mean (64, 40)
    gt[0] = (10.0, 10.0)
    gt[8] = (90.0, 100.0)  # tight box 10..90 x 10..100: w 80, h 90
    gt = gt.clip([10, 10], [90, 100])
    assert metrics.normalization_distance(gt, "io", S68)[0] == pytest.approx(40.0)
    assert metrics.normalization_distance(gt, "ip", S68)[0] == pytest.approx(28.0)
    assert metrics.normalization_distance(gt, "box", S68)[0] == pytest.approx(np.sqrt(80 * 90))
    assert metrics.normalization_distance(gt, "diag", S68)[0] == pytest.approx(np.hypot(80, 90))
    box = np.array([[0, 0, 50, 200]])
    assert metrics.normalization_distance(gt, "box", S68, boxes=box)[0] == pytest.approx(100.0)


def test_nme_hand_computed():
    gt = np.zeros((68, 2))
    gt[:, 0] = np.arange(68)  # io distance = |45 - 36| = 9
    pred = gt.copy()
    pred[0] += (3.0, 4.0)  # error 5 px on one point
    pred[1] += (0.0, 9.0)  # error 9 px on another
    nme = metrics.nme_per_face(pred, gt, "io", S68)
    assert nme[0] == pytest.approx((5 / 9 + 1) / 68)
    per_lm = metrics.nme_per_landmark(np.stack([pred, gt]), np.stack([gt, gt]), "io", S68)
    assert per_lm[0] == pytest.approx(5 / 9 / 2) and per_lm[1] == pytest.approx(0.5) and per_lm[2] == 0


def test_pupil_scheme_98_uses_pupils():
    s98 = get_scheme("98")
    gt = np.zeros((98, 2))
    gt[:, 1] = np.arange(98)
    gt[96] = (0, 0)
    gt[97] = (6, 8)
    assert metrics.normalization_distance(gt, "ip", s98)[0] == pytest.approx(10.0)
    assert metrics.normalization_distance(gt, "io", s98)[0] == pytest.approx(12.0)  # |72 - 60|


def test_failure_rate_is_strictly_above():
    errors = [0.05, 0.1, 0.1000001, 0.2]
    assert metrics.failure_rate(errors, 0.1) == pytest.approx(0.5)
    assert metrics.failure_rate(errors, 0.08) == pytest.approx(0.75)


def test_auc_simpson_matches_closed_form_and_hand_value():
    # all errors 0 -> AUC 1; all errors >= t -> 0; a single error at t/2 -> 0.5 exactly
    assert metrics.auc([0.0, 0.0], 0.1) == pytest.approx(1.0, abs=1e-3)
    assert metrics.auc([0.2, 0.1], 0.1) == pytest.approx(0.0, abs=1e-3)
    assert metrics.auc_exact([0.05], 0.1) == pytest.approx(0.5)
    assert metrics.auc([0.05], 0.1) == pytest.approx(0.5, abs=1e-3)
    rng = np.random.default_rng(1)
    errors = rng.gamma(2.0, 0.02, size=500)
    for t in (0.08, 0.1):
        # Simpson on a step function differs from the exact integral by O(step / t)
        assert metrics.auc(errors, t) == pytest.approx(metrics.auc_exact(errors, t), abs=2e-3)


def test_ced_is_monotone_and_ends_at_fraction_below_threshold():
    errors = np.array([0.01, 0.03, 0.07, 0.12])
    grid, frac = metrics.ced(errors, 0.1)
    assert grid[0] == 0 and grid[-1] == pytest.approx(0.1) and len(grid) == 1001
    assert np.all(np.diff(frac) >= 0) and frac[-1] == pytest.approx(0.75)
    assert frac[np.searchsorted(grid, 0.03)] == pytest.approx(0.5)


def test_subset_metrics_json_layout():
    rng = np.random.default_rng(2)
    gt = np.stack([_face_68(rng) for _ in range(5)])
    pred = gt + rng.normal(0, 1.0, gt.shape)
    m = metrics.subset_metrics(pred, gt, S68)
    assert m["n"] == 5 and set(m["nme"]) == {"io", "ip", "box", "diag"}
    assert set(m["fr"]) == {"0.08", "0.1"} and set(m["auc"]) == {"0.08", "0.1"}
    assert len(m["per_landmark_nme_io"]) == 68
    assert m["nme"]["io"] == pytest.approx(np.mean(m["per_landmark_nme_io"]))
    line = metrics.format_metrics({"common": m})
    assert "NME_io" in line and "FR_io@0.1" in line


def test_bad_input_is_reported():
    gt = np.zeros((68, 2))
    with pytest.raises(DataError, match="NME_io"):
        metrics.nme_per_face(gt, gt, "io", S68)  # zero eye distance
    with pytest.raises(ParamError, match="nme_norm"):
        metrics.nme_per_face(gt, gt, "eyes", S68)
    with pytest.raises(DataError, match="shape"):
        metrics.nme_per_face(np.zeros((67, 2)), gt, "diag")
    with pytest.raises(DataError, match="empty"):
        metrics.failure_rate([], 0.1)


def test_nme_box_uses_the_provided_box_size_by_hand():
    """AFLW (Table III): NME_box divides by the annotation's box_size where a face has one; a face
    without one (NaN) keeps sqrt(w h) of its landmarks' tight box."""
    s19 = get_scheme("19")
    gt = np.zeros((2, 19, 2))
    gt[:, :, 0] = np.arange(19) * 2.0      # tight box 0..36 x 0..18: sqrt(36 * 18) = 25.456
    gt[:, :, 1] = np.arange(19) % 10 * 2.0
    pred = gt.copy()
    pred[:, 0] += (3.0, 4.0)                # 5 px on point 0
    pred[:, 5] += (6.0, 8.0)                # 10 px on point 5: 15 px over 19 points
    sizes = np.array([50.0, np.nan])
    nme = metrics.nme_per_face(pred, gt, "box", s19, box_sizes=sizes)
    assert nme[0] == pytest.approx(15 / 19 / 50)
    assert nme[1] == pytest.approx(15 / 19 / np.sqrt(36 * 18))
    m = metrics.subset_metrics(pred, gt, s19, box_sizes=sizes, norm="box")
    assert m["nme"]["box"] == pytest.approx((15 / 19 / 50 + 15 / 19 / np.sqrt(36 * 18)) / 2)
    assert m["nme"]["diag"] == pytest.approx(15 / 19 / np.hypot(36, 18))  # diag ignores box_size
    with pytest.raises(DataError, match="box_sizes: expected 2 sizes"):
        metrics.nme_per_face(pred, gt, "box", s19, box_sizes=[50.0])
