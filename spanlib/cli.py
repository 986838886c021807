"""The ``spanlib`` command. Each sub-command lives in ``spanlib/commands/<name>.py`` with
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used, so
``spanlib --help`` stays fast and one broken command cannot take the others down.

A command with a ``--params`` file gets it checked as a whole (``load_params(complete=True)``)
before it runs, so a missing group or key is a message naming it, not a KeyError mid-run."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import SpanlibError

DESCRIPTION = ("spanlib: facial landmarks with SPAN (Wan et al., 2021) - inspect datasets, draw synthetic "
               "faces, train, evaluate, compare, report, predict, export, profile and benchmark.")
EPILOG = "Run `spanlib COMMAND --help` for a command's options. Hyperparameters: params.yaml."

# name -> (module, one-line help: shown by `spanlib --help` and as the command's description)
COMMANDS = {
    "data": ("spanlib.commands.data",
             "inspect a dataset root: faces, points per face, image sizes, missing parts, broken images"),
    "synth": ("spanlib.commands.synth", "write synthetic faces with 68 points as a 300W-style folder"),
    "train": ("spanlib.commands.train", "train a SPAN variant from params.yaml and write its checkpoint"),
    "evaluate": ("spanlib.commands.evaluate", "evaluate a checkpoint on a dataset split: NME, failure rate and AUC per subset"),
    "compare": ("spanlib.commands.compare", "compare settings over seeds on the same held-out faces"),
    "report": ("spanlib.commands.report", "build the paper's tables and figures from metrics JSON"),
    "predict": ("spanlib.commands.predict", "landmarks for images and videos, as JSON and overlays"),
    "export": ("spanlib.commands.export", "share a model: a checkpoint as .safetensors, or the network and decoding as ONNX"),
    "profile": ("spanlib.commands.profile", "parameters, size, FLOPs and speed of each variant"),
    "bench": ("spanlib.commands.bench", "benchmark the fused ops against the textbook formula and torch.compile"),
}


def build_parser() -> argparse.ArgumentParser:
    # the description is a sentence of its own: the module docstring's first line is cut mid-sentence
    parser = argparse.ArgumentParser(prog="spanlib", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"spanlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub_parser = argparse.ArgumentParser(prog=f"spanlib {name}", description=COMMANDS[name][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    try:
        check_params_file(args)
        return int(module.run(args) or 0)
    except SpanlibError as exc:
        print(f"spanlib {name}: error: {exc}", file=sys.stderr)
        return 2


def check_params_file(args: argparse.Namespace) -> None:
    """The command's ``--params`` file, checked as a whole (every required group and key present)
    before anything runs. The command loads it again itself; reading a small YAML twice is cheap."""
    path = getattr(args, "params", None)
    if path:
        from .params import load_params

        load_params(path, complete=True)


if __name__ == "__main__":
    raise SystemExit(main())
