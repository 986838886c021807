"""The paper's readings against ours (issue 11): on the synthetic default, 3 seeds each, or on real faces.

    python experiments/readings.py --set eq18_scl_stages|disturbance_eq20 [--out runs/readings]   (after `make repro`)
    python experiments/readings.py --set real_faces [--iterations 300] [--out runs/readings_real] (needs 300W)

Each reading is one `--set` override of the default params, trained for the pipeline's seeds
(`pipeline.seeds`, `pipeline.workers` at a time) on the variant it concerns, and evaluated on the
same test faces as the pipeline's own runs of that variant (results/evaluate/<variant>/s*.json),
which are the reference: identical params but the override, same machine when run after
`make repro`. Writes <set>.md / <set>.json under --out (mean ± sd over seeds, paired bootstrap
intervals over faces and seeds); the committed copies are results/readings/<set>.{md,json}.

Sets:
- eq18_scl_stages: eq. 18 as printed (`loss.coord_loss=squared_sum`) and L_scl over t = 1..T-1
  (`loss.scl_stages=intermediate`), scpan; about 8 min on one fast core.
- disturbance_eq20: the translation disturbance of section III-B (`disturb.p_translate=0.5`, shifts
  up to 10 % of the crop side), the disturbance drawn once as in Algorithm 1 (`disturb.redraw=once`),
  both on scpan, and eq. 20's unlabeled pairs summed as printed (`loss.unlabeled_weighting=sum`) on
  semi_scpan.
- real_faces: all five readings on real faces, with the real-face ablation's recipe, seeds and workers
  (`real_study`: recipe real,shared300w, seeds 0 and 1, one thread per run) cut to --iterations, each
  against its own variant trained alongside with our reading (the reference): squared_sum,
  p_translate and redraw on shn_bali (the cheapest variant with L_coord and the disturbance),
  scl_stages on scpan, unlabeled_weighting on semi_scpan. Compared on the ablation's held-out faces
  (train.val_fraction / val_seed of the recipe, never trained on) by `spanlib.study.experiments.compare_runs`.
  About 2 hours with 300 iterations on the 2-core AVX2 machine (two runs side by side).
"""
import argparse
import json
from pathlib import Path

from spanlib.study.experiments import read_test_faces
from spanlib.evaluation.evaluate import evaluate
from spanlib.utils.files import write_json, write_text
from spanlib.config.params import resolve
from spanlib.training.seeds import seed_table, train_seeds

ROOT = Path(__file__).resolve().parents[1]
# set -> [(label, override, variant)]
READINGS = {
    "eq18_scl_stages": [("eq. 18 as printed (squared_sum)", "loss.coord_loss=squared_sum", "scpan"),
                 ("eq. 19 L_scl stages (intermediate)", "loss.scl_stages=intermediate", "scpan")],
    "disturbance_eq20": [("translation (p 0.5, up to 10 %)", "disturb.p_translate=0.5", "scpan"),
                         ("disturbance drawn once (Algorithm 1)", "disturb.redraw=once", "scpan"),
                         ("eq. 20 unlabeled pairs summed (as printed)", "loss.unlabeled_weighting=sum", "semi_scpan")],
}
REFERENCE = {"scpan": "ours (distance, all stages)", "semi_scpan": "ours (unlabeled averaged under eta)"}
# real_faces: (label, override, variant); each variant's reference is the run with our reading
REAL_READINGS = [("eq. 18 as printed (squared_sum)", "loss.coord_loss=squared_sum", "shn_bali"),
                 ("translation (p 0.5, up to 10 %)", "disturb.p_translate=0.5", "shn_bali"),
                 ("disturbance drawn once (Algorithm 1)", "disturb.redraw=once", "shn_bali"),
                 ("eq. 19 L_scl stages (intermediate)", "loss.scl_stages=intermediate", "scpan"),
                 ("eq. 20 unlabeled pairs summed (as printed)", "loss.unlabeled_weighting=sum", "semi_scpan")]
REAL_REFERENCE = {"shn_bali": "ours (shn_bali: distance mean, no translation, redrawn each epoch)",
                  "scpan": "ours (scpan: L_scl over t = 1..T)",
                  "semi_scpan": "ours (semi_scpan: unlabeled averaged under eta)"}


def real_faces(params: dict, iterations: int, out: Path) -> None:
    """The five readings on real faces against references trained alongside (see the module doc)."""
    from real_study import run_params  # experiments/ is on sys.path when this script runs

    from spanlib.study.experiments import compare_runs, comparison_markdown
    from spanlib.training.seeds import check_seeds, train_many

    study = dict(params["real_study"], iterations=iterations)
    seeds = check_seeds(study["seeds"])
    settings = [(REAL_REFERENCE[v], None, v) for v in REAL_REFERENCE] + REAL_READINGS
    jobs, runs = [], {}
    for label, override, variant in settings:
        tag = "reference" if override is None else override.split("=")[0].split(".")[-1]
        for seed in seeds:
            run = run_params(params, study, seed, out / variant / tag / f"s{seed}_live",
                             [] if override is None else [override])
            checkpoint = out / variant / tag / f"s{seed}" / "checkpoint.pt"
            jobs.append((f"{variant} {tag} seed {seed}", run, variant, checkpoint))
            runs.setdefault(variant, {}).setdefault(label, []).append(checkpoint)
    train_many(jobs, workers=int(study["workers"]))
    data = jobs[0][1]["data"]
    budget = (f"{iterations} iterations of the real recipe (recipe {study['recipe']}), "
              f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    texts, tables = [], {}
    for variant, group in runs.items():
        result = compare_runs(group, REAL_REFERENCE[variant], data["source"], data["root"], data["train_split"])
        result["budget"] = budget
        texts.append(comparison_markdown(result, f"The paper's readings on real faces, {variant}: {budget}"))
        tables[variant] = result
    write_text(out / "real_faces.md", "\n\n".join(texts))
    write_json(out / "real_faces.json", tables)
    print("\n\n".join(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="reading_set", choices=sorted(READINGS) + ["real_faces"], required=True)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/readings (runs/readings_real for real_faces)")
    parser.add_argument("--iterations", type=int, default=300, help="real_faces only: iterations per run")
    args = parser.parse_args()
    params = resolve(ROOT / "params.yaml")
    if args.reading_set == "real_faces":
        if args.iterations < 1:
            parser.error(f"--iterations: expected an integer >= 1, got {args.iterations}")
        real_faces(params, args.iterations, args.out or ROOT / "runs" / "readings_real")
        return
    args.out = args.out or ROOT / "runs" / "readings"
    params = resolve(params, overrides={f"data.{key}": str(ROOT / params["data"][key])
                                        for key in ("root", "test_root", "unlabeled_root")}, origin="readings.py")
    faces = read_test_faces(params["data"])
    seeds = params["pipeline"]["seeds"]
    groups: dict[str, dict[str, list]] = {}
    for label, override, variant in READINGS[args.reading_set]:
        if variant not in groups:
            reference = [json.loads((ROOT / f"results/evaluate/{variant}/s{s}.json").read_text()) for s in seeds]
            groups[variant] = {REFERENCE[variant]: reference}
        tag = override.split("=")[0].split(".")[-1]
        ckpts = train_seeds(resolve(params, overrides=[override]), variant, seeds, args.out / tag / "s{seed}/checkpoint.pt",
                            args.out / tag / "s{seed}_live", workers=params["pipeline"]["workers"], progress=False)
        groups[variant][label] = [evaluate(c, params["data"]["test_source"], params["data"]["test_root"],
                                           split="+".join(params["data"]["test_splits"]), samples=faces,
                                           settings=params["evaluate"], json_path=args.out / tag / f"{c.parent.name}.json",
                                           progress=False) for c in ckpts]
    texts, tables = [], {}
    for variant, group in groups.items():
        text, data = seed_table(group, "io", params["evaluate"]["auc_threshold"], reference=REFERENCE[variant],
                                label=f"reading ({variant})")
        texts.append(text)
        tables[variant] = data
    write_text(args.out / f"{args.reading_set}.md", "\n\n".join(texts))
    write_json(args.out / f"{args.reading_set}.json", tables)
    print("\n\n".join(texts))


if __name__ == "__main__":
    main()
