"""Comparisons of trained runs with their uncertainty: several seeds per setting, evaluated on the
same held-out faces, summarised as mean ± sd over seeds with paired bootstrap intervals against a
reference setting (``spanlib.evaluation.compare``).

``compare_runs`` is what produced the real-face tables of docs/model.md and
results/real/*.md (``spanlib compare``); ``short_runs`` trains and evaluates the settings of
Tables VII and VIII (notebooks 04 and 06) on the test faces ``read_test_faces`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from spanlib.config.params import resolve
from spanlib.data.sources import read_source
from spanlib.evaluation.evaluate import evaluate
from spanlib.evaluation.compare import MARKS, difference_text, paired_difference
from spanlib.evaluation.stats import PairedDifference, outlier_landmarks, over_seeds
from spanlib.training.seeds import check_seeds, headline, seed_table, train_many
from spanlib.utils.errors import ParamError
from spanlib.utils.files import write_json, write_text


def run_errors(checkpoint: str | Path, source: str, root: str | Path, split: str, settings: dict | None = None,
               held_out=True, progress: bool = False) -> dict:
    """Per-face NME_io (fraction), per-landmark NME_io and summary metrics of one checkpoint on the
    held-out faces of ``split`` (``held_out=True``: the checkpoint's own validation split)."""
    result = evaluate(checkpoint, source, root, split, settings=settings, held_out=held_out, progress=progress)
    full = result["subsets"].get("full") or next(iter(result["subsets"].values()))
    return {"per_face": np.asarray(full["per_face_nme"]["io"]),
            "per_landmark": np.asarray(full["per_landmark_nme_io"]),
            "fr": full["fr_by_norm"]["io"], "auc": full["auc_by_norm"]["io"],
            "n": full["n"], "iteration": result["provenance"]["iteration"],
            "checkpoint_sha256": result["provenance"]["checkpoint_sha256"],
            "held_out": result["provenance"]["held_out"]}


def compare_runs(runs: Mapping[str, Sequence[str | Path]], reference: str, source: str, root: str | Path,
                 split: str, settings: dict | None = None, progress: bool = True) -> dict:
    """``runs``: setting label -> checkpoints, one per seed (seed order must match across settings
    for the pairing). Returns ``{"rows": {label: {...}}, "reference": ...}`` with per-seed values,
    mean ± sd over seeds of NME_io and FR_io@8 %, the paired difference to ``reference`` with its
    95 % bootstrap interval, and any landmark flagged as a dead channel."""
    if reference not in runs:
        raise ValueError(f"compare_runs: reference {reference!r} is not among {list(runs)}")
    errors = {}
    for label, checkpoints in tqdm(list(runs.items()), desc="settings", disable=not progress):
        errors[label] = [run_errors(c, source, root, split, settings) for c in checkpoints]
    rows = {}
    for label, per_seed in errors.items():
        nme = over_seeds([e["per_face"].mean() for e in per_seed])
        fr8 = over_seeds([e["fr"]["0.08"] for e in per_seed])
        row = {"seeds": len(per_seed), "faces": int(per_seed[0]["n"]),
               "nme_io": nme.mean, "nme_io_sd": nme.sd, "nme_io_per_seed": list(nme.values),
               "fr_io_0.08": fr8.mean, "fr_io_0.08_sd": fr8.sd,
               "iterations": [e["iteration"] for e in per_seed],
               "checkpoints": [str(c) for c in runs[label]],
               "checkpoint_sha256": [e["checkpoint_sha256"] for e in per_seed],
               "flags": [[{"landmark": i, "nme_io": v, "median": m} for i, v, m in outlier_landmarks(e["per_landmark"])]
                         for e in per_seed],
               "text": nme.format()}
        if label != reference:
            diff = paired_difference([e["per_face"] for e in per_seed], [e["per_face"] for e in errors[reference]])
            row.update({"vs_reference": diff.mean, "vs_reference_low": diff.low, "vs_reference_high": diff.high,
                        "vs_reference_significant": diff.significant, "vs_reference_text": difference_text(diff)})
        rows[label] = row
    held = errors[reference][0]["held_out"]
    return {"reference": reference, "source": source, "root": str(root), "split": split,
            "held_out": held, "settings": dict(settings or {}), "rows": rows}


def _vs_reference(row: dict, ref_row: dict) -> PairedDifference:
    """The paired difference of a ``compare_runs`` row to the reference, back from its JSON."""
    return PairedDifference(row["vs_reference"], row["vs_reference_low"], row["vs_reference_high"],
                            min(row["seeds"], ref_row["seeds"]), row["faces"])


def comparison_markdown(result: dict, title: str) -> str:
    """The comparison as a markdown table (NME_io and FR in %)."""
    ref = result["reference"]
    held = result["held_out"] or {}
    lines = [f"### {title}", "",
             f"NME_io (%) on {held.get('n', '?')} held-out faces of {result['source']} {result['split']} "
             f"(train.val_fraction {held.get('fraction')}, val_seed {held.get('seed')}); mean ± sd over seeds; "
             f"difference to `{ref}` in NME_io points with its 95 % paired bootstrap interval over faces and "
             f"seeds ({MARKS} = significantly lower / higher: the interval excludes 0).", "",
             "| setting | seeds | NME_io | per seed | FR_io@8 % | vs " + ref + " |",
             "|---|---|---|---|---|---|"]
    for label, row in result["rows"].items():
        per_seed = ", ".join(f"{100 * v:.2f}" for v in row["nme_io_per_seed"])
        fr = f"{100 * row['fr_io_0.08']:.1f} ± {100 * row['fr_io_0.08_sd']:.1f}"
        vs = "reference" if label == ref else difference_text(_vs_reference(row, result["rows"][ref]))
        lines.append(f"| {label} | {row['seeds']} | {row['text']} | {per_seed} | {fr} | {vs} |")
    flagged = [(label, i, f) for label, row in result["rows"].items() for i, f in enumerate(row["flags"]) if f]
    if flagged:
        lines += ["", "Flagged landmarks (mean error > 3x the median landmark's: a dead or swapped channel):"]
        lines += [f"- {label}, seed #{i}: " + ", ".join(f"landmark {x['landmark']} {100 * x['nme_io']:.1f} % "
                                                         f"(median {100 * x['median']:.1f} %)" for x in f)
                  for label, i, f in flagged]
    return "\n".join(lines) + "\n"


# ---- the short runs of Tables VII and VIII ------------------------------------------------------------

def read_test_faces(data: Mapping[str, Any]) -> list:
    """The faces of every split in ``data["test_splits"]`` of ``data["test_source"]`` at
    ``data["test_root"]``, read once (evaluated together, so the metrics come per subset: common,
    challenging and full for 300W and the synthetic default)."""
    return [face for split in data["test_splits"]
            for face in read_source(data["test_source"], data["test_root"], split)]


def spread(faces: list, count: int | None) -> list:
    """``count`` faces taken evenly over ``faces`` (all of them when ``count`` is None or larger),
    so a subsample keeps the mix of subsets (common and challenging) of the whole list."""
    if count is None or count >= len(faces):
        return list(faces)
    if count < 1:
        raise ParamError(f"test_faces: expected at least 1 face, got {count}")
    return [faces[i] for i in np.linspace(0, len(faces) - 1, count).round().astype(int)]


def short_runs(params: dict, variant: str, runs: Mapping[str, Mapping[str, Any]], out_dir: str | Path,
               test_faces: list, metrics_dir: str | Path, table: str, title: str,
               seeds: Sequence[int] | None = None, workers: int = 1, progress: bool = True) -> dict[str, list[dict]]:
    """Train ``variant`` once per entry of ``runs`` (setting name -> dotted params to change, e.g.
    ``{"targets.distribution": "ged"}``) and per seed of ``seeds`` (default: params' ``seed``),
    ``workers`` runs at a time (``spanlib.training.seeds.train_many``), and evaluate each on ``test_faces``.

    Used by Tables VII and VIII: short runs (``train.iterations`` as given in ``runs`` or
    ``params``) without periodic validation. Checkpoints and dvclive logs go to ``out_dir``; each
    run's metrics JSON to ``metrics_dir/run_<i>_s<seed>.json``, and ``metrics_dir/setup.json`` names
    them for ``spanlib.reporting.report`` (docs/architecture.md, "Setup JSON"). Returns name -> the metrics
    JSON dicts of its seeds, in seed order.
    """
    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    seeds = check_seeds(list(seeds) if seeds is not None else [int(params.get("seed", 0))])
    data = params["data"]
    jobs, where = [], []
    for index, (name, values) in enumerate(runs.items()):
        for seed in seeds:
            stem = f"run_{index}_s{seed}"
            run_params = resolve(params, overrides={**values, "seed": seed, "train.val_every": 0,
                                                    "train.live_dir": str(out_dir / f"{stem}_live")},
                                 origin=f"run {name}")
            jobs.append((f"{name} seed {seed}", run_params, variant, out_dir / f"{stem}.pt"))
            where.append((name, stem))
    checkpoints = train_many(jobs, workers, progress)
    results: dict[str, list[dict]] = {}
    for (name, stem), checkpoint in zip(where, checkpoints):
        results.setdefault(name, []).append(
            evaluate(checkpoint, data["test_source"], data["test_root"], split="+".join(data["test_splits"]),
                     samples=test_faces, settings=params["evaluate"], json_path=metrics_dir / f"{stem}.json",
                     progress=progress))
    rows = [{"setting": name, "metrics": [f"{stem}.json" for n, stem in where if n == name]} for name in runs]
    write_json(metrics_dir / "setup.json", {"table": table, "title": title, "seeds": seeds,
                                            "norm": params["evaluate"]["nme_norm"], "rows": rows})
    return results


def short_run_table(params: dict, group: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]], table: str,
                    title: str, caption: str, label: str, models_dir: str | Path, runs_dir: str | Path,
                    metrics_file: str | Path, table_file: str | Path,
                    seeds: Sequence[int] | None = None) -> tuple[dict[str, list[dict]], str]:
    """Tables VII and VIII (notebooks 04 and 06): the same steps for a group of params.yaml
    (``distributions`` or ``sensitivity``: its ``variant`` and ``test_faces``). The settings
    ``runs`` are trained and evaluated by ``short_runs`` on ``group["test_faces"]`` test faces
    spread over the splits, once per seed (``seeds``, default ``pipeline.seeds``); the headline
    numbers go to ``metrics_file``; the table (mean ± sd over seeds, each row against the first)
    headed by ``caption`` and what every table says (test faces, splits, seeds, reference) to
    ``table_file``. Returns (results per setting, the table's markdown)."""
    data, ev = params["data"], params["evaluate"]
    seeds = list(params["pipeline"]["seeds"] if seeds is None else seeds)
    test_faces = spread(read_test_faces(data), group["test_faces"])
    results = short_runs(params, group["variant"], runs, models_dir, test_faces, runs_dir, table, title,
                         seeds=seeds, workers=params["pipeline"]["workers"])
    write_json(metrics_file, headline(results, ev["nme_norm"], ev["auc_threshold"]))
    reference = next(iter(results))
    text, _ = seed_table(results, ev["nme_norm"], ev["auc_threshold"], reference=reference, label=label)
    markdown = (f"{caption}; {len(test_faces)} test faces; {data['test_source']} test splits "
                f"{data['test_splits']}; seeds {seeds}; compared with {reference}.\n\n" + text)
    write_text(table_file, markdown)
    return results, markdown
