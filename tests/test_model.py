"""SpanNet variants: output shapes, the SCPA equations, heads reached by gradients, profiles, params."""

import pytest
import torch

from spanlib.utils.errors import ParamError
from spanlib.config.variants import VARIANT_SPECS as VARIANTS
from spanlib.model import build_model, count_flops, count_parameters, model_profile
from spanlib.model.scpa import SCPAModule

K, C = 68, 13
SMALL = {"stages": 2, "width": 16, "depth": 2}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("stages", [1, 3])
def test_output_shapes(variant, stages):
    torch.manual_seed(0)
    model = build_model(dict(SMALL, variant=variant, stages=stages), K, C, 64)
    out = model(torch.rand(2, 3, 64, 64))
    spec = VARIANTS[variant]
    assert model.stage_resolutions == [16] * (stages - 1) + [32]
    assert [tuple(h.shape) for h in out["heatmaps"]] == [(2, K, r, r) for r in model.stage_resolutions]
    if spec.boundaries:
        assert [tuple(b.shape) for b in out["boundaries"]] == [(2, C, r, r) for r in model.stage_resolutions]
    else:
        assert out["boundaries"] == []
    if spec.bali:
        assert tuple(out["offsets"].shape) == (2, 2, K, 32, 32)
    else:
        assert out["offsets"] is None
    assert out["input_size"] == 64


def test_scpa_equations():
    """Eq. 9-10 against a hand-written composition of the module's parts."""
    torch.manual_seed(0)
    module = SCPAModule(8).eval()
    q = torch.randn(2, 8, 8, 8)
    mask = torch.sigmoid(module.rb2(module.rb1(q)))
    assert torch.all((mask > 0) & (mask < 1))
    torch.testing.assert_close(module(q), mask * q + q)


def test_last_stage_feeds_attention_only_when_scpa():
    """shn and shn_scpa differ exactly by the SCPA modules and the boundary heads."""
    plain = build_model(dict(SMALL, variant="shn"), K, C, 64)
    scpa = build_model(dict(SMALL, variant="shn_scpa"), K, C, 64)
    assert plain.scpa is None and len(scpa.scpa) == SMALL["stages"] - 1
    extra = count_parameters(scpa) - count_parameters(plain)
    assert extra == sum(p.numel() for p in scpa.scpa.parameters()) + sum(
        p.numel() for n, p in scpa.named_parameters() if "boundary" in n)


@pytest.mark.parametrize("variant", ["shn", "scpan"])
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(0)
    model = build_model(dict(SMALL, variant=variant), K, C, 64)
    out = model(torch.rand(2, 3, 64, 64))
    loss = sum(h.square().mean() for h in out["heatmaps"]) + sum(b.square().mean() for b in out["boundaries"])
    if out["offsets"] is not None:
        loss = loss + out["offsets"].square().mean() + out["offsets"].mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_profile_counts():
    model = build_model(dict(SMALL, variant="shn"), K, C, 64)
    # Hand count of the first conv: 7x7x3 -> c1 (= 8) channels on a 32x32 output, 2 FLOPs per MAC.
    first = 2 * 7 * 7 * 3 * 8 * 32 * 32
    flops = count_flops(model)
    assert flops > first
    assert count_flops(model, batch=2) == 2 * flops
    profile = model_profile(model)
    assert profile["params"] == sum(p.numel() for p in model.parameters())
    assert profile["size_bytes"] > 4 * profile["params"]


@pytest.mark.parametrize("bad, message", [
    ({"variant": "hrnet"}, "model.variant"),
    ({"stages": 0}, "model.stages"),
    ({"width": 7}, "model.width"),
    ({"depth": 0}, "model.depth"),
])
def test_invalid_model_params(bad, message):
    with pytest.raises(ParamError, match=message):
        build_model({**SMALL, "variant": "shn", **bad}, K, C, 64)


def test_input_size_must_fit_the_hourglass():
    with pytest.raises(ParamError, match="crop.input_size"):
        build_model(dict(SMALL, variant="shn"), K, C, 72)
