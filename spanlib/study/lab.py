"""JupyterLab and notebook-file helpers: exploring never changes the study (docs/pipeline.md).

* ``pre_save_hook``: installed by ``make lab`` (``--ContentsManager.pre_save_hook``). When
  JupyterLab saves one of the tracked notebooks (``<root>/notebooks/*.ipynb``), what reaches the
  file is the notebook's code and prose only, in the committed form: no outputs, no execution
  counts, no widget state, the committed top-level metadata. So opening, running and autosaving a
  notebook leaves ``git status`` and ``dvc status`` clean; an edit of the code still shows, as it
  should. The full notebook, outputs included, is saved beside the study as
  ``outputs/interactive/notebooks/<name>.ipynb`` (git-ignored), with live-widget outputs replaced by
  their static fallback, so that copy reopens with figures instead of "model not found".
* ``strip``: the same cleaning from the command line (``python -m spanlib.study.lab strip FILE...``),
  for a notebook saved by another front end.
* ``lab-settings``: JupyterLab settings for ``make lab`` (``lab_overrides``: no news pop-up).
* ``publish``: a small copy of an executed notebook for ``docs/notebooks/`` (images shrunk, widget
  views dropped), written by each DVC stage (``python -m spanlib.study.lab publish SRC DST``).
"""

from __future__ import annotations

import base64
import copy
import io
import json
import sys
from pathlib import Path

from PIL import Image

from spanlib.utils.files import atomic_path
from spanlib.utils.provenance import write_machine_sidecar

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
VOLATILE_CELL_KEYS = ("execution", "scrolled", "collapsed", "trusted")
STUDY_NOTEBOOKS = "notebooks"
SIDECAR = Path("outputs/interactive/notebooks")
LIVE_HINT_MARK = "[spanlib live figure]"  # ends the text/plain of spanlib.study.notebook.live_figure


def drop_widget_views(nb: dict) -> dict:
    """Remove live-widget views from every output, keeping the other representations of the same
    output (spanlib's widgets carry a static PNG and a one-line hint); outputs left empty go."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if isinstance(data, dict) and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if not any(k for k in data if k != "text/plain") and LIVE_HINT_MARK not in str(data.get("text/plain", "")):
                    continue  # a bare widget: nothing static to show
            kept.append(out)
        cell["outputs"] = kept
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def strip_notebook(nb: dict, committed_metadata: dict | None = None) -> dict:
    """The notebook's code and prose only: outputs, execution counts, volatile cell metadata and
    widget state removed; top-level metadata as committed (``committed_metadata``) when given."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in VOLATILE_CELL_KEYS:
            meta.pop(key, None)
        jupyter = meta.get("jupyter")
        if isinstance(jupyter, dict):
            jupyter.pop("outputs_hidden", None)
            if not jupyter:
                meta.pop("jupyter")
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    if committed_metadata is not None:
        nb["metadata"] = copy.deepcopy(committed_metadata)
    else:
        nb.get("metadata", {}).pop("widgets", None)
    return nb


def _tracked_notebook(os_path: Path) -> Path | None:
    """The project root when ``os_path`` is one of its tracked notebooks (``<root>/notebooks/*.ipynb``
    beside a ``dvc.yaml``), else None."""
    folder = os_path.parent
    if folder.name == STUDY_NOTEBOOKS and (folder.parent / "dvc.yaml").is_file() and os_path.suffix == ".ipynb":
        return folder.parent
    return None


def pre_save_hook(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter server pre-save hook (see the module docstring). Never raises: a failure here must
    not stop JupyterLab from saving, so it is logged and the notebook is saved as sent."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    log = getattr(contents_manager, "log", None)
    try:
        os_path = Path(contents_manager.root_dir, path.lstrip("/")).resolve()
        root = _tracked_notebook(os_path)
        if root is None:
            drop_widget_views(model["content"])  # any other notebook: reopens without "model not found"
            return
        import nbformat  # lazy: nbformat, only for notebook files

        full = drop_widget_views(copy.deepcopy(model["content"]))
        sidecar = root / SIDECAR / os_path.name
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.from_dict(full), str(sidecar))
        committed = None
        if os_path.is_file():
            committed = json.loads(os_path.read_text(encoding="utf-8")).get("metadata")
        model["content"] = strip_notebook(model["content"], committed)
    except Exception as exc:  # pragma: no cover - logged, never fatal
        if log is not None:
            log.warning("spanlib pre_save_hook: %s: %s", path, exc)


def strip_file(path: str | Path) -> bool:
    """Strip one notebook file in place (keeping its top-level metadata); True when it changed."""
    import nbformat  # lazy: nbformat, only for notebook files

    path = Path(path)
    before = path.read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    clean = nbformat.from_dict(strip_notebook(nb, nb.get("metadata")))
    buffer = io.StringIO()
    nbformat.write(clean, buffer)
    after = buffer.getvalue()
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


def _shrink_png(b64: str, max_width: int) -> str:
    raw = base64.b64decode(b64)
    image = Image.open(io.BytesIO(raw))
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    if image.mode not in ("RGB", "L", "P"):
        image = image.convert("RGB")  # white background is what the inline backend draws
    image = image.convert("P", palette=Image.ADAPTIVE, colors=128) if image.mode == "RGB" else image
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode() if out.tell() < len(raw) else b64


# papermill's and Jupyter's per-run metadata: wall-clock times, which no two runs share
_RUN_KEYS = ("start_time", "end_time", "duration")


def split_run_times(nb: dict) -> dict:
    """Remove the wall-clock times from ``nb`` (papermill's start/end/duration of the notebook and
    of each cell, Jupyter's ``execution`` timestamps) and return them, so that the copy is the same
    bytes on every run and the times can be kept apart (``<copy>.machine.json``)."""
    meta = nb.get("metadata", {}).get("papermill", {})
    times = {"notebook": {k: meta.pop(k) for k in _RUN_KEYS if k in meta}, "cells": []}
    version = nb.get("metadata", {}).get("language_info", {}).pop("version", None)
    if version is not None:  # the Python that ran it: the machine's, not the study's
        times["python"] = version
    for index, cell in enumerate(nb.get("cells", [])):
        cmeta = cell.get("metadata", {})
        entry = {k: cmeta.get("papermill", {}).pop(k) for k in _RUN_KEYS if k in cmeta.get("papermill", {})}
        cmeta.pop("execution", None)
        if entry:
            times["cells"].append({"cell": index, **entry})
    return times


def publish(src: str | Path, dst: str | Path, max_width: int = 720) -> Path:
    """A small viewable copy of an executed notebook: every PNG at most ``max_width`` px wide with an
    adaptive 128-colour palette, widget views dropped, stderr streams (progress bars, which carry
    rates) dropped, and the wall times moved to ``<dst stem>.machine.json`` beside it, so that the
    copy is the same bytes on every machine (docs/reproducibility.md)."""
    import nbformat  # lazy: nbformat, only for notebook files

    nb = nbformat.read(str(src), as_version=4)
    drop_widget_views(nb)
    times = split_run_times(nb)
    for index, cell in enumerate(nb.cells):  # papermill gives its parameters cell a random id per run
        cell["id"] = f"cell-{index:03d}"
    for cell in nb.cells:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"]
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                data["image/png"] = _shrink_png(data["image/png"], max_width)
                out.get("metadata", {}).pop("image/png", None)
    dst = Path(dst)
    write_machine_sidecar(dst, run_times=times)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        nbformat.write(nb, str(tmp))
    return dst


# JupyterLab settings that ``make lab`` applies (``lab_overrides``): no news pop-up ("Would you like
# to receive official Jupyter news?") over every notebook, and no request to jupyter.org for it.
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                                  "checkForUpdates": False}}


def lab_overrides(prefix: str | Path | None = None) -> Path:
    """Merge ``LAB_OVERRIDES`` into ``<prefix>/share/jupyter/lab/settings/overrides.json`` (prefix:
    this Python's, the project's .venv under ``make lab``), JupyterLab's documented place for
    defaults that beat the extensions' own; other keys already there are kept. Returns the file."""
    path = Path(sys.prefix if prefix is None else prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for plugin, values in LAB_OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m spanlib.study.lab strip NOTEBOOK... | publish EXECUTED COPY | lab-settings"
    if argv[:1] == ["lab-settings"]:
        print(lab_overrides())
        return 0
    if not argv or argv[0] not in ("strip", "publish"):
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "strip":
        for name in argv[1:]:
            print(f"{name}: {'stripped' if strip_file(name) else 'already clean'}")
        return 0
    if len(argv) != 3:
        print(usage, file=sys.stderr)
        return 2
    print(publish(argv[1], argv[2]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
