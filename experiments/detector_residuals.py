"""How far the calibrated face detector's box is from the landmarks' box on 300-W training faces:
the spread that ``crop.jitter_shift`` / ``crop.jitter_scale`` of the ``real`` recipe draw from.

    python experiments/detector_residuals.py [--root ../shared/data/300w] [--detector dlib] \
        [--out results/real/detector_residuals]

Faces: the training part of the seeded split of 300-W ``train`` (``train.val_fraction`` 0.1,
``train.val_seed`` 0 of params.yaml's ``real`` recipe: the held-out faces are not used). Each image
is resized by a seeded factor in [0.6, 1.5] (``spanlib.inference.detect.box_residuals``) so that faces fall
across the detector's pyramid. Writes the mean, sd and percentiles of dx, dy (box sides) and the
log side ratio, with the machine and code version.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from spanlib.config.params import resolve
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.inference.detect import FaceDetector, box_residuals
from spanlib.utils.files import write_json, write_text
from spanlib.utils.provenance import code_version, machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--detector", default="dlib", choices=("dlib", "haar"))
    parser.add_argument("--out", type=Path, default=Path("results/real/detector_residuals"))
    args = parser.parse_args()

    params = resolve("params.yaml", "real")
    fraction, seed = float(params["train"]["val_fraction"]), int(params["train"]["val_seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = [s for s in read_source("300w", args.root, "train") if s.landmarks is not None]
    train, _ = held_out_split(samples, fraction, seed)
    detector = FaceDetector(backend=args.detector)
    found = box_residuals(detector, train, seed=0)
    stats = {}
    for key in ("dx", "dy", "log_scale"):
        v = found[key]
        stats[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)),
                      "p5": float(np.percentile(v, 5)), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
    machine = machine_info()
    lines = [f"# The calibrated {detector.describe()} box against the landmarks' box",
             "",
             f"`python experiments/detector_residuals.py --detector {args.detector}`; code {code_version()}, "
             f"{machine.get('cpu')}; {found['found']} of the {found['faces']} training faces of 300-W train under "
             f"{args.root} found (the held-out {fraction:g} split, seed {seed}, left out); images resized by a seeded "
             f"factor in [0.6, 1.5].",
             "",
             "| quantity | mean | sd | 5 % | median | 95 % |",
             "|---|---|---|---|---|---|"]
    names = {"dx": "centre x offset (box sides)", "dy": "centre y offset (box sides)",
             "log_scale": "log(detector side / landmark side)"}
    for key, s in stats.items():
        lines.append(f"| {names[key]} | {s['mean']:+.4f} | {s['sd']:.4f} | {s['p5']:+.4f} | {s['p50']:+.4f} | "
                     f"{s['p95']:+.4f} |")
    lines += ["", f"The `real` recipe's jitter: `crop.jitter_shift: [{stats['dx']['sd']:.3f}, {stats['dy']['sd']:.3f}]`, "
              f"`crop.jitter_scale: {stats['log_scale']['sd']:.3f}` (the sds; the means are the calibration's job)."]
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(args.out.with_suffix(".json"), {"stats": stats, "found": found["found"], "faces": found["faces"],
                                               "detector": detector.describe(), "code_version": code_version(),
                                               "machine": machine})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
