"""Eq. 18 as printed and L_scl over t = 1..T-1 against our readings, on the synthetic default.

    python experiments/readings_eq18_scl.py [--out runs/readings]      (after `make repro`)

scpan with the default params, 3 seeds each, for `loss.coord_loss=squared_sum` and
`loss.scl_stages=intermediate`, evaluated on the same test faces as the pipeline's own scpan runs
(results/evaluate/scpan/s*.json, which are the reference: identical params otherwise). Writes
readings.md / readings.json (mean ± sd over seeds, paired bootstrap intervals) under --out; the
committed copy is results/readings/eq18_scl_stages.{md,json}. About 8 min on one core.
"""
import argparse
import json
from pathlib import Path

from spanlib import pipeline
from spanlib.evaluate import evaluate
from spanlib.io import write_json, write_text
from spanlib.params import apply_overrides, load_params
from spanlib.seeds import seed_table, train_seeds

ROOT = Path(__file__).resolve().parents[1]
READINGS = {"eq. 18 as printed (squared_sum)": "loss.coord_loss=squared_sum",
            "eq. 19 L_scl stages (intermediate)": "loss.scl_stages=intermediate"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "readings")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    for key in ("root", "test_root"):
        params["data"][key] = str(ROOT / params["data"][key])
    params["data"]["unlabeled_root"] = str(ROOT / params["data"]["unlabeled_root"])
    faces = pipeline.read_test_faces(params["data"])
    seeds = params["pipeline"]["seeds"]
    groups = {"ours (distance, all stages)": [json.loads((ROOT / f"results/evaluate/scpan/s{s}.json").read_text())
                                             for s in seeds]}
    for name, override in READINGS.items():
        tag = override.split("=")[1]
        ckpts = train_seeds(apply_overrides(params, [override]), "scpan", seeds, args.out / tag / "s{seed}/checkpoint.pt",
                            args.out / tag / "s{seed}_live", workers=params["pipeline"]["workers"], progress=False)
        groups[name] = [evaluate(c, params["data"]["test_source"], params["data"]["test_root"],
                                 split="+".join(params["data"]["test_splits"]), samples=faces,
                                 settings=params["evaluate"], json_path=args.out / tag / f"{c.parent.name}.json",
                                 progress=False) for c in ckpts]
    text, data = seed_table(groups, "io", params["evaluate"]["auc_threshold"], reference="ours (distance, all stages)",
                            label="reading (scpan)")
    write_text(args.out / "readings.md", text)
    write_json(args.out / "readings.json", data)
    print(text)


if __name__ == "__main__":
    main()
