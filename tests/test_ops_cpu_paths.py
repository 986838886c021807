"""The two CPU paths of each op, one by one: the C kernel (``native``) and the PyTorch fallback
(``torch``, what runs without a C compiler), against the float64 textbook references of
``spanlib.ops.textbook`` over odd shapes, dtypes, zero-target channels and all-zero maps, with
every ``torch.empty`` poisoned (NaN) so an unwritten output element fails. Also: the fallback is
taken when the build is impossible, and backward under retain_graph gives the same gradients
twice (the JS backward scales its saved gradient in place only when the graph is freed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ops_helpers import poisoned  # noqa: F401  (fixture)
from spanlib import ops
from spanlib.ops import bali_cpu, jsd_cpu, native
from spanlib.utils.errors import ParamError
from spanlib.ops.textbook import bali_reference64, js_reference64

SHAPES = [(2, 3, 37, 53), (1, 2, 1, 1), (3, 1, 5, 129), (2, 2, 64, 64)]
GRAD_RTOL = {torch.float32: 2e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2, torch.float16: 2e-3}
LOSS_ATOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.bfloat16: 2e-5, torch.float16: 2e-5}
COORD_ATOL = {torch.float32: 3e-5, torch.float64: 1e-10, torch.bfloat16: 1e-4, torch.float16: 1e-4}
needs_native = pytest.mark.skipif(jsd_cpu.cpu_path() != "native" or bali_cpu.cpu_path() != "native",
                                  reason=f"C kernels unavailable: {native.status('jsd')}")


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    """Runs the test on the C kernel, then on the fallback (the build made to fail)."""
    if request.param == "native":
        if jsd_cpu.cpu_path() != "native":
            pytest.skip(f"C kernels unavailable: {native.status('jsd')}")
    else:
        monkeypatch.setattr(native, "_LIBS", {"jsd": None, "bali": None, "bali_conv1x1": None})
    return request.param


def js_inputs(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g) * 3.0).to(dtype)
    target = (torch.rand(shape, generator=g) ** 4).to(dtype)
    target[..., 0, 0] = 0.0  # exact zeros in q
    if shape[0] > 1:
        target[1, 0] = 0.0  # a channel without a target: loss and gradient 0
    return logits, target


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_js_paths_match_float64_textbook(path, poisoned, shape, dtype):  # noqa: F811
    assert jsd_cpu.cpu_path(dtype) == ("native" if path == "native" and dtype in (torch.float32, torch.float64) else "torch")
    logits, target = js_inputs(shape, dtype, seed=sum(shape))
    grad_output = torch.randn(shape[:2], generator=torch.Generator().manual_seed(1))
    x = logits.clone().requires_grad_(True)
    loss = jsd_cpu.js_divergence_cpu(x, target)
    (loss * grad_output).sum().backward()
    ref, ref_grad = js_reference64(logits, target, grad_output)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    torch.testing.assert_close(loss.detach().double(), ref, rtol=0, atol=LOSS_ATOL[dtype])
    atol = GRAD_RTOL[dtype] * max(ref_grad.abs().max().item(), 1e-12)
    torch.testing.assert_close(x.grad.double(), ref_grad, rtol=0, atol=atol)
    if shape[0] > 1:
        assert loss[1, 0].item() == 0.0 and (x.grad[1, 0] == 0).all()


def test_js_native_and_fallback_agree_to_float32_rounding(poisoned, monkeypatch):  # noqa: F811
    """The C kernel replaced the PyTorch code as the CPU path: same values within fp32 rounding."""
    if jsd_cpu.cpu_path() != "native":
        pytest.skip(f"C kernels unavailable: {native.status('jsd')}")
    logits, target = js_inputs((4, 5, 33, 31), torch.float32, seed=3)
    loss_n, grad_n = jsd_cpu.js_forward_cpu(logits, target, need_grad=True)
    monkeypatch.setattr(native, "_LIBS", {"jsd": None})
    loss_t, grad_t = jsd_cpu.js_forward_cpu(logits, target, need_grad=True)
    torch.testing.assert_close(loss_n, loss_t, rtol=0, atol=1e-6)
    # the tests' float32 gradient tolerance (1e-5 of the largest entry): a - p A cancels
    torch.testing.assert_close(grad_n, grad_t, rtol=0, atol=1e-5 * grad_t.abs().max().item())


def test_js_retain_graph_backward_twice_gives_the_same_gradient(path):
    logits, target = js_inputs((2, 3, 9, 10), torch.float32, seed=4)
    x = logits.clone().requires_grad_(True)
    loss = (jsd_cpu.js_divergence_cpu(x, target) * torch.tensor([[1.0, 2.0, 3.0]])).sum()
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    loss.backward()
    torch.testing.assert_close(x.grad, first, rtol=0, atol=0)
    _, ref_grad = js_reference64(logits, target, torch.tensor([[1.0, 2.0, 3.0]]).expand(2, 3))
    torch.testing.assert_close(first.double(), ref_grad, rtol=0, atol=1e-6)


def bali_inputs(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    heatmap = torch.rand(shape, generator=g) ** 3
    heatmap[0, 0] = 0.0  # all-zero map: argmax pixel centre, zero gradients
    if shape[2] > 2 and shape[3] > 2:
        heatmap[-1, -1, -1, -1] = 5.0  # a peak in the last corner: clipped window
    return heatmap.to(dtype), *(torch.randn(shape, generator=g).to(dtype) for _ in range(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape,radius", [((2, 3, 37, 53), 3), ((1, 2, 1, 1), 5), ((3, 1, 5, 129), 0),
                                          ((2, 4, 64, 64), 5), ((2, 2, 130, 129), 5)])
def test_bali_paths_match_float64_textbook(path, poisoned, shape, radius, dtype):  # noqa: F811
    assert bali_cpu.cpu_path(dtype) == ("native" if path == "native" and dtype != torch.bfloat16 else "torch")
    maps = bali_inputs(shape, dtype, seed=sum(shape) + radius)
    grad_output = torch.randn(*shape[:2], 2, generator=torch.Generator().manual_seed(2))
    leaves = [m.clone().requires_grad_(True) for m in maps]
    out = bali_cpu.bali_decode_cpu(*leaves, radius)
    out.backward(grad_output)
    ref, *ref_grads = bali_reference64(*maps, radius, grad_output)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(out.detach().double(), ref, rtol=0, atol=COORD_ATOL[dtype])
    assert out[0, 0].tolist() == [0.5, 0.5]
    for leaf, expected in zip(leaves, ref_grads):
        assert leaf.grad.dtype == dtype and torch.isfinite(leaf.grad).all()
        assert (leaf.grad[0, 0] == 0).all()
        atol = GRAD_RTOL[dtype] * max(expected.abs().max().item(), 1.0)
        torch.testing.assert_close(leaf.grad.double(), expected, rtol=0, atol=atol)


def _window_sum64(heatmap, radius):
    """The clipped window's total weight around each map's first argmax, a float64 loop."""
    maps = heatmap.double().numpy()
    b, k, h, w = maps.shape
    out = np.zeros((b, k))
    for i in range(b):
        for c in range(k):
            r0, c0 = divmod(int(np.argmax(maps[i, c])), w)  # numpy: the first maximum, row-major
            out[i, c] = maps[i, c, max(0, r0 - radius):r0 + radius + 1, max(0, c0 - radius):c0 + radius + 1].sum()
    return torch.from_numpy(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape,radius", [((2, 3, 37, 53), 3), ((1, 2, 1, 1), 5), ((3, 1, 5, 129), 0),
                                          ((2, 4, 64, 64), 5)])
def test_bali_decode_and_sum_matches_the_decode_and_a_float64_window_sum(path, poisoned, shape, radius, dtype):  # noqa: F811
    """The inference entry: the points of ``bali_decode`` and the window's total weight (the
    kernel's own denominator on the C path; ``window_sum_torch`` on the fallback), no gradient."""
    maps = bali_inputs(shape, dtype, seed=sum(shape) + radius)
    points, total = bali_cpu.bali_decode_and_sum_cpu(*maps, radius)
    ref = bali_reference64(*maps, radius, torch.ones(*shape[:2], 2))[0]
    torch.testing.assert_close(points.double(), ref, rtol=0, atol=COORD_ATOL[dtype])
    torch.testing.assert_close(total.double(), _window_sum64(maps[0], radius), rtol=1e-6 if dtype != torch.bfloat16 else 1e-2,
                               atol=1e-6)
    assert total[0, 0] == 0 and points[0, 0].tolist() == [0.5, 0.5]  # the all-zero map
    assert not points.requires_grad and not total.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,channels,radius", [((2, 3, 37, 53), 5, 3), ((1, 2, 1, 1), 3, 5),
                                                   ((3, 4, 16, 16), 8, 0), ((2, 68, 32, 32), 16, 3)])
def test_bali_decode_conv1x1_matches_the_full_convolution_and_textbook(path, poisoned, shape, channels, radius, dtype):  # noqa: F811
    """Fields as a 1x1 convolution of features, computed at the windows only: the points of the
    float64 textbook on the full convolution's fields, and the float64 window sum, per image of
    the batch (the features of image b feed the maps of image b), on the C kernel and the fallback."""
    b, k, h, w = shape
    g = torch.Generator().manual_seed(sum(shape) + channels)
    heatmap = bali_inputs(shape, dtype, seed=sum(shape))[0]
    features = torch.randn(b, channels, h, w, generator=g).to(dtype)
    weight = (torch.randn(2 * k, channels, generator=g) * 0.3).to(dtype)
    bias = torch.randn(2 * k, generator=g).to(dtype)
    full = torch.nn.functional.conv2d(features.double(), weight.double()[:, :, None, None], bias.double())
    fields = full.view(b, 2, k, h, w)
    assert (bali_cpu._conv1x1_library() is not None) == (path == "native")
    points, total = ops.bali_decode_conv1x1(heatmap, features, weight, bias, radius)
    ref = bali_reference64(heatmap, fields[:, 0], fields[:, 1], radius, torch.ones(b, k, 2))[0]
    torch.testing.assert_close(points.double(), ref, rtol=0, atol=COORD_ATOL[dtype] * 10)
    torch.testing.assert_close(total.double(), _window_sum64(heatmap, radius), rtol=1e-6, atol=1e-6)
    assert points[0, 0].tolist() == [0.5, 0.5] and total[0, 0] == 0  # the all-zero map


def test_bali_decode_conv1x1_checks_its_shapes():
    heatmap = torch.rand(1, 2, 4, 4)
    with pytest.raises(ParamError, match="features"):
        ops.bali_decode_conv1x1(heatmap, torch.rand(1, 3, 4, 5), torch.rand(4, 3), torch.rand(4), 1)
    with pytest.raises(ParamError, match="weight, bias"):
        ops.bali_decode_conv1x1(heatmap, torch.rand(1, 3, 4, 4), torch.rand(2, 3), torch.rand(2), 1)


def test_bali_mixed_dtypes_take_the_fallback():
    assert bali_cpu.cpu_path(torch.float32, torch.float64, torch.float32) == "torch"
    maps = bali_inputs((1, 2, 6, 7), torch.float32, seed=5)
    out = bali_cpu.bali_decode_cpu(maps[0], maps[1].double(), maps[2], 2)
    torch.testing.assert_close(out.double(), bali_reference64(*maps, 2, torch.ones(1, 2, 2))[0], rtol=0, atol=1e-5)


@needs_native
def test_bali_only_requested_gradients_and_large_maps_use_zero_pages():
    """A gradient of 2 MiB or more comes from untouched zero pages: exact zeros off the window."""
    maps = bali_inputs((4, 8, 128, 128), torch.float32, seed=6)
    h = maps[0].clone().requires_grad_(True)
    bali_cpu.bali_decode_cpu(h, maps[1], maps[2], 2).sum().backward()
    _, ref_h, _, _ = bali_reference64(*maps, 2, torch.ones(4, 8, 2))
    torch.testing.assert_close(h.grad.double(), ref_h, rtol=0, atol=1e-5)
    assert (h.grad.double() != 0).sum() <= 4 * 8 * 25 and (h.grad.double()[ref_h == 0] == 0).all()


def test_native_zeros_are_zeros():
    for shape in [(3, 4), (2, 64, 128, 64)]:  # small: torch.zeros; large: anonymous pages
        z = native.zeros(shape, torch.float32)
        assert z.shape == shape and z.dtype == torch.float32 and (z == 0).all()
        z[0] = 1.0  # writable
        assert z.sum().item() == z[0].numel()


def test_load_without_compiler_falls_back_and_says_why(monkeypatch):
    monkeypatch.setattr(native, "_LIBS", {})
    monkeypatch.setattr(native, "_STATUS", {})
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert native.load("jsd", jsd_cpu.SOURCE) is None
    assert "no C compiler" in native.status("jsd")
    assert jsd_cpu.cpu_path(torch.float32) == "torch"
    logits, target = js_inputs((2, 3, 8, 9), torch.float32, seed=7)
    torch.testing.assert_close(jsd_cpu.js_divergence_cpu(logits, target).double(),
                               js_reference64(logits, target, torch.ones(2, 3))[0], rtol=0, atol=2e-6)


def test_build_failure_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_LIBS", {})
    monkeypatch.setattr(native, "_STATUS", {})
    monkeypatch.setenv("SPANLIB_CACHE", str(tmp_path))
    assert native.load("broken", "this is not C;") is None
    assert native.status("broken").startswith("build failed")
