"""spanlib.ops.bali_decode (eq. 5): the Triton kernels (interpreted here) and the CPU path against
float64 references (the textbook masked formula, ``spanlib.ops.textbook.bali_reference64``,
with autograd; and explicit window slices with numpy's argmax, written here independently of
both) and hand-computed values.

Tolerances (absolute, in map pixels for coordinates): float32 inputs 2e-5 for coordinates,
1e-5 for gradients; bfloat16 / float16 inputs are compared with the brute force on the same
rounded inputs: coordinates 1e-4 (fp32 accumulation), gradients 1e-2 x (largest entry) for bf16
and 2e-3 x for fp16 (the stored gradient is rounded to the input dtype).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ops_helpers import poisoned, use_backend  # noqa: F401  (fixture)
from spanlib.utils.errors import ParamError
from spanlib.ops import bali_decode
from spanlib.ops.bali_triton import bali_forward_triton
from spanlib.ops.textbook import bali_reference64

GRAD_RTOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
COORD_ATOL = {torch.float32: 2e-5, torch.bfloat16: 1e-4, torch.float16: 1e-4}
BACKENDS = ["triton", "cpu"]


def brute_force(heatmap, offset_x, offset_y, radius):
    """float64, channel by channel: slice the clipped window around the first maximum."""
    b, k, h, w = heatmap.shape
    out = []
    for bi in range(b):
        for ki in range(k):
            hm = heatmap[bi, ki]
            flat_idx = int(np.argmax(hm.detach().flatten().numpy()))  # numpy: first maximum
            i0, j0 = divmod(flat_idx, w)
            r0, r1 = max(0, i0 - radius), min(h, i0 + radius + 1)
            c0, c1 = max(0, j0 - radius), min(w, j0 + radius + 1)
            win = hm[r0:r1, c0:c1]
            cols = torch.arange(c0, c1, dtype=torch.float64) + 0.5
            rows = torch.arange(r0, r1, dtype=torch.float64) + 0.5
            total = win.sum()
            if total.item() == 0:
                out.append(torch.stack([torch.tensor(j0 + 0.5), torch.tensor(i0 + 0.5)]).double())
                continue
            x = (win * (offset_x[bi, ki, r0:r1, c0:c1] + cols[None, :])).sum() / total
            y = (win * (offset_y[bi, ki, r0:r1, c0:c1] + rows[:, None])).sum() / total
            out.append(torch.stack([x, y]))
    return torch.stack(out).view(b, k, 2)


def brute_force_with_grads(heatmap, offset_x, offset_y, radius, grad_output):
    """Values from the window slices above, gradients from the shared textbook reference; the two
    references must agree on the values too."""
    out = brute_force(*(t.double() for t in (heatmap, offset_x, offset_y)), radius)
    ref, *grads = bali_reference64(heatmap, offset_x, offset_y, radius, grad_output)
    torch.testing.assert_close(ref, out, rtol=0, atol=1e-9)
    return out, grads


def random_maps(shape, dtype, seed, peaks=()):
    """Positive random weights (never zero); each (b, k, i, j) in ``peaks`` becomes its map's max."""
    g = torch.Generator().manual_seed(seed)
    heatmap = torch.rand(shape, generator=g) * 0.5 + 0.01
    for bi, ki, i, j in peaks:
        heatmap[bi, ki, i, j] = 2.0
    offset_x = torch.randn(shape, generator=g)
    offset_y = torch.randn(shape, generator=g)
    return heatmap.to(dtype), offset_x.to(dtype), offset_y.to(dtype)


def run(heatmap, offset_x, offset_y, radius, grad_output):
    leaves = [t.clone().requires_grad_(True) for t in (heatmap, offset_x, offset_y)]
    out = bali_decode(*leaves, radius)
    out.backward(grad_output)
    return out.detach(), [leaf.grad for leaf in leaves]


def assert_matches(got, expected, dtype):
    out, grads = got
    exp_out, exp_grads = expected
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), exp_out, rtol=0, atol=COORD_ATOL[dtype])
    for g, e in zip(grads, exp_grads):
        assert g.dtype == dtype and torch.isfinite(g).all()
        atol = GRAD_RTOL[dtype] * max(e.abs().max().item(), 1.0)
        torch.testing.assert_close(g.double(), e, rtol=0, atol=atol)


def border_peaks(h, w, k):
    """Peaks at the four corners, the middle of each border and the interior (one per channel)."""
    spots = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (0, w // 2), (h // 2, 0),
             (h - 1, w // 3), (h // 3, w - 1), (1, 2), (h // 2, w // 2)]
    return [(ki // k, ki % k, *spots[ki % len(spots)]) for ki in range(2 * k)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("size,radius", [((64, 64), 5), ((128, 128), 3), ((37, 53), 3), ((6, 4), 5)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_public_op_matches_brute_force(monkeypatch, poisoned, backend, size, radius, dtype):  # noqa: F811
    use_backend(monkeypatch, backend)
    k = 5
    maps = random_maps((2, k, *size), dtype, seed=size[0] + radius, peaks=border_peaks(*size, k))
    grad_output = torch.randn(2, k, 2, generator=torch.Generator().manual_seed(1))
    got = run(*maps, radius, grad_output)
    assert_matches(got, brute_force_with_grads(*maps, radius, grad_output), dtype)


def test_triton_multi_tile_argmax_keeps_the_first_maximum(poisoned):  # noqa: F811
    """Argmax over several tiles: a maximum in a later tile wins, a tie keeps the earlier one."""
    heatmap, offset_x, offset_y = random_maps((1, 3, 9, 10), torch.float32, seed=2)
    heatmap[0, 0, 7, 3] = 3.0  # in the last 16-element tile
    heatmap[0, 1, 1, 2] = 3.0  # tie across tiles: (1, 2) comes first
    heatmap[0, 1, 6, 8] = 3.0
    heatmap[0, 2, 4, 4] = 3.0  # tie inside one tile: (4, 4) before (4, 6)
    heatmap[0, 2, 4, 6] = 3.0
    out, argmax, _ = bali_forward_triton(heatmap, offset_x, offset_y, 2, loop_block=16)
    assert argmax.tolist() == [73, 12, 44]
    torch.testing.assert_close(out.double(), brute_force(heatmap.double(), offset_x.double(),
                                                         offset_y.double(), 2), atol=2e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_window(monkeypatch, backend):
    """w(2,2) = 2, w(2,3) = 1, zero elsewhere, r = 1, no offsets:
    x = (2 * 2.5 + 1 * 3.5) / 3 = 17/6, y = 2.5; with offset_x = 0.3 everywhere x moves by 0.3."""
    use_backend(monkeypatch, backend)
    heatmap = torch.zeros(1, 1, 5, 5)
    heatmap[0, 0, 2, 2], heatmap[0, 0, 2, 3] = 2.0, 1.0
    zeros = torch.zeros_like(heatmap)
    out = bali_decode(heatmap, zeros, zeros, 1)
    torch.testing.assert_close(out, torch.tensor([[[17 / 6, 2.5]]]))
    out = bali_decode(heatmap, zeros + 0.3, zeros - 0.2, 1)
    torch.testing.assert_close(out, torch.tensor([[[17 / 6 + 0.3, 2.3]]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_map_returns_argmax_pixel_centre_with_zero_gradient(monkeypatch, poisoned, backend):  # noqa: F811
    use_backend(monkeypatch, backend)
    heatmap, offset_x, offset_y = random_maps((1, 2, 7, 6), torch.float32, seed=3)
    heatmap[0, 1] = 0.0
    out, grads = run(heatmap, offset_x, offset_y, 2, torch.ones(1, 2, 2))
    assert out[0, 1].tolist() == [0.5, 0.5]
    for g in grads:
        assert (g[0, 1] == 0).all() and g[0, 0].abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_flat_map_uses_the_top_left_corner_window(monkeypatch, backend):
    """All weights equal: argmax is pixel (0, 0) (first index), the window is clipped to the
    3 x 3 corner for r = 2 and the result is the mean pixel centre there: (1.5, 1.5)."""
    use_backend(monkeypatch, backend)
    heatmap = torch.full((1, 1, 8, 8), 0.25)
    zeros = torch.zeros_like(heatmap)
    torch.testing.assert_close(bali_decode(heatmap, zeros, zeros, 2), torch.tensor([[[1.5, 1.5]]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_pick_the_first_maximum_in_row_major_order(monkeypatch, backend):
    use_backend(monkeypatch, backend)
    heatmap = torch.zeros(1, 2, 9, 9)
    heatmap[0, 0, 6, 1] = heatmap[0, 0, 2, 7] = 1.0  # (2, 7) comes first in row-major order
    heatmap[0, 1, 4, 2] = heatmap[0, 1, 4, 8] = 1.0  # same row: the smaller column
    zeros = torch.zeros_like(heatmap)
    out = bali_decode(heatmap, zeros, zeros, 1)
    torch.testing.assert_close(out, torch.tensor([[[7.5, 2.5], [2.5, 4.5]]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_zero_reads_the_argmax_pixel_only(monkeypatch, backend):
    use_backend(monkeypatch, backend)
    heatmap, offset_x, offset_y = random_maps((1, 1, 5, 6), torch.float32, seed=4, peaks=[(0, 0, 3, 1)])
    out = bali_decode(heatmap, offset_x, offset_y, 0)
    expected = torch.stack([offset_x[0, 0, 3, 1] + 1.5, offset_y[0, 0, 3, 1] + 3.5])
    torch.testing.assert_close(out[0, 0], expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_with_exact_bali_fields(monkeypatch, backend):
    """With the eq. 2 fields o_x = x_k - (j + 0.5), o_y = y_k - (i + 0.5), every window pixel
    votes for the landmark, so any positive weights decode it exactly."""
    use_backend(monkeypatch, backend)
    h, w = 16, 20
    points = torch.tensor([[3.3, 4.7], [0.2, 15.9], [19.8, 0.1]])  # interior, corners
    jj = torch.arange(w) + 0.5
    ii = torch.arange(h) + 0.5
    offset_x = (points[:, 0, None, None] - jj[None, None, :]).expand(3, h, w)[None].contiguous()
    offset_y = (points[:, 1, None, None] - ii[None, :, None]).expand(3, h, w)[None].contiguous()
    d2 = (jj[None, None, :] - points[:, 0, None, None]) ** 2 + (ii[None, :, None] - points[:, 1, None, None]) ** 2
    heatmap = torch.exp(-d2 / 8.0)[None]
    out = bali_decode(heatmap, offset_x, offset_y, 3)
    torch.testing.assert_close(out[0], points, atol=1e-5, rtol=0)


def test_cpu_gradcheck_float64(monkeypatch):
    use_backend(monkeypatch, "cpu")
    maps = random_maps((2, 3, 7, 8), torch.float64, seed=5, peaks=[(0, 0, 0, 0), (1, 2, 6, 7), (0, 1, 3, 4)])
    leaves = [m.requires_grad_(True) for m in maps]
    assert torch.autograd.gradcheck(lambda h, a, b: bali_decode(h, a, b, 2), leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_requested_gradients(monkeypatch, backend):
    use_backend(monkeypatch, backend)
    heatmap, offset_x, offset_y = random_maps((1, 2, 6, 6), torch.float32, seed=6)
    h = heatmap.clone().requires_grad_(True)
    bali_decode(h, offset_x, offset_y, 2).sum().backward()
    _, expected = brute_force_with_grads(heatmap, offset_x, offset_y, 2, torch.ones(1, 2, 2))
    torch.testing.assert_close(h.grad.double(), expected[0], atol=1e-5, rtol=0)
    assert offset_x.grad is None


def test_bad_inputs_raise_param_error():
    h = torch.rand(1, 2, 4, 4)
    with pytest.raises(ParamError, match="radius"):
        bali_decode(h, h, h, -1)
    with pytest.raises(ParamError, match="radius"):
        bali_decode(h, h, h, 2.5)
    with pytest.raises(ParamError, match="offset_y"):
        bali_decode(h, h, h[:, :1], 2)
    with pytest.raises(ParamError, match="heatmap"):
        bali_decode(h[0], h[0], h[0], 2)


def test_triton_strided_grad_output_and_num_warps(poisoned):  # noqa: F811
    """Backward reads grad_output through its strides (no copy first): a permuted, non-contiguous
    grad_output gives the reference gradients; num_warps changes nothing but speed."""
    from spanlib.ops.bali_triton import bali_decode_triton

    maps = random_maps((2, 3, 7, 9), torch.float32, seed=9)
    grad_output = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(10)).permute(1, 2, 0)
    assert not grad_output.is_contiguous()
    _, expected = brute_force_with_grads(*maps, 2, grad_output)
    for warps in (None, 1, 8):
        leaves = [m.clone().requires_grad_(True) for m in maps]
        (bali_decode_triton(*leaves, 2, num_warps=warps) * grad_output).sum().backward()
        for got, ref in zip(leaves, expected):
            torch.testing.assert_close(got.grad.double(), ref, atol=1e-5, rtol=0)
