"""The ablation on real faces (issue 9): each variant of `real_study.variants` trained once per seed
of `real_study.seeds` with the real recipe (`real_study.recipe`) for `real_study.iterations`,
then compared on the held-out faces of the training split (the recipe's train.val_fraction and
train.val_seed: the same faces for every run, never trained on).

    python experiments/real_study.py [--params params.yaml] [--models models/real_study]
                                     [--out results/real_study] [--set KEY=VALUE ...]

This is the DVC stage `real_study` of studies/real_faces/dvc.yaml, outside the top-level pipeline
because it needs a copy of 300W, which a fresh clone does not have (frozen once its results are
committed). With your own copy: point the `shared300w` recipe (or your own) at it, then
`dvc repro real_study` from studies/real_faces/ (`dvc unfreeze real_study` first once frozen). Finished runs are kept and interrupted ones
resumed (`spanlib.training.seeds.train_many`), `real_study.workers` at a time with one torch thread each.

Writes under --out: ablation.md / ablation.json (every variant against `real_study.reference`)
and ablation_vs_scpan.md / .json (semi_scpan and shn_bali against scpan, when they were run):
mean ± sd over seeds, per-seed values, and paired bootstrap intervals over faces and seeds
(`spanlib.study.experiments.compare_runs`).
"""
import argparse
from pathlib import Path

from spanlib.study.experiments import compare_runs, comparison_markdown
from spanlib.utils.files import write_json, write_text
from spanlib.config.params import resolve
from spanlib.training.seeds import check_seeds, train_many

ROOT = Path(__file__).resolve().parents[1]


def run_params(params: dict, study: dict, seed: int, live_dir: Path, extra: tuple[str, ...] | list[str] = ()) -> dict:
    """The params of one run: the study's recipes, its iteration budget, one thread per run, then
    ``extra`` overrides (``key=value``) and its dvclive folder."""
    iterations = int(study["iterations"])
    run = resolve(params, study["recipe"], [f"seed={seed}", f"train.iterations={iterations}",
                                            f"train.val_every={iterations}",
                                            f"train.checkpoint_every={min(100, iterations)}", "train.threads=1", *extra])
    return resolve(run, overrides={"train.live_dir": str(live_dir)}, origin="live_dir")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", type=Path, default=Path("models/real_study"))
    parser.add_argument("--out", type=Path, default=Path("results/real_study"))
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    params = resolve(args.params, overrides=args.overrides)
    study = params["real_study"]
    seeds = check_seeds(study["seeds"])
    jobs = []
    for variant in study["variants"]:
        for seed in seeds:
            run = run_params(params, study, seed, args.models / variant / f"s{seed}_live")
            jobs.append((f"{variant} seed {seed}", run, variant, args.models / variant / f"s{seed}" / "checkpoint.pt"))
    checkpoints = train_many(jobs, workers=int(study["workers"]))
    runs: dict[str, list[Path]] = {}
    for (_, _, variant, _), checkpoint in zip(jobs, checkpoints):
        runs.setdefault(variant, []).append(checkpoint)
    data = jobs[0][1]["data"]
    budget = (f"{study['iterations']} iterations of the real recipe (recipe {study['recipe']}), "
              f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    tables = [("ablation", study["reference"], list(runs)),
              ("ablation_vs_scpan", "scpan", [v for v in ("scpan", "semi_scpan", "shn_bali") if v in runs])]
    for name, reference, variants in tables:
        if reference not in variants or len(variants) < 2:
            continue
        result = compare_runs({v: runs[v] for v in variants}, reference, data["source"], data["root"],
                              data["train_split"])
        result["budget"] = budget
        text = comparison_markdown(result, f"Ablation on real faces: {budget}")
        write_json(args.out / f"{name}.json", result)
        write_text(args.out / f"{name}.md", text)
        print(text)


if __name__ == "__main__":
    main()
