"""Atomic file writes: a reader never sees a half-written file, and an interrupted write leaves the
previous version in place."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from spanlib.utils.errors import DataError, ParamError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable(path: str | os.PathLike, probe: bool = True) -> None:
    """An OSError naming ``path`` when a file cannot be written there: it is an existing directory,
    a folder above it is a file, or the nearest existing folder is not writable. Commands call this
    on their outputs before long work starts, and every atomic write does (``probe=False``: it
    creates its temporary file right after). ``probe``: also create and remove a temporary file in
    that folder, because permission bits do not tell (root writes to a folder of mode 0555, and a
    read-only file system or ``/sys`` refuses everyone)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is an existing directory, not a file to write", str(path))
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot be written: {parent} is a file, not a folder", str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot be written: the folder {parent} is not writable", str(path))
    if probe:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        except OSError as exc:
            raise PermissionError(exc.errno or errno.EACCES, f"cannot be written: the folder {parent} is not "
                                  f"writable ({exc.strerror or exc})", str(path)) from None
        os.close(fd)
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename. An
    output that cannot be written is an OSError naming ``path`` (not the temporary file)."""
    path = Path(path)
    check_writable(path, probe=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot be written ({exc.strerror})", str(path)) from None
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


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file that can be opened for reading, or None: missing, a
    directory, a symlink loop, or a FIFO, socket or device (opening a FIFO blocks until someone
    writes to it, so this is checked with ``os.stat`` before any ``open``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"{kind}, not a regular file (refused: reading it could block forever)"
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (also through links, or before either exists)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_outputs(outputs: dict[str, str | os.PathLike], inputs: dict[str, str | os.PathLike]) -> None:
    """A ParamError when an output (or a side file written beside it) is one of the command's
    inputs, or two outputs are one file: writing it would destroy what the command reads."""
    items = list(outputs.items())
    for i, (out_label, out) in enumerate(items):
        for in_label, source in inputs.items():
            if source is not None and same_file(out, source):
                raise ParamError(f"{out}: {out_label} is {in_label} {source}; writing it would overwrite an "
                                 f"input (choose another output name)")
        for other_label, other in items[i + 1:]:
            if same_file(out, other):
                raise ParamError(f"{out}: {out_label} and {other_label} are the same file (choose another "
                                 f"output name)")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no NaN, and ``json.dumps``
    would write the bare word ``NaN``, which JSON readers refuse."""
    if type(obj).__module__ == "numpy" and getattr(obj, "ndim", None) == 0:
        obj = obj.item()  # np.float32 is no float subclass
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch  # lazy: utils.files is imported by torch-free code (`spanlib synth`, `spanlib data`)

    # torch.save names the zip archive's root folder after a file *path* it is given: here the
    # temporary file's random name, so the bytes (and DVC's hash of a checkpoint) would change
    # from run to run. Given an open file it always writes "archive/": the same bytes every time.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def _json_default(value: Any) -> Any:
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

# Pixel budget: a 62 KB PNG can declare 8000x8000 pixels (3.4 GB and 38 s to decode), so an image is
# refused by the size its header declares, before it is decoded. 50 megapixels (an 8660x5773 photo)
# is far above any face image; SPANLIB_MAX_IMAGE_PIXELS=N changes it (spanlib --help says so).
MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGE_PIXELS_ENV = "SPANLIB_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel budget: ``$SPANLIB_MAX_IMAGE_PIXELS`` when set (a positive integer), else 50e6."""
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ParamError(f"{MAX_IMAGE_PIXELS_ENV}={raw!r}: expected a positive number of pixels, e.g. 50000000")
    return value


def declared_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the image header (Pillow reads only the header, nothing is decoded);
    None when Pillow does not know the format. Pillow's own bomb check is off here: the size is
    what is wanted, the budget is :func:`max_image_pixels`."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - a malformed header can raise struct.error, EOFError, IndexError ...
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def pixel_problem(path: str | os.PathLike, size: tuple[int, int] | None = ...) -> str | None:
    """Why the image is too large to decode (its declared size over the budget), or None.
    ``size``: the declared size when already read."""
    size = declared_size(path) if size is ... else size
    if size is None:
        return None
    budget = max_image_pixels()
    if size[0] * size[1] > budget:
        return (f"declares {size[0]}x{size[1]} = {size[0] * size[1]} pixels, over the limit of {budget} pixels "
                f"(not decoded; a larger limit: {MAX_IMAGE_PIXELS_ENV}=N)")
    return None


def image_problem(path: str | os.PathLike) -> str | None:
    """Why the image file ``path`` cannot be used, or None. Catches truncation: a JPEG without its
    end-of-image marker FFD9, a PNG without its IEND chunk, confirmed by a full Pillow decode (which
    also accepts files that carry data after the marker), and for a JPEG libjpeg's own report of
    data that ends early (:func:`jpeg_scan_problem`: an appended end marker does not fool it).
    Other formats Pillow reads: None (OpenCV decides). Before any of that: not a regular file (a
    FIFO would block), a declared size over the pixel budget (:func:`max_image_pixels`; nothing is
    decoded), or no header Pillow can read the size of (a text file named .jpg, or a format the
    budget cannot be checked on)."""
    problem = file_problem(path)
    if problem:
        return problem
    try:
        if os.stat(path).st_size == 0:
            return "empty file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    dims = declared_size(path)
    problem = pixel_problem(path, dims)
    if problem:
        return problem
    if dims is None:  # no header Pillow can size: the pixel budget cannot be checked
        if not cv2.haveImageReader(str(path)):
            return "not a readable image (neither Pillow nor OpenCV knows its format)"
        return ("an image format whose size spanlib cannot read before decoding it (the pixel budget is "
                "checked on the header; convert it to PNG or JPEG)")
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
        return jpeg_scan_problem(path) if kind == "JPEG" else None
    try:  # the slow path, only for files without the marker near the end
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ...
        return f"truncated {kind} (no end marker {marker.hex().upper()}; Pillow: {exc})"
    return jpeg_scan_problem(path) if kind == "JPEG" else None


# libjpeg's warnings that mean the compressed data stopped early: "premature end of data segment"
# (JWRN_HIT_MARKER: a marker, e.g. an end-of-image FFD9 appended to a file cut short, came before
# the data ran out) and "Premature end of JPEG file" (JWRN_JPEG_EOF). Either way libjpeg fills
# the rest with grey and OpenCV returns the image. Other warnings (extraneous bytes) are benign.
_JPEG_CUT_SHORT = "premature end"


def jpeg_scan_problem(path: str | os.PathLike) -> str | None:
    """Why the JPEG's compressed data is cut short, or None. The end marker alone proves nothing
    (``head -c N a.jpg > t.jpg; printf '\\xff\\xd9' >> t.jpg`` has one), so the file is decoded at
    1/8 scale (libjpeg still reads every coefficient, at a fraction of the full decode's time) and
    libjpeg's warnings, which OpenCV prints on file descriptor 2, are read back from there."""
    image, messages = _decode_reduced(path)
    cut = [line for line in messages.splitlines() if _JPEG_CUT_SHORT in line.lower()]
    if cut:
        return f"truncated JPEG (libjpeg: {cut[0].strip()}; the rest would be decoded as grey)"
    if image is None:
        return "not a readable image (OpenCV cannot decode this JPEG)"
    return None


def _decode_reduced(path: str | os.PathLike):
    """(OpenCV's 1/8-scale grey decode or None, what was written to fd 2 meanwhile). Text from
    elsewhere that lands there in that moment (another thread) is written back to stderr."""
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            try:
                image = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        sink.seek(0)
        messages = sink.read().decode("utf-8", "replace")
    other = "".join(line for line in messages.splitlines(keepends=True) if "JPEG" not in line)
    if other:
        os.write(2, other.encode())
    return image, messages


def check_image(path: str | os.PathLike) -> None:
    """Raise DataError naming ``path`` when ``image_problem`` finds one."""
    problem = image_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected a complete image file)")


def read_image(path: str | os.PathLike):
    """RGB uint8 (H, W, 3) of an image file; a missing, truncated or undecodable file is a DataError
    naming it. The one reader for image files (spanlib.data.sample and predict should call it)."""
    check_image(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: not a readable image (expected an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
