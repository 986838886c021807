"""Jensen-Shannon divergence (eq. 15): the fused Triton kernels, the CUDA path.

Maths (see jsd_cpu.py for the derivation). Per channel (row) r of n = H*W values:
    p = softmax(x), q = t / sum(t), s = p + q
    a_i = 1/2 p_i log(2 p_i / s_i)   (0 where p_i = 0)     A = sum_i a_i = 1/2 KL(p || m)
    b_i = 1/2 q_i log(2 q_i / s_i)   (0 where q_i = 0)
    JS = A + sum_i b_i,   loss_r = w_r JS_r   (w: the optional per-channel weight, 1 without)
    dloss/dx_i = g_r w_r (a_i - p_i A)    (g_r = grad_output[r], one scalar per channel)
    dloss/dw_r = g_r JS_r
A channel whose target sums to <= 0 gets JS = 0 and a zero gradient.

Layering: kernels (forward, backward), their launchers (``js_forward_triton``,
``js_backward_triton``), the autograd Function, the wrapper ``js_divergence_triton``.

- Forward, one program per channel, fp32 accumulation whatever the input dtype: reads logits and
  target once (2 n) and writes only the loss and five floats of statistics per channel (row max,
  1/Z, 1/sum t, A, JS). No gradient is written or kept, so a no-grad forward costs 2 n and
  training keeps no n-sized buffer between forward and backward. Rows up to MAX_SINGLE_BLOCK
  values (every training size) are held in registers; longer rows take two passes (online max /
  sum of exp and sum of the target, then the loss terms).
- Backward, one program per (channel, tile): with the saved statistics the gradient of each
  element needs only its own logit and target, so one pass reads both (2 n) and writes
  g_r w_r (a_i - p_i A) in the logits' dtype (n), grad_output and the weight folded in: 5 n in
  all, every pass single, no host synchronisation (CUDA-graph friendly). grad_output and the
  weight are read through their strides, so the expanded grad_output of ``loss.sum()`` is not
  copied. A channel without target saves 1/Z = 0 and A = 0, so its p, a and gradient are 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_SINGLE_BLOCK = 16384
LOOP_BLOCK = 4096
N_STATS = 5  # per channel: row max, 1/Z, 1/sum(t), A, JS


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
def _per_channel(ptr, row, channels, stride_b, stride_k):
    """Element (row // K, row % K) of a (B, K) tensor with any strides, as fp32."""
    return tl.load(ptr + (row // channels) * stride_b + (row % channels) * stride_k).to(tl.float32)


@triton.jit
def _jsd_forward_kernel(
    x_ptr, t_ptr, w_ptr, loss_ptr, stats_ptr, n, channels, w_stride_b, w_stride_k,
    BLOCK: tl.constexpr, SINGLE: tl.constexpr, HAS_WEIGHT: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * n
    t_row = t_ptr + row * n
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
        inv_z = 1.0 / z
        p, a, b = _js_terms(x, t, row_max, inv_z, inv_tsum)  # masked lanes: p = q = 0, a = b = 0
        half_kl_p = tl.sum(a, axis=0)
        js = half_kl_p + tl.sum(b, axis=0)
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
        # pass 2: the loss terms
        half_kl_p = 0.0
        js = 0.0
        for start in range(0, n, BLOCK):
            mask = start + offs < n
            x = tl.load(x_row + start + offs, mask=mask, other=float("-inf")).to(tl.float32)
            t = tl.load(t_row + start + offs, mask=mask, other=0.0).to(tl.float32)
            p, a, b = _js_terms(x, t, row_max, inv_z, inv_tsum)
            half_kl_p += tl.sum(a, axis=0)
            js += tl.sum(a, axis=0) + tl.sum(b, axis=0)
    js = tl.where(valid, js, 0.0)
    loss = js
    if HAS_WEIGHT:
        loss = js * _per_channel(w_ptr, row, channels, w_stride_b, w_stride_k)
    tl.store(loss_ptr + row, loss)
    # 1/Z = 0 and A = 0 make backward's gradient of a channel without target exactly 0
    s_row = stats_ptr + row * 5
    tl.store(s_row, row_max)
    tl.store(s_row + 1, tl.where(valid, inv_z, 0.0))
    tl.store(s_row + 2, inv_tsum)
    tl.store(s_row + 3, tl.where(valid, half_kl_p, 0.0))
    tl.store(s_row + 4, js)


@triton.jit
def _jsd_backward_kernel(
    x_ptr, t_ptr, stats_ptr, go_ptr, w_ptr, grad_ptr, n, channels,
    go_stride_b, go_stride_k, w_stride_b, w_stride_k,
    BLOCK: tl.constexpr, HAS_WEIGHT: tl.constexpr,
):
    """grad[row, i] = g_r w_r (a_i - p_i A), from the logits, the target and the saved statistics."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    s_row = stats_ptr + row * 5
    row_max = tl.load(s_row)
    inv_z = tl.load(s_row + 1)
    inv_tsum = tl.load(s_row + 2)
    half_kl_p = tl.load(s_row + 3)
    scale = _per_channel(go_ptr, row, channels, go_stride_b, go_stride_k)
    if HAS_WEIGHT:
        scale = scale * _per_channel(w_ptr, row, channels, w_stride_b, w_stride_k)
    x = tl.load(x_ptr + row * n + offs, mask=mask, other=float("-inf")).to(tl.float32)
    t = tl.load(t_ptr + row * n + offs, mask=mask, other=0.0).to(tl.float32)
    p, a, b = _js_terms(x, t, row_max, inv_z, inv_tsum)  # b unused: the compiler drops it
    grad = (a - p * half_kl_p) * scale  # fp32, rounded once to the logits' dtype
    tl.store(grad_ptr + row * n + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _warps(block: int) -> int:
    """Default num_warps for a tile of ``block`` values (the benchmark's --sweep-warps checks it)."""
    return 4 if block <= 2048 else 8 if block <= 8192 else 16


def _strides(weight: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if weight is None else (weight.stride(0), weight.stride(1))


def js_forward_triton(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    max_single_block: int | None = None,
    loop_block: int | None = None,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss = weight * JS (B, K) float32, statistics (B*K, N_STATS) float32 for backward).
    The block sizes are exposed so that tests can drive the looped path on small maps (None: the
    module's MAX_SINGLE_BLOCK / LOOP_BLOCK), num_warps so that a benchmark can sweep it."""
    b, k, h, w = logits.shape
    n = h * w
    x = logits.contiguous()
    t = target.contiguous()
    loss = torch.empty(b, k, dtype=torch.float32, device=logits.device)
    stats = torch.empty(b * k, N_STATS, dtype=torch.float32, device=logits.device)
    single = triton.next_power_of_2(n) <= (max_single_block or MAX_SINGLE_BLOCK)
    block = triton.next_power_of_2(n) if single else (loop_block or LOOP_BLOCK)
    _jsd_forward_kernel[(b * k,)](
        x, t, loss if weight is None else weight, loss, stats, n, k, *_strides(weight),
        BLOCK=block, SINGLE=single, HAS_WEIGHT=weight is not None, num_warps=num_warps or _warps(block),
    )
    return loss, stats


def js_backward_triton(
    logits: torch.Tensor,
    target: torch.Tensor,
    stats: torch.Tensor,
    grad_output: torch.Tensor,
    weight: torch.Tensor | None = None,
    block: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """grad_output * weight * dJS/dlogits (B, K, H, W) in the logits' dtype, one pass; ``logits``
    and ``target`` contiguous, ``stats`` from ``js_forward_triton``. ``block`` (None: LOOP_BLOCK)
    is the tile of one program."""
    b, k, h, w = logits.shape
    n = h * w
    grad = torch.empty_like(logits)
    block = min(block or LOOP_BLOCK, triton.next_power_of_2(n))
    _jsd_backward_kernel[(b * k, triton.cdiv(n, block))](
        logits, target, stats, grad_output, grad_output if weight is None else weight, grad, n, k,
        *_strides(grad_output), *_strides(weight),
        BLOCK=block, HAS_WEIGHT=weight is not None, num_warps=num_warps or _warps(block),
    )
    return grad


class JSDivergenceTriton(torch.autograd.Function):
    """loss = weight * JS per channel; the gradient is recomputed in backward (module docstring)."""

    @staticmethod
    def forward(ctx, logits, target, weight, num_warps):
        x, t = logits.contiguous(), target.contiguous()
        loss, stats = js_forward_triton(x, t, weight, num_warps=num_warps)
        ctx.save_for_backward(x, t, weight, stats)  # inputs and B*K*5 floats: nothing n-sized is made
        ctx.num_warps = num_warps
        return loss if logits.dtype != torch.float64 else loss.double()

    @staticmethod
    def backward(ctx, grad_output):
        x, t, weight, stats = ctx.saved_tensors
        grad_logits = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_logits = js_backward_triton(x, t, stats, grad_output, weight, num_warps=ctx.num_warps)
        if ctx.needs_input_grad[2]:  # dloss/dw = g JS: a (B, K) product, only when asked for
            grad_weight = (grad_output * stats[:, 4].view_as(grad_output)).to(weight.dtype)
        return grad_logits, None, grad_weight, None


def js_divergence_triton(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """weight * JS (B, K) (see ``spanlib.ops.js_divergence``); num_warps None: the heuristic."""
    if weight is not None and not weight.is_floating_point():
        weight = weight.float()  # a 0/1 mask given as bool or int
    return JSDivergenceTriton.apply(logits, target, weight, num_warps)
