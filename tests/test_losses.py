"""The objective (eqs. 15-20) against float64 brute force, and the decoding it relies on."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from spanlib.model.decode import decode_landmarks
from spanlib.utils.errors import ParamError
from spanlib.model.losses import (LossConfig, coord_loss, field_loss, heatmap_ce, heatmap_js, scl_maps_loss,
                            objective_terms, span_objective, stage_heatmap_loss, stage_weights)
from spanlib.config.variants import VARIANTS
from spanlib.model import build_model
from spanlib.data.warp import apply_warp

# the paper's loss weights (eq. 16; params.yaml's loss group): the schema gives them no default
PAPER_WEIGHTS = dict(lambda1=1.0, lambda2=16.0, gamma=40.0, eta=4.0)


def test_loss_config_takes_its_defaults_from_the_schema():
    """The schema (LossConfigParams) is the one home of the loss defaults: LossConfig's default is the
    schema's where it has one, and a field the schema requires has no default here either."""
    from dataclasses import MISSING

    from spanlib.config import schema

    own = {f.name: f for f in dataclasses.fields(LossConfig)}
    for name, f in schema.fields_of("loss").items():
        assert name in own
        assert own[name].default == (MISSING if f.default is MISSING else schema.default(f"loss.{name}")), name
    assert own["field_radius"].default is MISSING and own["input_size"].default is MISSING
    with pytest.raises(TypeError):
        LossConfig(field_radius=5, input_size=64)  # no weights of its own
    params = {"lambda1": 1.0, "lambda2": 16.0, "gamma": 40.0, "eta": 4.0}
    built = LossConfig.from_params(params, {"sigma": 1.0, "boundary_sigma": 1.0, "field_radius": 5,
                                            "distribution": "gaussian", "ged_shape": 0.0, "student_df": 3.0,
                                            "boundary_xi": 0.0}, 64, 16)
    assert built == LossConfig(**PAPER_WEIGHTS, field_radius=5, input_size=64)


def js_brute(logits: np.ndarray, target: np.ndarray) -> float:
    """Eq. 15 for one channel, float64, straight from the definition."""
    x = logits.astype(np.float64).ravel()
    p = np.exp(x - x.max())
    p /= p.sum()
    q = target.astype(np.float64).ravel()
    q = q / q.sum()
    m = (p + q) / 2
    kl = lambda a, b: sum(ai * math.log(ai / bi) for ai, bi in zip(a, b) if ai > 0)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def test_heatmap_js_matches_brute_force():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, 6)) * 3
    target = rng.random((2, 3, 5, 6)) * (rng.random((2, 3, 5, 6)) > 0.5)
    got = heatmap_js(torch.tensor(logits, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    want = np.array([[js_brute(logits[b, k], target[b, k]) for k in range(3)] for b in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)


def test_heatmap_ce_matches_brute_force_and_its_gradient_is_p_minus_q():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 5, 6)) * 3
    target = rng.random((2, 3, 5, 6)) * (rng.random((2, 3, 5, 6)) > 0.5)
    target[1, 2] = 0.0  # no distribution: loss 0
    x = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    got = heatmap_ce(x, torch.tensor(target, dtype=torch.float32))
    want = np.zeros((2, 3))
    for b in range(2):
        for k in range(3):
            v = logits[b, k].ravel().astype(np.float64)
            log_p = v - v.max() - math.log(np.exp(v - v.max()).sum())
            t = target[b, k].ravel().astype(np.float64)
            want[b, k] = 0.0 if t.sum() == 0 else -(t / t.sum() * log_p).sum()
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    got[0, 1].backward()
    v = logits[0, 1].ravel()
    p = np.exp(v - v.max()) / np.exp(v - v.max()).sum()
    q = target[0, 1].ravel() / target[0, 1].sum()
    np.testing.assert_allclose(x.grad[0, 1].numpy().ravel(), p - q, atol=1e-6)


def test_stage_heatmap_loss_weights_stages():
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(2, 4, 4, 4)), rng.normal(size=(2, 4, 4, 4)), rng.normal(size=(2, 4, 8, 8))]
    targets = {4: rng.random((2, 4, 4, 4)), 8: rng.random((2, 4, 8, 8))}
    weights = stage_weights(3, lambda1=1.0, eta=4.0)
    assert weights == [4.0, 4.0, 1.0]
    got = stage_heatmap_loss([torch.tensor(x, dtype=torch.float32) for x in logits],
                             {r: torch.tensor(t, dtype=torch.float32) for r, t in targets.items()}, weights)
    want = sum(w * np.mean([[js_brute(x[b, k], targets[x.shape[-1]][b, k]) for k in range(4)] for b in range(2)])
               for w, x in zip(weights, logits))
    assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind", ["l1", "smooth_l1", "l2", "js"])
def test_field_loss_matches_brute_force(kind):
    rng = np.random.default_rng(2)
    radius, b, k, h = 1, 2, 3, 6
    pred = rng.normal(size=(b, 2, k, h, h)) * 2
    field = rng.normal(size=(b, 2, k, h, h)) * 2
    mask = np.zeros((b, k, h, h))
    for bi in range(b):
        for ki in range(k):
            i, j = rng.integers(0, h, size=2)
            mask[bi, ki, max(i - radius, 0):i + radius + 1, max(j - radius, 0):j + radius + 1] = 1
    got = float(field_loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(field, dtype=torch.float32),
                           torch.tensor(mask, dtype=torch.float32), kind, radius))
    if kind == "js":
        s2 = 2 * ((radius + 1) / 2) ** 2
        vals = []
        for bi in range(b):
            for ki in range(k):
                sel = mask[bi, ki] > 0
                lp = -(pred[bi, :, ki] ** 2).sum(0)[sel] / s2
                q = np.exp(-(field[bi, :, ki] ** 2).sum(0)[sel] / s2)
                vals.append(js_brute(lp, q))
        want = np.mean(vals)
    else:
        d = pred - field
        per = {"l1": np.abs(d), "l2": 0.5 * d ** 2,
               "smooth_l1": np.where(np.abs(d) < 1, 0.5 * d ** 2, np.abs(d) - 0.5)}[kind]
        want = (per.sum(1) * mask).sum() / mask.sum()
    assert got == pytest.approx(want, rel=1e-5)


def test_coord_loss_is_mean_normalised_distance():
    pred = torch.tensor([[[10.0, 10.0], [0.0, 0.0]]])
    target = torch.tensor([[[13.0, 14.0], [0.0, 0.0]]])
    assert float(coord_loss(pred, target, 100)) == pytest.approx((5.0 / 100 + 0.0) / 2, abs=1e-6)


def test_coord_loss_as_printed_sums_squares_over_points():
    """Eq. 18 as printed: sum over points of the squared distance (normalised), mean over images."""
    pred = torch.tensor([[[10.0, 10.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[13.0, 14.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 5.0]]])
    want = ((25.0 + 0.0) / 100**2 + (0.0 + 1.0) / 100**2) / 2
    assert float(coord_loss(pred, target, 100, "squared_sum")) == pytest.approx(want, rel=1e-6)


def test_scl_on_intermediate_stages_only_drops_the_last_stage():
    """Eq. 19 sums L_scl over t = 1..T-1 (eta); ours also adds the last stage with lambda1."""
    model, out, targets, pairs, config = make_batch("scpan", pairs=2, labeled=2)
    all_stages = objective_terms(out, 2, targets, pairs, model.spec, config)["scl"]
    paper = objective_terms(out, 2, targets, pairs, model.spec,
                            dataclasses.replace(config, scl_stages="intermediate"))["scl"]
    no_last = objective_terms(out, 2, targets, pairs, model.spec,
                              dataclasses.replace(config, lambda1=0.0))["scl"]
    assert float(paper) == pytest.approx(float(no_last), rel=1e-6) and float(paper) < float(all_stages)
    with pytest.raises(ParamError, match="loss.scl_stages"):
        LossConfig.from_params({"lambda1": 1.0, "lambda2": 16.0, "gamma": 40.0, "eta": 4.0, "scl_stages": "last"},
                               targets_group(3), 64, 32)


def gaussian_logits(points_map: np.ndarray, size: int, sigma: float) -> torch.Tensor:
    c = np.arange(size) + 0.5
    maps = [-(((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * sigma ** 2)) for x, y in points_map]
    return torch.tensor(np.stack(maps)[None], dtype=torch.float32)


def test_decode_round_trip_and_bali_offsets():
    """Noise-free Gaussian logits decode to the point (windowed soft-argmax, < 0.05 px); exact BALI
    offsets decode exactly even from a coarse heatmap."""
    size, stride = 32, 4
    pts = np.array([[10.3, 20.7], [5.5, 5.5], [16.9, 12.2]])
    out = {"heatmaps": [gaussian_logits(pts, size, 1.0)], "offsets": None, "input_size": size * stride}
    got = decode_landmarks(out, radius=5)[0].numpy()
    np.testing.assert_allclose(got, pts * stride, atol=0.05)
    # BALI: a heatmap peaked at the wrong sub-pixel spot, fields pointing at the truth.
    c = np.arange(size) + 0.5
    offsets = np.stack([np.stack([np.broadcast_to(x - c[None, :], (size, size)) for x, _ in pts]),
                        np.stack([np.broadcast_to(y - c[:, None], (size, size)) for _, y in pts])])
    out = {"heatmaps": [gaussian_logits(pts + 0.4, size, 1.0)], "input_size": size * stride,
           "offsets": torch.tensor(offsets[None], dtype=torch.float32)}
    np.testing.assert_allclose(decode_landmarks(out, radius=3)[0].numpy(), pts * stride, atol=1e-3)


def random_pair_warp(batch: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    thetas = []
    for _ in range(batch):
        a = math.radians(rng.uniform(-20, 20))
        s = rng.uniform(0.9, 1.1)
        c = size / 2
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        thetas.append(np.concatenate([rot, (np.array([c, c]) - rot @ [c, c])[:, None]], axis=1))
    return torch.tensor(np.stack(thetas), dtype=torch.float32), torch.tensor(rng.random(batch) < 0.5)


def test_scl_near_zero_for_exactly_transformed_prediction():
    torch.manual_seed(0)
    b, k, h, size = 3, 5, 16, 64
    logits_a = torch.randn(b, k, h, h) * 2
    theta, flipped = random_pair_warp(b, size, 0)
    perm = np.array([4, 3, 2, 1, 0])
    p_a = torch.softmax(logits_a.reshape(b, k, -1), -1).view(b, k, h, h)
    warped, valid = apply_warp(p_a, theta, flipped, perm, size)
    logits_b = torch.log(warped.clamp_min(1e-30))
    assert float(scl_maps_loss(logits_a, logits_b, theta, flipped, perm, size)) < 1e-6
    other = float(scl_maps_loss(logits_a, torch.randn(b, k, h, h) * 2, theta, flipped, perm, size))
    assert other > 0.05


def test_scl_matches_brute_force_inside_valid_region():
    torch.manual_seed(1)
    b, k, h, size = 2, 3, 8, 32
    logits_a, logits_b = torch.randn(b, k, h, h), torch.randn(b, k, h, h)
    theta, flipped = random_pair_warp(b, size, 1)
    perm = np.array([2, 1, 0])
    p_a = torch.softmax(logits_a.reshape(b, k, -1), -1).view(b, k, h, h)
    warped, valid = apply_warp(p_a, theta, flipped, perm, size)
    sel = (valid[:, 0] > 0.5).numpy()
    want = np.mean([[js_brute(logits_b[i, c].numpy()[sel[i]], warped[i, c].numpy()[sel[i]])
                     for c in range(k)] for i in range(b)])
    got = float(scl_maps_loss(logits_a, logits_b, theta, flipped, perm, size))
    assert got == pytest.approx(want, rel=1e-4)


def make_batch(variant: str, pairs: int, labeled: int, seed: int = 0):
    torch.manual_seed(seed)
    k, c, size = 68, 13, 64
    model = build_model({"variant": variant, "stages": 2, "width": 16, "depth": 2}, k, c, size)
    out = model(torch.rand(2 * pairs, 3, size, size))
    n = 2 * labeled
    res = sorted(set(model.stage_resolutions))
    targets = {"heatmaps": {r: torch.rand(n, k, r, r) for r in res},
               "boundaries": {r: torch.rand(n, c, r, r) for r in res},
               "field": torch.randn(n, 2, k, 32, 32), "field_mask": (torch.rand(n, k, 32, 32) > 0.8).float(),
               "landmarks": torch.rand(n, k, 2) * size}
    theta, flipped = random_pair_warp(pairs, size, seed)
    pairs_info = {"theta": theta, "flipped": flipped, "point_perm": np.arange(k)[::-1].copy(),
                  "boundary_perm": np.arange(c)}
    config = LossConfig(**PAPER_WEIGHTS, field_radius=5, input_size=size, field_loss="l1")
    return model, out, targets, pairs_info, config


def test_objective_sums_the_weighted_terms():
    model, out, targets, pairs, config = make_batch("scpan", pairs=2, labeled=2)
    total, terms = span_objective(out, 2, targets, pairs, model.spec, config)
    assert set(terms) == {"heat", "boundary", "field", "coord", "scl"}
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    # the heatmap term is eq. 16's stage sum with eta on stage 1 and lambda1 on the last
    want = sum(w * np.mean([[js_brute(x[i, q].detach().numpy(), targets["heatmaps"][x.shape[-1]][i, q].numpy())
                             for q in range(0, 68, 17)] for i in range(4)])
               for w, x in zip([4.0, 1.0], out["heatmaps"]))
    sub = {"heatmaps": [x[:, ::17] for x in out["heatmaps"]]}
    got = float(stage_heatmap_loss(sub["heatmaps"], {r: t[:, ::17] for r, t in targets["heatmaps"].items()},
                                   [4.0, 1.0]))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_reach_every_head(variant):
    labeled = 1 if variant == "semi_scpan" else 2  # semi: one labeled and one unlabeled pair
    model, out, targets, pairs, config = make_batch(variant, pairs=2, labeled=labeled)
    total, terms = span_objective(out, labeled, targets, pairs, model.spec, config)
    total.backward()
    heads = [n for n, _ in model.named_parameters() if any(s in n for s in (".heat.", ".boundary.", "bali."))]
    assert heads
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unlabeled_pairs_only_enter_scl():
    """Eq. 20: with no labeled pair only L_scl remains."""
    model, out, _, pairs, config = make_batch("semi_scpan", pairs=2, labeled=0)
    total, terms = span_objective(out, 0, None, pairs, model.spec, config)
    assert set(terms) == {"scl"} and float(total) > 0


def targets_group(field_radius: int) -> dict:
    """A ``targets`` group (the schema requires both sigmas) with this field radius."""
    return {"sigma": 1.0, "boundary_sigma": 1.0, "field_radius": field_radius}


def test_invalid_loss_params():
    good = {"lambda1": 1.0, "lambda2": 16.0, "gamma": 40.0, "eta": 4.0, "field_loss": "l1"}
    with pytest.raises(ParamError, match="targets.field_radius.*larger than"):
        LossConfig.from_params(good, targets_group(20), 64, 32)
    with pytest.raises(ParamError, match="loss.gamma"):
        LossConfig.from_params(dict(good, gamma=-1), targets_group(2), 64, 32)
    with pytest.raises(ParamError, match="loss.field_loss"):
        LossConfig.from_params(dict(good, field_loss="l7"), targets_group(2), 64, 32)
    with pytest.raises(ParamError, match="loss.heatmap_loss"):
        LossConfig.from_params(dict(good, heatmap_loss="kl"), targets_group(2), 64, 32)
    config = LossConfig.from_params(good, targets_group(5), 64, 32)
    assert (config.lambda2, config.field_radius) == (16.0, 5)


def js_pixel_brute(logits: np.ndarray, target: np.ndarray) -> float:
    """The pixel-wise reading of eq. 15, float64 from the definition: sum over pixels of
    1/2 KL(p || m) + 1/2 KL(q || m) of the single values p = sigmoid(x), q = target, m = (p + q)/2."""
    total = 0.0
    for x, q in zip(logits.astype(np.float64).ravel(), target.astype(np.float64).ravel()):
        p = 1.0 / (1.0 + math.exp(-x))
        m = (p + q) / 2
        total += 0.5 * (p * math.log(p / m) if p > 0 else 0.0) + 0.5 * (q * math.log(q / m) if q > 0 else 0.0)
    return total


def test_heatmap_js_pixel_matches_brute_force_and_is_zero_only_at_the_target():
    from spanlib.model.losses import heatmap_js_pixel

    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 4, 5)) * 3
    target = rng.random((2, 3, 4, 5)) * (rng.random((2, 3, 4, 5)) > 0.4)
    got = heatmap_js_pixel(torch.tensor(logits, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    want = np.array([[js_pixel_brute(logits[b, k], target[b, k]) for k in range(3)] for b in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    q = np.clip(target, 0.05, 0.95)
    at_target = heatmap_js_pixel(torch.tensor(np.log(q / (1 - q))), torch.tensor(q))
    assert float(at_target.abs().max()) < 1e-6
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: heatmap_js_pixel(v, torch.tensor(target)), (x,))


def test_js_pixel_sums_over_pixels_so_a_map_twice_as_fine_weighs_four_times():
    """The paper's reason for lambda1 = 1 (128x128) against eta = 4 (64x64): with sigma scaled to
    the map, the pixel-wise JS of a 2x map is ~4x that of the 1x map; the softmax JS is not."""
    from spanlib.data.targets import landmark_heatmaps
    from spanlib.model.losses import heatmap_js_pixel

    pts = np.array([[20.3, 30.7]])
    values = {}
    for size, sigma in ((64, 1.0), (128, 2.0)):
        scaled = pts * size / 64
        target = torch.tensor(landmark_heatmaps(scaled, size, sigma))[None]
        shifted = torch.tensor(landmark_heatmaps(scaled + size / 64 * 1.5, size, sigma))[None]
        logits = torch.logit(shifted.clamp(1e-4, 1 - 1e-4))
        values[size] = (float(heatmap_js_pixel(logits, target)), float(heatmap_js(logits * 6, target)))
    ratio_pixel = values[128][0] / values[64][0]
    ratio_softmax = values[128][1] / values[64][1]
    assert 3.0 < ratio_pixel < 5.0
    assert 0.5 < ratio_softmax < 2.0


def test_scl_js_pixel_is_zero_for_consistent_views():
    from spanlib.model.losses import scl_maps_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 68, 16, 16)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 2)
    flipped = torch.zeros(2, dtype=torch.bool)
    same = scl_maps_loss(logits, logits, theta, flipped, np.arange(68), 64, kind="js_pixel")
    assert float(same) < 1e-5
    other = scl_maps_loss(logits, torch.randn(2, 68, 16, 16), theta, flipped, np.arange(68), 64, kind="js_pixel")
    assert float(other) > 0.1


def tiny_semi_batch():
    """Hand-built semi-SCPAN batch: 3 pairs (1 labeled, 2 unlabeled), T = 2 stages of 8x8 and
    16x16 maps on a 32 px crop, K = 3 points, C = 2 boundaries; D's: identity, mirror, and rotation
    by 10 degrees with scale 0.9 and a (2, -1) px shift."""
    import types

    g = torch.Generator().manual_seed(11)
    k, c, size, pairs = 3, 2, 32, 3
    heat = [torch.randn(2 * pairs, k, r, r, generator=g) * 2 for r in (8, 16)]
    bounds = [torch.randn(2 * pairs, c, r, r, generator=g) * 2 for r in (8, 16)]
    a = math.radians(10.0)
    rot = 0.9 * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    theta = np.stack([np.eye(2, 3),
                      np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0]]),
                      np.hstack([rot, (np.array([16.0, 16.0]) - rot @ [16.0, 16.0] + [2.0, -1.0])[:, None]])])
    outputs = {"heatmaps": heat, "boundaries": bounds, "offsets": None, "input_size": size}
    targets = {"heatmaps": {r: torch.rand(2, k, r, r, generator=g) for r in (8, 16)},
               "boundaries": {r: torch.rand(2, c, r, r, generator=g) for r in (8, 16)},
               "landmarks": torch.rand(2, k, 2, generator=g) * size}
    info = {"theta": torch.tensor(theta, dtype=torch.float32), "flipped": torch.tensor([False, True, False]),
            "point_perm": np.array([2, 1, 0]), "boundary_perm": np.array([1, 0])}
    spec = types.SimpleNamespace(boundaries=True, bali=False, self_calibrated=True)
    return outputs, targets, info, spec


def scl_brute_per_pair(outputs: dict, info: dict, size: int) -> np.ndarray:
    """S[t, i]: eq. 17 of pair i at stage t, float64 JS (js_brute) of the landmark maps plus that
    of the boundary maps, each averaged over channels, inside D's valid region."""
    heat, bounds = outputs["heatmaps"], outputs["boundaries"]
    pairs = heat[0].shape[0] // 2
    out = np.zeros((len(heat), pairs))
    for t in range(len(heat)):
        for maps, perm in ((heat[t], info["point_perm"]), (bounds[t], info["boundary_perm"])):
            b, c, h, _ = maps.shape
            p_a = torch.softmax(maps[:pairs].reshape(pairs, c, -1), -1).view(pairs, c, h, h)
            warped, valid = apply_warp(p_a, info["theta"], info["flipped"], perm, size)
            for i in range(pairs):
                sel = valid[i, 0].numpy() > 0.5
                out[t, i] += np.mean([js_brute(maps[pairs + i, q].numpy()[sel], warped[i, q].numpy()[sel])
                                      for q in range(c)])
    return out


@pytest.mark.parametrize("stages", ["all", "intermediate"])
def test_unlabeled_sum_is_eq20_as_printed_and_mean_keeps_the_old_value(stages):
    """loss.unlabeled_weighting. mean (default): every pair weighs w_t / (N + M), the value the
    objective gave before the key existed. sum (eq. 20): labeled pairs w_t / N, unlabeled 1 / N."""
    outputs, targets, info, spec = tiny_semi_batch()
    S = scl_brute_per_pair(outputs, info, 32)
    eta, lambda1, n = 4.0, 1.0, 1
    w = [eta, lambda1 if stages == "all" else 0.0]
    s = [1.0, 1.0 if stages == "all" else 0.0]  # eq. 20: no eta; its last stage per scl_stages
    want_mean = sum(w[t] * S[t].mean() for t in range(2))
    want_sum = sum(w[t] * S[t, :n].sum() / n for t in range(2)) + sum(s[t] * S[t, n:].sum() for t in range(2)) / n
    config = LossConfig(**PAPER_WEIGHTS, field_radius=2, input_size=32, scl_stages=stages)
    assert config.unlabeled_weighting == "mean"
    mean_terms = objective_terms(outputs, n, targets, info, spec, config)
    sum_terms = objective_terms(outputs, n, targets, info, spec,
                                dataclasses.replace(config, unlabeled_weighting="sum"))
    old = {"all": 4.2706475257873535, "intermediate": 3.3218958377838135}[stages]  # before the key existed
    assert float(mean_terms["scl"]) == pytest.approx(old, rel=1e-6)
    assert float(mean_terms["scl"]) == pytest.approx(want_mean, rel=1e-4)
    assert float(sum_terms["scl"]) == pytest.approx(want_sum, rel=1e-4)
    assert abs(want_sum - want_mean) > 0.1 * want_mean  # the readings really differ here
    for key in ("heat", "boundary", "coord"):  # only L_scl depends on the reading
        assert torch.equal(mean_terms[key], sum_terms[key])
    # only unlabeled pairs (N = 0): divisor 1, the printed sum itself
    only = objective_terms(outputs, 0, None, info, spec, dataclasses.replace(config, unlabeled_weighting="sum"))
    assert float(only["scl"]) == pytest.approx(sum(s[t] * S[t].sum() for t in range(2)), rel=1e-4)
    # no unlabeled pair: both readings are the same mean over the labeled pairs
    all_labeled = {"heatmaps": {r: torch.rand(6, 3, r, r) for r in (8, 16)},
                   "boundaries": {r: torch.rand(6, 2, r, r) for r in (8, 16)}, "landmarks": torch.rand(6, 3, 2) * 32}
    full = objective_terms(outputs, 3, all_labeled, info, spec, dataclasses.replace(config, unlabeled_weighting="sum"))
    assert float(full["scl"]) == pytest.approx(want_mean, rel=1e-4)


def test_unlabeled_weighting_param_is_read_and_checked():
    from spanlib.config import schema
    from spanlib.model.losses import UNLABELED_WEIGHTINGS

    good = {"lambda1": 1.0, "lambda2": 16.0, "gamma": 40.0, "eta": 4.0}
    assert LossConfig.from_params(good, targets_group(2), 64, 32).unlabeled_weighting == "mean"
    got = LossConfig.from_params(dict(good, unlabeled_weighting="sum"), targets_group(2), 64, 32)
    assert got.unlabeled_weighting == "sum"
    with pytest.raises(ParamError, match="loss.unlabeled_weighting"):
        LossConfig.from_params(dict(good, unlabeled_weighting="median"), targets_group(2), 64, 32)
    field = {f.name: f for f in dataclasses.fields(schema.LossConfigParams)}["unlabeled_weighting"]
    assert field.metadata["choices"] == UNLABELED_WEIGHTINGS and field.default == "mean"
