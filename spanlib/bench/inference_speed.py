"""Inference speed of a landmark model on one CPU thread, every back-end side by side, beside dlib.

``python -m spanlib.bench.inference_speed [--checkpoint FILE] [--root ../shared/data/300w] [--out results/real]``

On the held-out faces of the model's seeded split (the 121 faces of ``spanlib evaluate --held-out``
for the bundled model), at batch 1, one thread (torch, ONNX Runtime, OpenCV; dlib is
single-threaded):

- **crop given**: ms/face of each back-end of ``spanlib.inference.backends`` on the evaluation crop (the
  landmarks' box, as ``spanlib evaluate``), network + decoding, and NME_io of its points on the
  same faces: a faster back-end must leave the accuracy unchanged. Back-ends run interleaved (each
  face through every back-end in turn, ``--repeats`` rounds) so that the load of a shared machine
  falls on all of them alike; the statistic is the median over faces and rounds;
- the crop itself (``crop_for_model`` + ``to_tensor_image``), which every back-end needs;
- **detector included**: the whole image through the detector (dlib's HOG frontal face detector,
  the one ``spanlib predict`` picks when dlib is installed, then OpenCV's Haar cascade, its
  fallback), calibration, crop, network and decoding; the face is the detection overlapping the
  ground truth (IoU > 0.3), and faces the detector misses are counted, not timed;
- **dlib's 68-point shape predictor** (``spanlib.evaluation.peers``) on the same faces: the predictor alone on
  its box, and HOG + predictor.

Writes ``inference_speed.json`` and ``inference_speed.md`` with the machine (CPU, versions,
threads, load average before and after: a busy machine's numbers are not a quiet machine's).
A benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.dataset import to_tensor_image
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.evaluation.evaluate import held_out_settings
from spanlib.evaluation.metrics import subset_metrics
from spanlib.evaluation.peers import DlibPeer
from spanlib.inference.backends import AUTO_ORDER, make_runner, placing_runners
from spanlib.inference.checkpoint import load_model
from spanlib.inference.detect import FaceDetector, match_detection
from spanlib.inference.predict import flip_passes, flip_test, placing_size, predict_image
from spanlib.inference.step import TOLERANCE_PX, decode_radius
from spanlib.utils.files import atomic_path, write_json, write_text
from spanlib.utils.provenance import machine_info

CROP_BACKENDS = ("eager", "head", "channels_last", "jit", "compile", "onnxruntime", "onnxruntime_int8")
CALIBRATION_FACES = 64  # training crops the INT8 back-end calibrates on (never the measured faces)


def _ms(seconds) -> float:
    return float(1000 * np.median(seconds))


def _machine(threads: int) -> dict:
    info = {k: v for k, v in machine_info().items() if k in ("cpu", "machine", "python", "torch",
                                                            "torch_cpu_capability", "numpy", "opencv", "git")}
    info.update(platform=platform.platform(), logical_cpus=os.cpu_count(), threads=threads, nice=os.nice(0))
    for name in ("onnxruntime", "onnx", "dlib"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # not installed: say so
            info[name] = None
    return info


def _load_note(result: dict, cpus: int) -> str:
    """Whether other work shared the cores: the run itself adds about 1 to the load average, and the
    1-minute average lags (a run just before leaves part of its load in "before")."""
    if result["load_before"][0] > 1.0 or result["load_after"][0] - 1 > 0.5:
        return (f": **the machine was busy** (other jobs on its {cpus} cores), so absolute times are "
                "pessimistic")
    return " (the run's own thread): a quiet machine"


def _calibration(crops: dict | None, backend: str, size: int | None) -> torch.Tensor | None:
    """The INT8 calibration crops of this crop size (None for the other back-ends, or no size)."""
    return None if crops is None or backend != "onnxruntime_int8" or size is None else crops[int(size)]


def _optional(ms: float | None) -> str:
    """A time that older result files do not hold: "-" there."""
    return "-" if ms is None else f"{ms:.1f}"


def _nme(pred: list, gt: list, scheme) -> float:
    return 100 * float(subset_metrics(np.stack(pred), np.stack(gt), scheme, norm="io")["nme"]["io"])


def held_out_faces(model, root: str | Path) -> list:
    """The labeled faces ``spanlib evaluate --held-out`` scores for ``model`` on 300W ``train``."""
    fraction, seed = held_out_settings(model.params, True)
    with warnings.catch_warnings():  # the shared copy has no lfpw/: reported once by evaluate already
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", root, "train")
    _, held = held_out_split(samples, fraction, seed)
    return [s for s in held if s.landmarks is not None]


def calibration_crops(model, root: str | Path, n: int = CALIBRATION_FACES, size: int | None = None) -> torch.Tensor:
    """``n`` evaluation crops of faces from the model's *training* part of 300W ``train`` (a seeded
    choice, none of the held-out faces the speed is measured on): what INT8 calibrates on. ``size``:
    the crop side (default ``crop.input_size``; a placing pass's, ``evaluate.placing_size``)."""
    fraction, seed = held_out_settings(model.params, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", root, "train")
    train, _ = held_out_split(samples, fraction, seed)
    pick = np.random.default_rng([seed, 31337]).choice(len(train), size=min(n, len(train)), replace=False)
    return torch.stack([to_tensor_image(crop_for_model(train[i].image, box_from_landmarks(train[i].landmarks),
                                                       model.params, size)[0])
                        for i in sorted(pick)])


def crop_given(model, faces, images, backends, repeats: int, calibration: dict | None = None) -> dict:
    """Each back-end on each face's evaluation crop: ms/face, NME_io, agreement with eager."""
    crops, transforms, crop_s = [], [], []
    for face, image in zip(faces, images):
        start = time.perf_counter()
        crop, transform = crop_for_model(image, box_from_landmarks(face.landmarks), model.params)
        tensor = to_tensor_image(crop)[None]
        crop_s.append(time.perf_counter() - start)
        crops.append(tensor)
        transforms.append(transform)
    runners, build_s = {}, {}
    for name in backends:
        start = time.perf_counter()
        runner = make_runner(model, name, calibration=_calibration(calibration, name, model.input_size))
        runner(crops[0])  # torch.compile compiles here; the others warm up
        build_s[name] = time.perf_counter() - start
        runners[name] = runner
    times = {name: [] for name in runners}
    points = {name: [None] * len(faces) for name in runners}
    for _ in range(repeats):
        for i, crop in enumerate(crops):
            for name, runner in runners.items():
                start = time.perf_counter()
                pts, _ = runner(crop)
                times[name].append(time.perf_counter() - start)
                points[name][i] = pts[0].numpy()
    gt = [f.landmarks.astype(np.float32) for f in faces]
    out = {"preprocess_ms": _ms(crop_s), "backends": {}}
    for name, runner in runners.items():
        pred = [t.to_image(p.astype(np.float64)).astype(np.float32) for t, p in zip(transforms, points[name])]
        diff = max(float(np.abs(p - q).max()) for p, q in zip(points[name], points["eager"]))
        out["backends"][name] = {"ms_per_face": _ms(times[name]), "ms_p90": float(1000 * np.quantile(times[name], 0.9)),
                                 "build_s": build_s[name], "nme_io": _nme(pred, gt, model.scheme),
                                 "max_abs_diff_vs_eager_px": diff, "note": runner.note}
    return out


def detector_included(model, faces, images, backends, detectors, refine: tuple[int, ...] = (0,),
                      calibration: dict | None = None, flip: tuple[bool, ...] = (False,),
                      flip_which: tuple[str, ...] = ("all",), placing: tuple[int | None, ...] = (None,)
                      ) -> tuple[dict, dict]:
    """Image -> detector -> calibrated box -> crop -> back-end (-> ``refine`` re-crops on its own
    points; each pass with and without the flip test as ``flip`` lists, and with it on every pass or
    the last only as ``flip_which`` lists; the passes before the last at each size of ``placing``,
    None: the model's input size), per face found; and dlib's
    predictor (alone on its box, and with its HOG detector).
    Interleaved face by face, like ``crop_given``. Returns (our entries, dlib's entry or {"error": why})."""
    radius = decode_radius(model.params)
    combos = {}
    for kind in detectors:
        detector = FaceDetector(backend=kind)
        for name in backends:
            runner = make_runner(model, name, calibration=_calibration(calibration, name, model.input_size))
            for passes in refine:
                for mirror in flip:
                    # with one pass "last" is "all", and there is no placing pass: timed once
                    for which in (flip_which if mirror and passes else ("all",)):
                        for size in (placing if passes else (None,)):
                            runners = placing_runners(model, runner, size, _calibration(calibration, name, size))
                            label = (f"{kind}+{name}" + (f"+refine{passes}" if passes else "")
                                     + ("" if size is None or size == runners[0].size else f"+place{size}")
                                     + ("" if not mirror else "+flip" if which == "all" else "+flip-last"))
                            combos[label] = (detector, runners, passes, mirror, which, size)
    try:
        peer = DlibPeer()
    except Exception as exc:  # dlib or its model file missing: reported, not fatal
        peer, peer_error = None, str(exc)
    rec = {label: {"s": [], "landmark_s": [], "pred": [], "gt": [], "missed": 0} for label in combos}
    peer_rec = {"pred_s": [], "det_s": [], "pred": [], "sources": []}
    for face, image in zip(faces, images):
        gt_box = box_from_landmarks(face.landmarks)
        for label, (detector, runner, passes, mirror, which, size) in combos.items():
            start = time.perf_counter()
            raw = detector.detect_raw(image)
            detected = time.perf_counter()
            index = match_detection(raw, gt_box)
            if index is None:
                rec[label]["missed"] += 1
                continue
            box = detector.calibration.to_landmark_box(raw[index][None])
            (result,), _ = predict_image(model, image, box, radius=radius, runner=runner, refine=passes,
                                         flip=mirror, flip_which=which, placing=size or None)
            end = time.perf_counter()
            rec[label]["s"].append(end - start)
            rec[label]["landmark_s"].append(end - detected)  # what dlib's predictor time compares with
            rec[label]["pred"].append(np.asarray(result.landmarks, np.float32))
            rec[label]["gt"].append(face.landmarks.astype(np.float32))
        if peer is not None:
            points, _, source, p_s, d_s = peer.predict(image, face.landmarks)
            for key, value in zip(("pred_s", "det_s", "pred", "sources"), (p_s, d_s, points, source)):
                peer_rec[key].append(value)
    ours = {label: {"detector": combos[label][0].describe(), "backend": combos[label][1][0].backend,
                    "refine": combos[label][2], "flip_test": combos[label][3],
                    "flip_passes": combos[label][4] if combos[label][3] else None,
                    "placing_size": (combos[label][5] or combos[label][1][0].size) if combos[label][2] else None,
                    "faces_timed": len(r["s"]), "missed": r["missed"], "ms_per_face": _ms(r["s"]),
                    "landmarks_ms_per_face": _ms(r["landmark_s"]),
                    "nme_io_found_faces": _nme(r["pred"], r["gt"], model.scheme)} for label, r in rec.items()}
    if peer is None:
        return ours, {"error": peer_error}
    gt = [f.landmarks.astype(np.float32) for f in faces]
    total = np.asarray(peer_rec["pred_s"]) + np.asarray(peer_rec["det_s"])
    return ours, {"package": f"dlib {peer.version}", "predictor_ms_per_face": _ms(peer_rec["pred_s"]),
                  "hog_plus_predictor_ms_per_face": _ms(total), "hog_ms_per_face": _ms(peer_rec["det_s"]),
                  "nme_io": _nme(peer_rec["pred"], gt, model.scheme), "hog_boxes": peer_rec["sources"].count("hog"),
                  "calibrated_boxes": peer_rec["sources"].count("calibrated"),
                  "caveat": "dlib's model was trained on 300-W's training set, these faces included"}


def markdown(result: dict) -> str:
    m, c = result["machine"], result["crop_given"]
    lines = [
        "# Inference speed of the bundled real-face model, one CPU thread, batch 1",
        "",
        f"`{result['command']}` on {m['cpu']} ({m['logical_cpus']} logical CPUs), torch {m['torch']}, "
        f"ONNX Runtime {m['onnxruntime']}, dlib {m['dlib']}, OpenCV {m['opencv']}; {m['threads']} thread, "
        f"niceness {m['nice']}. Load average {result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after"
        f"{_load_note(result, m['logical_cpus'])}; back-ends ran interleaved face by face, so their ratios are fair.",
        "",
        f"{result['faces']} held-out faces of `{result['root']}` (the `spanlib evaluate --held-out` split); "
        f"median over faces and {result['repeats']} rounds. Crop given: network + decoding on the "
        f"evaluation crop (building the crop takes {c['preprocess_ms']:.2f} ms more).",
        "",
        "| back-end | ms/face (median) | p90 | vs eager | NME_io (%) | max |points - eager| (crop px) | build (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    eager = c["backends"]["eager"]["ms_per_face"]
    for name, b in c["backends"].items():
        lines.append(f"| {name} | {b['ms_per_face']:.2f} | {b['ms_p90']:.2f} | {eager / b['ms_per_face']:.2f}x | "
                     f"{b['nme_io']:.3f} | {b['max_abs_diff_vs_eager_px']:.1e} | {b['build_s']:.1f} |")
    lines += ["", f"Chosen for `spanlib predict --backend auto`: **{result['chosen']}** (the fastest within "
              f"{result['tolerance_px']} px of eager that builds in seconds).", "",
              "| detector included | detector | re-crop passes | placing pass px | flip test | faces timed / missed | "
              "ms/face | landmarks ms/face (after the detector) | NME_io found faces (%) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, d in result["detector_included"].items():
        mirrored = ("no" if not d.get("flip_test") else
                    "last pass" if d.get("flip_passes") == "last" and d.get("refine") else "yes")
        lines.append(f"| {name} | {d['detector']} | {d.get('refine', 0)} | {d.get('placing_size') or '-'} | {mirrored} | "
                     f"{d['faces_timed']} / {d['missed']} | "
                     f"{d['ms_per_face']:.1f} | {_optional(d.get('landmarks_ms_per_face'))} | "
                     f"{d['nme_io_found_faces']:.2f} |")
    peer = result.get("dlib")
    if peer:
        lines += ["", f"dlib's 68-point shape predictor ({peer['package']}) on the same faces: "
                  f"**{peer['predictor_ms_per_face']:.2f} ms/face** on its box, "
                  f"{peer['hog_plus_predictor_ms_per_face']:.1f} ms/face with its HOG detector "
                  f"({peer['hog_boxes']} HOG boxes, {peer['calibrated_boxes']} calibrated); NME_io {peer['nme_io']:.2f} % "
                  f"({peer['caveat']})."]
    return "\n".join(lines) + "\n"


def plot_nme_against_ms(result: dict, path: str | Path) -> None:
    """NME_io against ms/face, one point per model and back-end (crop given: the held-out faces'
    evaluation crops) and per end-to-end path (detector included: the faces it finds), with dlib's
    predictor on the same faces, all from the one run in ``result``."""
    import matplotlib  # lazy: matplotlib, only when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    colours = plt.get_cmap("tab10").colors
    for i, (name, b) in enumerate(result["crop_given"]["backends"].items()):  # a legend: labels never overlap
        left.scatter(b["ms_per_face"], b["nme_io"], color=colours[i % 10], label=name)
    for i, (label, d) in enumerate(result["detector_included"].items()):
        marker = (("v" if d.get("flip_passes") == "last" else "D") if d.get("flip_test") else "^") if d.get("refine") \
            else ("d" if d.get("flip_test") else "o")
        right.scatter(d["ms_per_face"], d["nme_io_found_faces"], color=colours[i % 10], marker=marker, label=label)
    peer = result.get("dlib")
    if peer:
        left.scatter(peer["predictor_ms_per_face"], peer["nme_io"], color="black", marker="s",
                     label="dlib predictor (its HOG box)")
        right.scatter(peer["hog_plus_predictor_ms_per_face"], peer["nme_io"], color="black", marker="s",
                      label="dlib HOG + predictor")
    m = result["machine"]
    left.set(title="crop given (network + decoding)", xlabel="ms / face (median, 1 thread, batch 1)", ylabel="NME_io (%)")
    right.set(title="detector included (whole image)", xlabel="ms / face (median, 1 thread, batch 1)", ylabel="NME_io (%)")
    left.legend(fontsize=8, loc="best")
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{Path(result['model']).name} on {result['faces']} held-out faces; {m['cpu']}, torch {m['torch']}, "
                 f"ONNX Runtime {m['onnxruntime']}, dlib {m['dlib']}", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spanlib.bench.inference_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled real-face model)")
    parser.add_argument("--root", default="../shared/data/300w", help="300W folder (AFW, HELEN and LFPW trainsets)")
    parser.add_argument("--out", default="results/real", help="folder for inference_speed.{json,md}")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the faces (crop given)")
    parser.add_argument("--backends", nargs="+", default=list(CROP_BACKENDS), choices=CROP_BACKENDS)
    parser.add_argument("--limit", type=int, default=None, help="first N faces only (a quick look)")
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 1],
                        help="detector included: re-crop passes to time (default: 0 1)")
    parser.add_argument("--flip-test", type=int, nargs="+", default=None, choices=(0, 1),
                        help="detector included: without (0) and/or with (1) the flip test "
                             "(default: the model's evaluate.flip_test)")
    parser.add_argument("--flip-passes", nargs="+", default=None, choices=("all", "last"),
                        help="detector included, with the flip test and re-crops: mirror every pass and/or "
                             "only the last (default: the model's evaluate.flip_passes)")
    parser.add_argument("--placing-size", type=int, nargs="+", default=None, metavar="PX",
                        help="detector included, with re-crops: input sizes of the passes before the last "
                             "(0: the model's crop.input_size; default: the model's evaluate.placing_size)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    load_before = os.getloadavg()
    model = load_model(args.checkpoint, device="cpu")
    faces = held_out_faces(model, args.root)[: args.limit]
    images = [np.ascontiguousarray(f.image) for f in faces]  # decoded once, outside every timing
    backends = ["eager"] + [b for b in args.backends if b != "eager"]
    placing = (placing_size(model.params),) if args.placing_size is None else \
        tuple(px or int(model.params["crop"]["input_size"]) for px in args.placing_size)
    calibration = ({size: calibration_crops(model, args.root, size=size)
                    for size in {model.input_size, *(px for px in placing if px)}}
                   if "onnxruntime_int8" in backends else None)  # INT8 ranges for each crop size timed
    crop = crop_given(model, faces, images, backends, args.repeats, calibration)
    chosen = next(b for b in AUTO_ORDER if b in crop["backends"]
                  and crop["backends"][b]["max_abs_diff_vs_eager_px"] <= TOLERANCE_PX)
    detectors = ["dlib", "haar"] if __import__("spanlib.inference.detect").inference.detect.import_dlib() else ["haar"]
    end_to_end = sorted({chosen} | ({"onnxruntime_int8"} & set(backends)))
    flips = (flip_test(model.params),) if args.flip_test is None else tuple(bool(f) for f in args.flip_test)
    which = (flip_passes(model.params),) if args.flip_passes is None else tuple(args.flip_passes)
    det, peer = detector_included(model, faces, images, end_to_end, detectors, tuple(args.refine), calibration,
                                  flips, which, placing)
    result = {
        "command": "python -m spanlib.bench.inference_speed" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv)),
        "model": str(model.checkpoint_path), "root": str(args.root), "faces": len(faces), "repeats": args.repeats,
        "batch": 1, "statistic": "median over faces (and rounds) of one call each, after one warm-up call",
        "machine": _machine(torch.get_num_threads()), "load_before": list(load_before),
        "load_after": list(os.getloadavg()), "tolerance_px": TOLERANCE_PX, "chosen": chosen,
        "crop_given": crop, "detector_included": det, "dlib": peer if "error" not in peer else None,
        "dlib_error": peer.get("error"),
    }
    out = Path(args.out)
    write_json(out / "inference_speed.json", result)
    write_text(out / "inference_speed.md", markdown(result))
    plot_nme_against_ms(result, out / "inference_speed.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
