"""``spanlib bench jsd|decode --device cpu|cuda [--json FILE]``: time the fused ops against the
textbook formulas (autograd and torch.compile) at training sizes; writes JSON, a markdown table
and a plot under ``<out>/<device>/``. The harness is ``spanlib.bench.harness``; method in kernels/README.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from spanlib.utils.errors import ParamError
from spanlib.utils.files import atomic_path, write_json, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("op", choices=["jsd", "decode"], help="which op to benchmark")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON result here")
    parser.add_argument("--out", type=Path, default=Path("kernels/results"),
                        help="results folder; files go to OUT/<device>/ (default kernels/results)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case on CPU (default 7)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--sizes", default=None,
                        help="BxKxHxW[,BxKxHxW...] instead of the training sizes (e.g. 2x3x64x64 for a smoke run)")
    parser.add_argument("--sweep-warps", default="",
                        help="CUDA: also the Triton method's device time per num_warps, e.g. 4,8,16,32")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spanlib.bench.harness import device_slug, markdown_table, parse_sizes, plot, run_benchmark  # torch: not for `--help`

    if args.repeats < 1:
        raise ParamError(f"--repeats: expected >= 1, got {args.repeats}")
    sizes = parse_sizes(args.sizes) if args.sizes else None
    try:
        warps = [int(w) for w in args.sweep_warps.split(",") if w.strip()]
    except ValueError:
        raise ParamError(f"--sweep-warps: expected comma-separated integers, got {args.sweep_warps!r}") from None
    if any(w < 1 or w & (w - 1) or w > 32 for w in warps):
        raise ParamError(f"--sweep-warps: expected powers of two from 1 to 32, got {args.sweep_warps!r}")
    bar = tqdm(desc=f"bench {args.op}", unit="case")

    def progress(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    result = run_benchmark(args.op, args.device, repeats=args.repeats,
                           with_compile=not args.no_compile, progress=progress, sizes=sizes, sweep_warps=warps)
    bar.close()
    folder = args.out / device_slug(result["device"])
    write_json(folder / f"{args.op}.json", result)
    table = markdown_table(result)
    write_text(folder / f"{args.op}.md", table)
    with atomic_path(folder / f"{args.op}.png") as tmp:
        plot(result, tmp.with_suffix(".png"))
        tmp.with_suffix(".png").replace(tmp)
    if args.json is not None:
        write_json(args.json, result)
    print(table)
    print(f"wrote {folder / (args.op + '.json')}, .md, .png")
    return 0
