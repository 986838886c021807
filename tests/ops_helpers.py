"""Shared helpers for the ops tests: output poisoning and backend selection."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def poisoned(monkeypatch):
    """Every torch.empty / empty_like made while the test runs comes filled with NaN (floats) or
    -7 (integers), so a kernel that leaves an output element unwritten fails the comparison."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def fill(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(-7)
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: fill(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: fill(real_empty_like(*a, **k)))


def use_backend(monkeypatch, name: str) -> None:
    monkeypatch.setenv("SPANLIB_OPS", name)
