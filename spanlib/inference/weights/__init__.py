"""Model files shipped inside the package, each checked against its SHA-256 before it is used.

``BUNDLED[name]`` gives the ``file`` (in this folder), its expected ``sha256`` and a
``description``. ``spanlib.load_model()`` with no path loads ``DEFAULT``; a file that is missing,
changed or truncated is a DataError that says what was expected.

``BUNDLED`` is read at import from ``registry.json`` in this folder (package data, like the model
files). To ship a model: ``spanlib export --format safetensors CHECKPOINT --out FILE --register
real_300w`` (or ``spanlib.inference.checkpoint.register_bundled(FILE)`` from Python) checks FILE is a
loadable spanlib model, copies it here and records its hash with ``record_sha256``, which rewrites
``registry.json`` atomically. Editing the ``sha256`` in ``registry.json`` by hand works too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spanlib.utils.errors import DataError, ParamError
from spanlib.utils.files import write_text

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT = "real_300w"

REGISTRY = WEIGHTS_DIR / "registry.json"


def read_registry(path: str | Path = REGISTRY) -> dict:
    """``{name: {"file", "sha256", "description"}}`` from the registry JSON ``path``."""
    try:
        registry = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the bundled-model registry ({exc}); reinstall spanlib") from exc
    if not isinstance(registry, dict) or not all(isinstance(e, dict) and "file" in e for e in registry.values()):
        raise DataError(f"{path}: the bundled-model registry is not a dict of {{name: {{file, sha256, ...}}}}")
    return registry


BUNDLED = read_registry()


def _entry(name: str) -> dict:
    if name not in BUNDLED:
        raise ParamError(f"bundled model {name!r}: unknown; spanlib ships {sorted(BUNDLED)}")
    return BUNDLED[name]


def bundled_path(name: str = DEFAULT) -> Path:
    """Where the bundled model ``name`` lives (whether or not it is there)."""
    return WEIGHTS_DIR / _entry(name)["file"]


def verified_bundled(name: str = DEFAULT) -> tuple[Path, bytes]:
    """(path, bytes) of the bundled model ``name`` after checking its SHA-256; DataError when the
    file is missing, no hash is registered, or the bytes differ from the registered ones."""
    entry, path = _entry(name), bundled_path(name)
    if not path.is_file():
        raise DataError(
            f"{path}: the bundled model {name!r} is missing (this copy of spanlib does not ship it); "
            f"give a model file or checkpoint path, or export one with `spanlib export --format "
            f"safetensors CHECKPOINT --out FILE --register {name}`")
    expected = entry.get("sha256") or ""
    if not expected:
        raise DataError(f"{path}: no SHA-256 registered for bundled model {name!r} in "
                        f"spanlib/inference/weights/registry.json; refusing to load an unverified file")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{path}: bundled model {name!r} fails its check: expected sha256 {expected}, got {actual} "
            f"({len(data)} bytes); the file was changed or truncated: reinstall spanlib or export and "
            f"register it again")
    return path, data


def record_sha256(name: str, digest: str, registry_file: str | Path | None = None) -> None:
    """Write ``digest`` as the SHA-256 of bundled model ``name`` into ``registry_file`` (default:
    ``registry.json`` here), atomically, and into ``BUNDLED`` of the running process."""
    entry = _entry(name)
    source = Path(registry_file) if registry_file is not None else REGISTRY
    registry = read_registry(source)
    if name not in registry:
        raise DataError(f"{source}: no entry {name!r} to update; set its sha256 by hand to {digest}")
    registry[name]["sha256"] = digest
    write_text(source, json.dumps(registry, indent=2) + "\n")
    entry["sha256"] = digest
