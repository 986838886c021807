"""The ``spanlib`` command. Each sub-command lives in ``spanlib/commands/<name>.py`` with
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used, so
``spanlib --help`` stays fast and one broken command cannot take the others down.

A command with a ``--params`` file gets it checked as a whole (``resolve(complete=True)``)
before it runs, so a missing group or key is a message naming it, not a KeyError mid-run.

Errors are one line ``spanlib COMMAND: error: ...`` naming the file or parameter, never a traceback,
with these exit statuses (also in ``spanlib --help``): 0 success; 1 some inputs of a batch failed
(``predict``: the others still have results); 2 a usage, parameter or data error (``SpanlibError``,
a file that is not UTF-8 text, YAML that does not parse); 3 a file could not be read or written (an
``OSError``: a read-only folder, an existing directory, a parent that is a file, a full disk); 130
interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml

from spanlib._version import __version__
from spanlib.utils.errors import SpanlibError

DESCRIPTION = ("spanlib: facial landmarks with SPAN (Wan et al., 2021) - inspect datasets, draw synthetic "
               "faces, train, evaluate, compare, report, predict, export, profile and benchmark.")
EPILOG = ("Run `spanlib COMMAND --help` for a command's options. Hyperparameters: params.yaml. "
          "Exit status: 0 success, 1 some inputs of a batch failed, 2 usage, parameter or data error, "
          "3 a file could not be read or written, 130 interrupted. Limits on what is read: images of at "
          "most 50000000 pixels by their header (SPANLIB_MAX_IMAGE_PIXELS=N changes it); model files "
          "and checkpoints of model.stages <= 16, model.width <= 1024, model.depth <= 8, crop.input_size "
          "<= 1024, finite weights; YAML of at most 100000 nodes once aliases are expanded.")
EXIT_BATCH, EXIT_USAGE, EXIT_IO, EXIT_INTERRUPTED = 1, 2, 3, 130

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
    except BaseException as exc:  # noqa: BLE001 - sorted into the documented statuses, else re-raised
        code, message = error_status(exc)
        if code is None:
            raise
        print(f"spanlib {name}: {message}", file=sys.stderr)
        return code


def error_status(exc: BaseException) -> tuple[int | None, str]:
    """(exit status, one-line message) for the error classes a user can cause; (None, "") for a
    bug, which keeps its traceback."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted (Ctrl-C); files are written atomically, so none is half-written"
    if isinstance(exc, SpanlibError):
        return EXIT_USAGE, f"error: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return EXIT_USAGE, f"error: a file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, yaml.YAMLError):
        return EXIT_USAGE, f"error: not valid YAML ({' '.join(str(exc).split())})"
    if isinstance(exc, OSError):
        where = ": ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return EXIT_IO, f"error: {where + ': ' if where else ''}{exc.strerror or exc}"
    return None, ""


def check_params_file(args: argparse.Namespace) -> None:
    """The command's ``--params`` file, checked as a whole (every required group and key present)
    before anything runs. The command loads it again itself; reading a small YAML twice is cheap."""
    path = getattr(args, "params", None)
    if path:
        from spanlib.config.params import resolve  # lazy: loads NumPy; --help stays fast

        resolve(path, complete=True)


if __name__ == "__main__":
    raise SystemExit(main())
