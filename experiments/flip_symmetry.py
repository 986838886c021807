"""Why the flip test hurts on 300-W: is the model mirror-symmetric on mirrored faces? (issue 23)

    python experiments/flip_symmetry.py --checkpoint models/e2e/shn_bali_s0.pt [--checkpoint ...] \
        [--root ../shared/data/300w] [--calibration-faces 200] [--out results/real/flip_symmetry]

On the seeded held-out split of 300-W ``train`` (the checkpoint's ``train.val_fraction`` /
``train.val_seed``), from the ground-truth box (``spanlib evaluate``'s benchmark crop), each model
predicts
- ``plain``: the faces as they are;
- ``mirrored faces``: every image mirrored (x -> W - x in corner-origin pixels) with its landmarks
  mirrored and relabelled by the scheme's ``flip_perm``: an exact mirror of the task, no test-time
  trick involved;
- ``flip test``: ``evaluate.flip_test`` (the mean of the plain and the mirrored-crop estimates);
- ``flip test, disturb.mirror_offset = o``: the flip test as ``evaluate`` runs it when the
  checkpoint's ``disturb.mirror_offset`` is o (image px): the mirrored estimate moved by 2 o times
  each crop's scale; o is measured as half the mean x gap between the plain and the mirrored-crop
  estimates, in image px, on ``--calibration-faces`` training faces (never on the held-out ones).
The signed bias (prediction - ground truth, crop pixels, mean over faces and points) shows whether
the mirrored error is a constant shift (a coordinate convention) or more. A model trained on labels
that sit o px right of their mirror-symmetric place predicts "o px right of what it sees" on any
face, so on a mirrored face it is 2 o off.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from spanlib.config.schemes import mirror_landmarks
from spanlib.data.sample import Sample
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.evaluation.evaluate import evaluate_params, held_out_settings, predict_samples, sha256_file
from spanlib.evaluation.metrics import nme_per_face
from spanlib.evaluation.peers import make_peer, predict_peer
from spanlib.evaluation.stats import paired_bootstrap
from spanlib.evaluation.compare import difference_text
from spanlib.inference.checkpoint import load_model
from spanlib.utils.files import write_json, write_text
from spanlib.utils.provenance import code_version, machine_info


def mirrored(samples: list, scheme) -> list:
    """The faces mirrored left-right: image columns reversed, points through ``mirror_landmarks``."""
    out = []
    for s in samples:
        image = np.ascontiguousarray(s.image[:, ::-1])
        points = mirror_landmarks(s.landmarks.astype(np.float32), image.shape[1], scheme)
        out.append(Sample(s.path, points, None, image=image))
    return out


def to_crop(points: np.ndarray, crop_matrix: np.ndarray) -> np.ndarray:
    """(N, K, 2) image pixels -> crop pixels with each face's (2, 3) image -> crop matrix."""
    m = crop_matrix.astype(np.float64)
    return np.einsum("nij,nkj->nki", m[:, :, :2], points.astype(np.float64)) + m[:, None, :, 2]


def plain_and_flip_only(model, samples: list, radius_settings: dict) -> tuple[dict, np.ndarray]:
    """The plain pass and the mirrored-crop estimate alone (image px): flip_test returns the mean
    of the two, so the mirrored one is 2 * mean - plain."""
    plain = predict_samples(model, samples, evaluate_params(model.params, {**radius_settings, "flip_test": False}),
                            progress=False)
    mean = predict_samples(model, samples, evaluate_params(model.params, {**radius_settings, "flip_test": True}),
                           progress=False)
    return plain, 2 * mean["pred"].astype(np.float64) - plain["pred"].astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--calibration-faces", type=int, default=200,
                        help="training faces (never the held-out ones) that measure the mirrored estimate's x offset")
    parser.add_argument("--out", type=Path, default=Path("results/real/flip_symmetry"))
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", args.root, "train")
    rows, lines = [], []
    for path in args.checkpoint:
        model = load_model(path)
        fraction, seed = held_out_settings(model.params, True)
        train, held = held_out_split(samples, fraction, seed)
        held = [s for s in held if s.landmarks is not None]
        calibration = [s for s in train if s.landmarks is not None][:args.calibration_faces]
        gt_box = {"crop_box": "landmarks"}
        gt = np.stack([s.landmarks for s in held]).astype(np.float64)

        cal_plain, cal_flip = plain_and_flip_only(model, calibration, gt_box)
        gap = (to_crop(cal_plain["pred"], cal_plain["crop_matrix"])
               - to_crop(cal_flip, cal_plain["crop_matrix"])).mean(axis=1)  # (faces, 2) crop px
        scale = np.sqrt(np.abs(np.linalg.det(cal_plain["crop_matrix"][:, :, :2].astype(np.float64))))
        offset = gap.mean(axis=0)
        mirror_px = float(np.mean(gap[:, 0] / scale) / 2)  # o in image px

        plain, flip_only = plain_and_flip_only(model, held, gt_box)
        matrix = plain["crop_matrix"]
        model.params.setdefault("disturb", {})["mirror_offset"] = round(mirror_px, 2)
        calibrated = predict_samples(model, held, evaluate_params(model.params, {**gt_box, "flip_test": True}),
                                     progress=False)
        model.params["disturb"]["mirror_offset"] = 0.0
        mirror_faces = mirrored(held, model.scheme)
        mirror = predict_samples(model, mirror_faces, evaluate_params(model.params, gt_box), progress=False)
        mirror_gt = np.stack([s.landmarks for s in mirror_faces]).astype(np.float64)
        estimates = {
            "plain": (plain["pred"], gt, matrix),
            "mirrored faces": (mirror["pred"], mirror_gt, mirror["crop_matrix"]),
            "flip test": (0.5 * (plain["pred"] + flip_only), gt, matrix),
            f"flip test, disturb.mirror_offset = {mirror_px:.2f}": (calibrated["pred"], gt, matrix),
        }
        errors = {name: nme_per_face(p, g, "io", model.scheme) for name, (p, g, _) in estimates.items()}
        info = {"checkpoint": path, "sha256": sha256_file(path), "faces": len(held),
                "calibration_faces": len(calibration), "gap_crop_px": offset.tolist(),
                "mirror_offset_image_px": mirror_px, "estimates": {}}
        lines += [f"### {path}", "",
                  f"{len(held)} held-out faces, ground-truth box. On {len(calibration)} training faces the plain "
                  f"estimate is x {offset[0]:+.2f}, y {offset[1]:+.2f} crop px from the mirrored-crop one "
                  f"(input {model.params['crop']['input_size']} px): the labels sit o = {mirror_px:.2f} image px "
                  "right of their mirror-symmetric place, as this model learned them.", "",
                  "| estimate | NME_io % | - plain (95 % paired bootstrap) | bias x, crop px | bias y, crop px |",
                  "|---|---|---|---|---|"]
        for name, (p, g, m) in estimates.items():
            signed = to_crop(p, m) - to_crop(g, m)
            bias = signed.mean(axis=(0, 1))
            diff = "" if name == "plain" else difference_text(paired_bootstrap(errors[name][None], errors["plain"][None]))
            lines.append(f"| {name} | {100 * errors[name].mean():.2f} | {diff} | {bias[0]:+.2f} | {bias[1]:+.2f} |")
            info["estimates"][name] = {"nme_io": float(errors[name].mean()), "bias_crop_px": bias.tolist(),
                                       "bias_x_per_point_crop_px": signed[..., 0].mean(axis=0).tolist()}
        lines.append("")
        rows.append(info)

    # an independent reading of the labels' convention: dlib's predictor, trained on the original 300-W
    _, held = held_out_split(samples, *held_out_settings(load_model(args.checkpoint[0]).params, True))
    held = [s for s in held if s.landmarks is not None]
    dlib = predict_peer(make_peer("dlib"), held, progress=False)["pred"].astype(np.float64)
    dlib_bias = (dlib - np.stack([s.landmarks for s in held])).mean(axis=(0, 1))
    lines += [f"dlib's 68-point predictor on the same {len(held)} held-out faces (its own HOG box, else the "
              f"calibrated landmarks' box) sits x {dlib_bias[0]:+.2f}, y {dlib_bias[1]:+.2f} image px from these "
              "labels (mean over faces and points).", ""]

    machine = machine_info()
    header = (f"# Flip symmetry of the models on 300-W\n\n`python experiments/flip_symmetry.py "
              + " ".join(f"--checkpoint {c}" for c in args.checkpoint)
              + f" --calibration-faces {args.calibration_faces}`; code {code_version()}, {machine.get('cpu')}; "
              f"data {args.root}.\n")
    write_text(args.out.with_suffix(".md"), header + "\n" + "\n".join(lines))
    write_json(args.out.with_suffix(".json"), {"runs": rows, "dlib_bias_image_px": dlib_bias.tolist(), "code_version": code_version(), "machine": machine})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
