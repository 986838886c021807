"""params.yaml: reading it (checked against the schema of ``spanlib.config.schema``, with line numbers
and duplicate keys reported), and dotted look-ups.

Every hyperparameter lives in params.yaml and reaches code as an argument; modules never read the
file themselves. ``load_params`` returns the file's dict unchanged (no defaults filled in, so
checkpoints and resumes compare the same dicts as before); ``spanlib.config.schema.Config.from_params``
gives the typed view with the defaults, and ``spanlib.config.schema`` also applies ``--set`` overrides
and the named recipes of ``recipes:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from spanlib.config.schema import apply_overrides, check_params, compose_checked
from spanlib.utils.errors import ParamError


def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = (), *,
                complete: bool = False) -> dict:
    """The params file as a dict, checked as a whole: an unknown group or key (with the nearest
    valid name), a wrong type or range, a duplicated key, a bad recipe override is a ParamError
    naming the file and line. ``complete``: also require every group and key that has no default
    (the ``spanlib`` commands ask for this; partial files, e.g. in tests, load without it)."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    params, lines = read_yaml_checked(path)
    if params is None:
        params = {}
    check_params(params, str(path), complete=complete, lines=lines)
    return apply_overrides(params, overrides)


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps the node tree, so duplicate keys and line numbers can be reported."""


def read_yaml_checked(path: Path) -> tuple[Any, dict[str, int]]:
    """(data, {dotted key: line}) of a YAML file; a key given twice in one mapping is a ParamError
    naming both lines (PyYAML would keep the last one silently). Alias expansion and nesting are
    bounded before the tree is walked (``spanlib.config.schema.check_yaml_node``); a file that is not
    UTF-8 text is a ParamError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); params files are "
                         f"UTF-8 YAML") from None
    try:
        loader = _Loader(text)
        try:
            node = compose_checked(loader, str(path))
            lines: dict[str, int] = {}
            if node is not None:
                _walk(node, "", lines, path)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from exc
    return data, lines


def _walk(node: yaml.Node, prefix: str, lines: dict[str, int], path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            dotted = f"{prefix}{key}"
            if key in seen:
                raise ParamError(f"{path} line {line}: duplicate key {dotted!r} (first at line {seen[key]}); "
                                 f"YAML keeps only the last one, so merge the two")
            seen[key] = line
            lines.setdefault(dotted, line)
            _walk(value_node, f"{dotted}.", lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _walk(item, prefix, lines, path)


def get(params: dict, key: str, default: Any = ...) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise ParamError(f"missing parameter {key!r} in params")
            return default
        node = node[part]
    return node


def set_values(params: dict, values: Mapping[str, Any], origin: str = "params") -> dict:
    """A deep copy of ``params`` with each dotted key of ``values`` replaced (keys must exist)."""
    import copy

    params = copy.deepcopy(params)
    for key, value in values.items():
        node = params
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ParamError(f"{origin}: unknown parameter {'.'.join(parts[: depth + 1])!r} "
                                 f"(set by a notebook parameter as {key})")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return params
