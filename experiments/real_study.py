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

``--trained DIR --tag NAME`` trains nothing: it compares the runs another machine trained, read from
``DIR/abl_<variant>_s<seed>/checkpoint.pt`` (experiments/device_sweep.py with
experiments/real_faces_gpu.jobs, issue 25's GPU ablation), on the same held-out faces of the
same ../shared/data copy, and writes NAME_ablation.* and NAME_ablation_vs_scpan.* under --out.

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
from spanlib.config.variants import VARIANTS
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
    parser.add_argument("--trained", type=Path, default=None,
                        help="compare the runs in this folder (abl_<variant>_s<seed>/checkpoint.pt) instead of training")
    parser.add_argument("--tag", default="gpu", help="with --trained: the result files' prefix")
    parser.add_argument("--budget", default=None, help="with --trained: how the runs were made, for the tables' title")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    params = resolve(args.params, overrides=args.overrides)
    study = params["real_study"]
    if args.trained is not None:
        compare_trained(args.trained, params, study, args.out, args.tag, args.budget)
        return
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
    budget = (f"{study['iterations']} iterations of the real recipe (recipe {study['recipe']}), "
              f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    write_tables(runs, jobs[0][1]["data"], study["reference"], args.out, "", budget)


def write_tables(runs: dict[str, list[Path]], data: dict, reference: str, out: Path, prefix: str,
                 budget: str) -> None:
    """The ablation against ``reference`` and the SCPAN-side comparison, as markdown and JSON."""
    tables = [("ablation", reference, list(runs)),
              ("ablation_vs_scpan", "scpan", [v for v in ("scpan", "semi_scpan", "shn_bali") if v in runs])]
    for name, ref, variants in tables:
        if ref not in variants or len(variants) < 2:
            continue
        result = compare_runs({v: runs[v] for v in variants}, ref, data["source"], data["root"],
                              data["train_split"])
        result["budget"] = budget
        text = comparison_markdown(result, f"Ablation on real faces: {budget}")
        write_json(out / f"{prefix}{name}.json", result)
        write_text(out / f"{prefix}{name}.md", text)
        print(text)


def find_trained(folder: Path) -> tuple[dict[str, list[Path]], list[int]]:
    """({variant: checkpoints in seed order}, seeds): ``folder/abl_<variant>_s<seed>/checkpoint.pt``
    for the seeds every variant found has (the pairing of the comparisons needs the same seeds),
    variants in the ablation's order."""
    found: dict[str, dict[int, Path]] = {}
    for ckpt in sorted(folder.glob("abl_*_s*/checkpoint.pt")):
        variant, _, seed = ckpt.parent.name[len("abl_"):].rpartition("_s")
        if variant in VARIANTS and seed.isdigit():
            found.setdefault(variant, {})[int(seed)] = ckpt
    if not found:
        raise SystemExit(f"--trained: no abl_<variant>_s<seed>/checkpoint.pt under {folder}")
    seeds = sorted(set.intersection(*(set(s) for s in found.values())))
    if not seeds:
        raise SystemExit(f"--trained: no seed was trained for every variant under {folder}: "
                         + ", ".join(f"{v} {sorted(s)}" for v, s in found.items()))
    return {v: [found[v][s] for s in seeds] for v in VARIANTS if v in found}, seeds


def compare_trained(folder: Path, params: dict, study: dict, out: Path, tag: str, budget: str | None) -> None:
    """The tables of runs trained elsewhere: ``folder/abl_<variant>_s<seed>/checkpoint.pt``, every
    variant of the study that has a checkpoint for each seed found (seeds paired across variants)."""
    runs, seeds = find_trained(folder)
    data = resolve(params, study["recipe"])["data"]
    reference = study["reference"] if study["reference"] in runs else next(iter(runs))
    write_tables(runs, data, reference, out, f"{tag}_",
                 budget or f"runs trained elsewhere ({folder.name}), {len(seeds)} seeds")


if __name__ == "__main__":
    main()
