"""``spanlib export --format safetensors CHECKPOINT --out FILE [--metrics M.json ...] [--register NAME]``
``spanlib export onnx [--checkpoint FILE] --out model.onnx``

safetensors: a model file to share: the weights as safetensors (no pickle, so no code) and a JSON
description in its header (variant, scheme, params, code version, training data, seed, metrics and
their protocol), with a readable copy at FILE's name with ``.json``. The same checkpoint gives the
same bytes. CHECKPOINT may also be a model file: its weights and history unchanged, with new
inference defaults (``--set evaluate.KEY=VALUE``) and more ``--metrics``. Refused before anything is written: an ``--out`` (or its ``.json`` copy) that is the
checkpoint or a ``--metrics`` file, and a checkpoint (or, for ``--register``, a model file) past
spanlib's bounds (model.stages <= 16, model.width <= 1024, model.depth <= 8, crop.input_size <=
1024), whose tensors do not fit the network its params build, or with NaN or infinite weights
(``spanlib.inference.checkpoint.check_model_state``).

onnx: the network and the BALI decoding as one ONNX graph (crops -> points, confidence), checked
in ONNX Runtime against PyTorch before it is written (``spanlib.inference.onnx_export``); needs the ``onnx``
extra. Default model: the bundled one."""

from __future__ import annotations

import argparse
from pathlib import Path

from spanlib.inference.weights import REGISTRY, _entry, bundled_path
from spanlib.utils.errors import ParamError
from spanlib.utils.files import check_outputs, check_writable

FORMATS = ("safetensors", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="[FORMAT] CHECKPOINT",
                        help="optional format word (safetensors | onnx, same as --format), then the training "
                             "checkpoint written by spanlib train, or a .safetensors model file (safetensors: "
                             "the same weights with new --set inference defaults; onnx: default the bundled model)")
    parser.add_argument("--format", default=None, choices=FORMATS, help="file format (default: safetensors)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="the model to export (same as the positional CHECKPOINT)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="file to write, e.g. scpan.safetensors or model.onnx (a .json description goes "
                             "beside it, so --out may not end in .json; neither may replace an input)")
    parser.add_argument("--metrics", nargs="+", default=[], metavar="JSON",
                        help="safetensors: spanlib evaluate JSON files of this checkpoint to include in the description")
    parser.add_argument("--no-json", action="store_true", help="safetensors: do not write the readable FILE.json copy")
    parser.add_argument("--set", nargs="+", default=[], metavar="evaluate.KEY=VALUE", dest="overrides",
                        help="safetensors: inference settings the model file carries as its defaults, e.g. "
                             "evaluate.refine=1 (spanlib predict's re-crop passes); only evaluate.* keys")
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="safetensors: also ship FILE as bundled model NAME: copy it into spanlib/inference/weights/ and "
                             "record its SHA-256 in spanlib.inference.weights.BUNDLED (e.g. real_300w)")
    parser.add_argument("--real-root", default="../shared/data/300w", metavar="DIR",
                        help="onnx: 300W-style folder whose faces the ONNX Runtime check also runs on, when it "
                             "exists (default ../shared/data/300w)")


def _resolve(args: argparse.Namespace) -> tuple[str, str | None]:
    """(format, checkpoint or None) from the positional words and the options."""
    items = list(args.items)
    fmt = args.format
    if items and items[0] in FORMATS:
        if fmt is not None and fmt != items[0]:
            raise ParamError(f"export: format {items[0]!r} given twice, differently (--format {fmt})")
        fmt = items.pop(0)
    fmt = fmt or "safetensors"
    if len(items) > 1 or (items and args.checkpoint):
        raise ParamError(f"export: expected one CHECKPOINT, got {items + ([args.checkpoint] if args.checkpoint else [])}")
    checkpoint = items[0] if items else args.checkpoint
    if fmt == "safetensors" and checkpoint is None:
        raise ParamError("export --format safetensors: CHECKPOINT is required (the training checkpoint to share)")
    if fmt == "onnx" and (args.metrics or args.register is not None or args.no_json or args.overrides):
        raise ParamError("export onnx: --metrics, --register, --no-json and --set apply to safetensors only")
    return fmt, checkpoint


def run(args: argparse.Namespace) -> int:
    # torch and the model code: imported here, so that `spanlib export --help` answers at once
    from spanlib.inference import checkpoint as checkpoint_module  # looked up per call: tests replace it
    from spanlib.inference.checkpoint import register_bundled

    fmt, checkpoint = _resolve(args)
    if fmt == "onnx":
        return _run_onnx(args, checkpoint)
    if args.register is not None:  # an unknown (or empty) name is refused before --out is written
        _entry(args.register)

    desc = checkpoint_module.export_safetensors(checkpoint, args.out, metrics=args.metrics,
                                                write_json_copy=not args.no_json, inference_overrides=args.overrides)
    out = Path(args.out)
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {desc['sha256']}): {desc['variant']}, scheme "
          f"{desc['scheme']}, iteration {desc['iteration']}, seed {desc['seed']}, code {desc['code_version']}, "
          f"{len(desc['metrics']['evaluations'])} evaluation(s)")
    if not args.no_json:
        print(f"wrote {out.with_suffix('.json')}")
    if args.register is not None:
        digest = register_bundled(out, args.register)
        print(f"bundled as {args.register!r}: {bundled_path(args.register)} (sha256 {digest} recorded in "
              f"{REGISTRY})")
    return 0


def _run_onnx(args: argparse.Namespace, checkpoint: str | None) -> int:
    from spanlib.inference import onnx_export  # looked up per call: tests replace it
    from spanlib.inference.checkpoint import load_model
    from spanlib.inference.onnx_export import require

    out = Path(args.out)
    # the description goes beside --out as .json: `--out net.json` would replace the graph with it
    if checkpoint is None:
        source = {"the bundled model": bundled_path()}
    else:
        source = {"the model": checkpoint}
    check_outputs({"--out": out, "the .json description beside --out": out.with_suffix(".json")}, source)
    for path in (out, out.with_suffix(".json")):
        check_writable(path)
    require("onnx"), require("onnxruntime")  # a clear message before the model is loaded
    model = load_model(checkpoint, device="cpu")
    desc = onnx_export.export_onnx(model, args.out, real_root=args.real_root)
    out = Path(args.out)
    print(f"wrote {out} ({out.stat().st_size} bytes): {desc['variant']}, scheme {desc['scheme']}, input "
          f"{desc['input']['shape']}, opset {desc['opset']}")
    for name, check in desc["check"].items():
        print(f"  ONNX Runtime {desc['onnxruntime']} vs PyTorch on {check['faces']} {name} crops: max |points| "
              f"difference {check['max_abs_points_px']:.2e} px (tolerance {desc['tolerance_px']} px), max "
              f"|confidence| difference {check['max_abs_confidence']:.2e}")
    print(f"wrote {out.with_suffix('.json')}")
    return 0
