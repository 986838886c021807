"""Training images/s of a params recipe on the CPU, setting by setting, side by side in one run,
and whether each setting learns the same thing (issue 13: "raise training images/s on 2 cores by
at least 1.5x without changing what is learned").

    python kernels/cpu_train_throughput.py --recipe real,shared300w --steps 12 \
        --json kernels/results/cpu/train_throughput_real.json

Every setting builds the same setup from the same seed (``spanlib.training.train.build_setup``; same
initial weights, same batches, same disturbances) and runs ``--warmup`` then ``--steps`` timed
steps of ``spanlib.training.train.train_step``. Settings: the default (1 torch thread, data in the
training process, eager), 2 threads, the loader in one worker process, channels_last, the model
under ``torch.compile`` (``train.compile``), and combinations. "Same learning" is read off the
loss curve: the largest relative difference of the total loss from the default's over the warm-up
and timed steps, against the same number for the default run with another seed (the noise a
different draw of the same computation gives; floating-point reassociation in the first steps
grows into differences of that kind).
The machine's load average is recorded before and after: on a busy machine compare the ratios,
not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from params_args import add_params_arguments, params_from  # kernels/: beside this script

SETTINGS = {
    "default (1 thread eager)": {},
    "2 threads": {"threads": 2},
    "loader in 1 worker": {"train.num_workers": 1},
    "channels_last": {"channels_last": True},
    "torch.compile": {"train.compile": True},
    "torch.compile + loader worker": {"train.compile": True, "train.num_workers": 1},
    "torch.compile + loader worker + 2 threads": {"train.compile": True, "train.num_workers": 1, "threads": 2},
    "another seed (the noise scale)": {"seed": 1},
}


def run_setting(params: dict, variant: str, setting: dict, steps: int, warmup: int) -> dict:
    from spanlib.config.params import resolve
    from spanlib.training.train import build_setup, lr_at, make_engine, make_optimizer, train_step

    overrides = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in setting.items()
                 if k.startswith("train.") or k == "seed"]
    run = resolve(params, overrides=overrides)
    torch.set_num_threads(int(setting.get("threads", 1)))
    setup = build_setup(run, variant, torch.device("cpu"), progress=False)
    if setting.get("channels_last"):
        setup.model = setup.model.to(memory_format=torch.channels_last)
    setup.engine = make_engine(setup.model, setup.ctx, torch.device("cpu"), bool(run["train"].get("compile", False)))
    tp = run["train"]
    optimizer = make_optimizer(tp["optimizer"], setup.model.parameters(), tp["lr"])
    lr = lr_at(0, tp["iterations"], tp["lr"], tp["lr_milestones"], tp["lr_divisors"])
    losses = []
    t_first = time.perf_counter()
    for _ in range(warmup):
        losses.append(train_step(setup, optimizer, lr)["total"])
    warm_s = time.perf_counter() - t_first
    t0 = time.perf_counter()
    for _ in range(steps):
        losses.append(train_step(setup, optimizer, lr)["total"])
    step_s = (time.perf_counter() - t0) / steps
    per_step = 2 * tp["batch_size"] + (2 * setup.unlabeled.batch_size if setup.unlabeled else 0)
    return {"setting": setting, "step_s": step_s, "images_per_s": per_step / step_s, "warmup_s": warm_s,
            "losses": losses}


def main(argv=None) -> int:
    from spanlib.utils.provenance import code_version, machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_params_arguments(parser, recipe="real,shared300w")
    parser.add_argument("--variant", default="scpan")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated setting names (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    params = params_from(args)
    names = list(SETTINGS) if not args.only else [n.strip() for n in args.only.split(",")]
    result = {"machine": machine_info(), "python": platform.python_version(), "torch": torch.__version__,
              "code_version": code_version(), "recipe": args.recipe, "variant": args.variant,
              "steps": args.steps, "warmup": args.warmup, "load_average_before": os.getloadavg(), "rows": []}
    base = None
    for name in names:
        row = {"name": name, **run_setting(params, args.variant, SETTINGS[name], args.steps, args.warmup)}
        if base is None:
            base = row
        row["speedup"] = base["step_s"] / row["step_s"]
        row["max_rel_loss_diff"] = max(abs(a - b) / abs(b) for a, b in zip(row["losses"], base["losses"]))
        result["rows"].append(row)
        print(f"{name:45s} {1e3 * row['step_s']:8.1f} ms/step {row['images_per_s']:7.1f} img/s "
              f"{row['speedup']:5.2f}x  loss curve vs default: max rel diff {row['max_rel_loss_diff']:.1e}  "
              f"(warm-up {row['warmup_s']:.0f} s)", flush=True)
        if args.json:
            result["load_average_after"] = os.getloadavg()
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
