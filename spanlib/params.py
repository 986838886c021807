"""params.yaml: loading, ``--set key=value`` overrides, and dotted look-ups.

Every hyperparameter lives in params.yaml and reaches code as an argument: modules take the dict
(or the sub-dict of their stage) and never read the file themselves.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ParamError


def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping at the top level")
    return apply_overrides(params, overrides)


def apply_overrides(params: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``params`` with each ``a.b.c=value`` applied (value parsed as YAML).

    Only existing keys may be set, so a typo stops with a message instead of being ignored.
    """
    params = copy.deepcopy(params)
    for item in overrides:
        if "=" not in item:
            raise ParamError(f"--set {item!r}: expected key=value, e.g. train.iterations=200")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = params
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ParamError(f"--set {key}: unknown parameter {'.'.join(parts[: depth + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ParamError(f"--set {key}: unknown parameter {key!r}")
        node[parts[-1]] = yaml.safe_load(raw)
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
