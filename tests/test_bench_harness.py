"""spanlib.bench.harness on the CPU: the benchmark runs at tiny sizes, the CUDA-only device timing
and warps sweep are skipped cleanly on CPU, and the CUDA cases (the Triton method and its sweep,
through the interpreter here) are rehearsed with the device timer stood in for."""

from __future__ import annotations

import pytest
import torch

from spanlib.bench import harness
from spanlib.utils.errors import ParamError


def test_cpu_benchmark_runs_at_tiny_sizes_without_device_columns(tmp_path):
    result = harness.run_benchmark("jsd", "cpu", repeats=1, with_compile=False, sizes=[(1, 2, 8, 8)],
                                   sweep_warps=(4, 8))
    assert [r["method"] for r in result["rows"]] == ["textbook (autograd)", "spanlib cpu"]
    assert all(r["median_ms"] > 0 and "device_ms" not in r for r in result["rows"])
    assert result["device_timing_method"] is None and result["sweep_warps"].startswith("skipped: CUDA only")
    table = harness.markdown_table(result)
    assert "device ms" in table and "| 1 x 2 x 8 x 8 | spanlib cpu |" in table


def test_parse_sizes():
    assert harness.parse_sizes("16x81x64x64, 2x3x5x7") == [(16, 81, 64, 64), (2, 3, 5, 7)]
    for bad in ("16x81x64", "2x3x0x7", "axbxcxd", ""):
        with pytest.raises(ParamError, match="--sizes"):
            harness.parse_sizes(bad)


@pytest.mark.parametrize("op", ["jsd", "decode"])
def test_cuda_cases_and_warps_sweep_rehearsed_on_cpu(monkeypatch, op):
    """The rows a CUDA run makes, with the Triton cases run by the interpreter and the device timer
    replaced by one that runs the step: every step and forward runs, the sweep rows carry
    num_warps, device and forward-alone times, and the table prints them."""
    ran = []

    def fake_device_ms(step):
        step()
        ran.append(step)
        return 0.5, harness.GRAPH_METHOD

    monkeypatch.setattr(harness, "cuda_device_ms", fake_device_ms)
    cases_fn = harness.js_cases if op == "jsd" else harness.decode_cases
    monkeypatch.setattr(harness, "js_cases" if op == "jsd" else "decode_cases",
                        lambda *a, **k: [c for c in cases_fn(*a, **k, with_triton=True)
                                         if "unfold" not in c.method and "mask" not in c.method])
    rows = harness._size_rows(op, (1, 2, 12, 12), "cpu", 1, False, lambda s: None, sweep_warps=(1, 2))
    sweep = [r for r in rows if "num_warps" in r]
    assert [r["num_warps"] for r in sweep] == [1, 2] and len(ran) == 4  # step + forward per width
    assert all(r["device_ms"] == 0.5 and r["forward_device_ms"] == 0.5 and r["median_ms"] is None for r in sweep)
    assert any(r["method"] == "spanlib triton" and r["median_ms"] > 0 for r in rows)
    result = {"op": op, "what": harness.WHAT[op], "radius": 5, "device": harness.device_info("cpu"),
              "copy_bandwidth_gbps": 100.0, "memory_method": "m", "timing_method": "t",
              "device_timing_method": "d", "load_average_before": (0, 0, 0), "load_average_after": (0, 0, 0),
              "rows": rows}
    table = harness.markdown_table(result)
    assert "| spanlib triton num_warps=2 | - | 0.500 |" in table and "forward alone 0.500 ms" in table


def test_device_time_falls_back_to_the_profiler_and_says_so(monkeypatch):
    def capture_fails(step):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(harness, "_graph_ms", capture_fails)
    monkeypatch.setattr(harness, "_profiler_ms", lambda step: 0.25)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    ms, how = harness.cuda_device_ms(lambda: None)
    assert ms == 0.25 and how.startswith(harness.PROFILER_METHOD) and "not permitted" in how
    row = {"note": ""}
    harness._measure_device(harness.Case("m", lambda: None, 2), row, floor=10**6, scale=1.0)
    assert row["device_ms"] == 0.25 and "device time: profiler" in row["note"]


def test_cuda_apis_the_device_timer_uses_exist():
    """The CUDA-graph and profiler calls cannot run here; at least the names must resolve."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity

    assert callable(torch.cuda.graph) and hasattr(torch.cuda, "CUDAGraph") and hasattr(torch.cuda, "Stream")
    assert ProfilerActivity.CUDA is not None and DeviceType.CUDA is not None
    import inspect

    import triton.testing

    assert {"warmup", "rep", "return_mode"} <= set(inspect.signature(triton.testing.do_bench).parameters)
