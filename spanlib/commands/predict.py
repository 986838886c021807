"""``spanlib predict PATH... [--checkpoint CKPT] [--box x0,y0,x1,y1] [--json FILE] [--overlay DIR]``

Exit status: 0 when every input was read (a frame without a face is not a failure), 1 when any
input failed (unreadable or missing file, a FIFO, an image over the pixel budget; the count is
printed, and the others still have results), 2 on a usage or model error, 3 when --json cannot be
written, 130 on Ctrl-C (``spanlib.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spanlib.commands.pass_options import add_pass_arguments, pass_settings
from spanlib.inference.options import AUTO_MIN_IMAGES, BACKENDS, VIDEO_SUFFIXES
from spanlib.inference.weights import bundled_path
from spanlib.utils.files import check_outputs, check_writable, finite_json, write_json


def _box(text: str) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="images and videos (regular files; an image whose header declares more than "
                             "50000000 pixels is refused undecoded: set SPANLIB_MAX_IMAGE_PIXELS=N to change it)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint written by spanlib train, or a .safetensors file of spanlib export "
                             "(default: the model bundled with spanlib, checked against its SHA-256)")
    parser.add_argument("--box", type=_box, default=None,
                        help="face box x0,y0,x1,y1 in pixels for every input (skips face detection)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the landmarks as JSON")
    parser.add_argument("--overlay", default=None, metavar="DIR",
                        help="write overlay images here, named after each input (NAME.png, NAME_fNNNNNN.png for "
                             "video frames; two inputs with one name from different folders get NAME_<8 hex of "
                             "the SHA-1 of their path>.png)")
    parser.add_argument("--every", type=_positive, default=1, help="videos: every N-th frame (N >= 1)")
    parser.add_argument("--max-frames", type=_positive, default=None,
                        help="videos: at most this many frames (>= 1; default: all)")
    parser.add_argument("--detector", default="auto", choices=("auto", "dlib", "haar"),
                        help="face detector. auto (default): dlib's HOG frontal face detector when dlib is "
                             "installed (dlib-bin, a dependency: `make` installs it), otherwise OpenCV's bundled frontal-face "
                             "Haar cascade (shipped by the pinned OpenCV 4.x; OpenCV 5 removed it). dlib or "
                             "haar forces one. Boxes are calibrated to the training crop (docs/evaluation.md)")
    parser.add_argument("--detector-model", default=None, metavar="ONNX",
                        help="use OpenCV's YuNet detector (cv2.FaceDetectorYN) with these weights instead of "
                             "dlib or Haar (OpenCV ships the class, not the weights; boxes uncalibrated). Only "
                             "when no detector at all is available is the whole image the box, refined once")
    # onnxruntime_int8 needs calibration crops and moves points by more than the tolerance: measured
    # by `python -m spanlib.bench.inference_speed`, not offered here
    parser.add_argument("--backend", default="auto", choices=("auto",) + tuple(b for b in BACKENDS if b != "onnxruntime_int8"),
                        help="inference back-end (docs/inference.md). auto (default): for a video or at "
                             "least 50 images, ONNX Runtime when onnxruntime is installed (pip install -e "
                             "'.[onnx]'), else the frozen TorchScript model; for fewer images eager PyTorch "
                             "(building the others takes about a second). All give the eager landmarks within "
                             "0.01 px")
    add_pass_arguments(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def _many_faces(paths) -> bool:
    """A video, or at least AUTO_MIN_IMAGES images: worth building a faster back-end."""
    return len(paths) >= AUTO_MIN_IMAGES or any(Path(p).suffix.lower() in VIDEO_SUFFIXES for p in paths)


def check_predict_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that would replace an input: ``--json`` naming an input or
    the model, an overlay (``--overlay DIR/NAME.png``) that is an input image, or ``--json`` that
    is one of the overlays; and an output that cannot be written (OSError, exit status 3)."""
    from spanlib.inference.predict import overlay_stems  # torch: not for `--help`

    inputs = {f"input {i + 1}": p for i, p in enumerate(args.paths)}
    if args.checkpoint is not None:
        inputs["--checkpoint"] = args.checkpoint
    else:
        inputs["the bundled model"] = bundled_path()
    outputs = {"--json": args.json} if args.json else {}
    if args.overlay:
        stems = overlay_stems(args.paths)
        for i, path in enumerate(Path(p) for p in args.paths):
            if path.suffix.lower() not in VIDEO_SUFFIXES:  # a video's overlays are NAME_fNNNNNN.png
                outputs[f"the overlay of input {i + 1}"] = Path(args.overlay) / f"{stems[path]}.png"
    check_outputs(outputs, inputs)
    if args.json:
        check_writable(args.json)
    if args.overlay:
        check_writable(Path(args.overlay) / ".overlay")


def run(args: argparse.Namespace) -> int:
    # torch and the model code: imported here, so that `spanlib predict --help` answers at once
    from spanlib.inference import predict as predict_module  # looked up per call: tests replace it
    from spanlib.inference.backends import auto_runner, make_runner, placing_runners
    from spanlib.inference.checkpoint import load_model
    from spanlib.inference.detect import FaceDetector
    from spanlib.inference.step import pass_sizes

    pass_settings(args)  # each in the range of the evaluate.* setting it stands for
    check_predict_outputs(args)  # before the model is loaded and every input predicted, not after
    model = load_model(args.checkpoint, device=args.device)
    placing = predict_module.placing_size(model.params) if args.placing_size is None else args.placing_size
    if args.placing_size is not None:  # a size the network cannot take stops before any input is read
        pass_sizes(model.params, 1, args.placing_size)
    detector = FaceDetector(args.detector_model, backend=args.detector)
    if args.backend == "auto" and not _many_faces(args.paths):
        runner = make_runner(model, "eager")  # a second of export would not be repaid on a few images
    elif args.backend == "auto":
        runner, skipped = auto_runner(model)
        for reason in skipped:
            print(f"spanlib predict: backend {reason}; trying the next one", file=sys.stderr)
    else:
        runner = make_runner(model, args.backend)
    print(f"inference: {runner.backend} ({runner.note})", file=sys.stderr)
    runners = placing_runners(model, runner, placing)
    results = predict_module.predict_paths(model, args.paths, box=args.box, overlay_dir=args.overlay,
                                           every=args.every, max_frames=args.max_frames,
                                           detector=detector, runner=runners, refine=args.refine,
                                           flip=args.flip_test, flip_which=args.flip_passes,
                                           placing=placing)
    failed = []
    for r in results:
        where = r.path + ("" if r.frame is None else f" frame {r.frame}")
        if r.error:
            failed.append(r.path)
            print(f"{where}: error: {r.error}")
        else:
            confs = ", ".join(f"{f.confidence:.2f}" for f in r.faces)
            print(f"{where}: {r.message}" + (f" (confidence {confs})" if confs else ""))
    if args.json:
        # finite_json: a NaN (a diverged model) is written as null, never as the invalid word NaN
        write_json(args.json, finite_json({"checkpoint": model.checkpoint_path, "variant": model.variant, "scheme": model.scheme.name,
                               "backend": runner.backend,
                               "detector": "given box (--box)" if args.box else detector.describe(),
                               "confidence": "mean over landmarks of the softmax mass in the decoding window",
                               "results": [r.to_json() for r in results]}))
        print(f"wrote {args.json}")
    if failed:  # every input is tried; the status says that some failed
        print(f"spanlib predict: {len(failed)} of {len(args.paths)} input(s) failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
