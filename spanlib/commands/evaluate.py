"""``spanlib evaluate --checkpoint CKPT --source FORMAT --root DIR [--split NAME] [--json FILE]
[--boxes ground_truth|detector] [--refine N [--placing-size PX]] [--[no-]flip-test] [--held-out [--val-fraction F] [--val-seed S]] [--peer dlib]``"""

from __future__ import annotations

import argparse

from spanlib.commands.pass_options import add_pass_arguments, pass_settings
from spanlib.utils.errors import ParamError
from spanlib.utils.files import check_outputs, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint written by spanlib train, or a .safetensors file of spanlib export")
    parser.add_argument("--source", required=True, help="dataset format: 300w, synthetic, wflw, cofw, ...")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the format's first)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the metrics JSON here")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: evaluate.batch_size")
    parser.add_argument("--norm", default=None, choices=("io", "ip", "box", "diag"),
                        help="NME that FR and AUC use (default: evaluate.nme_norm of the checkpoint)")
    parser.add_argument("--decode-radius", type=int, default=None, help="r of the (2r+1) window (default: evaluate.decode_radius of the checkpoint, else 3)")
    parser.add_argument("--crop-box", default=None, choices=("detector", "landmarks"),
                        help="crop around the dataset's face box or the landmarks' box")
    parser.add_argument("--boxes", default=None, choices=("ground_truth", "detector"),
                        help="ground_truth: crop around the ground truth's box (the benchmark protocol); "
                             "detector: end to end as `spanlib predict`, from the face detector's calibrated "
                             "box; faces it misses are counted apart (default: evaluate.boxes, ground_truth)")
    parser.add_argument("--detector", default=None, choices=("auto", "dlib", "haar"),
                        help="with --boxes detector: the face detector (default: auto, dlib's HOG when installed)")
    add_pass_arguments(parser)
    parser.add_argument("--held-out", action="store_true",
                        help="evaluate only the validation faces held out of this (training) split: "
                             "held_out_split with the checkpoint's train.val_fraction and train.val_seed")
    parser.add_argument("--val-fraction", type=float, default=None, help="with --held-out: override train.val_fraction")
    parser.add_argument("--val-seed", type=int, default=None, help="with --held-out: override train.val_seed")
    parser.add_argument("--peer", default=None, choices=("dlib",),
                        help="also score a peer on the same faces: dlib = dlib's 68-point shape predictor "
                             "(face_recognition_models: pip install -e '.[peers]', which make installs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # torch and the model code: imported here, so that `spanlib evaluate --help` answers at once
    from spanlib.evaluation import evaluate as evaluate_module  # looked up per call: tests replace it
    from spanlib.evaluation.evaluate import summary_text

    settings = {k: v for k, v in (("batch_size", args.batch_size), ("nme_norm", args.norm),
                                  ("decode_radius", args.decode_radius), ("crop_box", args.crop_box),
                                  ("boxes", args.boxes), ("detector", args.detector))
                if v is not None} | pass_settings(args)
    if not args.held_out and (args.val_fraction is not None or args.val_seed is not None):
        raise ParamError("--val-fraction / --val-seed: only with --held-out")
    held_out = (args.val_fraction, args.val_seed) if args.held_out else None
    if args.json:  # refused before the evaluation runs, not after
        check_outputs({"--json": args.json}, {"--checkpoint": args.checkpoint})
        check_writable(args.json)
    result = evaluate_module.evaluate(args.checkpoint, args.source, args.root, args.split, device=args.device,
                                      settings=settings, json_path=args.json, progress=not args.quiet,
                                      held_out=held_out, peer=args.peer)
    print(summary_text(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0
