"""The ops benchmark: the fused ops against the textbook formulas (``spanlib bench``,
``python kernels/bench.py``, notebook 05_kernel_profiling). Part of the package, so that ``spanlib
bench`` works from an installed wheel.

Methods per op: the textbook formula (``spanlib.ops.textbook``) with autograd and under
``torch.compile``, then spanlib's CPU path (the C kernel, or its PyTorch fallback: the row's note
says which ran) and, on CUDA, the Triton kernel.

Per op, size and method it times forward + backward (loss summed, one backward), reports the
median of repeated runs after warm-up (``triton.testing.do_bench`` on CUDA), the achieved
bandwidth against the bytes that must move (the floor, see ``floor_bytes``) and the peak memory
the step allocates on top of its inputs:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
- CPU: a TorchDispatchMode that counts the bytes of every tensor storage an op creates during one
  untimed step and releases them when the storage is freed (exact for eager PyTorch and
  deterministic under load; code compiled by torch.compile allocates outside the dispatcher and is
  not measured). The resident-set high-water mark was tried first and rejected: glibc's cached
  heap made it read 0 for steps that provably allocate tens of MiB.
"""

from __future__ import annotations

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


def floor_bytes(op: str, b: int, k: int, h: int, w: int, itemsize: int = 4) -> int:
    """Bytes that any forward + backward must move.
    jsd: forward reads logits and target and writes the gradient it keeps (3 n), backward reads
    it and writes the scaled gradient (2 n): 5 n. decode: forward reads the heatmap (n; the
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


# ---------------------------------------------------------------------------------------------
# cases


def _compiled(fn, note_list):
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as exc:  # recorded, not fatal: the row says why
        note_list.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return None


def js_cases(b, k, h, w, device, with_compile: bool) -> list[Case]:
    g = torch.Generator(device="cpu").manual_seed(0)
    logits = torch.randn(b, k, h, w, generator=g).to(device).requires_grad_(True)
    target = (torch.rand(b, k, h, w, generator=g) + 1e-3).to(device)

    def make(fn):
        def step():  # gradients are dropped at the end, so a step starts from its inputs only
            fn(logits, target).sum().backward()
            logits.grad = None

        return step

    cases = [Case("textbook (autograd)", make(textbook.js_divergence), b * k)]
    if with_compile:
        notes: list[str] = []
        compiled = _compiled(textbook.js_divergence, notes)
        cases.append(Case("torch.compile(textbook)", make(compiled) if compiled else None, b * k, "; ".join(notes)))
    if device == "cpu":
        cases.append(Case("spanlib cpu", make(jsd_cpu.js_divergence_cpu), b * k,
                          _path_note("jsd", jsd_cpu.cpu_path(logits.dtype))))
    else:
        from spanlib.ops.jsd_triton import js_divergence_triton  # lazy: imports triton, CUDA only

        cases.append(Case("spanlib triton", make(js_divergence_triton), b * k))
    return cases


def _path_note(name: str, path: str) -> str:
    return "C kernel" if path == "native" else f"PyTorch fallback ({native.status(name)})"


def decode_cases(b, k, h, w, device, with_compile: bool) -> list[Case]:
    g = torch.Generator(device="cpu").manual_seed(0)
    heatmap = torch.softmax(torch.randn(b, k, h * w, generator=g) * 3, dim=-1).view(b, k, h, w)
    maps = [t.to(device).requires_grad_(True) for t in (heatmap, torch.randn(b, k, h, w, generator=g),
                                                          torch.randn(b, k, h, w, generator=g))]

    def make(fn, channels=b * k):
        # the first `channels` channels, as one image (the unfold baseline runs on a part)
        parts = maps if channels == b * k else [m.detach().reshape(1, b * k, h, w)[:, :channels].clone().requires_grad_(True) for m in maps]

        def step():  # gradients are dropped at the end, so a step starts from its inputs only
            fn(*parts, DECODE_RADIUS).sum().backward()
            for m in parts:
                m.grad = None

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
    else:
        from spanlib.ops.bali_triton import bali_decode_triton  # lazy: imports triton, CUDA only

        cases.append(Case("spanlib triton", make(bali_decode_triton), b * k))
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


def run_benchmark(op: str, device: str, repeats: int = 7, with_compile: bool = True,
                  progress: Callable[[str], None] = lambda s: None) -> dict:
    _check_request(op, device)
    info = device_info(device)
    load_before = os.getloadavg()
    bandwidth = copy_bandwidth(device)
    rows = []
    for b, k, h, w in JS_SIZES if op == "jsd" else DECODE_SIZES:
        rows.extend(_size_rows(op, (b, k, h, w), device, repeats, with_compile, progress))
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
               progress: Callable[[str], None]) -> list[dict]:
    """One row per method at one size (b, k, h, w), with its speedups against the first textbook
    method and the fastest torch.compile baseline."""
    b, k, h, w = size
    cases = (js_cases if op == "jsd" else decode_cases)(b, k, h, w, device, with_compile)
    floor = floor_bytes(op, b, k, h, w)
    base_ms = None
    size_rows = []
    for case in cases:
        progress(f"{op} {b}x{k}x{h}x{w} {case.method}")
        row = {"batch": b, "channels": k, "height": h, "width": w, "method": case.method,
               "floor_bytes": floor, "note": case.note, "median_ms": None}
        size_rows.append(row)
        if case.step is None or not _measure(case, row, device, repeats, (b * k) / case.channels_measured):
            continue
        row["gbps"] = floor / (row["median_ms"] * 1e-3) / 1e9
        if case.method.startswith("textbook") and base_ms is None:
            base_ms = row["median_ms"]
    compiled = [r["median_ms"] for r in size_rows if r["method"].startswith("torch.compile") and r["median_ms"]]
    for row in size_rows:
        if row["median_ms"] and base_ms:
            row["speedup_vs_first_textbook"] = base_ms / row["median_ms"]
        if row["median_ms"] and compiled:  # against the fastest torch.compile baseline
            row["speedup_vs_best_compile"] = min(compiled) / row["median_ms"]
    return size_rows


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
        "| size (B x K x H x W) | method | median ms | GB/s (floor bytes) | % copy BW | peak MiB | speed-up vs textbook | vs best torch.compile | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        size = f"{r['batch']} x {r['channels']} x {r['height']} x {r['width']}"
        if r.get("median_ms") is None:
            lines.append(f"| {size} | {r['method']} | - | - | - | - | - | - | {r['note']} |")
            continue
        peak = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.0f}"
        # results saved before the renaming call the first baseline "naive"
        speed = r.get("speedup_vs_first_textbook", r.get("speedup_vs_first_naive"))
        best = r.get("speedup_vs_best_compile")
        pct = 100 * r["gbps"] / result["copy_bandwidth_gbps"]
        lines.append(f"| {size} | {r['method']} | {r['median_ms']:.1f} | {r['gbps']:.2f} | {pct:.0f}% | {peak} | "
                     f"{'-' if speed is None else f'{speed:.2f}x'} | {'-' if best is None else f'{best:.2f}x'} | {r['note']} |")
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
