"""The params arguments the kernels/ measurement scripts share: a params file, recipes applied in
order, then ``--set`` overrides, as ``spanlib train --params --recipe --set`` reads them."""

from __future__ import annotations

import argparse


def add_params_arguments(parser: argparse.ArgumentParser, recipe: str | None = None) -> None:
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--recipe", default=recipe, help="recipes of params.yaml, comma-separated, in order")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")


def params_from(args: argparse.Namespace) -> dict:
    from spanlib.config.params import resolve

    return resolve(args.params, args.recipe, args.overrides)
