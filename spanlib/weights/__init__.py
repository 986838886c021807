"""Model files shipped inside the package, each checked against its SHA-256 before it is used.

``BUNDLED[name]`` gives the ``file`` (in this folder), its expected ``sha256`` and a
``description``. ``spanlib.load_model()`` with no path loads ``DEFAULT``; a file that is missing,
changed or truncated is a DataError that says what was expected.

To ship a model: ``spanlib export --format safetensors CHECKPOINT --out FILE --register real_scpan``
(or ``register_bundled(FILE)`` from Python) copies FILE here and writes its hash into ``BUNDLED``
below, in this file's source. Editing ``BUNDLED["real_scpan"]["sha256"]`` by hand works too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT = "real_scpan"

BUNDLED = {
    "real_scpan": {
        "file": "real_scpan.safetensors",
        "sha256": "99c051bb68e7e673307adc0cbafe29d0dc99b5248045bcb735429157ec2fd953",
        "description": "scpan trained on real faces (300W, spanlib train --recipe real,shared300w)",
    },
}


def _entry(name: str) -> dict:
    from spanlib.errors import ParamError

    if name not in BUNDLED:
        raise ParamError(f"bundled model {name!r}: unknown; spanlib ships {sorted(BUNDLED)}")
    return BUNDLED[name]


def bundled_path(name: str = DEFAULT) -> Path:
    """Where the bundled model ``name`` lives (whether or not it is there)."""
    return WEIGHTS_DIR / _entry(name)["file"]


def verified_bundled(name: str = DEFAULT) -> tuple[Path, bytes]:
    """(path, bytes) of the bundled model ``name`` after checking its SHA-256; DataError when the
    file is missing, no hash is registered, or the bytes differ from the registered ones."""
    from spanlib.errors import DataError

    entry, path = _entry(name), bundled_path(name)
    if not path.is_file():
        raise DataError(
            f"{path}: the bundled model {name!r} is missing (this copy of spanlib does not ship it); "
            f"give a model file or checkpoint path, or export one with `spanlib export --format "
            f"safetensors CHECKPOINT --out FILE --register {name}`")
    expected = entry.get("sha256") or ""
    if not expected:
        raise DataError(f"{path}: no SHA-256 registered for bundled model {name!r} in "
                        f"spanlib.weights.BUNDLED; refusing to load an unverified file")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{path}: bundled model {name!r} fails its check: expected sha256 {expected}, got {actual} "
            f"({len(data)} bytes); the file was changed or truncated: reinstall spanlib or export and "
            f"register it again")
    return path, data


def register_bundled(path: str | Path, name: str = DEFAULT, registry_file: str | Path | None = None) -> str:
    """Ship the model file ``path`` as bundled model ``name``: check it is a spanlib model file,
    copy it into WEIGHTS_DIR (unless it is already there), and write its SHA-256 into
    ``BUNDLED[name]["sha256"]`` in ``registry_file`` (default: this module's source) and in the
    running process. Returns the hash."""
    from spanlib.checkpoint import check_model_state, read_model_file
    from spanlib.errors import DataError
    from spanlib.io import file_problem, write_bytes, write_text

    entry, path = _entry(name), Path(path)
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected a .safetensors model file)")
    data = path.read_bytes()
    tensors, desc = read_model_file(path, data)  # a spanlib .safetensors model file, or DataError
    # a model that load_model() would refuse (sizes past the bounds, NaN weights) is not shipped
    check_model_state(path, desc["variant"], desc["scheme"], desc["params"], tensors, "model file")
    digest = hashlib.sha256(data).hexdigest()
    target = WEIGHTS_DIR / entry["file"]
    if not (target.exists() and target.resolve() == path.resolve()):
        write_bytes(target, data)
        description = path.with_suffix(".json")  # the readable copy export writes beside it
        if description.is_file():
            write_bytes(target.with_suffix(".json"), description.read_bytes())
    source = Path(registry_file) if registry_file is not None else Path(__file__)
    text = source.read_text()
    pattern = re.compile(r'("%s"\s*:\s*\{[^{}]*?"sha256"\s*:\s*")([0-9a-fA-F]*)(")' % re.escape(name))
    new_text, count = pattern.subn(lambda m: m.group(1) + digest + m.group(3), text)
    if count != 1:
        raise DataError(f"{source}: cannot find BUNDLED[{name!r}]['sha256'] to update; set it by hand to {digest}")
    write_text(source, new_text)
    entry["sha256"] = digest
    return digest
