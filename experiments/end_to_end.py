"""Our whole path against dlib's on the same faces and the same face-detector boxes (issue 23).

    python experiments/end_to_end.py --run NAME=CHECKPOINT[,CHECKPOINT...] ... \
        [--inference NAME:KEY=VALUE[,KEY=VALUE]] [--versus A:B] \
        [--root ../shared/data/300w] [--refine 0 1 2] [--out results/real/end_to_end]

``--inference`` changes ``evaluate`` settings of one run at test time (for example
``flip_test=true`` or ``decode_radius=2``): the same checkpoints under another name, so that an
inference-only knob is compared with ``--versus`` on the same faces and seeds.

Faces: the seeded held-out split of 300-W ``train`` (``train.val_fraction`` 0.1, ``train.val_seed`` 0
of the first checkpoint: 201 of the 2,011 faces, never trained on by the runs of the current recipe),
and, as a second table, the 106 of them that the earlier bundled model (trained on AFW + HELEN only,
its own 121-face split held out) never saw either, so that it can be compared fairly.

Protocols, each on the same faces:
- ``ground truth box``: ``spanlib evaluate``'s benchmark crop (the landmarks' box, as HRNet and its peers);
- ``detector`` (what ``spanlib predict`` does): dlib's HOG detector on the whole image, its box
  calibrated (``spanlib.inference.detect``), cropped, predicted, then ``refine`` passes that each re-crop on
  the previous pass's points; faces the detector misses are counted and left out for everyone;
- ``dlib``: dlib's 68-point shape predictor on the very same HOG boxes.
A run of several checkpoints (seeds) is summarised as mean ± sd over seeds; differences to dlib on
the same boxes are paired bootstrap intervals over faces and seeds (``spanlib.evaluation.stats``), * when the
95 % interval excludes 0. dlib was trained on 300-W's training set, these faces included.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from spanlib.config.schema import apply_overrides
from spanlib.inference.checkpoint import load_model
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.inference.detect import FaceDetector
from spanlib.evaluation.evaluate import detector_boxes, evaluate_params, held_out_settings, predict_samples, sha256_file
from spanlib.utils.files import write_json, write_text
from spanlib.evaluation.metrics import failure_rate, nme_per_face
from spanlib.evaluation.peers import make_peer, predict_peer
from spanlib.utils.provenance import code_version, machine_info
from spanlib.evaluation.stats import over_seeds, paired_bootstrap
from spanlib.evaluation.compare import MARKS, difference_text, paired_difference


def _runs(specs: list[str]) -> dict[str, list[str]]:
    runs = {}
    for spec in specs:
        name, _, paths = spec.partition("=")
        if not paths:
            raise SystemExit(f"--run {spec!r}: expected NAME=CHECKPOINT[,CHECKPOINT...]")
        runs[name] = paths.split(",")
    return runs


def _inference(specs: list[str], runs: dict[str, list[str]]) -> dict[str, dict]:
    """``NAME:KEY=VALUE[,KEY=VALUE]`` -> {NAME: {KEY: value}}: ``evaluate`` keys, each parsed and
    checked as ``--set evaluate.KEY=VALUE`` would be (``apply_overrides``)."""
    settings: dict[str, dict] = {}
    for spec in specs:
        name, _, pairs = spec.partition(":")
        if name not in runs or not pairs:
            raise SystemExit(f"--inference {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE], NAME one of --run "
                             f"({', '.join(runs)})")
        for pair in pairs.split(","):
            if "=" not in pair:
                raise SystemExit(f"--inference {spec!r}: {pair!r} is not KEY=VALUE")
        evaluate = apply_overrides({}, [f"evaluate.{pair.strip()}" for pair in pairs.split(",")],
                                   origin=f"--inference {name}")["evaluate"]
        settings.setdefault(name, {}).update(evaluate)
    return settings


def unseen_by_old_recipe(samples: list, held: list) -> np.ndarray:
    """Indices into ``held`` of faces that the AFW + HELEN recipe (1,207 faces, its own 10 % split)
    never trained on either: its held-out faces and every LFPW face."""
    old = [s for s in samples if "/lfpw/" not in s.path]
    _, old_held = held_out_split(old, 0.1, 0)
    old_paths = {s.path for s in old_held}
    return np.asarray([i for i, s in enumerate(held) if s.path in old_paths or "/lfpw/" in s.path], np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CKPT[,CKPT...]")
    parser.add_argument("--inference", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                        help="evaluate settings of run NAME at test time (flip_test, decode_radius, ...)")
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("results/real/end_to_end"))
    parser.add_argument("--versus", action="append", default=[], metavar="A:B",
                        help="also compare run A with run B under each protocol they share (paired by face and seed)")
    args = parser.parse_args()
    runs = _runs(args.run)
    inference = _inference(args.inference, runs)
    versus = [tuple(v.split(":", 1)) for v in args.versus]
    for pair in versus:
        if len(pair) != 2 or not set(pair) <= set(runs):
            raise SystemExit(f"--versus {':'.join(pair)}: expected A:B, two names given with --run ({', '.join(runs)})")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", args.root, "train")
    first = load_model(next(iter(runs.values()))[0])
    fraction, seed = held_out_settings(first.params, True)
    trained_on, held = held_out_split(samples, fraction, seed)
    held = [s for s in held if s.landmarks is not None]
    gt = np.stack([s.landmarks for s in held]).astype(np.float64)
    scheme = first.scheme

    detection = detector_boxes(held, FaceDetector(backend="dlib"), progress=False)
    found = np.flatnonzero(detection["found"])
    faces = [held[i] for i in found]
    peer = make_peer("dlib")
    dlib_pred = predict_peer(peer, faces, progress=False, boxes=detection["raw"][found])["pred"]
    errors = {("dlib", "detector"): nme_per_face(dlib_pred, gt[found], "io", scheme)[None]}
    # dlib learned the original 300-W's convention; these labels sit about 1 px right of mirror symmetry
    # (docs/model.md, "Flip symmetry"): its constant offset from them, measured on 300 training faces only
    calibration = [s for s in trained_on if s.landmarks is not None][:300]
    dlib_offset = (predict_peer(peer, calibration, progress=False)["pred"].astype(np.float64)
                   - np.stack([s.landmarks for s in calibration])).mean(axis=(0, 1))
    errors[("dlib, its mean offset removed", "detector")] = nme_per_face(
        dlib_pred - dlib_offset, gt[found], "io", scheme)[None]
    dlib_gt_box = predict_peer(peer, held, progress=False)  # its own HOG box, or the calibrated landmarks' box when HOG misses
    errors[("dlib", "own HOG box, else calibrated ground truth")] = nme_per_face(dlib_gt_box["pred"], gt, "io", scheme)[None]

    checkpoints = {}
    for name, paths in runs.items():
        per_protocol: dict[str, list] = {}
        for path in paths:
            model = load_model(path)
            checkpoints.setdefault(name, []).append({"path": path, "sha256": sha256_file(path),
                                                     "iteration": model.checkpoint_info.get("iteration")})
            extra = inference.get(name, {})
            settings = evaluate_params(model.params, {**extra, "crop_box": "landmarks"})
            pred = predict_samples(model, held, settings, progress=False)["pred"]
            per_protocol.setdefault("ground truth box", []).append(nme_per_face(pred, gt, "io", scheme))
            for passes in args.refine:
                settings = evaluate_params(model.params, {**extra, "refine": passes})
                pred = predict_samples(model, faces, settings, progress=False, boxes=detection["box"][found])["pred"]
                per_protocol.setdefault(f"detector, {passes} re-crop", []).append(
                    nme_per_face(pred, gt[found], "io", scheme))
        for protocol, values in per_protocol.items():
            errors[(name, protocol)] = np.stack(values)

    def table(subset: np.ndarray | None, title: str) -> tuple[str, list]:
        """Rows on the held-out faces (``subset`` None) or on those indices of ``held``."""
        pos = {int(i): k for k, i in enumerate(found)}
        det_idx = np.arange(len(found)) if subset is None else np.asarray([pos[i] for i in subset if i in pos])
        gt_idx = np.arange(len(held)) if subset is None else subset
        reference = errors[("dlib", "detector")][:, det_idx]
        lines = [f"### {title}", "",
                 f"{len(gt_idx)} faces; dlib's HOG detector found {len(det_idx)} (the detector rows and dlib's "
                 f"are on those); NME_io % mean ± sd over seeds; FR_io@8 %; difference to dlib on the same HOG "
                 f"boxes in NME_io points, 95 % paired bootstrap interval over faces and seeds ({MARKS}: significantly "
                 f"lower / higher, the interval excludes 0).", "",
                 "| run | protocol | seeds | NME_io | per seed | FR_io@8 % | vs dlib, same boxes |",
                 "|---|---|---|---|---|---|---|"]
        rows = []
        for (name, protocol), e in errors.items():
            on_found = not protocol.startswith("ground truth") and not protocol.startswith("own")
            e = e[:, det_idx] if on_found else e[:, gt_idx]
            summary = over_seeds(e.mean(axis=1))
            fr = 100 * np.mean([failure_rate(row, 0.08) for row in e])
            if on_found and name != "dlib":
                diff = difference_text(paired_bootstrap(e, np.repeat(reference, len(e), axis=0)))
            else:
                diff = "reference" if (name, protocol) == ("dlib", "detector") else "(other faces or boxes)"
            per_seed = ", ".join(f"{100 * v:.2f}" for v in summary.values)
            lines.append(f"| {name} | {protocol} | {len(e)} | {summary.format()} | {per_seed} | {fr:.1f} | {diff} |")
            rows.append({"run": name, "protocol": protocol, "faces": int(e.shape[1]), "nme_io_per_seed": list(summary.values),
                         "nme_io_mean": summary.mean, "nme_io_sd": summary.sd, "fr_io_8": fr / 100, "vs_dlib": diff})
        return "\n".join(lines), rows

    def between_runs() -> tuple[str, list]:
        """Run A against run B on all held-out faces, per protocol both have: seed i with seed i."""
        lines = ["### Between runs, all held-out faces", "",
                 f"A − B in NME_io points under the same protocol on the same faces (the detector protocols: the "
                 f"{len(found)} faces found), seed i of A paired with seed i of B, 95 % paired bootstrap interval over "
                 f"faces and seeds ({MARKS}: significantly lower / higher, the interval excludes 0).", "",
                 "| A | B | protocol | seeds | A − B |", "|---|---|---|---|---|"]
        rows = []
        for a, b in versus:
            for (name, protocol), e in errors.items():
                if name != a or (b, protocol) not in errors:
                    continue
                diff = paired_difference(list(e), list(errors[(b, protocol)]))
                lines.append(f"| {a} | {b} | {protocol} | {diff.n_seeds} | {difference_text(diff)} |")
                rows.append({"a": a, "b": b, "protocol": protocol, "seeds": diff.n_seeds, "mean": diff.mean,
                             "low": diff.low, "high": diff.high, "significant": diff.significant})
        return "\n".join(lines), rows

    held_text, held_rows = table(None, f"All {len(held)} held-out faces of the current split")
    if versus:
        versus_text, versus_rows = between_runs()
        held_text += "\n\n" + versus_text
    else:
        versus_rows = []
    unseen = unseen_by_old_recipe(samples, held)
    unseen_text, unseen_rows = table(unseen, "The held-out faces the earlier AFW + HELEN recipe never saw either")
    missed = [held[i].path for i in np.flatnonzero(~detection["found"])]
    machine = machine_info()
    header = (f"# End to end against dlib, on the same faces and HOG boxes\n\n"
              f"`python experiments/end_to_end.py {' '.join('--run ' + repr(n + '=' + ','.join(p)) for n, p in runs.items())}"
              f"{''.join(' --inference ' + repr(s) for s in args.inference)}"
              f" --refine {' '.join(map(str, args.refine))}"
              f"{''.join(' --versus ' + repr(a + ':' + b) for a, b in versus)}`; "
              f"code {code_version()}, {machine.get('cpu')}; held-out split fraction {fraction}, seed {seed} of "
              f"300-W train under {args.root}; detector: {FaceDetector(backend='dlib').describe()}, "
              f"missed {len(missed)} face(s). \"dlib, its mean offset removed\": dlib's points minus their mean offset "
              f"({dlib_offset[0]:+.2f}, {dlib_offset[1]:+.2f}) px from these labels on {len(calibration)} training faces (the labels' convention, docs/model.md \"Flip symmetry\").\n")
    write_text(args.out.with_suffix(".md"), header + "\n" + held_text + "\n\n" + unseen_text + "\n")
    write_json(args.out.with_suffix(".json"), {
        "held_out": held_rows, "unseen_by_old_recipe": unseen_rows, "between_runs": versus_rows,
        "checkpoints": checkpoints,
        "faces": len(held), "found": int(len(found)), "missed_paths": missed,
        "per_face_nme_io": {f"{n} | {p}": e.tolist() for (n, p), e in errors.items()},
        "held_out_paths": [s.path for s in held], "found_index": found.tolist(),
        "unseen_index": unseen.tolist(), "dlib_offset_px": dlib_offset.tolist(), "code_version": code_version(), "machine": machine})
    print(header + "\n" + held_text + "\n\n" + unseen_text)


if __name__ == "__main__":
    main()
