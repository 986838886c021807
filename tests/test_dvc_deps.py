"""DVC dependencies that cannot drift: for every stage, the spanlib modules its notebook or script
imports, transitively (function-level imports included), must lie under the stage's ``deps``.
Otherwise an edit of such a module leaves ``dvc repro`` saying "up to date" while the stage's
results would change (issue 24: notebook 02 trained through spanlib.training.seeds, not in its deps)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from import_graph import PACKAGE, import_statements, module_file


def imported_modules(source: str, current: str | None = None, is_package: bool = False) -> set[str]:
    """Dotted spanlib modules that ``source`` imports anywhere (module level or inside functions).
    ``current``: the importing module's dotted name, to resolve relative imports."""
    found = set()
    for base, names in import_statements(source, current, is_package):
        found.add(base)
        found |= {f"{base}.{name}" for name in names or ()}  # `from pkg import module`
    modules = set()
    for name in found:
        # importing spanlib.a.b runs spanlib/__init__, spanlib/a/__init__ and spanlib/a/b
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            if module_file(".".join(parts[:i])) is not None:
                modules.add(".".join(parts[:i]))
    return modules


def closure(roots: set[str]) -> set[Path]:
    """Files of every spanlib module reachable from ``roots``."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        todo.extend(imported_modules(path.read_text(), name, path.name == "__init__.py") - seen)
    return {module_file(n) for n in seen}


def notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] == "code":
            text = "".join(cell["source"])
            code.append("\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return "\n".join(code)


def stage_entry_points(cmd: str, wdir: Path) -> set[str]:
    """spanlib modules a stage's command runs: its notebooks' and scripts' imports, ``-m`` modules."""
    modules = set()
    for notebook in re.findall(r"papermill\s+(\S+\.ipynb)", cmd):
        modules |= imported_modules(notebook_source(wdir / notebook))
    for script in re.findall(r"python3?\s+(\S+\.py)", cmd):
        modules |= imported_modules((wdir / script).read_text())
    for module in re.findall(r"python3?\s+-m\s+(spanlib[\w.]*)", cmd):
        modules |= imported_modules(f"import {module}")
    return modules


def _stages():
    for dvc_file in (REPO_ROOT / "dvc.yaml", *sorted((REPO_ROOT / "studies").glob("*/dvc.yaml"))):
        stages = yaml.safe_load(dvc_file.read_text())["stages"]
        for name, stage in stages.items():
            body = stage.get("do", stage)
            wdir = (dvc_file.parent / stage.get("wdir", ".")).resolve()
            yield pytest.param(name, body["cmd"], body.get("deps", []), wdir,
                               id=f"{dvc_file.relative_to(REPO_ROOT)}:{name}")


def test_import_walk_finds_function_level_and_relative_imports():
    """The walk by hand on a known chain: spanlib.evaluation.evaluate imports spanlib.evaluation.stats at
    module level, and the closure of spanlib.study.notebook reaches spanlib/__init__.py."""
    evaluate = PACKAGE / "evaluation" / "evaluate.py"
    direct = imported_modules(evaluate.read_text(), "spanlib.evaluation.evaluate")
    assert {"spanlib", "spanlib.evaluation.stats", "spanlib.config.schema"} <= direct
    inner = imported_modules("def f():\n    from ..data.crop import crop_face\n", "spanlib.inference.predict")
    assert inner == {"spanlib", "spanlib.data", "spanlib.data.crop"}
    assert PACKAGE / "__init__.py" in closure({"spanlib.study.notebook"})


@pytest.mark.parametrize("name, cmd, deps, wdir", list(_stages()))
def test_every_module_a_stage_runs_is_in_its_deps(name, cmd, deps, wdir):
    files = closure(stage_entry_points(cmd, wdir))
    assert files, f"stage {name}: no spanlib module found in its command"
    covered = [(wdir / str(d)).resolve() for d in deps if "${" not in str(d)]
    missing = sorted(str(f.relative_to(REPO_ROOT)) for f in files
                     if not any(f == c or c in f.parents for c in covered))
    assert not missing, f"stage {name}: add to deps (its notebook or script imports them): {missing}"
