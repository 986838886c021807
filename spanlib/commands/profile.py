"""``spanlib profile --variant NAME|all [--device cpu|cuda] [--json FILE]``"""

from __future__ import annotations

import argparse

from spanlib.config.params import resolve
from spanlib.config.variants import VARIANTS
from spanlib.utils.files import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", default="all", help="shn | shn_bali | shn_scpa | scpan | semi_scpan | all")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--seconds", type=float, default=None, help="timing budget per variant and batch")
    parser.add_argument("--batch", type=int, default=None, help="the large batch (default evaluate.profile_batch)")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper configuration")


def run(args: argparse.Namespace) -> int:
    from spanlib.bench.profile import profile, profile_table  # torch: not for `--help`

    params = resolve(args.params, complete=True)
    variants = VARIANTS if args.variant == "all" else tuple(v.strip() for v in args.variant.split(","))
    result = profile(params, variants, device=args.device, seconds=args.seconds, large_batch=args.batch,
                     paper=not args.no_paper)
    print(profile_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
