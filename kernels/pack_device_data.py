"""Copy ../shared/data's 300-W faces and unlabeled YouTube frames into .devdata/ (git-ignored),
re-encoded as JPEG at one quality, so that they travel to a lent GPU machine with the working tree
(the device tool sends at most 64 MiB in all; the originals are 70 MB).

    python kernels/pack_device_data.py [--src ../shared/data] [--out .devdata] [--quality 82]

Landmark files (.pts) are copied unchanged; images keep their size and name. Prints the bytes
and the mean PSNR of the re-encoded images against the originals (what the GPU runs train on
differs from ../shared/data by that much: see kernels/README.md, "GPU session").
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PARTS = ("300w", "youtube-faces/unlabeled")


def reencode(src: Path, dst: Path, quality: int) -> float:
    """Write ``src`` as a JPEG of ``quality`` at ``dst``; returns the PSNR (dB) against ``src``."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=quality)
    dst.write_bytes(buf.getvalue())
    a = np.asarray(rgb, dtype=np.float64)
    b = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path(".devdata"))
    parser.add_argument("--quality", type=int, default=82)
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100:
        raise SystemExit(f"--quality: {args.quality} is not in 1..100")
    for part in PARTS:
        if not (args.src / part).is_dir():
            raise SystemExit(f"--src: {args.src / part} is not a folder")
    if args.out.exists():
        shutil.rmtree(args.out)
    psnr, before, after = [], 0, 0
    for part in PARTS:
        for f in sorted((args.src / part).rglob("*")):
            if not f.is_file():
                continue
            dst = args.out / f.relative_to(args.src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            before += f.stat().st_size
            if f.suffix.lower() in (".jpg", ".jpeg"):
                psnr.append(reencode(f, dst, args.quality))
            else:
                shutil.copyfile(f, dst)
            after += dst.stat().st_size
    print(f"{len(psnr)} images re-encoded at JPEG quality {args.quality}: {before / 1e6:.1f} MB -> "
          f"{after / 1e6:.1f} MB, PSNR against the originals {np.mean(psnr):.1f} dB "
          f"(min {np.min(psnr):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
