"""Jensen-Shannon divergence (eq. 15): the fused Triton kernel, the CUDA path.

Maths (see jsd_cpu.py for the derivation). Per channel, n = H*W:
    p = softmax(x), q = t / sum(t), s = p + q
    a_i = 1/2 p_i log(2 p_i / s_i)   (0 where p_i = 0)     A = sum_i a_i = 1/2 KL(p || m)
    b_i = 1/2 q_i log(2 q_i / s_i)   (0 where q_i = 0)
    JS = A + sum_i b_i
    dJS/dx_i = a_i - p_i A
A channel whose target sums to <= 0 gets JS = 0 and a zero gradient.

One program per channel (row of n values), fp32 accumulation whatever the input dtype:
- rows up to MAX_SINGLE_BLOCK values (all training sizes: 64x64, 128x128) are held in registers:
  logits and target are read from memory once, the loss and the gradient written once. That is
  the floor: read 2 n elements, write n elements (+ one float per channel).
- longer rows loop over BLOCK-sized tiles: pass 1 online max / sum-of-exp and sum of the target,
  pass 2 the loss terms with a = p g written to the gradient buffer, pass 3 gradient = a - p A.
The gradient is kept for backward, which only scales it by grad_output (one more read + write).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_SINGLE_BLOCK = 16384
LOOP_BLOCK = 4096


@triton.jit
def _js_terms(x, t, row_max, inv_z, inv_tsum):
    """p, a = 1/2 p log(2p/s), b = 1/2 q log(2q/s) for one tile (fp32)."""
    p = tl.exp(x - row_max) * inv_z
    q = t * inv_tsum
    s = tl.maximum(p + q, 1.1754943508222875e-38)  # smallest normal fp32: p = q = 0 stays finite
    # log of 1 where the factor in front is 0, so that 0 log 0 = 0 without a NaN in between
    a = 0.5 * p * tl.log(tl.where(p > 0, 2.0 * p / s, 1.0))
    b = 0.5 * q * tl.log(tl.where(q > 0, 2.0 * q / s, 1.0))
    return p, a, b


@triton.jit
def _jsd_forward_kernel(
    x_ptr, t_ptr, grad_ptr, loss_ptr, n,
    BLOCK: tl.constexpr, SINGLE: tl.constexpr, WRITE_GRAD: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * n
    t_row = t_ptr + row * n
    g_row = grad_ptr + row * n
    offs = tl.arange(0, BLOCK)
    if SINGLE:
        mask = offs < n
        x = tl.load(x_row + offs, mask=mask, other=float("-inf")).to(tl.float32)
        t = tl.load(t_row + offs, mask=mask, other=0.0).to(tl.float32)
        row_max = tl.max(x, axis=0)
        z = tl.sum(tl.where(mask, tl.exp(x - row_max), 0.0), axis=0)
        tsum = tl.sum(t, axis=0)
        valid = tsum > 0
        inv_tsum = tl.where(valid, 1.0 / tl.where(valid, tsum, 1.0), 0.0)
        p, a, b = _js_terms(x, t, row_max, 1.0 / z, inv_tsum)
        p = tl.where(mask, p, 0.0)
        half_kl_p = tl.sum(a, axis=0)
        js = half_kl_p + tl.sum(b, axis=0)
        tl.store(loss_ptr + row, tl.where(valid, js, 0.0))
        if WRITE_GRAD:
            grad = tl.where(valid, a - p * half_kl_p, 0.0)
            tl.store(g_row + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)
    else:
        # pass 1: online softmax statistics and the target's sum
        row_max = float("-inf")
        z = 0.0
        tsum = 0.0
        for start in range(0, n, BLOCK):
            mask = start + offs < n
            x = tl.load(x_row + start + offs, mask=mask, other=float("-inf")).to(tl.float32)
            t = tl.load(t_row + start + offs, mask=mask, other=0.0).to(tl.float32)
            new_max = tl.maximum(row_max, tl.max(x, axis=0))
            z = z * tl.exp(row_max - new_max) + tl.sum(tl.where(mask, tl.exp(x - new_max), 0.0), axis=0)
            row_max = new_max
            tsum += tl.sum(t, axis=0)
        valid = tsum > 0
        inv_tsum = tl.where(valid, 1.0 / tl.where(valid, tsum, 1.0), 0.0)
        inv_z = 1.0 / z
        # pass 2: loss terms; a = p g goes to the gradient buffer
        half_kl_p = 0.0
        js = 0.0
        for start in range(0, n, BLOCK):
            mask = start + offs < n
            x = tl.load(x_row + start + offs, mask=mask, other=float("-inf")).to(tl.float32)
            t = tl.load(t_row + start + offs, mask=mask, other=0.0).to(tl.float32)
            p, a, b = _js_terms(x, t, row_max, inv_z, inv_tsum)
            half_kl_p += tl.sum(a, axis=0)
            js += tl.sum(a, axis=0) + tl.sum(b, axis=0)
            if WRITE_GRAD:
                tl.store(g_row + start + offs, a, mask=mask)  # fp32 buffer in this path
        tl.store(loss_ptr + row, tl.where(valid, js, 0.0))
        # pass 3: gradient = a - p A
        if WRITE_GRAD:
            for start in range(0, n, BLOCK):
                mask = start + offs < n
                x = tl.load(x_row + start + offs, mask=mask, other=float("-inf")).to(tl.float32)
                a = tl.load(g_row + start + offs, mask=mask, other=0.0)
                p = tl.exp(x - row_max) * inv_z
                grad = tl.where(valid, a - p * half_kl_p, 0.0)
                tl.store(g_row + start + offs, grad, mask=mask)


@triton.jit
def _scale_rows_kernel(grad_ptr, scale_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out[row, :] = grad[row, :] * scale[row], computed in fp32 and rounded once."""
    row = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    scale = tl.load(scale_ptr + row).to(tl.float32)
    g = tl.load(grad_ptr + row * n + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * n + offs, (g * scale).to(out_ptr.dtype.element_ty), mask=mask)


def _warps(block: int) -> int:
    return 4 if block <= 2048 else 8 if block <= 8192 else 16


def js_forward_triton(
    logits: torch.Tensor,
    target: torch.Tensor,
    need_grad: bool,
    max_single_block: int = MAX_SINGLE_BLOCK,
    loop_block: int = LOOP_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(JS (B, K) float32, dJS/dlogits (B, K, H, W) or None). The block sizes are exposed so that
    tests can drive the looped path on small maps."""
    b, k, h, w = logits.shape
    n = h * w
    x = logits.contiguous()
    t = target.contiguous()
    loss = torch.empty(b, k, dtype=torch.float32, device=logits.device)
    single = triton.next_power_of_2(n) <= max_single_block
    block = triton.next_power_of_2(n) if single else loop_block
    if need_grad:
        # the looped path keeps a = p g between passes, so it needs an fp32 buffer
        grad_dtype = logits.dtype if single and logits.dtype != torch.float64 else torch.float32
        grad = torch.empty(b, k, h, w, dtype=grad_dtype, device=logits.device)
    else:
        grad = loss  # never written (WRITE_GRAD is False)
    _jsd_forward_kernel[(b * k,)](
        x, t, grad, loss, n, BLOCK=block, SINGLE=single, WRITE_GRAD=need_grad, num_warps=_warps(block)
    )
    return loss, (grad if need_grad else None)


def scale_rows(grad: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """grad (B, K, H, W) times scale (B, K) broadcast over the map, as ``dtype``."""
    b, k, h, w = grad.shape
    n = h * w
    out = torch.empty(b, k, h, w, dtype=dtype, device=grad.device)
    block = min(4096, triton.next_power_of_2(n))
    _scale_rows_kernel[(b * k, triton.cdiv(n, block))](
        grad, scale.contiguous(), out, n, BLOCK=block, num_warps=_warps(block)
    )
    return out


class JSDivergenceTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss, grad = js_forward_triton(logits, target, need_grad=logits.requires_grad)
        ctx.save_for_backward(grad if grad is not None else logits.new_empty(0))
        ctx.logits_dtype = logits.dtype
        return loss if logits.dtype != torch.float64 else loss.double()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return scale_rows(grad, grad_output.float(), ctx.logits_dtype), None


def js_divergence_triton(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return JSDivergenceTriton.apply(logits, target)
