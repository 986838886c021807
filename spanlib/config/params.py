"""params.yaml: ``resolve``, the one way params are made (the file, then named recipes, then
overrides, the result checked against the schema of ``spanlib.config.schema``), reading the file
(line numbers and duplicate keys reported), and dotted look-ups.

Every hyperparameter lives in params.yaml and reaches code as an argument; modules never read the
file themselves. ``resolve`` returns the file's dict with only the recipes and overrides applied
(no defaults filled in, so checkpoints and resumes compare the same dicts as before);
``spanlib.config.schema.Config.from_params`` gives the typed view with the defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from spanlib.config.schema import apply_overrides, apply_recipe, check_params, compose_checked, recipe_names
from spanlib.utils.errors import ParamError


def resolve(source: str | Path | Mapping = "params.yaml", recipes: str | Iterable[str] | None = (),
            overrides: Iterable[str] | Mapping[str, Any] = (), *, complete: bool = False,
            origin: str = "--set") -> dict:
    """The params to run with, made in one way everywhere (commands, training, notebooks, scripts):

    1. ``source``: a params file, read and checked as a whole (``load_params``: unknown groups and
       keys with the nearest valid name, types, ranges, duplicate keys, the recipes' overrides, each
       a ParamError naming the file and line), or a params mapping (checked the same way, copied);
    2. ``recipes``: the named recipes of its ``recipes:``, in order (``"real,shared300w"`` or a list;
       None or empty: none);
    3. ``overrides``: ``key=value`` strings (``--set``, the value read as YAML) or a mapping
       ``{dotted key: value}`` (a notebook's parameters), in order; ``origin`` names where they come
       from in messages (``--set``, ``notebook parameter``, ...).

    Each recipe and override key must be in the schema and its value fit it (a ParamError naming the
    recipe or ``origin`` and the key); the params after each recipe and after the overrides are
    checked again as a whole (rules between keys, ``complete``), naming that step. ``complete``: every
    group and key without a default must be present (the ``spanlib`` commands ask for this; partial
    files, e.g. in tests, resolve without it). Returns a new dict: no defaults are filled in."""
    if isinstance(source, Mapping):
        where = "params"
        check_params(source, where, complete=complete)
        params = copy.deepcopy(dict(source))
    else:
        where = str(source)
        params = load_params(source, complete=complete)
    for name in recipe_names(recipes):
        params = apply_recipe(params, name)
        check_params(params, f"recipes.{name}: (applied to {where})", complete=complete)
    if overrides:
        params = apply_overrides(params, overrides, origin=origin)
        check_params(params, f"{origin} (applied to {where})", complete=complete)
    return params


def load_params(path: str | Path = "params.yaml", *, complete: bool = False) -> dict:
    """The first step of ``resolve``: the params file as a dict, checked as a whole: an unknown
    group or key (with the nearest valid name), a wrong type or range, a duplicated key, a bad
    recipe override is a ParamError naming the file and line. ``complete``: also require every group
    and key that has no default."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    params, lines = read_yaml_checked(path)
    if params is None:
        params = {}
    check_params(params, str(path), complete=complete, lines=lines)
    return params


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
