"""What a pipeline notebook (notebooks/*.ipynb, chained by dvc.yaml) needs to run the same under
DVC, papermill and JupyterLab: the project root, its params, where it writes, progress bars and
live figures.

The notebooks stay thin: a papermill ``parameters`` cell (the params file, output paths, and a few
knobs left at None unless set by hand), calls into spanlib (``figures``, ``experiments``,
``report``), figures and prose. ``stage_params`` reads the params file with those knobs applied.

Every path a notebook reads or writes (params.yaml, its own parameters, the paths inside
params.yaml) is relative to the project root, the folder holding ``dvc.yaml``. ``enter_project``
finds it by looking upward from the kernel's working folder (``notebooks/`` in JupyterLab, the root
under DVC) and moves the kernel there, so a notebook runs the same wherever it was started.
Outputs of an interactive run go to ``outputs/interactive/`` (``INTERACTIVE``, git-ignored); only
``dvc repro`` passes the study's ``results/`` paths (docs/pipeline.md, "Exploring").
"""

from __future__ import annotations

import base64
import importlib
import io
import os
from pathlib import Path
from typing import Any, Mapping

import tqdm
import tqdm.auto

from spanlib.config.params import load_params, resolve
from spanlib.reporting.figures import save_figure
from spanlib.utils.errors import ParamError

PROJECT_MARKER = "dvc.yaml"

INTERACTIVE = "outputs/interactive"  # where a notebook run by hand writes (git-ignored)



def find_root(start: str | Path | None = None) -> Path:
    """The project root: the nearest folder at or above ``start`` (default: the working folder)
    holding ``dvc.yaml``; failing that, the one above the installed spanlib package (an editable
    install in the repository). Raises ParamError when neither has one."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    candidates = [here, *here.parents, Path(__file__).resolve().parents[2]]
    for folder in candidates:
        if (folder / PROJECT_MARKER).is_file():
            return folder
    raise ParamError(f"no {PROJECT_MARKER} in {here} or any folder above it: start the notebook inside the "
                     "spanlib repository (e.g. `make lab`), where dvc.yaml and params.yaml are")



def enter_project(start: str | Path | None = None) -> Path:
    """Find the project root (``find_root``) and make it the working folder, so every relative path
    (params.yaml's, and each notebook parameter) means the same under JupyterLab, papermill and DVC.
    Idempotent; returns the root."""
    root = find_root(start)
    here = Path.cwd().resolve()
    if here != root:
        _STARTED_IN["cwd"] = here
        os.chdir(root)
    return root



_STARTED_IN: dict[str, Path] = {}  # the kernel's working folder before enter_project moved it



def is_interactive() -> bool:
    """True in a kernel started by a Jupyter server (JupyterLab sets ``JPY_SESSION_NAME``), where a
    front end can drive widgets; False under papermill/nbclient (DVC and the tests)."""
    return "JPY_SESSION_NAME" in os.environ



def writes_to_study(*paths: str | Path) -> bool:
    """True when any of ``paths`` lies outside ``outputs/interactive`` (the run updates the study)."""
    scratch = Path(INTERACTIVE)
    return any(not Path(p).is_relative_to(scratch) for p in paths if p is not None)



def stage_params(params_file: str | Path, values: Mapping[str, Any] | None = None) -> dict:
    """The params a notebook runs with: the params file, then the recipes named by
    ``pipeline.recipe`` (``recipes: {NAME: {dotted key: value}}``, e.g. ``paper``), then the
    notebook's own parameters (``values``: ``{"train.iterations": 50}``), each of which is None
    unless set by hand (in JupyterLab or with ``papermill -p``), None keeping the file's value.

    DVC passes a notebook only the params file and its output paths, so a stage reads every
    hyperparameter from the one file. The result is ``spanlib.config.params.resolve``'s: every
    dotted key must be in the schema and its value fit it, so a misspelt notebook parameter or a
    value out of range stops with a ParamError naming it instead of being silently used or ignored.
    """
    path = Path(params_file)  # relative: to the project root, whatever the working folder
    if not path.is_absolute():
        from_root = find_root() / path
        # a path written for the kernel's own folder (e.g. "../params.yaml" from notebooks/) still works
        started = _STARTED_IN.get("cwd")
        path = from_root if from_root.is_file() or started is None or not (started / path).is_file() \
            else (started / path).resolve()
    recipe = (load_params(path).get("pipeline") or {}).get("recipe")  # which recipes: the file says
    changed = {key: value for key, value in (values or {}).items() if value is not None}
    return resolve(path, recipe, changed, origin=f"{params_file} (notebook parameter)")



def outputs_note(*paths: str | Path | None) -> str:
    """One line saying where this run writes: the scratch folder (a run by hand) or the study."""
    shown = ", ".join(f"`{p}`" for p in paths if p is not None)
    if writes_to_study(*paths):
        return f"This run updates the study: {shown}."
    return (f"This run writes to the scratch folder `{INTERACTIVE}/` only ({shown}); the study's "
            "`results/` is unchanged (`dvc repro` updates it). Saving in JupyterLab (`make lab`) keeps no "
            "outputs in the tracked notebook: the full notebook, outputs included, is saved to "
            f"`{INTERACTIVE}/notebooks/`.")



# ---- JupyterLab: progress bars and live figures ---------------------------------------------------

_MODULE_LEVEL_TQDM = ("spanlib.training.train", "spanlib.data.dataset", "spanlib.data.synth.writer",
                      "spanlib.evaluation.evaluate", "spanlib.evaluation.peers", "spanlib.inference.detect",
                      "spanlib.inference.predict", "spanlib.bench.profile")



def notebook_progress() -> bool:
    """In JupyterLab, draw spanlib's tqdm bars as notebook widgets (``tqdm.auto``) instead of red
    stderr text; under papermill (no front end) keep the text bars. Returns True when switched."""
    if not is_interactive():
        return False
    tqdm.tqdm = tqdm.auto.tqdm  # code that imports it later (a notebook's own cells)
    for name in _MODULE_LEVEL_TQDM:  # code that imported it at import time
        module = importlib.import_module(name)
        if getattr(module, "tqdm", None) is not None:
            module.tqdm = tqdm.auto.tqdm
    return True



# Shown above a live figure. The tracked notebooks/*.ipynb keep no outputs (spanlib.study.lab's
# pre-save hook), so after a reload the figure is gone there; the full copy is elsewhere.
LIVE_NOTE = ("Move the sliders: the figure below redraws at once. *(Outputs are not saved in the tracked "
             "notebook: after a reload, open the full copy with every output, this figure's static copy "
             "included, in `outputs/interactive/notebooks/` (same file name), or run this cell again.)*")

LIVE_HINT = ("Static copy of the figure: run this cell (or Run All) in JupyterLab to make the "
             "sliders live. [spanlib live figure]")  # spanlib.study.lab.LIVE_HINT_MARK



def figure_png(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for the static copy a saved notebook keeps)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()



def live_figure(draw, controls: Mapping[str, Any], columns: int = 4):
    """Sliders (``controls``: name -> ipywidgets control, passed to ``draw`` by name) above ONE
    figure that each change redraws in place.

    ``draw(**values)`` returns a matplotlib figure. It is shown in a single ``ipywidgets.Output``
    and closed at once, so there are no stale copies below it and nothing reaches the Log Console.
    Displayed, the box also carries a static PNG of the first figure and a one-line hint: a saved
    notebook (the server hook of ``make lab`` drops the live view, spanlib.study.lab) reopens with that
    figure instead of "Error displaying widget: model not found". Returns the box.
    """
    import ipywidgets as widgets  # lazy: ipywidgets, only in JupyterLab
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing
    from IPython.display import display  # lazy: IPython, only in notebooks

    out = widgets.Output()
    state: dict[str, Any] = {}

    def render(change=None):
        fig = draw(**{name: control.value for name, control in controls.items()})
        if "png" not in state:
            state["png"] = figure_png(fig)
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    for control in controls.values():
        control.observe(render, names="value")
    items = list(controls.values())
    rows = [widgets.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]

    class LiveFigure(widgets.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = LIVE_HINT
            if "png" in state:
                bundle["image/png"] = base64.b64encode(state["png"]).decode()
            return bundle

    box = LiveFigure(rows + [out])
    render()
    return box



def show_live_or_static(draw, controls: Mapping[str, Any], path: str | Path | None = None):
    """In JupyterLab: ``live_figure`` with the controls. Elsewhere (papermill, DVC, tests): the
    figure once at the controls' values. Either way the figure at those values is saved to ``path``
    when given (the study's figure under DVC, a scratch copy by hand)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when drawing
    from IPython.display import Markdown, display  # lazy: IPython, only in notebooks

    values = {name: control.value for name, control in controls.items()}
    if path is not None:
        save_figure(draw(**values), path)  # closes it
    if is_interactive():
        display(Markdown(LIVE_NOTE))
        display(live_figure(draw, controls))
    else:
        fig = draw(**values)
        display(fig)
        plt.close(fig)
