"""Comparisons of trained runs with their uncertainty: several seeds per setting, evaluated on the
same held-out faces, summarised as mean ± sd over seeds with paired bootstrap intervals against a
reference setting (``spanlib.stats``).

``compare_runs`` is what produced the real-face tables of docs/model.md and
results/real/*.md (``spanlib compare``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .stats import outlier_landmarks, over_seeds, paired_bootstrap


def run_errors(checkpoint: str | Path, source: str, root: str | Path, split: str, settings: dict | None = None,
               held_out=True, progress: bool = False) -> dict:
    """Per-face NME_io (fraction), per-landmark NME_io and summary metrics of one checkpoint on the
    held-out faces of ``split`` (``held_out=True``: the checkpoint's own validation split)."""
    from .evaluate import evaluate

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
    from tqdm.auto import tqdm

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
            n = min(len(per_seed), len(errors[reference]))
            a = np.stack([e["per_face"] for e in per_seed[:n]])
            b = np.stack([e["per_face"] for e in errors[reference][:n]])
            diff = paired_bootstrap(a, b)
            row.update({"vs_reference": diff.mean, "vs_reference_low": diff.low, "vs_reference_high": diff.high,
                        "vs_reference_significant": diff.significant, "vs_reference_text": diff.format()})
        rows[label] = row
    held = errors[reference][0]["held_out"]
    return {"reference": reference, "source": source, "root": str(root), "split": split,
            "held_out": held, "settings": dict(settings or {}), "rows": rows}


def comparison_markdown(result: dict, title: str) -> str:
    """The comparison as a markdown table (NME_io and FR in %)."""
    ref = result["reference"]
    held = result["held_out"] or {}
    lines = [f"### {title}", "",
             f"NME_io (%) on {held.get('n', '?')} held-out faces of {result['source']} {result['split']} "
             f"(train.val_fraction {held.get('fraction')}, val_seed {held.get('seed')}); mean ± sd over seeds; "
             f"difference to `{ref}` in NME_io points with its 95 % paired bootstrap interval over faces and "
             f"seeds (* = the interval excludes 0).", "",
             "| setting | seeds | NME_io | per seed | FR_io@8 % | vs " + ref + " |",
             "|---|---|---|---|---|---|"]
    for label, row in result["rows"].items():
        per_seed = ", ".join(f"{100 * v:.2f}" for v in row["nme_io_per_seed"])
        fr = f"{100 * row['fr_io_0.08']:.1f} ± {100 * row['fr_io_0.08_sd']:.1f}"
        vs = row.get("vs_reference_text", "reference")
        lines.append(f"| {label} | {row['seeds']} | {row['text']} | {per_seed} | {fr} | {vs} |")
    flagged = [(label, i, f) for label, row in result["rows"].items() for i, f in enumerate(row["flags"]) if f]
    if flagged:
        lines += ["", "Flagged landmarks (mean error > 3x the median landmark's: a dead or swapped channel):"]
        lines += [f"- {label}, seed #{i}: " + ", ".join(f"landmark {x['landmark']} {100 * x['nme_io']:.1f} % "
                                                         f"(median {100 * x['median']:.1f} %)" for x in f)
                  for label, i, f in flagged]
    return "\n".join(lines) + "\n"
