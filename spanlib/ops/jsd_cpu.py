"""Jensen-Shannon divergence between heatmaps read as distributions (eq. 15): the CPU path, a C
kernel (``native.py`` builds it once) with the PyTorch fallback ``jsd_cpu_torch.py``.

For one channel with logits x (n = H*W values) and a non-negative target t:

    p = softmax(x),  q = t / sum(t),  m = (p + q) / 2
    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)
             = 1/2 sum_i p_i log(2 p_i / (p_i + q_i)) + 1/2 sum_i q_i log(2 q_i / (p_i + q_i))

natural log, with 0 log 0 = 0 (a zero p_i or q_i adds nothing).

Gradient. Write s_i = p_i + q_i. With respect to p (q is fixed: the target gets no gradient),
    d/dp_i [1/2 p_i log(2 p_i / s_i)] = 1/2 log(2 p_i / s_i) + 1/2 - 1/2 p_i / s_i
    d/dp_i [1/2 q_i log(2 q_i / s_i)] = -1/2 q_i / s_i
so g_i = dJS/dp_i = 1/2 log(2 p_i / s_i) + 1/2 - 1/2 (p_i + q_i) / s_i = 1/2 log(2 p_i / s_i).
Through the softmax Jacobian dp_i/dx_j = p_i (delta_ij - p_j):
    dJS/dx_j = p_j (g_j - sum_i p_i g_i) = a_j - p_j A,
with a_j = p_j g_j = 1/2 p_j log(2 p_j / s_j) (0 where p_j = 0) and A = sum_i a_i, which is exactly
the first half of JS. So the loss and the gradient come out of the same terms: the forward pass
writes the gradient and backward only scales it by grad_output (in place, unless the
graph is retained for another backward).

Edge cases (the Triton kernel and the textbook formula do the same):
- a channel whose target sums to zero (or less) has no distribution q: its loss is 0 and its
  gradient 0, as if the point were masked out;
- p_i underflowing to 0 (a logit far below the channel's maximum) contributes 0, as the limit says.

Paths: float32 and float64 inputs run the C kernel (one row in cache at a time, one exp and two
logs per value, vectorised); bfloat16/float16 inputs, or a machine without a C compiler, run the
PyTorch fallback. ``cpu_path()`` says which one runs. Memory: the gradient kept for backward (in
the logits' dtype) is the only full-size allocation; backward scales it in place and returns it
(a scaled copy under retain_graph).
"""

from __future__ import annotations

import ctypes

import torch

from spanlib.ops import native
from spanlib.ops.jsd_cpu_torch import js_forward_torch

# The kernel, per row r of x and t (n values each), in three passes over the row (which stays in
# cache): (1) m = max x, T = sum t; (2) d = x - m, e = exp(d), Z = sum e; (3) p = e / Z, q = t / T,
# log p = d - log Z (finite where p underflows), log s = log max(p + q, tiny),
# a = 1/2 p (log p - log s + log 2), b = q (log max(q, tiny) - log s + log 2), A = sum a,
# JS = A + 1/2 sum b; with a gradient, (3) stores a and (4) writes a - p A. Sums are in double.
# T <= 0: JS = 0 and a zero gradient row. Compiled for float (f32) and double (f64).
SOURCE = r"""
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSD_FORWARD(NAME, T, EXP, LOG, TINY)                                                    \
void NAME(const T *restrict xs, const T *restrict ts, T *restrict js, T *restrict grads,       \
          long start, long stop, long n) {                                                      \
    const T ln2 = (T)0.69314718055994530942;                                                    \
    /* e = exp(x - m) and d = x - m, kept from pass 2: computing x - m again inside pass 3 would  \
       let -ffast-math reassociate it with the other terms and lose digits for large logits */ \
    T *restrict e = (T *)malloc(2 * (size_t)n * sizeof(T));                                     \
    T *restrict d = e + n;                                                                      \
    for (long r = start; r < stop; ++r) {                                                       \
        const T *restrict x = xs + r * n;                                                       \
        const T *restrict t = ts + r * n;                                                       \
        T *restrict g = grads ? grads + r * n : NULL;                                           \
        T mx = x[0];                                                                            \
        double t_sum = 0.0;                                                                     \
        for (long i = 0; i < n; ++i) { mx = x[i] > mx ? x[i] : mx; t_sum += t[i]; }             \
        if (!(t_sum > 0.0)) {                                                                   \
            js[r] = 0;                                                                          \
            if (g) memset(g, 0, (size_t)n * sizeof(T));                                         \
            continue;                                                                           \
        }                                                                                       \
        double z = 0.0;                                                                         \
        for (long i = 0; i < n; ++i) { d[i] = x[i] - mx; e[i] = EXP(d[i]); z += e[i]; }         \
        const T inv_z = (T)(1.0 / z), inv_t = (T)(1.0 / t_sum), log_z = (T)log(z);              \
        double a_sum = 0.0, b_sum = 0.0;                                                        \
        for (long i = 0; i < n; ++i) {                                                          \
            const T p = e[i] * inv_z, q = t[i] * inv_t;                                         \
            const T s = p + q;                                                                  \
            const T log_s = LOG(s > TINY ? s : TINY);                                           \
            const T a = (T)0.5 * p * (d[i] - log_z - log_s + ln2);                              \
            const T b = q * (LOG(q > TINY ? q : TINY) - log_s + ln2);                           \
            a_sum += a;                                                                         \
            b_sum += b;                                                                         \
            if (g) g[i] = a;                                                                    \
        }                                                                                       \
        js[r] = (T)(a_sum + 0.5 * b_sum);                                                       \
        if (g) {                                                                                \
            const T scale = (T)a_sum * inv_z;                                                   \
            for (long i = 0; i < n; ++i) g[i] -= e[i] * scale;                                  \
        }                                                                                       \
    }                                                                                           \
    free(e);                                                                                    \
}

JSD_FORWARD(jsd_forward_f32, float, expf, logf, FLT_MIN)
JSD_FORWARD(jsd_forward_f64, double, exp, log, DBL_MIN)
"""

_KERNELS = {torch.float32: "jsd_forward_f32", torch.float64: "jsd_forward_f64"}


def _library():
    lib = native.load("jsd", SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        for name in _KERNELS.values():
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3
            fn.restype = None
        lib._typed = True
    return lib


def cpu_path(dtype: torch.dtype = torch.float32) -> str:
    """``"native"`` (the C kernel) or ``"torch"`` (the fallback) for logits of ``dtype``."""
    return "native" if dtype in _KERNELS and _library() is not None else "torch"


def js_forward_cpu(logits: torch.Tensor, target: torch.Tensor, need_grad: bool):
    """(JS (B, K), dJS/dlogits (B, K, H, W) in logits' dtype or None); JS is float32 (float64
    for float64 logits)."""
    if logits.device.type != "cpu" or cpu_path(logits.dtype) == "torch":  # SPANLIB_OPS=cpu on CUDA
        return js_forward_torch(logits, target, need_grad)
    b, k, h, w = logits.shape
    rows, n = b * k, h * w
    x = logits.contiguous()
    t = target.to(logits.dtype).contiguous()
    js = torch.empty(b, k, dtype=logits.dtype)
    grad = torch.empty_like(x) if need_grad else None
    kernel = getattr(_library(), _KERNELS[logits.dtype])
    native.parallel_rows(lambda start, stop: kernel(x.data_ptr(), t.data_ptr(), js.data_ptr(), native.ptr(grad),
                                                    start, stop, n), rows, n)
    return js, grad


class JSDivergenceCPU(torch.autograd.Function):
    """Eq. 15 with the closed-form gradient computed in the forward pass (see module docstring)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        js, grad = js_forward_cpu(logits, target, need_grad=ctx.needs_input_grad[0])
        ctx.save_for_backward(grad if grad is not None else logits.new_empty(0))
        return js

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        g = grad_output[:, :, None, None]
        if grad.dtype not in (torch.float32, torch.float64):  # scale in fp32, round once
            return (grad.float() * g.float()).to(grad.dtype), None
        if _graph_is_freed_after_this_backward():
            # the saved gradient is never read again: scale it in place (no second full-size
            # tensor, no fresh pages to fault in)
            return grad.mul_(g.to(grad.dtype)), None
        return grad * g.to(grad.dtype), None  # retain_graph (loss_balance does): keep it intact


def _graph_is_freed_after_this_backward() -> bool:
    """False under retain_graph / create_graph, when backward may run through this node again.
    A private autograd query; where it is missing, assume the graph is kept (the safe answer)."""
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    try:
        return query is not None and not query()
    except RuntimeError:  # not inside a backward pass
        return False


def js_divergence_cpu(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """weight * JS (B, K) (see ``spanlib.ops.js_divergence``). The weight multiplies after the op
    (an autograd product of B*K values: on CPU its cost is noise next to the maps)."""
    js = JSDivergenceCPU.apply(logits, target)
    return js if weight is None else js * weight.to(js.dtype)
