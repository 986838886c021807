"""Jensen-Shannon divergence (eq. 15), CPU path in PyTorch ops: the fallback that
``jsd_cpu.py`` runs where its C kernel cannot be built (no compiler) or for bfloat16/float16
inputs. The maths (loss and closed-form gradient from the same terms) is in ``jsd_cpu.py``.

Memory: rows are processed in chunks that fit in cache, so the temporaries are a few chunk-sized
buffers; the only full-size allocation is the gradient kept for backward (in the logits' dtype).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch

# Elements per chunk of rows: at most ATen's grain size (32768), so that each op on a chunk runs
# on the calling thread without an OpenMP parallel region; the chunks themselves are spread over
# torch.get_num_threads() Python threads (ATen releases the GIL inside ops). Thousands of small
# OpenMP regions, each ending in a barrier, are what made a first chunked version slower than the
# textbook autograd one on a loaded 2-core machine; independent chunks have no barrier to wait at.
_CHUNK_ELEMENTS = 1 << 15
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers != torch.get_num_threads():
        _POOL = ThreadPoolExecutor(max_workers=torch.get_num_threads(), thread_name_prefix="spanlib-jsd")
    return _POOL


def _js_rows(x: torch.Tensor, t: torch.Tensor, grad_out: torch.Tensor | None) -> torch.Tensor:
    """JS per row of x (rows, n) against t; writes dJS/dx into ``grad_out`` when given.

    Written for speed on CPU: log p comes from log_softmax (finite even where p underflows, so
    p log p needs no special case), logs are taken once per buffer and every other step is an
    in-place multiply-add; torch.xlogy and full-size torch.where are avoided (several times
    slower per element than log on CPU)."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    tiny = torch.finfo(compute).tiny
    log2 = math.log(2.0)
    t = t.to(compute)
    t_sum = t.sum(dim=1, keepdim=True)
    valid = t_sum > 0
    inv_t_sum = torch.where(valid, 1.0 / torch.where(valid, t_sum, torch.ones_like(t_sum)), torch.zeros_like(t_sum))
    log_p = torch.log_softmax(x.to(compute), dim=1)
    p = torch.exp(log_p)
    q = t * inv_t_sum
    log_s = torch.add(p, q).clamp_min_(tiny).log_()  # p = q = 0: every term below is 0
    a = log_p.sub_(log_s).add_(log2).mul_(p).mul_(0.5)  # a = p g = 1/2 p log(2p/s)
    half_kl_p = a.sum(dim=1, keepdim=True)  # A = sum p g = 1/2 KL(p || m)
    b = q.clamp_min(tiny).log_().sub_(log_s).add_(log2).mul_(q)  # 2 b = q log(2q/s), 0 where q = 0
    js = half_kl_p + 0.5 * b.sum(dim=1, keepdim=True)
    all_valid = bool(valid.all())
    if not all_valid:
        js.mul_(valid)
    if grad_out is not None:
        grad = torch.sub(a, p.mul_(half_kl_p), out=a)  # a - p A
        if not all_valid:
            grad.mul_(valid)
        grad_out.copy_(grad)
    return js.squeeze(1)


def js_forward_torch(
    logits: torch.Tensor, target: torch.Tensor, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(JS (B, K), dJS/dlogits (B, K, H, W) in logits' dtype or None), chunked over rows.

    JS is float32 (float64 for float64 logits): the loss is accumulated in at least fp32."""
    b, k, h, w = logits.shape
    n = h * w
    x = logits.reshape(b * k, n)
    t = target.reshape(b * k, n)
    js_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    js = torch.empty(b * k, dtype=js_dtype, device=logits.device)
    grad = torch.empty_like(x) if need_grad else None
    rows = max(1, _CHUNK_ELEMENTS // n)

    def chunk(start: int) -> None:
        stop = min(start + rows, b * k)
        with torch.no_grad():  # grad mode is per thread: pool threads do not inherit forward's
            js[start:stop] = _js_rows(x[start:stop], t[start:stop], None if grad is None else grad[start:stop])

    starts = range(0, b * k, rows)
    if len(starts) == 1 or torch.get_num_threads() == 1 or n > _CHUNK_ELEMENTS:
        for start in starts:  # a row longer than a chunk: let ATen parallelise inside the ops
            chunk(start)
    else:
        list(_pool().map(chunk, starts))
    return js.view(b, k), None if grad is None else grad.view(b, k, h, w)

