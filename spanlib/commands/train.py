"""``spanlib train --params params.yaml --variant NAME --out models/NAME.pt [--set k=v ...] [--resume]``"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--variant", default=None,
                        help="shn | shn_bali | shn_scpa | scpan | semi_scpan (default: model.variant)")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. models/scpan.pt")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set train.iterations=200 (repeatable)")
    parser.add_argument("--profile", default=None,
                        help="apply a named profile from params.yaml 'profiles:' (e.g. paper, or real,shared300w: several are applied in order)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    from ..params import load_params
    from ..train import apply_profile, train

    params = load_params(args.params)
    if args.profile:
        params = apply_profile(params, args.profile)
    variant = args.variant or params["model"]["variant"]
    out = train(params, variant, args.out, resume=args.resume, overrides=args.overrides, device=args.device)
    print(f"wrote {out}")
    return 0
