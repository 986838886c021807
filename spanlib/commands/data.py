"""``spanlib data inspect``: per split and subset, the faces, points per face, image size range,
missing official parts and broken (truncated or unreadable) image files of a dataset.

Exit status: 0 when every image file is usable, 1 when some are broken (listed), 2 on an error
(e.g. a root where no split has any face)."""

from __future__ import annotations

import argparse

from spanlib.data.sources import SOURCES, inspect_source
from spanlib.utils.files import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="summarise a dataset root; exit 1 when image files are broken",
                             description=__doc__)
    inspect.add_argument("--source", required=True, choices=SOURCES, help="dataset format")
    inspect.add_argument("--root", required=True, help="dataset root folder")
    inspect.add_argument("--split", default=None, help="one split (default: every split of the format)")
    inspect.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")


def format_report(report: dict) -> str:
    lines = [f"source {report['source']} at {report['root']}"]
    for split, entry in report["splits"].items():
        if "error" in entry:
            lines.append(f"  {split}: no faces ({entry['error']})")
            continue
        lines.append(f"  {split}: {_line(entry)}")
        if entry["missing"]:
            lines.append(f"    missing parts: {', '.join(entry['missing'])}")
        if entry.get("broken"):
            lines.append(f"    broken images: {len(entry['broken'])}")
            lines += [f"      {b['path']}: {b['problem']}" for b in entry["broken"]]
        for tag, sub in entry["subsets"].items():
            lines.append(f"    {tag}: {_line(sub)}")
    return "\n".join(lines)


def _line(entry: dict) -> str:
    size = entry["image_size"]
    points = "/".join(map(str, entry["points_per_face"])) or "none (unlabeled)"
    return (
        f"{entry['faces']} faces, points per face {points}, "
        f"width {size['width'][0]}-{size['width'][1]}, height {size['height'][0]}-{size['height'][1]}"
    )


def run(args: argparse.Namespace) -> int:
    report = inspect_source(args.source, args.root, args.split)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if report.get("broken"):
        print(f"{report['broken']} broken image files: replace or remove them before training or evaluating")
        return 1
    return 0
