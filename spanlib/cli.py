"""The ``spanlib`` command. Each sub-command lives in ``spanlib/commands/<name>.py`` with
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used, so
``spanlib --help`` stays fast and one broken command cannot take the others down."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import SpanlibError

# name -> (module, one-line help)
COMMANDS = {
    "data": ("spanlib.commands.data", "inspect datasets: faces, points, image sizes, missing parts"),
    "synth": ("spanlib.commands.synth", "write synthetic faces as a 300W-style folder"),
    "train": ("spanlib.commands.train", "train a SPAN variant"),
    "evaluate": ("spanlib.commands.evaluate", "evaluate a checkpoint on a dataset split"),
    "compare": ("spanlib.commands.compare", "compare settings over seeds on the same held-out faces"),
    "report": ("spanlib.commands.report", "build the paper's tables and figures from metrics JSON"),
    "predict": ("spanlib.commands.predict", "landmarks for images and videos"),
    "export": ("spanlib.commands.export", "turn a training checkpoint into a .safetensors model file to share"),
    "profile": ("spanlib.commands.profile", "parameters, size, FLOPs and speed of each variant"),
    "bench": ("spanlib.commands.bench", "benchmark the fused ops against naive PyTorch"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanlib", description=__doc__.split("\n")[0])
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
        return int(module.run(args) or 0)
    except SpanlibError as exc:
        print(f"spanlib {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
