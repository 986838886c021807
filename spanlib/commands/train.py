"""``spanlib train --params params.yaml --variant NAME --out models/NAME.pt [--set k=v ...] [--resume]``

Under ``torchrun --nproc-per-node N -m spanlib train ...`` each process is one rank of a
data-parallel run (docs/distributed.md). Ctrl-C ends with one line naming the intact checkpoint
and the command that resumes it, exit status 130 (128 + SIGINT), as shells report an interrupt.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from spanlib.config.params import resolve
from spanlib.utils.errors import ParamError
from spanlib.utils.files import check_outputs, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--variant", default=None,
                        help="shn | shn_bali | shn_scpa | scpan | semi_scpan (default: model.variant)")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. models/scpan.pt")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set train.iterations=200 (repeatable)")
    parser.add_argument("--recipe", default=None,
                        help="apply named recipes from params.yaml 'recipes:' (e.g. paper, or real,shared300w: several are applied in order)")
    parser.add_argument("--profile", dest="renamed_profile", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint at --out; with a larger train.iterations, extend it")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available; under torchrun: cuda:LOCAL_RANK)")


def resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes this run (the same options, plus --resume)."""
    words = ["spanlib", "train", "--params", args.params]
    if args.recipe:
        words += ["--recipe", args.recipe]
    if args.variant:
        words += ["--variant", args.variant]
    words += ["--out", args.out]
    if args.overrides:
        words += ["--set", *args.overrides]
    if args.device:
        words += ["--device", args.device]
    return " ".join(shlex.quote(w) for w in words + ["--resume"])


def run(args: argparse.Namespace) -> int:
    # torch and the model code: imported here, so that `spanlib train --help` answers at once
    from spanlib.training import train as train_module  # looked up per call: tests replace it
    from spanlib.training.distributed import env_context
    from spanlib.training.train import TrainingInterrupted

    if args.renamed_profile:
        raise ParamError(f"--profile {args.renamed_profile}: renamed to --recipe (params.yaml's 'profiles:' is now "
                         f"'recipes:'); run with --recipe {args.renamed_profile}")
    check_writable(args.out)  # an --out that is a directory fails now, not after the last iteration
    params = resolve(args.params, args.recipe, complete=True)  # the file and its recipes
    effective = resolve(params, overrides=args.overrides, complete=True)  # then --set
    # the checkpoint is written over --out from the first checkpoint_every on: never over the params
    # file, nor over the checkpoint a new run starts from (with --resume, --out is the run itself)
    init_from = None if args.resume else (effective.get("train") or {}).get("init_from")
    teacher = (effective.get("train") or {}).get("teacher")
    check_outputs({"--out": args.out}, {"--params": args.params, "train.init_from": init_from,
                                        "train.teacher": teacher})
    variant = args.variant or effective["model"]["variant"]  # --variant, else params (recipes, then --set)
    try:
        out = train_module.train(effective, variant, args.out, resume=args.resume, device=args.device)
    except TrainingInterrupted as stop:  # one line, not a traceback: the checkpoint is what matters
        if stop.is_main:
            print(f"spanlib train: {stop.message(resume_command(args))}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if env_context().is_main:
            print("spanlib train: interrupted before the first iteration; nothing was written", file=sys.stderr)
        return 130
    if env_context().is_main:
        print(f"wrote {out}")
    return 0
