"""The options of the inference passes, shared by ``spanlib evaluate`` and ``spanlib predict``.

Each stands for an ``evaluate.*`` setting (docs/evaluation.md): the re-crop passes, the flip test,
which passes it mirrors and the size of the passes that only place the next crop. Left out, a
command takes the model's own setting.
"""

from __future__ import annotations

import argparse

from spanlib.config.schema import check_override

# evaluate.* key -> its option
PASS_OPTIONS = {"refine": "--refine", "flip_test": "--flip-test", "flip_passes": "--flip-passes",
                "placing_size": "--placing-size"}


def add_pass_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refine", type=int, default=None, metavar="N",
                        help="N more passes, each cropping on the box of the previous pass's points (each "
                             "costs one more forward; default: the model's evaluate.refine)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                        help="also predict each mirrored crop and average the two (twice the cost; "
                             "default: the model's evaluate.flip_test)")
    parser.add_argument("--flip-passes", default=None, choices=("all", "last"),
                        help="with the flip test and --refine: mirror every pass, or only the last (one "
                             "forward fewer per re-crop; default: the model's evaluate.flip_passes)")
    parser.add_argument("--placing-size", type=int, default=None, metavar="PX",
                        help="with --refine: the input size of the passes that only place the next crop, a "
                             "multiple of 4 * 2**model.depth (96 for the bundled 128: a cheaper first pass; "
                             "default: the model's evaluate.placing_size, null = crop.input_size)")


def pass_settings(args: argparse.Namespace) -> dict:
    """The pass options given, as ``evaluate`` settings, each checked against the schema's range
    (a negative --refine stops here, before a model is loaded or a face read)."""
    settings = {key: getattr(args, key) for key in PASS_OPTIONS if getattr(args, key) is not None}
    for key, value in settings.items():
        check_override(f"evaluate.{key}", value, PASS_OPTIONS[key])
    return settings
