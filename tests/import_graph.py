"""Walking spanlib's imports with ``ast`` (test_layers: the layer check; test_dvc_deps: each DVC
stage's deps): the modules of the package, and every import statement of a source, function-level
and relative imports included."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "spanlib"


def module_file(name: str) -> Path | None:
    """The file of dotted module ``name`` (a package's __init__.py), or None if not in spanlib."""
    if name != "spanlib" and not name.startswith("spanlib."):
        return None
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_statements(source: str, current: str | None = None,
                      is_package: bool = False) -> Iterator[tuple[str, tuple[str, ...] | None]]:
    """(module, names) for every import in ``source``, anywhere in it: ``import a.b, c`` gives
    ("a.b", None) and ("c", None); ``from a.b import c, d`` gives ("a.b", ("c", "d")). A relative
    import is resolved against ``current``, the importing module's dotted name (``is_package``: its
    file is an ``__init__.py``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = current.split(".") if is_package else current.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base, tuple(alias.name for alias in node.names)
