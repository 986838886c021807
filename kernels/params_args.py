"""The params arguments the kernels/ measurement scripts share: a params file, profiles applied in
order, then ``--set`` overrides, as ``spanlib train --params --profile --set`` reads them."""

from __future__ import annotations

import argparse


def add_params_arguments(parser: argparse.ArgumentParser, profile: str | None = None) -> None:
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default=profile, help="profiles of params.yaml, comma-separated, in order")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")


def params_from(args: argparse.Namespace) -> dict:
    from spanlib.params import apply_overrides, apply_profile, load_params

    params = load_params(args.params)
    if args.profile:
        params = apply_profile(params, args.profile)
    return apply_overrides(params, args.overrides)
