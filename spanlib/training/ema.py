"""An exponential moving average of the weights (``train.ema_decay``).

    W_ema <- d W_ema + (1 - d) W        after every optimiser step (BN statistics too),

kept by ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``; its first update
copies the weights, so nothing of the initialisation lingers (with d = 0.998, 4,000 steps leave
0.998^4000 = 3e-4 of the first step's weights). Not part of the paper: a common way to smooth the
last, noisy steps of a short schedule (docs/model.md, "EMA").

The average never feeds back into training, so the trained weights are bit for bit those of the
same run without it. Beside the training checkpoint ``out`` it is written as
``<stem>_ema<suffix>``: a complete checkpoint of the same run whose ``model_state`` is the average
(with ``averaged: {"decay", "updates", "of"}``), which ``spanlib evaluate``, ``export`` and
``predict`` take like any other and ``--resume`` refuses. The training checkpoint keeps the
average's state under ``ema_state`` so a resumed run continues it exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """The moving average of ``model`` (parameters and buffers) with ``decay``; None when 0 (off)."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def ema_path(out: str | Path) -> Path:
    """Where the averaged model of the run checkpointed at ``out`` is written."""
    out = Path(out)
    return out.with_name(f"{out.stem}_ema{out.suffix}")


def ema_state(ema: AveragedModel) -> dict:
    """The average's state for the training checkpoint (``n_averaged`` and ``module.*`` tensors)."""
    return {k: v.detach().cpu() for k, v in ema.state_dict().items()}


def averaged_info(ema: AveragedModel, decay: float, out: str | Path) -> dict:
    """The ``averaged`` entry of the EMA checkpoint: what it averages and over how many steps."""
    return {"decay": float(decay), "updates": int(ema.n_averaged), "of": Path(out).name}
