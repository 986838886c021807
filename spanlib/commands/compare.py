"""``spanlib compare --run LABEL=CKPT[,CKPT...] ... --reference LABEL --source S --root R --split SPLIT
--json out.json --markdown out.md``: several settings, one checkpoint per seed each, on the same
held-out faces, with mean ± sd over seeds and paired bootstrap intervals (spanlib.study.experiments)."""

from __future__ import annotations

import argparse

from spanlib.utils.errors import ParamError
from spanlib.utils.files import write_json, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="runs", action="append", required=True, metavar="LABEL=CKPT[,CKPT...]",
                        help="a setting and its checkpoints, one per seed, in the same seed order for every setting")
    parser.add_argument("--reference", required=True, help="the label every other setting is compared with")
    parser.add_argument("--source", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--flip-test", action="store_true", help="evaluate with flip test-time augmentation")
    parser.add_argument("--title", default="Comparison")
    parser.add_argument("--json", default=None, help="write the comparison (per-seed values included) here")
    parser.add_argument("--markdown", default=None, help="write the markdown table here")


def parse_runs(items: list[str]) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"--run {item!r}: expected LABEL=CKPT[,CKPT...]")
        label, paths = item.split("=", 1)
        if label in runs:
            raise ParamError(f"--run {label}: given twice")
        runs[label] = [p for p in paths.split(",") if p]
        if not runs[label]:
            raise ParamError(f"--run {label}: no checkpoint given")
    return runs


def run(args: argparse.Namespace) -> int:
    from spanlib.study.experiments import compare_runs, comparison_markdown  # torch: not for `--help`

    runs = parse_runs(args.runs)
    if args.reference not in runs:
        raise ParamError(f"--reference {args.reference}: not among the --run labels {list(runs)}")
    result = compare_runs(runs, args.reference, args.source, args.root, args.split,
                          settings={"flip_test": bool(args.flip_test)})
    text = comparison_markdown(result, args.title)
    print(text)
    if args.json:
        write_json(args.json, result)
    if args.markdown:
        write_text(args.markdown, text)
    return 0
