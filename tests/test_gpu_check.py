"""kernels/gpu_check.py rehearsed on the CPU: its checks run the Triton kernels through the
interpreter (``.cuda()`` stood in by the identity), so the script a GPU run executes once is
known to work and to pass on small shapes of each kind (single block, looped, weighted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ops_helpers import use_backend

SCRIPT = Path(__file__).resolve().parents[1] / "kernels" / "gpu_check.py"


@pytest.fixture
def gpu_check(monkeypatch):
    use_backend(monkeypatch, "triton")
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("weighted", [False, True])
def test_js_checks_pass(gpu_check, monkeypatch, dtype, weighted):
    from spanlib.ops import jsd_triton

    row = gpu_check.check_js((2, 3, 5, 7), dtype, seed=1, zero_channel=True, weighted=weighted)
    assert row["ok"], row
    assert ("rel_err_grad_weight" in row) == weighted
    monkeypatch.setattr(jsd_triton, "MAX_SINGLE_BLOCK", 16)  # the looped forward, tiled backward
    monkeypatch.setattr(jsd_triton, "LOOP_BLOCK", 16)
    assert gpu_check.check_js((1, 2, 6, 7), dtype, seed=2, zero_channel=True, weighted=weighted)["ok"]


def test_bali_check_passes(gpu_check):
    assert gpu_check.check_bali((2, 3, 7, 9), torch.float32, 1, seed=3)["ok"]
