"""How much each term of eq. 19 steers training: per-term gradient norms on real batches.

With Adam the overall scale of the loss does not matter, but the share of each term in the summed
gradient does: a term whose gradient is a thousandth of the others' barely moves the weights. This
module measures, for a model (at initialisation or from a checkpoint) and a few training batches,
for each weighted term of :func:`spanlib.model.losses.objective_terms`:

- ``value``: the term as it enters the total;
- ``grad_params``: the L2 norm of its gradient over all parameters;
- ``grad_peak`` / ``grad_rest``: the mean |d term / d logit| of the last-stage landmark heatmap at
  the target's peak pixel and elsewhere (how hard the term pushes the right pixel up).

``docs/model.md`` ("Why JS learns slowly") reports these for the three readings of eq. 15.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spanlib.inference.checkpoint import read_checkpoint
from spanlib.model.losses import objective_terms
from spanlib.training.train import build_setup, forward, next_batch


def term_gradients(params: dict, variant: str, batches: int = 4, checkpoint: str | Path | None = None,
                   seed_batches: int = 0) -> dict:
    """``{term: {value, grad_params, grad_peak, grad_rest}}`` averaged over ``batches`` batches."""
    setup = build_setup(params, variant, torch.device("cpu"), progress=False)
    if checkpoint is not None:
        setup.model.load_state_dict(read_checkpoint(checkpoint, "cpu")["model_state"])
    model = setup.model
    model.train()
    for _ in range(seed_batches):
        next(setup.labeled)
    named = [p for p in model.parameters() if p.requires_grad]
    sums: dict[str, dict[str, list]] = {}
    for _ in range(batches):
        images, n, targets, pairs = next_batch(setup)
        outputs = forward(model, images)
        last = outputs["heatmaps"][-1]
        last.retain_grad()
        terms = objective_terms(outputs, n, targets, pairs, model.spec, setup.loss_config)
        target_last = targets["heatmaps"][last.shape[-1]]
        peak = target_last.flatten(2).argmax(dim=-1)  # (2n, K)
        for name, value in terms.items():
            model.zero_grad(set_to_none=True)
            last.grad = None
            value.backward(retain_graph=True)
            grads = [p.grad.flatten() for p in named if p.grad is not None]
            norm = float(torch.cat(grads).norm()) if grads else 0.0
            g = last.grad if last.grad is not None else torch.zeros_like(last)
            g = g.flatten(2)[: 2 * n].abs()
            at_peak = g.gather(-1, peak[..., None]).squeeze(-1)
            rest = (g.sum(dim=-1) - at_peak) / (g.shape[-1] - 1)
            entry = sums.setdefault(name, {"value": [], "grad_params": [], "grad_peak": [], "grad_rest": []})
            entry["value"].append(float(value.detach()))
            entry["grad_params"].append(norm)
            entry["grad_peak"].append(float(at_peak.mean()))
            entry["grad_rest"].append(float(rest.mean()))
    return {name: {k: float(np.mean(v)) for k, v in entry.items()} for name, entry in sums.items()}
