"""The paper's readings against ours, on the synthetic default (issue 11), 3 seeds each.

    python experiments/readings.py --set eq18_scl_stages|disturbance_eq20 [--out runs/readings]   (after `make repro`)

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
"""
import argparse
import json
from pathlib import Path

from spanlib.experiments import read_test_faces
from spanlib.evaluate import evaluate
from spanlib.io import write_json, write_text
from spanlib.config import apply_overrides
from spanlib.params import load_params
from spanlib.seeds import seed_table, train_seeds

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="reading_set", choices=sorted(READINGS), required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "readings")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    for key in ("root", "test_root", "unlabeled_root"):
        params["data"][key] = str(ROOT / params["data"][key])
    faces = read_test_faces(params["data"])
    seeds = params["pipeline"]["seeds"]
    groups: dict[str, dict[str, list]] = {}
    for label, override, variant in READINGS[args.reading_set]:
        if variant not in groups:
            reference = [json.loads((ROOT / f"results/evaluate/{variant}/s{s}.json").read_text()) for s in seeds]
            groups[variant] = {REFERENCE[variant]: reference}
        tag = override.split("=")[0].split(".")[-1]
        ckpts = train_seeds(apply_overrides(params, [override]), variant, seeds, args.out / tag / "s{seed}/checkpoint.pt",
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
