"""params.yaml: loading (checked against the schema of ``spanlib.config``), ``--set key=value``
overrides, and dotted look-ups.

Every hyperparameter lives in params.yaml and reaches code as an argument: modules take the dict
(or the sub-dict of their stage) and never read the file themselves. ``load_params`` returns the
file's dict unchanged (no defaults filled in, so checkpoints and resumes compare the same dicts as
before); ``spanlib.config.Config.from_params`` gives the typed view with the defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from .config import check_override, check_params
from .errors import ParamError


def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = (), *,
                complete: bool = False) -> dict:
    """The params file as a dict, checked as a whole: an unknown group or key (with the nearest
    valid name), a wrong type or range, a duplicated key, a bad profile override is a ParamError
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
    naming both lines (PyYAML would keep the last one silently)."""
    try:
        loader = _Loader(path.read_text())
        try:
            node = loader.get_single_node()
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


def apply_overrides(params: dict, overrides: Iterable[str], origin: str = "--set") -> dict:
    """Return a copy of ``params`` with each ``a.b=value`` applied (value parsed as YAML).

    The key must be in the schema (``spanlib.config``) and the value fit it, so a typo stops with
    a message naming the nearest valid key instead of being ignored. An optional key the file
    leaves out (e.g. ``train.compile``) may be set.
    """
    params = copy.deepcopy(params)
    for item in overrides:
        if "=" not in item:
            raise ParamError(f"{origin} {item!r}: expected key=value, e.g. train.iterations=200")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ParamError(f"{origin} {key}: the value {raw!r} is not valid YAML ({exc})") from exc
        check_override(key, value, f"{origin} {key}")
        group, _, name = key.partition(".")
        if not name:
            params[group] = value
            continue
        node = params.setdefault(group, {})
        if not isinstance(node, dict):
            raise ParamError(f"{origin} {key}: {group!r} is not a group in these params")
        node[name] = value
    return params


def get(params: dict, key: str, default: Any = ...) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise ParamError(f"missing parameter {key!r} in params")
            return default
        node = node[part]
    return node


def apply_profile(params: dict, name) -> dict:
    """params with the overrides of ``profiles: {name: {dotted.key: value}}`` applied.

    ``name`` may list several profiles, applied in order: ``"real,shared300w"`` or a list (a recipe
    and a data location are separate profiles, so a recipe never overrides the user's data).
    Each value is checked by the schema (``spanlib.config``) as a ``--set`` would be."""
    names = [n.strip() for n in name.split(",")] if isinstance(name, str) else [str(n) for n in name]
    profiles = params.get("profiles") or {}
    for one in names:
        if one not in profiles:
            raise ParamError(f"--profile {one}: unknown profile; params.yaml defines {sorted(profiles) or 'none'}")
        items = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for key, value in profiles[one].items()]
        params = apply_overrides(params, items)
    return params
