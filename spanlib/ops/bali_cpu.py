"""Windowed BALI soft-argmax (eq. 5): the CPU path, a C kernel (``native.py`` builds it once) with
the PyTorch fallback ``bali_cpu_torch.py``.

For one channel with non-negative weights w (H x W), offsets o_x, o_y (same size) and radius r:

    (i0, j0) = argmax w            (row-major first index on ties, as torch.argmax)
    Win      = rows max(0, i0-r) .. min(H-1, i0+r)  x  cols max(0, j0-r) .. min(W-1, j0+r)
    S        = sum_Win w
    x        = sum_Win w_ij (o_x,ij + j + 0.5) / S
    y        = sum_Win w_ij (o_y,ij + i + 0.5) / S

in map pixels with the corner origin (pixel (i, j) has its centre at (j + 0.5, i + 0.5)).

Gradient (the argmax position is piecewise constant, so it is treated as a constant):
    dx/dw_ij   = (o_x,ij + j + 0.5 - x) / S      dy/dw_ij   = (o_y,ij + i + 0.5 - y) / S
    dx/do_x,ij = w_ij / S                        dy/do_y,ij = w_ij / S
inside the window, 0 outside.

Edge cases (the Triton kernel and the textbook formula do the same):
- all-zero map: argmax is pixel (0, 0) and S = 0; the result is that pixel's centre (0.5, 0.5)
  (in general, S = 0 returns the argmax pixel centre (j0 + 0.5, i0 + 0.5)) and every gradient is 0;
- flat map (all weights equal and positive): argmax is pixel (0, 0), the window is clipped to the
  top-left (r+1) x (r+1) corner and the result is the mean of o + pixel centre over that corner;
- ties: the first maximum in row-major order wins.
Weights must be non-negative (a softmax or sigmoid output); this is not checked on the hot path.

Paths: three maps of one dtype, float32 or float64, run the C kernel; anything else, or a machine
without a C compiler, runs the PyTorch fallback (``cpu_path()`` says which). The kernel reads each
heatmap once (the argmax) and only the windows otherwise; backward writes the windows into
gradients allocated as untouched zero pages (``native.zeros``), so the full-size zeros are never
written.
"""

from __future__ import annotations

import ctypes

import torch

from spanlib.ops import native
from spanlib.ops.bali_cpu_torch import bali_decode_conv1x1_torch, bali_decode_torch, window_sum_torch

# The kernels, per channel (row of n = H*W values). Forward: m = max w (vectorised), then the
# first index holding m; over the clipped window, in double: S = sum w, Sx = sum w (o_x + j + .5),
# Sy likewise; writes (x, y) = (Sx, Sy) / S, the argmax index and 1/S (S <= 0: the argmax pixel
# centre and 1/S = 0). Backward, with (gx, gy) = grad_output / S, over the window only:
# d heatmap = gx (o_x + j + .5 - x) + gy (o_y + i + .5 - y), d o_x = gx w, d o_y = gy w; a NULL
# gradient pointer is one not asked for. Compiled for float (f32) and double (f64).
# Both kernels' start on one map m of n = h * w values: the first index idx of its maximum (vectorised
# max, then a scan), its pixel (i0, j0) and the window rows r0..r1, columns c0..c1 clipped to the map.
WINDOW_MACRO = r"""
#define BALI_WINDOW(T)                                                                          \
        T mx = m[0];                                                                            \
        for (long i = 0; i < n; ++i) mx = m[i] > mx ? m[i] : mx;                                \
        long idx = 0;                                                                           \
        while (idx < n - 1 && m[idx] != mx) ++idx;                                              \
        const long i0 = idx / w, j0 = idx % w;                                                  \
        const long r0 = i0 - r > 0 ? i0 - r : 0, r1 = i0 + r < h - 1 ? i0 + r : h - 1;          \
        const long c0 = j0 - r > 0 ? j0 - r : 0, c1 = j0 + r < w - 1 ? j0 + r : w - 1;
"""

SOURCE = WINDOW_MACRO + r"""
#define BALI_KERNELS(SUFFIX, T)                                                                 \
void bali_forward_##SUFFIX(const T *restrict hm, const T *restrict oxs, const T *restrict oys,  \
                           T *restrict out, long *restrict argmax, T *restrict inv,             \
                           long start, long stop, long h, long w, long r) {                     \
    const long n = h * w;                                                                       \
    for (long c = start; c < stop; ++c) {                                                       \
        const T *restrict m = hm + c * n;                                                       \
        BALI_WINDOW(T)                                                                          \
        const T *restrict ox = oxs + c * n, *restrict oy = oys + c * n;                         \
        double s = 0.0, sx = 0.0, sy = 0.0;                                                     \
        for (long i = r0; i <= r1; ++i)                                                         \
            for (long j = c0; j <= c1; ++j) {                                                   \
                const double wv = m[i * w + j];                                                 \
                s += wv;                                                                        \
                sx += wv * ((double)ox[i * w + j] + (double)j + 0.5);                           \
                sy += wv * ((double)oy[i * w + j] + (double)i + 0.5);                           \
            }                                                                                   \
        argmax[c] = idx;                                                                        \
        if (s > 0.0) {                                                                          \
            out[2 * c] = (T)(sx / s); out[2 * c + 1] = (T)(sy / s); inv[c] = (T)(1.0 / s);      \
        } else {                                                                                \
            out[2 * c] = (T)j0 + (T)0.5; out[2 * c + 1] = (T)i0 + (T)0.5; inv[c] = 0;           \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
void bali_backward_##SUFFIX(const T *restrict hm, const T *restrict oxs, const T *restrict oys, \
                            const T *restrict out, const long *restrict argmax,                 \
                            const T *restrict inv, const T *restrict grad_out,                  \
                            T *restrict gh, T *restrict gox, T *restrict goy,                   \
                            long start, long stop, long h, long w, long r) {                    \
    const long n = h * w;                                                                       \
    for (long c = start; c < stop; ++c) {                                                       \
        if (inv[c] == 0) continue;  /* zero window weight: zero gradients (already zero) */     \
        const T gx = grad_out[2 * c] * inv[c], gy = grad_out[2 * c + 1] * inv[c];              \
        const T x = out[2 * c], y = out[2 * c + 1];                                             \
        const long i0 = argmax[c] / w, j0 = argmax[c] % w;                                      \
        const long r0 = i0 - r > 0 ? i0 - r : 0, r1 = i0 + r < h - 1 ? i0 + r : h - 1;          \
        const long c0 = j0 - r > 0 ? j0 - r : 0, c1 = j0 + r < w - 1 ? j0 + r : w - 1;          \
        const long base = c * n;                                                                \
        for (long i = r0; i <= r1; ++i)                                                         \
            for (long j = c0; j <= c1; ++j) {                                                   \
                const long k = base + i * w + j;                                                \
                if (gh) gh[k] = gx * (oxs[k] + (T)j + (T)0.5 - x) + gy * (oys[k] + (T)i + (T)0.5 - y); \
                if (gox) gox[k] = gx * hm[k];                                                   \
                if (goy) goy[k] = gy * hm[k];                                                   \
            }                                                                                   \
    }                                                                                           \
}

BALI_KERNELS(f32, float)
BALI_KERNELS(f64, double)
"""

# Inference with the BALI fields as a 1x1 convolution of the last features (weights (2K, C), bias
# (2K); map row = b * K + k): the argmax as above, then over the clipped window, in double, each
# pixel's two fields from its C features, and S, Sx, Sy as in bali_forward. Writes the points and
# S (S <= 0: the argmax pixel centre). The features of one image are read only at the windows.
CONV1X1_SOURCE = WINDOW_MACRO + r"""
#define CONV1X1_KERNEL(SUFFIX, T)                                                               \
void bali_conv1x1_forward_##SUFFIX(const T *restrict hm, const T *restrict feat,                \
                                   const T *restrict weight, const T *restrict bias,            \
                                   T *restrict out, T *restrict total, long start, long stop,   \
                                   long k_count, long c_count, long h, long w, long r) {        \
    const long n = h * w;                                                                       \
    for (long row = start; row < stop; ++row) {                                                 \
        const long b = row / k_count, k = row % k_count;                                        \
        const T *restrict m = hm + row * n;                                                     \
        BALI_WINDOW(T)                                                                          \
        const T *restrict f = feat + b * c_count * n;                                           \
        const T *restrict wx = weight + k * c_count, *restrict wy = weight + (k_count + k) * c_count; \
        double s = 0.0, sx = 0.0, sy = 0.0;                                                     \
        for (long i = r0; i <= r1; ++i)                                                         \
            for (long j = c0; j <= c1; ++j) {                                                   \
                const long p = i * w + j;                                                       \
                double ox = bias[k], oy = bias[k_count + k];                                    \
                for (long c = 0; c < c_count; ++c) {                                            \
                    const double fv = f[c * n + p];                                             \
                    ox += (double)wx[c] * fv;                                                   \
                    oy += (double)wy[c] * fv;                                                   \
                }                                                                               \
                const double wv = m[p];                                                         \
                s += wv;                                                                        \
                sx += wv * (ox + (double)j + 0.5);                                              \
                sy += wv * (oy + (double)i + 0.5);                                              \
            }                                                                                   \
        total[row] = (T)s;                                                                      \
        if (s > 0.0) { out[2 * row] = (T)(sx / s); out[2 * row + 1] = (T)(sy / s); }            \
        else { out[2 * row] = (T)j0 + (T)0.5; out[2 * row + 1] = (T)i0 + (T)0.5; }              \
    }                                                                                           \
}

CONV1X1_KERNEL(f32, float)
CONV1X1_KERNEL(f64, double)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _library():
    lib = native.load("bali", SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        for suffix in _SUFFIX.values():
            getattr(lib, f"bali_forward_{suffix}").argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_long] * 5
            getattr(lib, f"bali_backward_{suffix}").argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_long] * 5
        lib._typed = True
    return lib


def _conv1x1_library():
    lib = native.load("bali_conv1x1", CONV1X1_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        for suffix in _SUFFIX.values():
            getattr(lib, f"bali_conv1x1_forward_{suffix}").argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_long] * 7
        lib._typed = True
    return lib


def cpu_path(*dtypes: torch.dtype) -> str:
    """``"native"`` (the C kernel) or ``"torch"`` (the fallback) for maps of these dtypes."""
    dtypes = dtypes or (torch.float32,)
    same = len(set(dtypes)) == 1 and dtypes[0] in _SUFFIX
    return "native" if same and _library() is not None else "torch"


def _forward(heatmap, offset_x, offset_y, radius: int):
    """The forward kernel: contiguous maps, (B*K, 2) points, argmax indices and 1/S per channel."""
    b, k, h, w = heatmap.shape
    maps = [m.contiguous() for m in (heatmap, offset_x, offset_y)]
    dtype = heatmap.dtype
    out = torch.empty(b * k, 2, dtype=dtype)
    argmax = torch.empty(b * k, dtype=torch.int64)
    inv = torch.empty(b * k, dtype=dtype)
    kernel = getattr(_library(), f"bali_forward_{_SUFFIX[dtype]}")
    native.parallel_rows(lambda start, stop: kernel(*[m.data_ptr() for m in maps], out.data_ptr(),
                                                    argmax.data_ptr(), inv.data_ptr(), start, stop, h, w, radius),
                         b * k, h * w)
    return maps, out, argmax, inv


class BaliDecodeCPU(torch.autograd.Function):
    """Eq. 5 forward and its closed-form gradient (see module docstring) through the C kernel."""

    @staticmethod
    def forward(ctx, heatmap, offset_x, offset_y, radius: int):
        b, k, h, w = heatmap.shape
        maps, out, argmax, inv = _forward(heatmap, offset_x, offset_y, radius)
        ctx.save_for_backward(*maps, out, argmax, inv)
        ctx.radius = radius
        return out.view(b, k, 2)

    @staticmethod
    def backward(ctx, grad_output):
        heatmap, offset_x, offset_y, out, argmax, inv = ctx.saved_tensors
        b, k, h, w = heatmap.shape
        g = grad_output.to(heatmap.dtype).contiguous()
        grads = [native.zeros((b, k, h, w), heatmap.dtype) if need else None for need in ctx.needs_input_grad[:3]]
        kernel = getattr(_library(), f"bali_backward_{_SUFFIX[heatmap.dtype]}")
        args = [t.data_ptr() for t in (heatmap, offset_x, offset_y, out, argmax, inv, g)] + [native.ptr(t) for t in grads]
        native.parallel_rows(lambda start, stop: kernel(*args, start, stop, h, w, ctx.radius), b * k, (2 * ctx.radius + 1) ** 2)
        return grads[0], grads[1], grads[2], None


def bali_decode_cpu(heatmap, offset_x, offset_y, radius: int) -> torch.Tensor:
    if heatmap.device.type != "cpu" or cpu_path(heatmap.dtype, offset_x.dtype, offset_y.dtype) == "torch":
        return bali_decode_torch(heatmap, offset_x, offset_y, radius)
    return BaliDecodeCPU.apply(heatmap, offset_x, offset_y, radius)


@torch.no_grad()
def bali_decode_and_sum_cpu(heatmap, offset_x, offset_y, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5's points (B, K, 2) and the window's total weight S (B, K), without gradient: the
    kernel's forward computes S anyway (it returns 1/S, 0 for S <= 0). Elsewhere, the fallback's
    points and ``window_sum_torch``."""
    if heatmap.device.type != "cpu" or cpu_path(heatmap.dtype, offset_x.dtype, offset_y.dtype) == "torch":
        return bali_decode_torch(heatmap, offset_x, offset_y, radius), window_sum_torch(heatmap, radius)
    b, k = heatmap.shape[:2]
    _, out, _, inv = _forward(heatmap, offset_x, offset_y, radius)
    total = torch.where(inv > 0, 1.0 / torch.where(inv > 0, inv, torch.ones_like(inv)), torch.zeros_like(inv))
    return out.view(b, k, 2), total.view(b, k)


@torch.no_grad()
def bali_decode_conv1x1_cpu(heatmap, features, weight, bias, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5's points (B, K, 2) and window sums (B, K) with the BALI fields a 1x1 convolution of
    ``features`` (B, C, H, W), ``weight`` (2K, C), ``bias`` (2K), evaluated at the windows only: the
    C kernel for one dtype of float32 / float64 on CPU, else ``bali_decode_conv1x1_torch``."""
    tensors = (heatmap, features, weight, bias)
    dtypes = {x.dtype for x in tensors}
    if (any(x.device.type != "cpu" for x in tensors) or len(dtypes) != 1 or heatmap.dtype not in _SUFFIX
            or _conv1x1_library() is None):
        return bali_decode_conv1x1_torch(heatmap, features, weight, bias, radius)
    b, k, h, w = heatmap.shape
    maps = [x.contiguous() for x in tensors]
    out = torch.empty(b * k, 2, dtype=heatmap.dtype)
    total = torch.empty(b * k, dtype=heatmap.dtype)
    kernel = getattr(_conv1x1_library(), f"bali_conv1x1_forward_{_SUFFIX[heatmap.dtype]}")
    native.parallel_rows(lambda start, stop: kernel(*[x.data_ptr() for x in maps], out.data_ptr(), total.data_ptr(),
                                                    start, stop, k, features.shape[1], h, w, radius),
                         b * k, h * w)
    return out.view(b, k, 2), total.view(b, k)
