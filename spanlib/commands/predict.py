"""``spanlib predict PATH... --checkpoint CKPT [--box x0,y0,x1,y1] [--json FILE] [--overlay DIR]``"""

from __future__ import annotations

import argparse


def _box(text: str) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images and videos")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint written by spanlib train, or a .safetensors file of spanlib export "
                             "(default: the model bundled with spanlib, checked against its SHA-256)")
    parser.add_argument("--box", type=_box, default=None,
                        help="face box x0,y0,x1,y1 in pixels for every input (skips face detection)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the landmarks as JSON")
    parser.add_argument("--overlay", default=None, metavar="DIR", help="write overlay images here")
    parser.add_argument("--every", type=int, default=1, help="videos: every N-th frame")
    parser.add_argument("--max-frames", type=int, default=None, help="videos: at most this many frames")
    parser.add_argument("--detector", default="auto", choices=("auto", "dlib", "haar"),
                        help="face detector: dlib's HOG detector when dlib is installed (auto), else "
                             "OpenCV's Haar cascade; boxes are calibrated to the training crop (docs/evaluation.md)")
    parser.add_argument("--detector-model", default=None, metavar="ONNX",
                        help="YuNet face detector weights for cv2.FaceDetectorYN (OpenCV 5 has no bundled "
                             "Haar cascade; without a detector the whole image is the box, refined once)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..io import write_json
    from ..predict import FaceDetector, predict_paths

    model = load_model(args.checkpoint, device=args.device)
    detector = FaceDetector(args.detector_model, backend=args.detector)
    results = predict_paths(model, args.paths, box=args.box, overlay_dir=args.overlay,
                            every=max(1, args.every), max_frames=args.max_frames,
                            detector=detector)
    failed = 0
    for r in results:
        where = r.path + ("" if r.frame is None else f" frame {r.frame}")
        if r.error:
            failed += 1
            print(f"{where}: error: {r.error}")
        else:
            confs = ", ".join(f"{f.confidence:.2f}" for f in r.faces)
            print(f"{where}: {r.message}" + (f" (confidence {confs})" if confs else ""))
    if args.json:
        write_json(args.json, {"checkpoint": model.checkpoint_path, "variant": model.variant, "scheme": model.scheme.name,
                               "detector": "given box (--box)" if args.box else detector.describe(),
                               "confidence": "mean over landmarks of the softmax mass in the decoding window",
                               "results": [r.to_json() for r in results]})
        print(f"wrote {args.json}")
    return 1 if failed and failed == len(results) else 0
