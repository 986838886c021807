"""The ops benchmark: the fused ops against the textbook formulas (``spanlib bench``,
``python kernels/bench.py``, notebook 05_kernel_profiling). Part of the package, so that ``spanlib
bench`` works from an installed wheel.

Methods per op: the textbook formula (``spanlib.ops.textbook``) with autograd and under
``torch.compile``, then spanlib's CPU path (the C kernel, or its PyTorch fallback: the row's note
says which ran) and, on CUDA, the Triton kernel.

Per op, size and method it times forward + backward (loss summed, gradients by
``torch.autograd.grad``), reports the median of repeated runs after warm-up
(``triton.testing.do_bench`` on CUDA: wall time of the Python-level step, launches and autograd
included), the achieved bandwidth against the bytes that must move (the floor, see
``floor_bytes``) and the peak memory the step allocates on top of its inputs. On CUDA it also
measures the *device* time of the same step (``cuda_device_ms``): the step captured in a CUDA
graph and its replays timed, or where capture fails the profiler's summed kernel time; the row's
``device_method`` says which. An optional sweep (``sweep_warps``) times the Triton method's
device time per ``num_warps``, forward + backward and forward alone. Memory:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
- CPU: a TorchDispatchMode that counts the bytes of every tensor storage an op creates during one
  untimed step and releases them when the storage is freed (exact for eager PyTorch and
  deterministic under load; code compiled by torch.compile allocates outside the dispatcher and is
  not measured). The resident-set high-water mark was tried first and rejected: glibc's cached
  heap made it read 0 for steps that provably allocate tens of MiB.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from spanlib.utils.errors import ParamError
from spanlib.ops import bali_cpu, jsd_cpu, native, textbook

JS_SIZES = [(16, 81, 64, 64), (16, 81, 128, 128)]  # batch 16, 68 landmarks + 13 boundaries
DECODE_SIZES = [(64, 68, 64, 64), (64, 68, 128, 128)]  # batch 64, 68 points
SIZES = {"jsd": JS_SIZES, "decode": DECODE_SIZES}
# what one timed step does, per op (the table header of `spanlib bench` and 05_kernel_profiling)
WHAT = {"jsd": "forward + backward of the Jensen-Shannon loss summed over (B, K); float32 inputs",
        "decode": "forward + backward of the BALI decode (eq. 5): the decoded coordinates summed over (B, K), "
                  "window radius {radius}; float32 inputs"}
DECODE_RADIUS = 5  # training radius (params.yaml: decode radius 5 in training, 3 at test)
UNFOLD_CAP_BYTES = 64 << 20  # the unfold baseline runs on channel chunks whose windows fit this


@dataclass
class Case:
    method: str
    step: Callable[[], None]
    channels_measured: int  # channels the step covers (< all: time and memory are scaled up)
    note: str = ""
    forward: Callable[[], None] | None = None  # the forward alone, no grad (warps sweep rows only)
    num_warps: int | None = None  # set on warps sweep rows: only device times are measured


def floor_bytes(op: str, b: int, k: int, h: int, w: int, itemsize: int = 4) -> int:
    """Bytes that any forward + backward must move.
    jsd: the loss needs logits and target (2 n); the gradient needs them again after forward
    (2 n, unless 2 n are kept from forward, which costs the same bytes) and is written once (n):
    5 n. decode: forward reads the heatmap (n; the
    windows are negligible), backward writes the gradients of heatmap and both offsets: 4 n."""
    n = b * k * h * w
    return (5 if op == "jsd" else 4) * n * itemsize


# ---------------------------------------------------------------------------------------------
# memory and timing


class _AllocationTracker(TorchDispatchMode):
    """Bytes held by tensor storages created while active: counted when an op returns a storage
    that none of its inputs had, released when that storage is freed; ``peak`` is the maximum."""

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.live: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self.live or key in inputs:
                continue
            self.live.add(key)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._release, key, nbytes)
        return out


def cpu_peak_bytes(step: Callable[[], None]) -> int:
    with _AllocationTracker() as tracker:
        step()
    return tracker.peak


def cuda_peak_bytes(step: Callable[[], None]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def time_cpu(step: Callable[[], None], warmup: int, repeats: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def copy_bandwidth(device: str) -> float:
    """Measured copy bandwidth in GB/s (bytes read + written by clone of a 256 MiB tensor)."""
    x = torch.empty(64 << 20, dtype=torch.float32, device=device).fill_(1.0)
    moved = 2 * x.numel() * 4
    if device == "cuda":
        import triton.testing  # lazy: triton, CUDA only

        ms = triton.testing.do_bench(lambda: x.clone(), return_mode="median")
        return moved / (ms * 1e-3) / 1e9
    times = time_cpu(lambda: x.clone(), warmup=1, repeats=5, budget_s=2.0)
    return moved / statistics.median(times) / 1e9


GRAPH_METHOD = "CUDA graph replay, do_bench median"
PROFILER_METHOD = "profiler: summed CUDA kernel time per step"


def cuda_device_ms(step: Callable[[], None]) -> tuple[float, str]:
    """(device ms of one ``step``, how it was measured). The step is captured in a CUDA graph
    (static inputs; warmed up on a side stream first, as the PyTorch docs ask) and the replays are
    timed: no Python, launch or autograd overhead, only the kernels and the gaps between them.
    Where capture fails (e.g. code that synchronises), the profiler's kernel time, summed per step."""
    try:
        return _graph_ms(step), GRAPH_METHOD
    except Exception as exc:  # noqa: BLE001  (any capture failure: fall back, say why)
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__
        return _profiler_ms(step), f"{PROFILER_METHOD} (graph capture failed: {why})"


def _graph_ms(step: Callable[[], None]) -> float:
    import triton.testing  # lazy: triton, CUDA only

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: lazy inits and autotuning stay out of the capture
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    torch.cuda.synchronize()
    try:
        return triton.testing.do_bench(graph.replay, warmup=10, rep=50, return_mode="median")
    finally:
        del graph


def _profiler_ms(step: Callable[[], None], steps: int = 10) -> float:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernel_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return kernel_us / steps / 1e3


# ---------------------------------------------------------------------------------------------
# cases


def _compiled(fn, note_list):
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as exc:  # recorded, not fatal: the row says why
        note_list.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return None


def js_cases(b, k, h, w, device, with_compile: bool, sweep_warps=(), with_triton: bool = False) -> list[Case]:
    """The methods at one size. CUDA gets the Triton method (and sweep); ``with_triton`` adds it
    on CPU too (the interpreter, TRITON_INTERPRET=1: how the tests rehearse the CUDA cases)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    logits = torch.randn(b, k, h, w, generator=g).to(device).requires_grad_(True)
    target = (torch.rand(b, k, h, w, generator=g) + 1e-3).to(device)

    def make(fn):
        def step():  # autograd.grad: nothing accumulates, so a step starts from its inputs only
            torch.autograd.grad(fn(logits, target).sum(), (logits,))

        return step

    cases = [Case("textbook (autograd)", make(textbook.js_divergence), b * k)]
    if with_compile:
        notes: list[str] = []
        compiled = _compiled(textbook.js_divergence, notes)
        cases.append(Case("torch.compile(textbook)", make(compiled) if compiled else None, b * k, "; ".join(notes)))
    if device == "cpu":
        cases.append(Case("spanlib cpu", make(jsd_cpu.js_divergence_cpu), b * k,
                          _path_note("jsd", jsd_cpu.cpu_path(logits.dtype))))
    if device != "cpu" or with_triton:
        from spanlib.ops.jsd_triton import js_divergence_triton  # lazy: imports triton, CUDA only

        cases += triton_cases(js_divergence_triton, make, (logits, target), b * k, sweep_warps)
    return cases


def triton_cases(op_fn, make, inputs, channels: int, sweep_warps=()) -> list[Case]:
    """The Triton method, then one sweep case per num_warps (with its no-grad forward)."""
    cases = [Case("spanlib triton", make(op_fn), channels)]
    for warps in sweep_warps:
        fn = functools.partial(op_fn, num_warps=warps)
        cases.append(Case(f"spanlib triton num_warps={warps}", make(fn), channels,
                          forward=_no_grad(lambda fn=fn: fn(*inputs)), num_warps=warps))
    return cases


def _no_grad(fn):
    def forward():
        with torch.no_grad():
            fn()

    return forward


def _path_note(name: str, path: str) -> str:
    return "C kernel" if path == "native" else f"PyTorch fallback ({native.status(name)})"


def decode_cases(b, k, h, w, device, with_compile: bool, sweep_warps=(), with_triton: bool = False) -> list[Case]:
    """As ``js_cases``, for the decode."""
    g = torch.Generator(device="cpu").manual_seed(0)
    heatmap = torch.softmax(torch.randn(b, k, h * w, generator=g) * 3, dim=-1).view(b, k, h, w)
    maps = [t.to(device).requires_grad_(True) for t in (heatmap, torch.randn(b, k, h, w, generator=g),
                                                          torch.randn(b, k, h, w, generator=g))]

    def make(fn, channels=b * k):
        # the first `channels` channels, as one image (the unfold baseline runs on a part)
        parts = maps if channels == b * k else [m.detach().reshape(1, b * k, h, w)[:, :channels].clone().requires_grad_(True) for m in maps]

        def step():  # autograd.grad: nothing accumulates, so a step starts from its inputs only
            torch.autograd.grad(fn(*parts, DECODE_RADIUS).sum(), parts)

        return step

    window_bytes = (2 * DECODE_RADIUS + 1) ** 2 * h * w * 4
    unfold_channels = max(1, min(b * k, UNFOLD_CAP_BYTES // window_bytes))
    cases = [Case("textbook unfold (autograd)", make(textbook.bali_decode_unfold, unfold_channels), unfold_channels,
                  "" if unfold_channels == b * k else
                  f"measured on {unfold_channels} of {b * k} channels, time and memory scaled x{b * k / unfold_channels:.0f}"),
             Case("textbook mask (autograd)", make(textbook.bali_decode_masked), b * k),
             Case("textbook gather (autograd)", make(textbook.bali_decode_gather), b * k)]
    if with_compile:
        for label, fn in (("mask", textbook.bali_decode_masked), ("gather", textbook.bali_decode_gather)):
            notes: list[str] = []
            compiled = _compiled(fn, notes)
            cases.append(Case(f"torch.compile(textbook {label})", make(compiled) if compiled else None, b * k,
                              "; ".join(notes)))
    if device == "cpu":
        path = bali_cpu.cpu_path(maps[0].dtype)
        note = _path_note("bali", path)
        if path == "native":
            note += ("; the three gradients are zero pages written only in the windows, which the memory "
                     "tracker does not see (resident: the windows' pages)")
        cases.append(Case("spanlib cpu", make(bali_cpu.bali_decode_cpu), b * k, note))
    if device != "cpu" or with_triton:
        from spanlib.ops.bali_triton import bali_decode_triton  # lazy: imports triton, CUDA only

        cases += triton_cases(bali_decode_triton, make, (*maps, DECODE_RADIUS), b * k, sweep_warps)
    return cases


# ---------------------------------------------------------------------------------------------
# driver


def device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    try:
        import triton  # lazy: triton, CUDA only

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device == "cuda":
        info["name"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    else:
        name = platform.processor() or "cpu"
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        info["name"] = name
        info["cpu_count"] = os.cpu_count()
        info["torch_threads"] = torch.get_num_threads()
    return info


def device_slug(info: dict) -> str:
    if info["device"] == "cpu":
        return "cpu"
    return "".join(c if c.isalnum() else "-" for c in info["name"].lower()).strip("-")


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """``"16x81x64x64,16x81x128x128"`` -> [(16, 81, 64, 64), (16, 81, 128, 128)]."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        dims = part.lower().split("x")
        if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
            raise ParamError(f"--sizes: expected BxKxHxW[,BxKxHxW...] of positive integers, got {part!r}")
        sizes.append(tuple(int(d) for d in dims))
    if not sizes:
        raise ParamError("--sizes: no size given")
    return sizes


def run_benchmark(op: str, device: str, repeats: int = 7, with_compile: bool = True,
                  progress: Callable[[str], None] = lambda s: None, sizes=None, sweep_warps=()) -> dict:
    """The benchmark of ``op`` at ``sizes`` (default: the training sizes, ``SIZES[op]``).
    ``sweep_warps`` (CUDA only; ignored on CPU, the result says so) adds the Triton method's
    device time per num_warps."""
    _check_request(op, device)
    info = device_info(device)
    load_before = os.getloadavg()
    bandwidth = copy_bandwidth(device)
    sweep = tuple(sweep_warps) if device == "cuda" else ()
    rows = []
    for b, k, h, w in sizes or SIZES[op]:
        rows.extend(_size_rows(op, (b, k, h, w), device, repeats, with_compile, progress, sweep))
    return {
        "op": op,
        "what": WHAT[op].format(radius=DECODE_RADIUS),
        "radius": DECODE_RADIUS if op == "decode" else None,
        "device": info,
        "copy_bandwidth_gbps": bandwidth,
        "memory_method": ("torch.cuda.max_memory_allocated after reset, minus memory_allocated before"
                          if device == "cuda" else
                          "peak bytes of tensor storages created and alive during one untimed step "
                          "(TorchDispatchMode tracker)"),
        "device_timing_method": (f"{GRAPH_METHOD} (warmup=10 ms, rep=50 ms); where capture fails, "
                                 f"{PROFILER_METHOD} (the row's device_method says which)"
                                 if device == "cuda" else None),
        "sweep_warps": list(sweep) if sweep else (f"skipped: CUDA only (asked: {list(sweep_warps)})"
                                                   if sweep_warps else None),
        "timing_method": ("triton.testing.do_bench median" if device == "cuda" else
                          f"median of up to {repeats} time.perf_counter runs after 1 warm-up (3 runs, no warm-up, when an eager first call took > 2 s)"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "command": " ".join(["spanlib"] + sys.argv[1:]) if sys.argv and "spanlib" in sys.argv[0] else None,
        "rows": rows,
    }


def _check_request(op: str, device: str) -> None:
    if op not in ("jsd", "decode"):
        raise ParamError(f"op: expected 'jsd' or 'decode', got {op!r}")
    if device not in ("cpu", "cuda"):
        raise ParamError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")


def _size_rows(op: str, size: tuple[int, int, int, int], device: str, repeats: int, with_compile: bool,
               progress: Callable[[str], None], sweep_warps=()) -> list[dict]:
    """One row per method at one size (b, k, h, w), with its speedups against the first textbook
    method and the fastest torch.compile baseline (wall times), then the warps sweep's rows."""
    b, k, h, w = size
    cases = (js_cases if op == "jsd" else decode_cases)(b, k, h, w, device, with_compile, sweep_warps)
    floor = floor_bytes(op, b, k, h, w)
    base_ms = None
    size_rows = []
    for case in cases:
        progress(f"{op} {b}x{k}x{h}x{w} {case.method}")
        row = {"batch": b, "channels": k, "height": h, "width": w, "method": case.method,
               "floor_bytes": floor, "note": case.note, "median_ms": None}
        size_rows.append(row)
        scale = (b * k) / case.channels_measured
        if case.num_warps is not None:  # warps sweep: device times only
            row["num_warps"] = case.num_warps
            _measure_device(case, row, floor, scale)
            continue
        if case.step is None or not _measure(case, row, device, repeats, scale):
            continue
        row["gbps"] = floor / (row["median_ms"] * 1e-3) / 1e9
        if device == "cuda":
            _measure_device(case, row, floor, scale)
        if case.method.startswith("textbook") and base_ms is None:
            base_ms = row["median_ms"]
    compiled = [r["median_ms"] for r in size_rows if r["method"].startswith("torch.compile") and r["median_ms"]]
    for row in size_rows:
        if row["median_ms"] and base_ms:
            row["speedup_vs_first_textbook"] = base_ms / row["median_ms"]
        if row["median_ms"] and compiled:  # against the fastest torch.compile baseline
            row["speedup_vs_best_compile"] = min(compiled) / row["median_ms"]
    return size_rows


def _measure_device(case: Case, row: dict, floor: int, scale: float) -> None:
    """Device time of the step (and of the forward alone, for sweep rows) into ``row``."""
    try:
        ms, how = cuda_device_ms(case.step)
        row["device_ms"], row["device_method"] = ms * scale, how
        row["device_gbps"] = floor / (row["device_ms"] * 1e-3) / 1e9
        if case.forward is not None:
            row["forward_device_ms"] = cuda_device_ms(case.forward)[0] * scale
    except Exception as exc:  # noqa: BLE001  (recorded, not fatal)
        row["note"] = (row["note"] + "; " if row["note"] else "") + \
            f"device time failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if row.get("device_method", GRAPH_METHOD) != GRAPH_METHOD:
        row["note"] = (row["note"] + "; " if row["note"] else "") + "device time: " + row["device_method"]


def _measure(case: Case, row: dict, device: str, repeats: int, scale: float) -> bool:
    """Time ``case`` and measure its peak memory into ``row`` (times and memory scaled by ``scale``
    to the whole batch); False, with the failure in the row's note, when it cannot run here."""
    try:
        t_first = time.perf_counter()
        case.step()  # first call: compiles where torch.compile is used
        row["first_call_s"] = round(time.perf_counter() - t_first, 3)
        if device == "cuda":
            import triton.testing  # lazy: triton, CUDA only

            times_ms = [triton.testing.do_bench(case.step, warmup=25, rep=100, return_mode="median")]
            row["repeats"] = "do_bench(warmup=25 ms, rep=100 ms)"
            row["peak_mem_mb"] = cuda_peak_bytes(case.step) * scale / 2**20
        else:
            # keep the whole run to minutes on a loaded CPU (a compiled method's first call is
            # the compilation, not a measure of its steps)
            slow = row["first_call_s"] > 2.0 and "compile" not in case.method
            times_ms = [1e3 * t for t in time_cpu(case.step, warmup=0 if slow else 1,
                                                  repeats=3 if slow else repeats, budget_s=4.0)]
            row["repeats"] = len(times_ms)
            row["min_ms"] = min(times_ms) * scale
            if "compile" in case.method:
                row["note"] = (row["note"] + " " if row["note"] else "") + "memory not measured: compiled code allocates outside the dispatcher"
            else:
                row["peak_mem_mb"] = cpu_peak_bytes(case.step) * scale / 2**20
    except Exception as exc:  # a baseline that cannot run here is recorded, not fatal
        row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return False
    row["median_ms"] = statistics.median(times_ms) * scale
    return True


def describe(result: dict) -> str:
    """What was timed. Results saved before the wording was split per op (every op said "the
    loss") get their op's wording."""
    op = result.get("op")
    if op in WHAT and result.get("what", "").startswith("forward + backward of the loss"):
        return WHAT[op].format(radius=result.get("radius") or DECODE_RADIUS)
    return result["what"]


def markdown_table(result: dict) -> str:
    info = result["device"]
    lines = [
        f"# `{result['op']}` benchmark on {info['name']} ({info['device']})",
        "",
        f"{describe(result)}. torch {info['torch']}, triton {info['triton']}, python {info['python']}."
        + (f" {info.get('torch_threads')} torch threads on {info.get('cpu_count')} cores." if info["device"] == "cpu" else ""),
        f"Timing: {result['timing_method']}. Memory: {result['memory_method']}.",
        f"Measured copy bandwidth: {result['copy_bandwidth_gbps']:.1f} GB/s. Load average before/after: "
        f"{', '.join(f'{x:.2f}' for x in result['load_average_before'])} / "
        f"{', '.join(f'{x:.2f}' for x in result['load_average_after'])}.",
        "",
        "| size (B x K x H x W) | method | median ms (wall) | device ms | GB/s (floor bytes, wall) "
        "| % copy BW (wall) | % copy BW (device) | peak MiB | speed-up vs textbook | vs best torch.compile | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    if result.get("device_timing_method"):
        lines.insert(4, f"Device time: {result['device_timing_method']}.")
    bw = result["copy_bandwidth_gbps"]

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    for r in result["rows"]:
        size = f"{r['batch']} x {r['channels']} x {r['height']} x {r['width']}"
        device_ms = r.get("device_ms")
        dev_pct = None if device_ms is None else 100 * r["floor_bytes"] / (device_ms * 1e-3) / 1e9 / bw
        note = r["note"]
        if r.get("forward_device_ms") is not None:
            note = (note + "; " if note else "") + f"forward alone {r['forward_device_ms']:.3f} ms (device)"
        if r.get("median_ms") is None:
            lines.append(f"| {size} | {r['method']} | - | {num(device_ms, '.3f')} | - | - | "
                         f"{num(dev_pct, '.0f')}{'%' if dev_pct is not None else ''} | - | - | - | {note} |")
            continue
        # results saved before the renaming call the first baseline "naive"
        speed = r.get("speedup_vs_first_textbook", r.get("speedup_vs_first_naive"))
        best = r.get("speedup_vs_best_compile")
        pct = 100 * r["gbps"] / bw
        lines.append(f"| {size} | {r['method']} | {r['median_ms']:.3f} | {num(device_ms, '.3f')} | {r['gbps']:.2f} | "
                     f"{pct:.0f}% | {num(dev_pct, '.0f')}{'%' if dev_pct is not None else ''} | "
                     f"{num(r.get('peak_mem_mb'), '.0f')} | {'-' if speed is None else f'{speed:.2f}x'} | "
                     f"{'-' if best is None else f'{best:.2f}x'} | {note} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    import matplotlib  # lazy: matplotlib, only when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    rows = [r for r in result["rows"] if r.get("median_ms")]
    sizes = sorted({(r["height"], r["width"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(methods))
    for m_i, method in enumerate(methods):
        for ax, key in zip(axes, ("median_ms", "peak_mem_mb")):
            vals = [next((r.get(key) or 0 for r in rows if r["method"] == method and (r["height"], r["width"]) == s), 0)
                    for s in sizes]
            ax.bar(np.arange(len(sizes)) + m_i * width, vals, width, label=method)
    for ax, label in zip(axes, ("median forward+backward time (ms, log)", "peak memory above inputs (MiB, log)")):
        ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, [f"{h}x{w}" for h, w in sizes])
        ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['op']} on {result['device']['name']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
