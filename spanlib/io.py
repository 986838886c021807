"""Atomic file writes: a reader never sees a half-written file, and an interrupted write leaves the
previous version in place."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---- image files ---------------------------------------------------------------------------------
# OpenCV decodes a JPEG cut short without failing: libjpeg prints "Premature end of JPEG file" to
# stderr and fills the rest grey, and that image would go into training and metrics. So every
# image is checked for truncation before use; the check reads the first and last few bytes only.

_TAIL = 4096  # bytes searched for the end marker (trailing padding or metadata after it is common)
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def image_problem(path: str | os.PathLike) -> str | None:
    """Why the image file ``path`` cannot be used, or None. Catches truncation: a JPEG without its
    end-of-image marker FFD9, a PNG without its IEND chunk, confirmed by a full Pillow decode (which
    also accepts files that carry data after the marker). Other formats: None (OpenCV decides)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL))
            tail = handle.read()
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "empty file"
    if head.startswith(_JPEG):
        kind, marker = "JPEG", b"\xff\xd9"
    elif head.startswith(_PNG):
        kind, marker = "PNG", b"IEND"
    else:
        return None
    if marker in tail:
        return None
    from PIL import Image

    try:  # the slow path, only for files without the marker near the end
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ...
        return f"truncated {kind} (no end marker {marker.hex().upper()}; Pillow: {exc})"
    return None


def check_image(path: str | os.PathLike) -> None:
    """Raise DataError naming ``path`` when ``image_problem`` finds one."""
    problem = image_problem(path)
    if problem:
        from .errors import DataError

        raise DataError(f"{path}: {problem} (expected a complete image file)")


def read_image(path: str | os.PathLike):
    """RGB uint8 (H, W, 3) of an image file; a missing, truncated or undecodable file is a DataError
    naming it. The one reader for image files (spanlib.data.sample and predict should call it)."""
    import cv2

    check_image(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        from .errors import DataError

        raise DataError(f"{path}: not a readable image (expected an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
