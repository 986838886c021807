"""Training and inference images/s of a params recipe on one device (section IV-G, issue 13).

    python kernels/gpu_throughput.py --params params.yaml --recipe paper,shared300w \
        --set data.root=... --variants shn,scpan --device cuda --json OUT.json

Training: ``spanlib.training.train.build_setup`` and ``train_step`` exactly as ``spanlib train`` runs them
(bf16 autocast and channels_last on CUDA, the data loader with ``train.num_workers`` processes),
``--warmup`` steps, then ``--steps`` timed steps (the device is synchronised by the loss read-out
of every step). Images/s counts both views of every pair (and the unlabeled pairs of semi_scpan).
The data pipeline alone is timed over the same number of batches, so the table shows whether the
loader or the device bounds a step. Inference: ``spanlib.bench.profile.profile_variant`` (forward + BALI
decoding, batch 1 and ``--batch``) at the same params.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from params_args import add_params_arguments, params_from  # kernels/: beside this script


def time_training(params: dict, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    from spanlib.training.train import build_setup, lr_at, make_optimizer, train_step

    setup = build_setup(params, variant, device, progress=False)
    if device.type == "cuda":
        setup.model = setup.model.to(memory_format=torch.channels_last)
    tp = params["train"]
    optimizer = make_optimizer(tp["optimizer"], setup.model.parameters(), tp["lr"])
    lr = lr_at(0, tp["iterations"], tp["lr"], tp["lr_milestones"], tp["lr_divisors"])
    for _ in range(warmup):
        train_step(setup, optimizer, lr)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(setup, optimizer, lr)
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(steps):  # the loader alone, same batches per step
        next(setup.labeled)
        if setup.unlabeled is not None:
            next(setup.unlabeled)
    data_s = (time.perf_counter() - t0) / steps
    per_step = 2 * tp["batch_size"] + (2 * setup.unlabeled.batch_size if setup.unlabeled else 0)
    return {"variant": variant, "steps": steps, "warmup": warmup, "batch_pairs": tp["batch_size"],
            "images_per_step": per_step, "step_s": step_s, "images_per_s": per_step / step_s,
            "iterations_per_s": 1.0 / step_s, "loader_only_batch_s": data_s,
            "num_workers": tp["num_workers"],
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None}


def main(argv=None) -> int:
    from spanlib.bench.profile import profile_variant

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_params_arguments(parser, recipe=None)
    parser.add_argument("--variants", default="scpan")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="the large inference batch")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    params = params_from(args)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{os.cpu_count()}",
              "torch": torch.__version__, "recipe": args.recipe, "overrides": args.overrides,
              "model": params["model"], "input_size": params["crop"]["input_size"],
              "training": [], "inference": []}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        row = time_training(params, variant, device, args.steps, args.warmup)
        result["training"].append(row)
        print(f"train {variant:10s} {row['images_per_s']:8.1f} img/s  {1e3 * row['step_s']:7.1f} ms/step  "
              f"loader alone {1e3 * row['loader_only_batch_s']:7.1f} ms/batch ({row['num_workers']} workers)", flush=True)
        if not args.no_inference:
            entry = profile_variant(params, variant, device, seconds=2.0, large_batch=args.batch)
            result["inference"].append(entry)
            print(f"infer {variant:10s} batch 1 {entry['batch1']['images_per_s']:8.1f} img/s, batch {args.batch} "
                  f"{entry['large_batch']['images_per_s']:8.1f} img/s", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
