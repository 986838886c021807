"""The balance of eq. 19's terms over training, for two readings of the field term (issue 11: does
a normalisation bring the paper's weights back to a sensible balance?).

    python experiments/loss_balance.py [--recipe real,shared300w | none] \
        [--checkpoint LABEL=PATH ...] [--batches 3] [--out results/real/loss_balance_training]

For the model at initialisation (seed 0) and each checkpoint, `spanlib.study.loss_balance.term_gradients`
on the same first training batches of scpan, seed 0, with params.yaml under --recipe (`none`: the
synthetic default as `make repro` trains it): each term's value and the norm of its gradient over
all parameters; a term's *share* is that norm over the sum of the five norms. Under Adam the loss
scale does not matter but the shares do. The weights are the paper's (lambda1 1, eta 4, lambda2 16,
gamma 40); the field term is read twice at the same weights: `l1` (ours, the default: a masked L1
in map pixels, averaged over the window's pixels) and `js` (the offsets turned into window maps
compared by JS, the reading the paper's "distribution" wording allows). Writes OUT.json and OUT.md.
"""
import argparse
from pathlib import Path

from spanlib.utils.files import write_json, write_text
from spanlib.study.loss_balance import term_gradients
from spanlib.config.params import resolve
from spanlib.utils.provenance import code_version, machine_info

ROOT = Path(__file__).resolve().parents[1]
FIELD_READINGS = {"l1 (ours)": "loss.field_loss=l1", "js": "loss.field_loss=js"}
TERMS = ("heat", "boundary", "field", "coord", "scl")


def checkpoint_arg(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--checkpoint {text!r}: expected LABEL=PATH to an existing checkpoint")
    return label, Path(path)


def shares(terms: dict) -> dict:
    total = sum(terms[t]["grad_params"] for t in TERMS if t in terms)
    return {t: terms[t]["grad_params"] / total for t in TERMS if t in terms}


def markdown(rows: list[dict], batches: int, setting: str) -> str:
    lines = [f"**The terms' shares of the gradient over training** ({setting}; mean of the first {batches} "
             f"training batches of seed 0; share = the term's parameter-gradient norm over the sum of the "
             f"five; field value = the weighted field term)", "",
             "| model | field read as | " + " | ".join(f"{t} share" for t in TERMS) + " | field value |",
             "|---|---|" + "---|" * (len(TERMS) + 1)]
    for row in rows:
        cells = " | ".join(f"{100 * row['shares'][t]:.0f} %" for t in TERMS)
        lines.append(f"| {row['model']} | {row['field_reading']} | {cells} | {row['terms']['field']['value']:.3g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--recipe", default="real,shared300w", help="params.yaml recipes, or none")
    parser.add_argument("--checkpoint", type=checkpoint_arg, action="append", default=[])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "real" / "loss_balance_training")
    args = parser.parse_args()
    base = resolve(args.params, None if args.recipe == "none" else args.recipe, ["seed=0"])
    models = [("initialisation", None)] + args.checkpoint
    rows = []
    for label, checkpoint in models:
        for reading, override in FIELD_READINGS.items():
            terms = term_gradients(resolve(base, overrides=[override]), "scpan", batches=args.batches,
                                   checkpoint=checkpoint)
            rows.append({"model": label, "checkpoint": str(checkpoint) if checkpoint else None,
                         "field_reading": reading, "terms": terms, "shares": shares(terms)})
            print(label, reading, {t: f"{100 * s:.0f} %" for t, s in rows[-1]["shares"].items()}, flush=True)
    write_json(args.out.with_suffix(".json"), {
        "produced_by": f"experiments/loss_balance.py (spanlib.study.loss_balance.term_gradients, recipe "
                       f"{args.recipe}, heatmap_loss {base['loss']['heatmap_loss']}, scpan, seed 0, "
                       f"batches={args.batches})",
        "data": f"{base['data']['root']} {base['data']['train_split']}" + (
            f" minus the held-out {base['train']['val_fraction']:.0%} (val_seed {base['train']['val_seed']})"
            if base["train"]["val_fraction"] else ""),
        "code_version": code_version(), "machine": machine_info(), "rows": rows})
    setting = (f"scpan, recipe {args.recipe}, heatmap term {base['loss']['heatmap_loss']}, "
               f"{base['crop']['input_size']} px, data {base['data']['root']}")
    write_text(args.out.with_suffix(".md"), markdown(rows, args.batches, setting))


if __name__ == "__main__":
    main()
