"""Train with the forward pass under CPU bf16 autocast: does it cost accuracy, and what does it save?

On CUDA the trainer already runs the forward under bf16 autocast (``spanlib.training.train.forward``).
On the CPU it runs float32. A CPU with AVX512-BF16 / AMX (the development machine's Xeon has both)
runs bf16 convolutions faster: one thread, the bundled recipe's network, 16 crops of 128 px,
forward + backward + Adam took 755 ms in float32 and 559 ms under bf16 autocast (1.35x; a quiet
machine, 2026-12-05). If the learning is the same, the 2-hour budget of issue 23 holds about a
third more iterations.

This script runs ``spanlib train`` with the same arguments, the forward under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (the loss, the backward's float32 master weights
and the validation stay as they are; the model's outputs are cast back to float32 before the
loss). Nothing in the checkpoint records it: name the output so (``models/e2e/bf16_s0.pt``)::

    python experiments/train_bf16_cpu.py --recipe real,shared300w --set seed=0 train.threads=1 \\
        train.iterations=4000 --out models/e2e/bf16_s0.pt

The speed inside the trainer: the same short run (``train.iterations=60``) by ``spanlib train`` and
by this script, side by side, one thread each; their logs print images/s.
"""

from __future__ import annotations

import sys

import torch

import spanlib.training.train as train_module


def bf16_forward(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """``train.forward`` with the CPU forward under bf16 autocast, outputs back to float32."""
    if images.device.type != "cpu":
        return float32_forward(model, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(images)
    return {key: ([t.float() for t in value] if isinstance(value, list)
                  else value.float() if isinstance(value, torch.Tensor) else value)
            for key, value in outputs.items()}


float32_forward = train_module.forward


def main() -> None:
    train_module.forward = bf16_forward
    from spanlib.cli import main as cli_main

    raise SystemExit(cli_main(["train", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
