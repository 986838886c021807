"""Write synthetic faces as a 300-W-style folder, resumably, with a manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path
import time

import cv2
import numpy as np
from tqdm import tqdm

from spanlib._version import __version__
from spanlib.data.pts import format_pts
from spanlib.data.synth.face import SPLIT_CODES, TRAIN_CHALLENGING_EVERY, face_name, render_face, sample_face
from spanlib.utils.errors import ParamError
from spanlib.utils.files import write_bytes, write_json

# 2: CPU-independent float math (portable.py) and lighting; the bytes differ from version 1
GENERATOR_VERSION = "2"
SPLITS = ("train", "common", "challenging", "unlabeled")
# --n N splits N in the proportions of params.yaml's defaults (2000 : 300 : 150 : 1000)
SPLIT_RATIO = {"train": 2000, "common": 300, "challenging": 150, "unlabeled": 1000}
IMAGE_FORMATS = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], "png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}


def _read_manifest(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParamError(f"{path}: unreadable synthetic-face manifest ({exc}); delete the folder to start over") from None


def split_counts(total: int) -> dict[str, int]:
    """``total`` faces split in the ratio SPLIT_RATIO (rounded down; the remainder goes to train)."""
    if total < 0:
        raise ParamError(f"--n: expected a number of faces >= 0, got {total}")
    whole = sum(SPLIT_RATIO.values())
    counts = {k: total * v // whole for k, v in SPLIT_RATIO.items()}
    counts["train"] += total - sum(counts.values())
    return counts


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    ok, buf = cv2.imencode(f".{image_format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), IMAGE_FORMATS[image_format])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image_format} image")
    return buf.tobytes()


def write_synthetic_dataset(out_dir, n_train: int, n_common: int, n_challenging: int, n_unlabeled: int,
                            size: int = 256, seed: int = 0, image_format: str = "jpg",
                            progress: bool = True) -> dict:
    """Write ``out_dir/{train,common,challenging}/NAME.{jpg,pts}`` and ``out_dir/unlabeled/NAME.jpg``
    plus ``out_dir/manifest.json``; returns the manifest.

    Resumable: a face whose files already exist is not drawn again (files are written atomically,
    so an existing file is complete). Face ``i`` of a split depends only on ``(seed, split, i)``, so a
    resumed or enlarged run writes the same files as one run from scratch. A folder made with a
    different seed, size, format or generator version is refused rather than mixed.
    """
    counts = {"train": n_train, "common": n_common, "challenging": n_challenging, "unlabeled": n_unlabeled}
    for split, n in counts.items():
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ParamError(f"synth.n_{split}: expected a whole number >= 0, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 64:
        raise ParamError(f"synth.size: expected an image side of at least 64 pixels, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParamError(f"synth.seed: expected a whole number >= 0, got {seed!r}")
    if image_format not in IMAGE_FORMATS:
        raise ParamError(f"--format: expected one of {list(IMAGE_FORMATS)}, got {image_format!r}")
    out_dir = Path(out_dir)
    settings = {"generator": "spanlib.data.synth", "generator_version": GENERATOR_VERSION, "seed": int(seed),
                "size": int(size), "image_format": image_format}
    manifest_path = out_dir / "manifest.json"
    previous = _read_manifest(manifest_path)
    if previous is not None:
        clash = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if clash:
            what = ", ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in clash.items())
            raise ParamError(f"{out_dir}: holds synthetic faces made with other settings ({what}); "
                             "choose another --out folder or delete it")
    if previous is None:
        # settings first, so an interrupted run is still refused if resumed with other settings
        write_json(manifest_path, {**settings, "complete": False})
    faces: dict[str, list] = {}
    total = sum(counts.values())
    drawn = 0
    bar = tqdm(total=total, desc=f"synth {out_dir}", unit="face", disable=not progress)
    for split in SPLITS:
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        existing = set(os.listdir(folder))
        faces[split] = []
        for i in range(counts[split]):
            name = face_name(split, i)
            image_name = f"{name}.{image_format}"
            spec = sample_face(seed, split, i, size)
            labeled = split != "unlabeled"
            if image_name not in existing or (labeled and f"{name}.pts" not in existing):
                image = render_face(spec)
                # the image first, then its .pts: a face with both files is complete
                write_bytes(folder / image_name, encode_image(image, image_format))
                if labeled:
                    write_bytes(folder / f"{name}.pts", format_pts(spec.landmarks).encode())
                drawn += 1
            faces[split].append(spec.meta)
            bar.update(1)
    bar.close()
    styles = {s: {st: sum(m["style"] == st for m in faces[s]) for st in ("common", "challenging")} for s in SPLITS}
    manifest = {
        **settings,
        "complete": True,
        "spanlib_version": __version__,
        "opencv_version": cv2.__version__,
        "counts": counts,
        "styles": styles,
        "train_style_rule": f"face i is challenging-style when i % {TRAIN_CHALLENGING_EVERY} == "
                            f"{TRAIN_CHALLENGING_EVERY - 1} (train and unlabeled), else common-style",
        "split_codes": SPLIT_CODES,
        "landmarks": "68 points, iBUG 300-W order, pixels, origin at the top-left corner of the top-left pixel",
        "faces": faces,
    }
    write_json(manifest_path, manifest)
    manifest["drawn"] = drawn
    return manifest


def benchmark(n: int = 300, size: int = 256, seed: int = 0) -> dict:
    """Time drawing ``n`` train faces in memory (no encoding, no disk) on one thread: OpenCV and
    torch are set to one thread. Returns faces per second by wall clock and by process CPU time."""
    cv2.setNumThreads(1)
    try:
        import torch  # lazy: `spanlib synth` is torch-free (torch takes ~1 s to import)

        torch.set_num_threads(1)
    except ImportError:  # torch is a dependency, but the benchmark does not need it
        pass
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        render_face(sample_face(seed, "train", i, size))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"faces": n, "size": size, "seed": seed, "faces_per_s_wall": n / wall, "faces_per_s_cpu": n / cpu}
