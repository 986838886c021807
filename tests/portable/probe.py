"""A tiny training and evaluation whose every bit is printed as one JSON line: the loss of each
step, a sha256 of the final weights and the evaluation's metrics. tests/test_portable_cpu.py runs it
natively and under QEMU's emulated CPUs (``qemu-x86_64 -cpu Haswell ...``) and compares the lines.

It must run inside one process (a child process would escape the emulator): one torch thread, no
data-loader workers, no process pool. ``python tests/portable/probe.py FACES_DIR OUT_DIR``, where
FACES_DIR holds ``spanlib synth`` faces (train/, common/ and unlabeled/ folders).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from spanlib.evaluation.evaluate import evaluate
from spanlib.config.params import load_params
from spanlib.training.train import train

REPO = Path(__file__).resolve().parents[2]


def tiny_params(faces: Path) -> dict:
    params = load_params(REPO / "params.yaml")
    params["data"].update(source="synthetic", root=str(faces), train_split="train", test_source="synthetic",
                          test_root=str(faces), test_splits=["common"], unlabeled_source="unlabeled",
                          unlabeled_root=str(faces / "unlabeled"))
    params["crop"]["input_size"] = 32
    params["model"].update(stages=2, width=16, depth=2)
    params["targets"]["field_radius"] = 2
    params["evaluate"]["decode_radius"] = 2
    params["train"].update(iterations=3, batch_size=2, checkpoint_every=100, val_every=0, num_workers=0,
                           threads=1, unlabeled_ratio=0.5)
    return params


def weights_sha256(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + b"\0" + state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(faces: Path, out: Path) -> dict:
    torch.set_num_threads(1)
    params = tiny_params(faces)
    result = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for variant in ("scpan", "semi_scpan"):
        ckpt_path = train(params, variant, out / f"{variant}.pt", progress=False)
        ckpt = torch.load(ckpt_path, weights_only=True)
        metrics = evaluate(ckpt_path, "synthetic", faces, "common", device="cpu", progress=False)
        # every number of the metrics JSON (per-face values included), as its exact repr
        result[variant] = {"loss": ckpt["metrics"]["train"], "weights": weights_sha256(ckpt["model_state"]),
                           "metrics": hashlib.sha256(json.dumps(metrics["subsets"], sort_keys=True)
                                                     .encode()).hexdigest(),
                           "nme": metrics["subsets"]["common"]["nme"]}
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2])), sort_keys=True))
