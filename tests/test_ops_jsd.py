"""spanlib.ops.js_divergence (eq. 15): the Triton kernel (interpreted here) and the CPU path
against float64 references (the loss: scipy's Jensen-Shannon distance, squared; the gradient:
autograd through the textbook formula, ``spanlib.ops.textbook.js_reference64``) and
hand-computed values. The CPU path's C kernel and its PyTorch fallback are compared one by one in
tests/test_ops_cpu_paths.py.

Tolerances (absolute): float32 inputs: loss 2e-6, gradient 1e-7 relative to the largest entry
(x 1e-5); bfloat16 / float16 inputs are compared with the brute force on the same rounded inputs,
so only the fp32 accumulation and the rounding of the stored gradient differ: loss 2e-5,
gradient 1e-2 (bf16) / 2e-3 (fp16) relative to its largest entry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from ops_helpers import poisoned, use_backend  # noqa: F401  (fixture)
from spanlib.utils.errors import ParamError
from spanlib.ops import js_divergence
from spanlib.ops.jsd_cpu import js_forward_cpu
from spanlib.ops import jsd_triton
from spanlib.ops.jsd_triton import js_backward_triton, js_forward_triton
from spanlib.ops.textbook import js_reference64

GRAD_RTOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
LOSS_ATOL = {torch.float32: 2e-6, torch.bfloat16: 2e-5, torch.float16: 2e-5}


def brute_force_js(logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """float64, channel by channel, with scipy: jensenshannon(p, q) ** 2 is JS in nats."""
    b, k = logits.shape[:2]
    out = np.zeros((b, k))
    for i in range(b):
        for j in range(k):
            x = logits[i, j].double().flatten().numpy()
            p = np.exp(x - x.max())
            p /= p.sum()
            t = target[i, j].double().flatten().numpy()
            out[i, j] = jensenshannon(p, t / t.sum()) ** 2 if t.sum() > 0 else 0.0
    return out


def brute_force_grad(logits: torch.Tensor, target: torch.Tensor, grad_output: torch.Tensor):
    """float64 autograd through the textbook formula (the reference shared with kernels/)."""
    return js_reference64(logits, target, grad_output)[1]


def random_inputs(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g) * 2.0).to(dtype)
    target = (torch.rand(shape, generator=g) ** 4 + 1e-3).to(dtype)  # peaky, never zero
    return logits, target


def check_against_brute_force(loss, grad, logits, target, grad_output, dtype):
    expected = brute_force_js(logits, target)
    assert torch.isfinite(loss).all()
    np.testing.assert_allclose(loss.double().numpy(), expected, rtol=0, atol=LOSS_ATOL[dtype])
    expected_grad = brute_force_grad(logits, target, grad_output)
    assert grad.dtype == logits.dtype and torch.isfinite(grad).all()
    atol = GRAD_RTOL[dtype] * expected_grad.abs().max().item()
    torch.testing.assert_close(grad.double(), expected_grad, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("size", [(64, 64), (128, 128), (37, 53)])
@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_public_op_matches_brute_force(monkeypatch, poisoned, backend, size, dtype):  # noqa: F811
    use_backend(monkeypatch, backend)
    logits, target = random_inputs((2, 2, *size), dtype, seed=size[0] * 7 + size[1])
    grad_output = torch.tensor([[1.0, -0.5], [2.0, 0.25]])
    x = logits.clone().requires_grad_(True)
    loss = js_divergence(x, target)
    (loss * grad_output).sum().backward()
    check_against_brute_force(loss.detach(), x.grad, logits, target, grad_output, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_looped_path_matches_brute_force(poisoned, dtype):  # noqa: F811
    """Rows longer than the single-tile limit take the two-pass loop in forward and several tiles
    per row in backward; force both on 37x53 (1961 values) with 256-value blocks."""
    logits, target = random_inputs((2, 3, 37, 53), dtype, seed=3)
    target[1, 2] = 0.0  # a channel without target on the looped path too
    grad_output = torch.randn(2, 3, generator=torch.Generator().manual_seed(4))
    loss, stats = js_forward_triton(logits, target, max_single_block=256, loop_block=256)
    grad = js_backward_triton(logits, target, stats, grad_output, block=256)
    check_against_brute_force(loss, grad, logits, target, grad_output, dtype)


def test_cpu_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    t[0, 1, 2:4] = 0.0  # exact zeros in q: the 0 log 0 terms
    t[1, 2] = 0.0  # a whole channel without target: loss and gradient 0
    use = lambda x: js_divergence(x, t)  # noqa: E731
    assert torch.autograd.gradcheck(use, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_hand_computed_values(monkeypatch, backend):
    """Identical distributions give 0; disjoint ones give log 2 (the maximum, in nats); a
    half-overlap p = (1/2, 1/2, 0), q = (1, 0, 0) gives 1/2 (1/2 log(2/3) + 1/2 log 2) + 1/2 log(4/3)."""
    use_backend(monkeypatch, backend)
    target = torch.tensor([0.2, 0.3, 0.5, 0.0]).view(1, 1, 2, 2)
    same = js_divergence(torch.log(torch.tensor([0.2, 0.3, 0.5, 1e-30])).view(1, 1, 2, 2), target)
    assert abs(same.item()) < 1e-6
    one_hot = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    disjoint = js_divergence(torch.tensor([0.0, -200.0, -200.0, -200.0]).view(1, 1, 2, 2), one_hot)
    assert disjoint.item() == pytest.approx(math.log(2), abs=1e-6)
    half = js_divergence(torch.tensor([0.0, 0.0, -200.0, -200.0]).view(1, 1, 2, 2),
                         torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2))
    expected = 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2)) + 0.5 * math.log(4 / 3)
    assert half.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_zero_target_channel_gives_zero_loss_and_gradient(monkeypatch, poisoned, backend):  # noqa: F811
    use_backend(monkeypatch, backend)
    logits, target = random_inputs((2, 3, 6, 7), torch.float32, seed=5)
    target[1, 0] = 0.0
    x = logits.clone().requires_grad_(True)
    loss = js_divergence(x, target)
    loss.sum().backward()
    assert loss[1, 0].item() == 0.0 and (x.grad[1, 0] == 0).all()
    assert (loss[0] > 0).all() and (x.grad[0].abs().sum() > 0)


@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_extreme_logits_stay_finite(monkeypatch, backend):
    """p underflows to exactly 0 where the logits are far below the maximum: terms vanish."""
    use_backend(monkeypatch, backend)
    logits, target = random_inputs((1, 2, 9, 11), torch.float32, seed=6)
    logits[0, 0, :4] = -1e4
    logits[0, 1, 0, 0] = 1e4
    target[0, 1, 0, 0] = 0.0
    x = logits.clone().requires_grad_(True)
    loss = js_divergence(x, target)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
    np.testing.assert_allclose(loss.detach().numpy(), brute_force_js(logits, target), atol=2e-6, rtol=0)


@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_weight_scales_loss_and_gradient_and_target_gets_none(monkeypatch, backend):
    use_backend(monkeypatch, backend)
    logits, target = random_inputs((2, 3, 8, 8), torch.float32, seed=7)
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])
    x = logits.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    loss = js_divergence(x, t, weight)
    loss.sum().backward()
    plain = torch.from_numpy(brute_force_js(logits, target)).float()
    torch.testing.assert_close(loss, plain * weight, atol=2e-6, rtol=0)
    torch.testing.assert_close(x.grad, brute_force_grad(logits, target, weight).float(), atol=1e-6, rtol=0)
    assert (x.grad[0, 1] == 0).all() and t.grad is None


def test_triton_and_cpu_agree_forward_only(poisoned):  # noqa: F811
    logits, target = random_inputs((3, 2, 13, 17), torch.float32, seed=8)
    loss_t, _ = js_forward_triton(logits, target)
    loss_r, grad_r = js_forward_cpu(logits, target, need_grad=False)
    assert grad_r is None
    torch.testing.assert_close(loss_t, loss_r, atol=1e-6, rtol=0)


def test_bad_inputs_raise_param_error():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ParamError, match="target"):
        js_divergence(x, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ParamError, match="logits"):
        js_divergence(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ParamError, match="weight"):
        js_divergence(x, torch.ones(2, 3, 4, 4), torch.ones(3, 2))
    with pytest.raises(ParamError, match="logits"):
        js_divergence(x.long(), torch.ones(2, 3, 4, 4))


def test_dispatch(monkeypatch):
    from spanlib.ops import backend_for

    cpu = torch.zeros(1)
    monkeypatch.delenv("SPANLIB_OPS", raising=False)
    assert backend_for(cpu) == "cpu"
    monkeypatch.setenv("SPANLIB_OPS", "reference")  # the CPU path's former name
    assert backend_for(cpu) == "cpu"
    monkeypatch.setenv("SPANLIB_OPS", "triton")
    assert backend_for(cpu) == "triton"  # TRITON_INTERPRET=1 in the tests (conftest)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ParamError, match="TRITON_INTERPRET"):
        backend_for(cpu)
    monkeypatch.setenv("SPANLIB_OPS", "cuda")
    with pytest.raises(ParamError, match="SPANLIB_OPS"):
        backend_for(cpu)


# ---------------------------------------------------------------------------------------------
# grad_output and weight folded into one backward pass (issue 25)


def weighted_reference64(logits, target, weight, grad_output):
    """float64 (loss = w JS, dL/dlogits, dL/dw) for L = sum(g w JS), by autograd through the
    textbook formula: independent of both implementations."""
    x = logits.detach().double().requires_grad_(True)
    w = weight.detach().double().requires_grad_(True)
    from spanlib.ops.textbook import js_divergence as textbook_js

    loss = textbook_js(x, target.double()) * w
    (loss * grad_output.double()).sum().backward()
    return loss.detach(), x.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("looped", [False, True])
@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_weight_and_grad_output_gradients_match_float64(monkeypatch, poisoned, backend, looped, dtype):  # noqa: F811
    """Random grad_output and weight (weight requiring grad, one weight 0, one channel without
    target): the loss, dL/dlogits and dL/dweight against float64 autograd. ``looped`` lowers the
    Triton kernels' block sizes so 9x11 maps take the looped forward and tiled backward."""
    use_backend(monkeypatch, backend)
    if looped:
        monkeypatch.setattr(jsd_triton, "MAX_SINGLE_BLOCK", 64)
        monkeypatch.setattr(jsd_triton, "LOOP_BLOCK", 32)
    logits, target = random_inputs((2, 3, 9, 11), dtype, seed=11)
    target[0, 2] = 0.0
    g = torch.Generator().manual_seed(12)
    weight = torch.rand(2, 3, generator=g) * 2
    weight[1, 1] = 0.0
    grad_output = torch.randn(2, 3, generator=g)
    x = logits.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = js_divergence(x, target, w)
    (loss * grad_output).sum().backward()
    ref_loss, ref_gx, ref_gw = weighted_reference64(logits, target, weight, grad_output)
    torch.testing.assert_close(loss.detach().double(), ref_loss, rtol=0, atol=LOSS_ATOL[dtype] * 2)
    assert x.grad.dtype == dtype and w.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad.double(), ref_gx, rtol=0, atol=GRAD_RTOL[dtype] * ref_gx.abs().max().item())
    torch.testing.assert_close(w.grad.double(), ref_gw, rtol=0, atol=1e-5)
    assert (x.grad[0, 2] == 0).all() and (x.grad[1, 1] == 0).all()


def test_triton_weight_is_inside_the_op_and_no_gradient_is_saved():
    """One autograd node for weight * JS, and nothing n-sized saved for backward beyond the inputs
    themselves (the old forward saved a full-size gradient and multiplied the weight after)."""
    logits, target = random_inputs((2, 3, 8, 8), torch.float32, seed=13)
    x = logits.clone().requires_grad_(True)
    loss = jsd_triton.js_divergence_triton(x, target, torch.ones(2, 3))
    assert type(loss.grad_fn).__name__.startswith("JSDivergenceTriton")
    inputs = {x.data_ptr(), target.data_ptr()}
    big = [t for t in loss.grad_fn.saved_tensors if t is not None and t.numel() >= x.numel()]
    assert big and all(t.data_ptr() in inputs for t in big)


def test_triton_no_grad_forward_and_expanded_grad_output(poisoned):  # noqa: F811
    """Under no_grad the forward gives the same loss; ``loss.sum().backward()`` hands backward an
    expanded (stride 0) grad_output, which the kernel reads through its strides."""
    logits, target = random_inputs((2, 3, 7, 5), torch.float32, seed=14)
    with torch.no_grad():
        plain = jsd_triton.js_divergence_triton(logits, target)
    np.testing.assert_allclose(plain.numpy(), brute_force_js(logits, target), atol=2e-6, rtol=0)
    x = logits.clone().requires_grad_(True)
    jsd_triton.js_divergence_triton(x, target).sum().backward()
    expected = brute_force_grad(logits, target, torch.ones(2, 3))
    torch.testing.assert_close(x.grad.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    # a transposed (non-contiguous) grad_output and weight
    g = torch.randn(3, 2, generator=torch.Generator().manual_seed(15))
    w = torch.rand(3, 2, generator=torch.Generator().manual_seed(16))
    x.grad = None
    (jsd_triton.js_divergence_triton(x, target, w.t()) * g.t()).sum().backward()
    expected = brute_force_grad(logits, target, g.t() * w.t())
    torch.testing.assert_close(x.grad.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def test_triton_num_warps_argument_changes_nothing_but_speed():
    logits, target = random_inputs((1, 2, 6, 6), torch.float32, seed=17)
    grad_output = torch.tensor([[1.0, -2.0]])
    outs = []
    for warps in (None, 1, 8):
        x = logits.clone().requires_grad_(True)
        (jsd_triton.js_divergence_triton(x, target, num_warps=warps) * grad_output).sum().backward()
        outs.append(x.grad)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=0)
