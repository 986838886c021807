"""The compiled Triton kernels on a CUDA device against float64 references (run where a GPU is).

The tests run the same kernels through Triton's interpreter on CPU tensors; this script checks the
*compiled* kernels: ``spanlib.ops.js_divergence`` and ``spanlib.ops.bali_decode`` on CUDA tensors,
forward (with and without grad) and backward (random grad_output; a random per-channel weight
that requires grad, whose gradient is checked too), over odd shapes (rows that fit one block, rows that need the looped path,
borders, a zero-target channel) and input dtypes (float32, bfloat16, float16), against the paper's
formulas written term by term in float64 on the CPU (``spanlib.ops.textbook``: the one textbook
reference the tests and the benchmark use too, independent of both implementations). Every ``torch.empty`` made during a kernel call is filled with NaN first,
so an output element the kernel leaves unwritten fails the check. Inputs are fresh random draws.

    python kernels/gpu_check.py --json kernels/results/<gpu>/gpu_check.json

The JS backward is the one-pass kernel that recomputes the gradient from logits, target and the
forward's per-channel statistics, with grad_output and the weight folded in; 2x5x130x129 (16770
values a row) takes the looped forward and several backward tiles per row. The first call of each
kernel variant compiles it (Triton's cache makes a rerun faster); the script takes well under a
minute on an H200.

Tolerances: relative error ||out - ref|| / ||ref||; float32 inputs 1e-5 (loss) and 1e-4
(gradient), bfloat16 / float16 inputs (the float64 reference sees the same rounded inputs, so only
the fp32 accumulation and the rounding of the stored gradient differ) 1e-4 and 1e-2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from spanlib.ops.textbook import bali_reference64, js_reference64

TOL = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (1e-4, 1e-2), torch.float16: (1e-4, 1e-2)}


@contextlib.contextmanager
def poisoned_empty():
    """torch.empty / empty_like return NaN-filled (float) or -7-filled (integer) tensors."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def fill(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(-7)
        return t

    torch.empty = lambda *a, **k: fill(real_empty(*a, **k))
    torch.empty_like = lambda *a, **k: fill(real_empty_like(*a, **k))
    try:
        yield
    finally:
        torch.empty, torch.empty_like = real_empty, real_empty_like


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    scale = float(ref.norm())
    # an exactly-zero reference (the heatmap gradient at radius 0): the absolute error instead
    return float((out - ref).norm() / (scale if scale > 1e-9 else 1.0))


def check_js(shape, dtype, seed: int, zero_channel: bool, weighted: bool) -> dict:
    from spanlib.ops import js_divergence

    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g) * 2.0).to(dtype)
    target = (torch.rand(shape, generator=g) ** 4 + 1e-3).to(dtype)
    if zero_channel:
        target[0, 0] = 0
    grad_out = torch.randn(shape[:2], generator=g)
    weight = torch.rand(shape[:2], generator=g) * 2 if weighted else torch.ones(shape[:2])
    # float64 reference: L = sum(g w JS), so dL/dx = the reference's gradient for g * w, dL/dw = g JS
    ref_js, ref_grad = js_reference64(logits, target, grad_out * weight)
    ref_gw = grad_out.double() * ref_js
    x = logits.cuda().requires_grad_(True)
    w = weight.cuda().requires_grad_(True) if weighted else None
    with poisoned_empty():
        with torch.no_grad():
            js_no_grad = js_divergence(x, target.cuda(), w)
        js = js_divergence(x, target.cuda(), w)
        (js * grad_out.cuda()).sum().backward()
    torch.cuda.synchronize()
    tol_loss, tol_grad = TOL[dtype]
    ref_loss = ref_js * weight.double()
    errs = {"rel_err_loss": rel_err(js, ref_loss), "rel_err_loss_no_grad": rel_err(js_no_grad, ref_loss),
            "rel_err_grad": rel_err(x.grad, ref_grad)}
    if weighted:
        errs["rel_err_grad_weight"] = rel_err(w.grad, ref_gw)
    # the weight's gradient is g JS: a loss-sized value, held to the loss's tolerance
    ok = all(v <= (tol_grad if k == "rel_err_grad" else tol_loss) for k, v in errs.items())
    return {"op": "js_divergence", "shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
            "zero_target_channel": zero_channel, "weighted": weighted, **errs,
            "tol_loss": tol_loss, "tol_grad": tol_grad, "ok": ok}


def check_bali(shape, dtype, radius: int, seed: int) -> dict:
    from spanlib.ops import bali_decode

    g = torch.Generator().manual_seed(seed)
    heat = (torch.rand(shape, generator=g) ** 3).to(dtype)
    ox = (torch.randn(shape, generator=g) * 0.7).to(dtype)
    oy = (torch.randn(shape, generator=g) * 0.7).to(dtype)
    grad_out = torch.randn(*shape[:2], 2, generator=g)
    ref, ref_gh, ref_gx, ref_gy = bali_reference64(heat, ox, oy, radius, grad_out)
    h, x, y = (t.cuda().requires_grad_(True) for t in (heat, ox, oy))
    with poisoned_empty():
        out = bali_decode(h, x, y, radius)
        (out * grad_out.cuda()).sum().backward()
    torch.cuda.synchronize()
    tol_out, tol_grad = TOL[dtype]
    errs = {"rel_err_out": rel_err(out, ref), "rel_err_grad_heatmap": rel_err(h.grad, ref_gh),
            "rel_err_grad_offset_x": rel_err(x.grad, ref_gx), "rel_err_grad_offset_y": rel_err(y.grad, ref_gy)}
    ok = errs["rel_err_out"] <= tol_out and all(v <= tol_grad for k, v in errs.items() if "grad" in k)
    return {"op": "bali_decode", "shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
            "radius": radius, **errs, "tol_out": tol_out, "tol_grad": tol_grad, "ok": ok}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    import time

    import triton

    start = time.perf_counter()
    rows = []
    js_shapes = [(2, 3, 5, 7), (3, 81, 64, 64), (2, 68, 128, 128), (2, 5, 130, 129), (1, 3, 1, 1)]
    for i, shape in enumerate(js_shapes):
        for d, dtype in enumerate((torch.float32, torch.bfloat16, torch.float16)):
            # unweighted (what training calls) everywhere; weighted on half the cases (both
            # kernel variants compiled, not every combination)
            rows.append(check_js(shape, dtype, seed=100 + i, zero_channel=shape[1] > 1, weighted=False))
            if (i + d) % 2 == 0:
                rows.append(check_js(shape, dtype, seed=150 + i, zero_channel=shape[1] > 1, weighted=True))
    bali_cases = [((2, 3, 7, 9), 0), ((2, 3, 7, 9), 1), ((4, 68, 64, 64), 3), ((4, 68, 64, 64), 5),
                  ((2, 5, 130, 131), 5), ((1, 2, 3, 3), 5)]
    for i, (shape, radius) in enumerate(bali_cases):
        for dtype in (torch.float32, torch.bfloat16):
            rows.append(check_bali(shape, dtype, radius, seed=200 + i))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "cuda": torch.version.cuda, "reference": "float64 on CPU, eq. 15 / eq. 5 written term by term",
              "all_ok": all(r["ok"] for r in rows), "rows": rows}
    for r in rows:
        errs = " ".join(f"{k[8:]}={v:.1e}" for k, v in r.items() if k.startswith("rel_err"))
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['op']:14s} {str(r['shape']):18s} {r['dtype']:9s} "
              f"{('r=' + str(r['radius'])) if 'radius' in r else '':4s} {errs}")
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"gpu_check: {sum(r['ok'] for r in rows)}/{len(rows)} cases within tolerance on {result['device']} "
          f"in {result['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
