"""Windowed BALI soft-argmax (eq. 5): the fused Triton kernels, the CUDA path.

Maths (see bali_cpu.py for the derivation and the edge cases). Per channel:
    (i0, j0) = argmax w (first in row-major order),  Win = (2r+1)^2 window clipped at the borders
    S = sum_Win w,  x = sum_Win w (o_x + j + 0.5) / S,  y = sum_Win w (o_y + i + 0.5) / S
    S = 0 -> (x, y) = (j0 + 0.5, i0 + 0.5) and zero gradient
    dx/dw = (o_x + j + 0.5 - x) / S,  dy/dw = (o_y + i + 0.5 - y) / S,  dx/do_x = dy/do_y = w / S

Forward: one program per channel reads the heatmap once (running max and first index over tiles),
then only the (2r+1)^2 window of the three maps; it writes (x, y) and keeps (argmax, 1/S) for
backward. Floor: read n heatmap values + 3 windows, write 2 floats per channel.
Backward: programs over (channel, tile) write every element of the full-size gradients (zeros
outside the window), reading only window values. Floor: write up to 3 n values per channel.
Nothing else runs: grad_output is read through its strides (the expanded grad_output of
``out.sum()`` is not copied first), so a forward + backward is two launches and one pass over
the maps each; the dense zeros outside the windows are the only bytes beyond the floor's reads,
and autograd needs dense gradients. ``num_warps`` is exposed for the benchmark's sweep.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_SINGLE_BLOCK = 16384
LOOP_BLOCK = 4096


@triton.jit
def _bali_forward_kernel(
    h_ptr, ox_ptr, oy_ptr, out_ptr, argmax_ptr, inv_ptr, n, width, height, radius,
    BLOCK: tl.constexpr, WIN: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    h_row = h_ptr + row * n
    offs = tl.arange(0, BLOCK)
    # argmax: keep the first maximum, as torch.argmax (strictly greater replaces)
    best = float("-inf")
    best_idx = 0
    for start in range(0, n, BLOCK):
        mask = start + offs < n
        v = tl.load(h_row + start + offs, mask=mask, other=float("-inf")).to(tl.float32)
        tile_max = tl.max(v, axis=0)
        tile_idx = tl.min(tl.where(v == tile_max, start + offs, n), axis=0)  # first of the tile
        better = tile_max > best
        best_idx = tl.where(better, tile_idx, best_idx)
        best = tl.where(better, tile_max, best)
    i0 = best_idx // width
    j0 = best_idx - i0 * width
    d = tl.arange(0, WIN)
    rows = i0 - radius + d[:, None]
    cols = j0 - radius + d[None, :]
    inside = (d[:, None] <= 2 * radius) & (d[None, :] <= 2 * radius)
    inside = inside & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = rows * width + cols
    w = tl.load(h_row + index, mask=inside, other=0.0).to(tl.float32)
    ox = tl.load(ox_ptr + row * n + index, mask=inside, other=0.0).to(tl.float32)
    oy = tl.load(oy_ptr + row * n + index, mask=inside, other=0.0).to(tl.float32)
    total = tl.sum(tl.sum(w, axis=1), axis=0)
    sx = tl.sum(tl.sum(w * (ox + cols.to(tl.float32) + 0.5), axis=1), axis=0)
    sy = tl.sum(tl.sum(w * (oy + rows.to(tl.float32) + 0.5), axis=1), axis=0)
    positive = total > 0
    inv = tl.where(positive, 1.0 / tl.where(positive, total, 1.0), 0.0)
    x = tl.where(positive, sx * inv, j0.to(tl.float32) + 0.5)
    y = tl.where(positive, sy * inv, i0.to(tl.float32) + 0.5)
    tl.store(out_ptr + row * 2, x)
    tl.store(out_ptr + row * 2 + 1, y)
    tl.store(argmax_ptr + row, best_idx)
    tl.store(inv_ptr + row, inv)


@triton.jit
def _bali_backward_kernel(
    h_ptr, ox_ptr, oy_ptr, grad_out_ptr, out_ptr, argmax_ptr, inv_ptr,
    gh_ptr, gox_ptr, goy_ptr, n, width, radius, channels, go_stride_b, go_stride_k, go_stride_c,
    BLOCK: tl.constexpr, NEED_H: tl.constexpr, NEED_OX: tl.constexpr, NEED_OY: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    best_idx = tl.load(argmax_ptr + row)
    i0 = best_idx // width
    j0 = best_idx - i0 * width
    inv = tl.load(inv_ptr + row)
    go_row = grad_out_ptr + (row // channels) * go_stride_b + (row % channels) * go_stride_k
    gx = tl.load(go_row).to(tl.float32) * inv
    gy = tl.load(go_row + go_stride_c).to(tl.float32) * inv
    i = offs // width
    j = offs - i * width
    in_win = mask & (i >= i0 - radius) & (i <= i0 + radius) & (j >= j0 - radius) & (j <= j0 + radius)
    base = row * n + offs
    if NEED_H:
        x = tl.load(out_ptr + row * 2)
        y = tl.load(out_ptr + row * 2 + 1)
        ox = tl.load(ox_ptr + base, mask=in_win, other=0.0).to(tl.float32)
        oy = tl.load(oy_ptr + base, mask=in_win, other=0.0).to(tl.float32)
        gh = gx * (ox + j.to(tl.float32) + 0.5 - x) + gy * (oy + i.to(tl.float32) + 0.5 - y)
        tl.store(gh_ptr + base, tl.where(in_win, gh, 0.0).to(gh_ptr.dtype.element_ty), mask=mask)
    if NEED_OX or NEED_OY:
        w = tl.load(h_ptr + base, mask=in_win, other=0.0).to(tl.float32)
        if NEED_OX:
            tl.store(gox_ptr + base, (gx * w).to(gox_ptr.dtype.element_ty), mask=mask)
        if NEED_OY:
            tl.store(goy_ptr + base, (gy * w).to(goy_ptr.dtype.element_ty), mask=mask)


def _warps(block: int) -> int:
    return 4 if block <= 2048 else 8


def bali_forward_triton(heatmap, offset_x, offset_y, radius: int, loop_block: int = LOOP_BLOCK,
                        num_warps: int | None = None):
    """((B, K, 2) float32, argmax (B*K,) int32, 1/S (B*K,) float32); loop_block is exposed so
    that tests can drive the multi-tile argmax on small maps, num_warps (None: the heuristic) so
    that a benchmark can sweep it."""
    b, k, h, w = heatmap.shape
    n = h * w
    rows = b * k
    out = torch.empty(b, k, 2, dtype=torch.float32, device=heatmap.device)
    argmax = torch.empty(rows, dtype=torch.int32, device=heatmap.device)
    inv = torch.empty(rows, dtype=torch.float32, device=heatmap.device)
    block = min(loop_block, triton.next_power_of_2(n))
    _bali_forward_kernel[(rows,)](
        heatmap, offset_x, offset_y, out, argmax, inv, n, w, h, radius,
        BLOCK=block, WIN=triton.next_power_of_2(2 * radius + 1), num_warps=num_warps or _warps(block),
    )
    return out, argmax, inv


def bali_backward_triton(heatmap, offset_x, offset_y, radius, grad_output, out, argmax, inv, needs,
                         num_warps: int | None = None):
    b, k, h, w = heatmap.shape
    n = h * w
    block = min(LOOP_BLOCK, triton.next_power_of_2(n))
    grads = [torch.empty_like(t) if need else None for t, need in zip((heatmap, offset_x, offset_y), needs)]
    unused_ptr = out  # never written when the matching NEED_* flag is False
    _bali_backward_kernel[(b * k, triton.cdiv(n, block))](
        heatmap, offset_x, offset_y, grad_output, out, argmax, inv,
        *(g if g is not None else unused_ptr for g in grads), n, w, radius, k, *grad_output.stride(),
        BLOCK=block, NEED_H=needs[0], NEED_OX=needs[1], NEED_OY=needs[2], num_warps=num_warps or _warps(block),
    )
    return grads


class BaliDecodeTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heatmap, offset_x, offset_y, radius: int, num_warps: int | None):
        heatmap, offset_x, offset_y = (t.contiguous() for t in (heatmap, offset_x, offset_y))
        out, argmax, inv = bali_forward_triton(heatmap, offset_x, offset_y, radius, num_warps=num_warps)
        ctx.save_for_backward(heatmap, offset_x, offset_y, out, argmax, inv)
        ctx.radius = radius
        ctx.num_warps = num_warps
        return out if heatmap.dtype != torch.float64 else out.double()

    @staticmethod
    def backward(ctx, grad_output):
        heatmap, offset_x, offset_y, out, argmax, inv = ctx.saved_tensors
        grads = bali_backward_triton(
            heatmap, offset_x, offset_y, ctx.radius, grad_output, out, argmax, inv,
            tuple(bool(x) for x in ctx.needs_input_grad[:3]), num_warps=ctx.num_warps,
        )
        return grads[0], grads[1], grads[2], None, None


def bali_decode_triton(heatmap, offset_x, offset_y, radius: int, num_warps: int | None = None) -> torch.Tensor:
    """(B, K, 2) points (see ``spanlib.ops.bali_decode``); num_warps None: the heuristic."""
    return BaliDecodeTriton.apply(heatmap, offset_x, offset_y, radius, num_warps)
