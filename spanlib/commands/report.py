"""``spanlib report --metrics DIR_OR_FILES... --out DIR``: the paper's tables (markdown, CSV) and
figures (CED per subset, per-landmark error; with --checkpoint, overlays and the maps of Figs. 3/6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from spanlib.utils.errors import ParamError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="+", required=True,
                        help="metrics JSON files, setup JSON files (Tables VII/VIII) or folders of them")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--ced-threshold", type=float, default=0.1, help="x range of the CED plots")
    parser.add_argument("--checkpoint", default=None, help="also draw overlays and maps with this model")
    parser.add_argument("--source", default=None, help="dataset format of the example faces")
    parser.add_argument("--root", default=None, help="dataset root of the example faces")
    parser.add_argument("--split", default=None, help="split of the example faces")
    parser.add_argument("--examples", type=int, default=4, help="faces in the overlay figure")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args: argparse.Namespace) -> int:
    from spanlib.reporting.report import example_figures, write_report  # torch: not for `--help`

    out = write_report(args.metrics, args.out, figures=not args.no_figures, ced_threshold=args.ced_threshold)
    files = list(out["files"])
    if args.checkpoint:
        if not (args.source and args.root):
            raise ParamError("--checkpoint: also give --source and --root for the example faces")
        files += example_figures(args.checkpoint, args.source, args.root, args.split,
                                 Path(args.out) / "figures", args.examples, args.device)
    for table in out["tables"].values():
        print(table.markdown())
    print(f"wrote {len(files)} files under {args.out}")
    return 0
