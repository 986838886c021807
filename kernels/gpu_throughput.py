"""Training and inference images/s of a params recipe on one device, for several settings side by
side in one run (section IV-G; issue 25's "training throughput of the paper's configuration").

    python kernels/gpu_throughput.py --recipe paper,shared300w --set data.root=... \
        --config "shn variant=shn" --config "scpan variant=scpan" \
        --config "scpan_dev variant=scpan train.device_targets=true" \
        --steps 15 --warmup 4 --json OUT.json --profile-config scpan --profile-out OUT.txt

Each ``--config "NAME [variant=V] [KEY=VALUE ...]"`` is the recipe plus those overrides (variant
defaults to scpan). Training: ``build_setup`` and ``train_step`` exactly as ``spanlib train`` runs
them (bf16 autocast and channels_last on CUDA, pinned loader memory, the engine compiled when
``train.compile`` is true): ``--warmup`` steps (the first one timed on its own: it holds
torch.compile's compilation), then ``--steps`` timed steps; every step synchronises (the loss is
read back), as in training. Images/s counts both views of every pair (and the unlabeled pairs of
semi_scpan). The loader alone is timed over as many batches afterwards (its queue was drained by
the steps, so this is its sustained rate), which says whether the loader or the step bounds
training. TFLOP/s: 3x the forward FLOPs (``spanlib.bench.profile.count_flops``) per image times
images/s, the usual estimate of a training step's arithmetic.

``--profile-config NAME`` profiles 3 more steps of that setting with ``torch.profiler`` and
writes the operators by device time and by host time to ``--profile-out``. ``--inference`` adds
forward + decode images/s per variant (batch 1 and ``--batch``). Results are written after every
setting, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

from params_args import add_params_arguments  # kernels/: beside this script
from spanlib.bench.profile import count_flops, profile_variant
from spanlib.config.params import resolve
from spanlib.config.schema import Config
from spanlib.model.network import build_model
from spanlib.training.train import build_setup, lr_at, make_engine, make_optimizer, train_step


def parse_config(text: str) -> tuple[str, str, list[str]]:
    """``"NAME [variant=V] [KEY=VALUE ...]"`` -> (name, variant, overrides)."""
    name, *items = text.split()
    variant, overrides = "scpan", []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--config {text!r}: {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        if key == "variant":
            variant = value
        else:
            overrides.append(item)
    return name, variant, overrides


def forward_gflops(params: dict, variant: str) -> float:
    """Forward GFLOPs per image of the variant at these params (counted on the meta device)."""
    cfg = Config.from_params(resolve(params, overrides=[f"model.variant={variant}"]))
    with torch.device("meta"):
        model = build_model(cfg.model, 68, 13, cfg.crop.input_size)
    return count_flops(model, batch=1) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training(params: dict, variant: str, device: torch.device, steps: int, warmup: int,
                  profile_out: Path | None = None) -> dict:
    setup = build_setup(params, variant, device, progress=False)
    tc = setup.config.train
    if device.type == "cuda":
        setup.model = setup.model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(tc.optimizer, setup.model.parameters(), tc.lr)
    setup.engine = make_engine(setup.model, setup.ctx, device, tc.compile)
    setup.model.train()
    lr = lr_at(0, tc.iterations, tc.lr, tc.lr_milestones, tc.lr_divisors)
    t0 = time.perf_counter()
    train_step(setup, optimizer, lr)  # the first step: torch.compile compiles here
    _sync(device)
    first_step_s = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        train_step(setup, optimizer, lr)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = []
    for _ in range(steps):
        losses.append(train_step(setup, optimizer, lr)["total"])
    _sync(device)
    step_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(steps):  # the loader alone, same batches per step
        next(setup.labeled)
        if setup.unlabeled is not None:
            next(setup.unlabeled)
    data_s = (time.perf_counter() - t0) / steps
    if profile_out is not None:
        write_profile(setup, optimizer, lr, device, profile_out)
    per_step = 2 * tc.batch_size + (2 * setup.unlabeled.batch_size if setup.unlabeled else 0)
    row = {"variant": variant, "steps": steps, "warmup": warmup, "batch_pairs": tc.batch_size,
           "images_per_step": per_step, "step_s": step_s, "images_per_s": per_step / step_s,
           "iterations_per_s": 1.0 / step_s, "first_step_s": first_step_s, "loader_only_batch_s": data_s,
           "loader_images_per_s": per_step / data_s if data_s > 0 else None,
           "num_workers": tc.num_workers, "compile": tc.compile,
           "device_targets": bool(getattr(tc, "device_targets", False)),
           "loss_first_last": [losses[0], losses[-1]],
           "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None}
    for stream in (setup.labeled, setup.unlabeled):  # end the loader workers before the next setting
        if stream is not None:
            stream._iter = None
    del setup, optimizer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def write_profile(setup, optimizer, lr: float, device: torch.device, path: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            train_step(setup, optimizer, lr)
        _sync(device)
    averages = prof.key_averages()
    device_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"3 training steps of {setup.variant}, {setup.config.crop.input_size} px, batch "
                    f"{setup.config.train.batch_size} pairs\n\nby device time\n"
                    + averages.table(sort_by=device_key, row_limit=30)
                    + "\n\nby host time\n" + averages.table(sort_by="self_cpu_time_total", row_limit=30))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_params_arguments(parser, recipe=None)
    parser.add_argument("--config", action="append", default=[], metavar='"NAME [variant=V] [KEY=VALUE ...]"')
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64, help="the large inference batch")
    parser.add_argument("--inference", action="store_true", help="also forward + decode images/s per variant")
    parser.add_argument("--profile-config", default=None, help="profile 3 steps of this setting")
    parser.add_argument("--profile-out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in (args.config or ["scpan variant=scpan"])]
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    base = resolve(args.params, args.recipe, args.overrides)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{os.cpu_count()}",
              "torch": torch.__version__, "recipe": args.recipe, "overrides": args.overrides,
              "model": base["model"], "input_size": base["crop"]["input_size"],
              "training": [], "inference": []}

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))

    gflops = {}
    for name, variant, overrides in configs:
        params = resolve(base, overrides=overrides)
        if variant not in gflops:
            gflops[variant] = forward_gflops(params, variant)
        profile_out = args.profile_out if name == args.profile_config else None
        try:
            row = time_training(params, variant, device, args.steps, args.warmup, profile_out)
        except Exception as exc:  # one failing setting must not cost the others
            row = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"}
            print(f"train {name:22s} FAILED {row['error']}", flush=True)
        row.update(name=name, overrides=overrides, forward_gflops=gflops[variant])
        if "images_per_s" in row:
            row["train_tflops_est"] = 3 * gflops[variant] * row["images_per_s"] / 1e3
            print(f"train {name:22s} {row['images_per_s']:8.1f} img/s {1e3 * row['step_s']:7.1f} ms/step "
                  f"(batch {row['batch_pairs']} pairs, first step {row['first_step_s']:.1f} s) "
                  f"loader alone {row['loader_images_per_s'] or 0:8.1f} img/s, ~{row['train_tflops_est']:.1f} "
                  f"TFLOP/s", flush=True)
        result["training"].append(row)
        save()
    if args.inference:
        for variant in dict.fromkeys(v for _, v, _ in configs):
            entry = profile_variant(base, variant, device, seconds=2.0, large_batch=args.batch)
            result["inference"].append(entry)
            print(f"infer {variant:10s} batch 1 {entry['batch1']['images_per_s']:8.1f} img/s, batch {args.batch} "
                  f"{entry['large_batch']['images_per_s']:8.1f} img/s", flush=True)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
