"""spanlib's packages form layers and imports point down only (issue 24).

Every module of spanlib is parsed with ``ast``; its imports of spanlib modules, at module level and
inside functions alike, are the edges of the import graph. Each sub-package (and each top-level
module) sits in one layer of ``LAYERS``, bottom first; a module may import its own sub-package and
any sub-package of a lower layer, never one of its own layer or above. The same order is drawn in
docs/architecture.md ("Layers"), which this test reads back.

To see it fail: add ``from spanlib.training.train import train`` inside any function of
spanlib/utils/files.py; ``test_imports_point_down_only`` then reports
``spanlib.utils.files -> spanlib.training.train (utils imports training, a higher layer)``, and
``test_no_cycles_between_packages`` too once training imports utils (it does).
"""
from __future__ import annotations

import re

from conftest import REPO_ROOT
from import_graph import all_modules, import_statements

# bottom first; names are sub-packages of spanlib or its top-level modules ("spanlib": __init__.py)
LAYERS: list[tuple[str, ...]] = [
    ("_version",),                   # the version string; imports nothing
    ("utils",),                      # errors, files, provenance, devices
    ("config",),                     # params schema, params files, schemes, variants: torch-free
    ("ops", "data"),                 # kernels; datasets, readers, crops, targets
    ("model",),                      # the network, its losses and decoding
    ("inference",),                  # checkpoints, bundled weights, back-ends, ONNX, detection, predict
    ("evaluation",),                 # evaluate, metrics, statistics, peers
    ("reporting",),                  # report tables, figures, the paper's numbers
    ("training", "bench"),           # training runs and seeds; speed measurements
    ("study",),                      # notebook helpers, lab, short studies
    ("commands", "spanlib"),         # the subcommands; the package's front door (__init__: load_model)
    ("cli",),                        # `spanlib ...`: parses and dispatches to commands
    ("__main__",),                   # `python -m spanlib`
]


def imports_of(source: str, current: str, is_package: bool, known: set[str]) -> set[str]:
    """spanlib modules ``source`` imports anywhere in it: ``from a.b import c`` counts as a.b.c
    when that is a module, else as a.b."""
    found = set()
    for base, names in import_statements(source, current, is_package):
        if base.split(".")[0] != "spanlib":
            continue
        if names is None:  # `import spanlib.a.b`
            found.add(base)
        for name in names or ():
            found.add(f"{base}.{name}" if f"{base}.{name}" in known else base)
    return found - {current}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", known)
            for name, path in modules.items()}


def unit(module: str) -> str:
    """The layered unit of a module: its sub-package, the top-level module, or "spanlib"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "spanlib"


def layer_index(layers=LAYERS) -> dict[str, int]:
    return {name: i for i, layer in enumerate(layers) for name in layer}


def violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Edges that go up a layer, sideways to another unit of the same layer, or to a unit no
    layer declares."""
    index = layer_index(layers)
    problems = []
    for source, targets in sorted(graph.items()):
        a = unit(source)
        for target in sorted(targets):
            b = unit(target)
            if a == b:
                continue
            if a not in index or b not in index:
                problems.append(f"{source} -> {target} ({a if a not in index else b}: in no layer of LAYERS)")
            elif index[b] > index[a]:
                problems.append(f"{source} -> {target} ({a} imports {b}, a higher layer)")
            elif index[b] == index[a]:
                problems.append(f"{source} -> {target} ({a} imports {b}, of its own layer)")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        out.setdefault(unit(source), set()).update(unit(t) for t in targets if unit(t) != unit(source))
    return out


# ---------------------------------------------------------------- the real package
def test_every_package_is_in_a_layer():
    index = layer_index()
    units = {unit(m) for m in all_modules()}
    assert not units - set(index), f"declare these in LAYERS (and docs/architecture.md): {sorted(units - set(index))}"
    assert not set(index) - units, f"LAYERS names what spanlib no longer has: {sorted(set(index) - units)}"


def test_imports_point_down_only():
    problems = violations(import_graph())
    assert not problems, "imports that do not point down a layer:\n" + "\n".join(problems)


def test_no_cycles_between_packages():
    assert not cycles(package_graph(import_graph()))


def test_no_import_cycles_between_modules():
    assert not cycles(import_graph())


def test_the_architecture_doc_draws_the_same_layers():
    """docs/architecture.md draws LAYERS top first, one line per layer: its units, then "|" and a
    description, between <!-- layers --> and <!-- /layers -->."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers -->(.*?)<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md: the layer picture between <!-- layers --> and <!-- /layers --> is gone"
    drawn = [tuple(line.split("|")[0].split()) for line in block.group(1).splitlines() if "|" in line]
    assert drawn[::-1] == LAYERS


# ---------------------------------------------------------------- the checker itself
def test_the_checker_trips_on_an_upward_import():
    graph = {"spanlib.utils.files": {"spanlib.utils.errors"}, "spanlib.training.train": {"spanlib.utils.files"}}
    assert violations(graph) == [] and cycles(package_graph(graph)) == []
    graph["spanlib.utils.files"].add("spanlib.training.train")  # a bottom module importing training
    assert violations(graph) == [
        "spanlib.utils.files -> spanlib.training.train (utils imports training, a higher layer)"]
    assert cycles(package_graph(graph)) == [["training", "utils"]]


def test_the_checker_trips_on_a_sideways_or_undeclared_import():
    graph = {"spanlib.bench.profile": {"spanlib.training.train"}, "spanlib.newpkg.x": {"spanlib.utils.errors"}}
    assert violations(graph) == [
        "spanlib.bench.profile -> spanlib.training.train (bench imports training, of its own layer)",
        "spanlib.newpkg.x -> spanlib.utils.errors (newpkg: in no layer of LAYERS)"]


def test_the_parser_sees_function_level_and_relative_imports():
    known = {"spanlib.training.train", "spanlib.utils", "spanlib.utils.files", "spanlib.config.schema"}
    source = ("from spanlib.config import schema as config\n"
              "def f():\n    from ..training.train import train\n    from . import files\n")
    assert imports_of(source, "spanlib.utils.errors", False, known) == {
        "spanlib.config.schema", "spanlib.training.train", "spanlib.utils.files"}
    graph = import_graph()
    graph["spanlib.utils.errors"] = graph["spanlib.utils.errors"] | {"spanlib.inference.checkpoint"}
    assert "spanlib.utils.errors -> spanlib.inference.checkpoint (utils imports inference, a higher layer)" in \
        violations(graph)
