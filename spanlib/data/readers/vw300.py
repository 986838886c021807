"""300-VW: one folder per video, ``NNN/vid.avi`` with ``NNN/annot/000001.pts`` ... (one .pts per
frame, 1-based), frames read with OpenCV. Splits: the 50 training videos and the three test
scenarios of the 300-VW protocol (Shen et al. 2015; Chrysos et al. 2018): scenario 1
(well-lit), 2 (unconstrained lighting), 3 (completely unconstrained)."""

from __future__ import annotations

import os
from pathlib import Path

from spanlib.data.pts import read_pts
from spanlib.data.readers import ReadResult
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError

VIDEOS = {
    "train": "001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 "
             "034 035 037 039 041 043 044 046 047 048 049 053 057 059 112 113 115 119 120 123 138 143 "
             "144 160 204 205 223 225",
    "scenario1": "114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 "
                 "524 525 537 538 540 541 546 547 548",
    "scenario2": "203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553",
    "scenario3": "410 411 516 517 526 528 529 530 531 533 557 558 559 562",
}
VIDEOS = {split: tuple(ids.split()) for split, ids in VIDEOS.items()}
SPLITS = ("train", "scenario1", "scenario2", "scenario3")
VIDEO_NAMES = ("vid.avi", "vid.mp4")


def read_video_folder(folder: Path, subsets: tuple[str, ...]) -> list[Sample]:
    video = next((folder / n for n in VIDEO_NAMES if (folder / n).is_file()), None)
    if video is None:
        raise DataError(f"{folder}: no video {' or '.join(VIDEO_NAMES)} in the folder")
    annot = folder / "annot"
    if not annot.is_dir():
        raise DataError(f"{annot}: annotation folder not found (expected annot/000001.pts ...)")
    samples = []
    for name in sorted(e.name for e in os.scandir(annot) if e.name.endswith(".pts")):
        stem = name[:-4]
        if not stem.isdigit() or int(stem) < 1:
            raise DataError(f"{annot / name}: expected a 1-based frame number as the file name (000001.pts)")
        samples.append(Sample(str(video), landmarks=read_pts(annot / name, 68), subsets=subsets,
                              frame=int(stem) - 1, attributes={"video": folder.name}))
    return samples


def read(root: str | Path, split: str) -> ReadResult:
    root = Path(root)
    if split not in VIDEOS:
        raise DataError(f"300vw: unknown split {split!r}; expected one of {list(SPLITS)}")
    samples, missing = [], []
    for vid in VIDEOS[split]:
        folder = root / vid
        if not folder.is_dir():
            missing.append(vid)
            continue
        samples += read_video_folder(folder, (split, vid))
    return ReadResult(samples, missing)
