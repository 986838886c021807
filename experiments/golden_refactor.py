"""Golden bit-identity check for refactors that must not change any number (issue 24).

Trains a tiny run of every variant on a tiny synthetic set (CPU, one thread), evaluates each once,
and writes a JSON of the SHA-256 of every weight tensor, the loss values per logged step and the
evaluation metrics. Run it before and after a refactor and compare the two files:

    python experiments/golden_refactor.py /tmp/golden_before.json
    ... refactor ...
    python experiments/golden_refactor.py /tmp/golden_after.json
    python experiments/golden_refactor.py --compare /tmp/golden_before.json /tmp/golden_after.json

Besides one run of each variant, it stops and resumes a longer scpan run with validation on a
held-out quarter, and starts a shn_bali run from scpan's weights (train.init_from). To measure an
older commit with this script: ``git archive COMMIT | tar -x -C /tmp/old`` and run it with
``PYTHONPATH=/tmp/old`` from outside the checkout.

Only the command line (``spanlib.cli.main``) is used, so the script does not depend on where the
modules live.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["shn", "shn_bali", "shn_scpa", "scpan", "semi_scpan"]
SETTINGS = ["train.iterations=3", "train.batch_size=4", "train.checkpoint_every=100", "train.val_every=0",
            "train.num_workers=0", "train.threads=1", "crop.input_size=32", "model.stages=2", "model.width=16",
            "model.depth=2", "targets.field_radius=3", "evaluate.decode_radius=2", "train.unlabeled_ratio=0.5"]


def _live(out: Path) -> dict:
    folder = out.parent / f"{out.stem}_live" / "plots" / "metrics"
    rows = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        rows[str(tsv.relative_to(folder))] = tsv.read_text().splitlines()
    return rows


def _metrics(result):
    """The metrics JSON without fields that name temporary paths or timings."""
    if isinstance(result, dict):
        return {k: _metrics(v) for k, v in result.items()
                if not any(w in k for w in ("path", "root", "checkpoint", "time", "seconds", "sha256", "version",
                                            "provenance", "date", "host", "_s"))}
    if isinstance(result, list):
        return [_metrics(v) for v in result]
    return result


def _sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().cpu().numpy().tobytes()).hexdigest()


def _run(out: Path) -> dict:
    """Weights, live rows and the checkpoint's metrics (less speed, threads and paths) of a run."""
    ckpt = torch.load(out, weights_only=True, map_location="cpu")
    weights = {k: _sha256(v) for k, v in ckpt["model_state"].items()}
    metrics = {k: v for k, v in ckpt["metrics"].items() if k not in ("images_per_s", "threads")}
    if "init_from" in metrics:
        # the donor's path is temporary and its file hash covers the code version: weights and counts stay
        metrics["init_from"] = {k: v for k, v in metrics["init_from"].items() if k not in ("source", "path", "sha256")}
    return {"weights": weights, "live": _live(out), "metrics": metrics, "iteration": ckpt["iteration"]}


def run(out_json: Path) -> dict:
    from spanlib.cli import main

    torch.set_num_threads(1)
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "synthetic"
        assert main(["synth", "--out", str(data), "--n-train", "24", "--n-common", "6", "--n-challenging", "4",
                     "--n-unlabeled", "8", "--size", "64", "--format", "png", "--quiet"]) == 0
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"].update(root=str(data), test_root=str(data), unlabeled_root=str(data / "unlabeled"))
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        for variant in VARIANTS:
            out = tmp / f"{variant}.pt"
            assert main(["train", "--params", str(params_path), "--variant", variant, "--out", str(out),
                         "--device", "cpu", "--set", *SETTINGS]) == 0
            state = torch.load(out, weights_only=True, map_location="cpu")["model_state"]
            weights = {k: f"{_sha256(v)} {tuple(v.shape)} {v.dtype}" for k, v in state.items()}
            metrics_path = tmp / f"{variant}_metrics.json"
            assert main(["evaluate", "--checkpoint", str(out), "--source", "synthetic", "--root", str(data),
                         "--split", "common", "--device", "cpu", "--json", str(metrics_path), "--quiet"]) == 0
            golden[variant] = {"weights": weights, "live": _live(out),
                               "metrics": _metrics(json.loads(metrics_path.read_text()))}
        # the other paths of a run: validation on a held-out part, stop and resume with a longer
        # run, and init_from another run's weights
        out = tmp / "resumed.pt"
        held_out = ["train.val_fraction=0.25", "train.val_every=1"]
        assert main(["train", "--params", str(params_path), "--variant", "scpan", "--out", str(out), "--device", "cpu",
                     "--set", *SETTINGS, *held_out, "train.iterations=2"]) == 0
        assert main(["train", "--params", str(params_path), "--variant", "scpan", "--out", str(out), "--device", "cpu",
                     "--resume", "--set", *SETTINGS, *held_out, "train.iterations=4"]) == 0
        golden["scpan_resumed"] = _run(out)
        out = tmp / "init_from.pt"
        assert main(["train", "--params", str(params_path), "--variant", "shn_bali", "--out", str(out),
                     "--device", "cpu", "--set", *SETTINGS, f"train.init_from={tmp / 'scpan.pt'}"]) == 0
        golden["shn_bali_init_from"] = _run(out)
    out_json.write_text(json.dumps(golden, indent=1, sort_keys=True))
    return golden


def compare(a: Path, b: Path) -> int:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    if x == y:
        n = sum(len(v["weights"]) for v in x.values())
        print(f"identical: {len(x)} runs, {n} weight tensors, losses and metrics")
        return 0
    for variant in sorted(set(x) | set(y)):
        for part in ("weights", "live", "metrics", "iteration"):
            if x.get(variant, {}).get(part) != y.get(variant, {}).get(part):
                print(f"DIFFERENT: {variant} {part}")
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.paths))
    run(args.paths[0])
