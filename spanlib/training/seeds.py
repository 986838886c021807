"""Several seeds of one setting: trained side by side, summarised with their spread, compared in pairs.

Every row of the study's tables is trained with each seed of ``pipeline.seeds`` (3 by default):

- ``train_seeds`` trains one variant once per seed, up to ``workers`` runs at a time in separate
  processes (one torch thread each, so a run gives the same bits whether it runs alone or beside
  another; two at a time use both cores of a 2-core machine). A finished run with the same params
  is kept, an interrupted one is resumed (``spanlib.training.train`` resumes exactly), so the stage picks up
  where it stopped.
- ``seed_groups`` / ``summarise`` turn metrics JSON dicts (``spanlib.evaluation.evaluate``, one per seed) into
  mean ± sd over seeds per subset and metric, and ``comparisons`` gives the paired per-face difference
  of pairs of settings with its 95 % bootstrap interval over faces and seeds and its mark
  (``spanlib.evaluation.compare``).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from spanlib.config.params import resolve
from spanlib.evaluation.compare import MARKS, SIGNIFICANT_WHEN, difference_text, paired_difference, significance_mark
from spanlib.evaluation.metrics import subset_threshold_metric
from spanlib.evaluation.stats import SeedSummary, over_seeds
from spanlib.inference.checkpoint import read_checkpoint
from spanlib.reporting.report import markdown_table
from spanlib.training.train import differing_params, train
from spanlib.utils.errors import DataError, ParamError, SpanlibError


def check_seeds(seeds) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise ParamError(f"pipeline.seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ParamError(f"pipeline.seeds: seeds repeat in {seeds!r}")
    return list(seeds)


def seed_path(pattern: str | Path, seed: int) -> Path:
    """``pattern`` with ``{seed}`` replaced: ``models/scpan/s{seed}/checkpoint.pt``."""
    text = str(pattern)
    if "{seed}" not in text:
        raise ParamError(f"{text}: a per-seed path needs '{{seed}}' in it")
    return Path(text.replace("{seed}", str(seed)))


def run_state(params: dict, variant: str, checkpoint: Path) -> str:
    """``"done"`` (same params, all iterations), ``"partial"`` (same params, fewer) or ``"new"``."""
    if not checkpoint.is_file():
        return "new"
    try:
        ckpt = read_checkpoint(checkpoint, "cpu", resume=True)
    except SpanlibError:
        return "new"
    wanted = resolve(params, overrides=[f"model.variant={variant}"])
    if ckpt.get("variant") != variant or differing_params(ckpt.get("params") or {}, wanted):
        return "new"
    return "done" if int(ckpt["iteration"]) >= int(params["train"]["iterations"]) else "partial"


def _train_one(params: dict, variant: str, checkpoint: str, resume: bool, capture: bool = False) -> str:
    """Train one run; with ``capture`` its printed lines (validation NMEs) are returned instead of
    printed, so that runs side by side are reported in job order, not in the order they print."""
    torch.set_num_threads(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed) if capture else contextlib.nullcontext():
        train(params, variant, checkpoint, resume=resume, progress=False)
    return printed.getvalue()


def train_seeds(params: dict, variant: str, seeds: Sequence[int], checkpoint: str | Path,
                live_dir: str | Path | None = None, workers: int = 2, progress: bool = True) -> list[Path]:
    """Train ``variant`` once per seed; ``checkpoint`` (and ``live_dir``) contain ``{seed}``.
    Returns the checkpoints in seed order."""
    jobs = []
    for seed in check_seeds(seeds):
        values = {"seed": seed} if live_dir is None else {"seed": seed, "train.live_dir": str(seed_path(live_dir, seed))}
        run = resolve(params, overrides=values, origin=f"train_seeds seed {seed}")
        jobs.append((f"{variant} seed {seed}", run, variant, seed_path(checkpoint, seed)))
    return train_many(jobs, workers, progress)


def train_many(jobs: Sequence[tuple[str, dict, str, Path]], workers: int = 2, progress: bool = True) -> list[Path]:
    """Run ``(name, params, variant, checkpoint)`` jobs, ``workers`` at a time; complete runs with
    the same params are kept and interrupted ones resumed. Returns the checkpoints in job order."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParamError(f"pipeline.workers: expected an integer >= 1, got {workers!r}")
    todo = []
    for name, run, variant, path in jobs:
        state = run_state(run, variant, Path(path))
        if state == "done":
            print(f"{name}: {path} is complete with these params, kept")
            continue
        if state == "partial":
            print(f"{name}: resuming the interrupted run in {path}")
        todo.append((name, run, variant, str(path), state == "partial"))
    if todo:
        bar = tqdm(total=len(todo), desc=f"{len(todo)} run(s), {min(workers, len(todo))} at a time", unit="run",
                   disable=not progress)
        if workers == 1 or len(todo) == 1:
            for name, run, variant, path, resume in todo:
                _train_one(run, variant, path, resume)
                bar.update()
        else:
            # spawn: a fresh interpreter per run (no fork of a process holding torch threads or a kernel)
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_train_one, run, variant, path, resume, True): name
                           for name, run, variant, path, resume in todo}
                for future in as_completed(futures):
                    future.result()  # a failed run raises here, with its error
                    bar.set_postfix_str(f"{futures[future]} done")
                    bar.update()
            for future, name in futures.items():  # job order: the same text on every run
                print(f"{name}:\n{future.result()}", end="")
        bar.close()
    return [Path(path) for _, _, _, path in jobs]


# ---------------------------------------------------------------- summaries over seeds
def seed_of(result: dict) -> int | None:
    params = result.get("provenance", {}).get("params") or {}
    seed = params.get("seed")
    return None if seed is None else int(seed)


def per_face(results: Sequence[dict], subset: str, norm: str) -> list[np.ndarray]:
    """Per-face NME of one setting's metrics dicts in ``subset`` under ``norm``, one array per seed."""
    return [np.asarray(r["subsets"][subset]["per_face_nme"][norm], dtype=np.float64) for r in results]


def summarise(results: Sequence[dict], subset: str, norm: str, threshold: float) -> dict[str, SeedSummary]:
    """Mean ± sd over seeds of NME, FR and AUC (fractions) of one subset."""

    def pick(result, kind):
        value = subset_threshold_metric(result["subsets"][subset], kind, norm, threshold)
        if value is None:
            raise DataError(f"{subset}: neither {kind.upper()}_{norm} at {threshold:g} nor per-face NME_{norm} "
                            "in a metrics JSON")
        return value

    return {"nme": over_seeds([r["subsets"][subset]["nme"][norm] for r in results]),
            "fr": over_seeds([pick(r, "fr") for r in results]),
            "auc": over_seeds([pick(r, "auc") for r in results])}


def comparisons(groups: Mapping[str, Sequence[dict]], pairs: Sequence[tuple[str, str]], subsets: Sequence[str],
                norm: str) -> list[dict]:
    """``[{"a", "b", "subset", "difference": PairedDifference}]`` for each pair present in ``groups``:
    a − b in per-face NME, paired by face and seed (``spanlib.evaluation.compare.paired_difference``)."""
    out = []
    for a, b in pairs:
        if a in groups and b in groups:
            for subset in subsets:
                diff = paired_difference(per_face(groups[a], subset, norm), per_face(groups[b], subset, norm))
                out.append({"a": a, "b": b, "subset": subset, "difference": diff})
    return out


def ablation_pairs(names: Sequence[str], reference: str = "shn") -> list[tuple[str, str]]:
    """Issue 10's comparisons: each variant against the plain SHN, and scpan against semi_scpan."""
    pairs = [(v, reference) for v in names if v != reference]
    if "semi_scpan" in names and "scpan" in names:
        pairs.append(("semi_scpan", "scpan"))
    return pairs


def seed_table(groups: Mapping[str, Sequence[dict]], norm: str, threshold: float, reference: str | None = "shn",
               label: str = "variant") -> tuple[str, dict]:
    """Markdown and JSON of settings x subsets: NME mean ± sd over seeds per subset, FR and AUC on
    ``full`` (or the last subset), a mark where the paired difference to ``reference`` is
    significant, then the table of every comparison (``ablation_pairs``) with its interval."""
    first = next(iter(groups.values()))[0]["subsets"]
    subsets = sorted(first, key=lambda name: name == "full")
    last = "full" if "full" in first else subsets[-1]
    key = f"{float(threshold):g}"
    pairs = ablation_pairs(list(groups), reference) if reference in groups else []
    diffs = comparisons(groups, pairs, subsets, norm)
    vs_ref = {(d["a"], d["subset"]): d["difference"] for d in diffs if d["b"] == reference}
    header = [label, "seeds"] + [f"NME_{norm} {s} (%)" for s in subsets] + [f"FR_{norm}@{key} {last} (%)",
                                                                            f"AUC_{norm}@{key} {last} (%)"]
    rows, data = [], {}
    for name, results in groups.items():
        cells, entry = [], {"seeds": [seed_of(r) for r in results], "subsets": {}}
        for subset in subsets:
            s = summarise(results, subset, norm, threshold)
            entry["subsets"][subset] = {k: {"mean": v.mean, "sd": v.sd, "per_seed": list(v.values)} for k, v in s.items()}
            cells.append(s["nme"].format() + significance_mark(vs_ref.get((name, subset))))
        tail = summarise(results, last, norm, threshold)
        rows.append([name, str(len(results))] + cells + [tail["fr"].format(), tail["auc"].format()])
        data[name] = entry
    lines = [markdown_table(header, rows), "",
             f"mean ± sd over seeds (sample sd); {MARKS}: NME significantly lower / higher than `{reference}` "
             f"({SIGNIFICANT_WHEN})."
             if pairs else "mean ± sd over seeds (sample sd)."]
    if diffs:
        comp_rows = [[f"{d['a']} − {d['b']}", d["subset"], difference_text(d["difference"]),
                      "yes" if d["difference"].significant else "no (within noise)"] for d in diffs]
        lines += ["", markdown_table(["comparison", "subset", f"Δ NME_{norm} (points) [95 % CI]", "significant"],
                                     comp_rows)]
    data_comparisons = [{"a": d["a"], "b": d["b"], "subset": d["subset"], "mean": d["difference"].mean,
                         "low": d["difference"].low, "high": d["difference"].high,
                         "significant": d["difference"].significant, "seeds": d["difference"].n_seeds,
                         "faces": d["difference"].n_faces} for d in diffs]
    return "\n".join(lines) + "\n", {"rows": data, "comparisons": data_comparisons, "norm": norm,
                                     "threshold": float(threshold), "reference": reference}


def headline(groups: Mapping[str, Sequence[dict]], norm: str, threshold: float) -> dict:
    """What ``dvc metrics show`` lists, small enough for a terminal: per setting, NME (%) on the
    whole test set (``full``, else the last subset), mean and sd over seeds. Every other number is in
    the metrics JSON of each run and the table's JSON."""
    out = {}
    for name, results in groups.items():
        subsets = list(results[0]["subsets"])
        subset = "full" if "full" in subsets else subsets[-1]
        nme = summarise(results, subset, norm, threshold)["nme"]
        out[name] = {f"nme_{norm}": round(100 * nme.mean, 3), "sd": round(100 * nme.sd, 3)}
    return out
