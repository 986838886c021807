"""``spanlib synth``: write synthetic faces (68 points) as a 300-W-style folder."""

from __future__ import annotations

import argparse

from spanlib.data.synth import SPLIT_RATIO, split_counts, write_synthetic_dataset
from spanlib.data.synth.grid import make_grid
from spanlib.data.synth.writer import benchmark
from spanlib.utils.errors import ParamError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=False, help="output folder (train/, common/, challenging/, unlabeled/)")
    parser.add_argument("--n", type=int, default=None,
                        help="total number of faces, split 2000:300:150:1000 (train:common:challenging:unlabeled), "
                             "as params.yaml's defaults; --n-<split> options override single splits")
    parser.add_argument("--n-train", type=int, default=None, help="training faces (default 2000)")
    parser.add_argument("--n-common", type=int, default=None, help="near-frontal test faces (default 300)")
    parser.add_argument("--n-challenging", type=int, default=None, help="hard test faces (default 150)")
    parser.add_argument("--n-unlabeled", type=int, default=None, help="faces without labels (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed: same seed, same files (default 0)")
    parser.add_argument("--format", default="jpg", choices=["jpg", "png"],
                        help="image format (default jpg: quality 95, about 5x smaller than png)")
    parser.add_argument("--grid", default=None, metavar="PNG", help="also write a grid of samples with points")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--benchmark", type=int, default=None, metavar="N",
                        help="only time drawing N faces in memory on one thread and print faces per second")


def run(args: argparse.Namespace) -> int:
    if args.benchmark:
        r = benchmark(args.benchmark, args.size, args.seed)
        print(f"synthetic faces: {r['faces']} train faces at {r['size']}x{r['size']} (seed {r['seed']}), one thread: "
              f"{r['faces_per_s_wall']:.0f} faces/s wall clock, {r['faces_per_s_cpu']:.0f} faces/s of CPU time")
        return 0
    if not args.out:
        raise ParamError("--out: give the output folder")
    counts = split_counts(args.n) if args.n is not None else dict(SPLIT_RATIO)
    for split in counts:
        value = getattr(args, f"n_{split}")
        if value is not None:
            counts[split] = value
    manifest = write_synthetic_dataset(args.out, counts["train"], counts["common"], counts["challenging"],
                                       counts["unlabeled"], size=args.size, seed=args.seed,
                                       image_format=args.format, progress=not args.quiet)
    if args.grid:
        make_grid(args.grid, seed=args.seed, size=args.size)
    total = sum(manifest["counts"].values())
    print(f"synthetic faces in {args.out}: {manifest['counts']} (seed {args.seed}, size {args.size}, "
          f"{args.format}); drew {manifest['drawn']}, kept {total - manifest['drawn']} already there")
    return 0
