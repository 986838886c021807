"""``spanlib export --format safetensors CHECKPOINT --out FILE [--metrics M.json ...] [--register NAME]``

A model file to share: the weights as safetensors (no pickle, so no code) and a JSON description
in its header (variant, scheme, params, code version, training data, seed, metrics and their
protocol), with a readable copy at FILE's name with ``.json``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="training checkpoint written by spanlib train")
    parser.add_argument("--format", default="safetensors", choices=("safetensors",),
                        help="file format (default and only: safetensors)")
    parser.add_argument("--out", required=True, metavar="FILE", help="model file to write, e.g. scpan.safetensors")
    parser.add_argument("--metrics", nargs="+", default=[], metavar="JSON",
                        help="spanlib evaluate JSON files of this checkpoint to include in the description")
    parser.add_argument("--no-json", action="store_true", help="do not write the readable FILE.json copy")
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="also ship FILE as bundled model NAME: copy it into spanlib/weights/ and record "
                             "its SHA-256 in spanlib.weights.BUNDLED (e.g. real_scpan)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import export_safetensors

    desc = export_safetensors(args.checkpoint, args.out, metrics=args.metrics, write_json_copy=not args.no_json)
    out = Path(args.out)
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {desc['sha256']}): {desc['variant']}, scheme "
          f"{desc['scheme']}, iteration {desc['iteration']}, seed {desc['seed']}, code {desc['code_version']}, "
          f"{len(desc['metrics']['evaluations'])} evaluation(s)")
    if not args.no_json:
        print(f"wrote {out.with_suffix('.json')}")
    if args.register:
        from ..weights import bundled_path, register_bundled

        digest = register_bundled(out, args.register)
        print(f"bundled as {args.register!r}: {bundled_path(args.register)} (sha256 {digest} recorded in "
              f"spanlib/weights/__init__.py)")
    return 0
