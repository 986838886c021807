"""Place the re-crop from the first hourglass stage's heatmaps (an early exit) instead of the whole
network: what does it cost end to end, and what does it save?

The placing pass only has to put the next crop around the face; the model is trained with
intermediate supervision, so stage 1 already predicts every landmark, at half the last stage's map
resolution and without BALI fields. Its FLOPs (``torch.utils.flop_counter``) are 36 % of the whole
network's at 128 px and 20 % at 96 px (the whole network at 96 px: 56 %).

This script runs ``experiments/end_to_end.py`` with the same arguments, except that in every run
given ``placing_size`` by ``--inference`` the passes without the flip test (the placing passes under
``flip_passes=last``) decode stage 1's heatmaps with the soft-argmax of eq. 5 and no fields. Runs
without ``placing_size`` are unchanged. Example (results/real/placing_exit_stage.md)::

    python experiments/placing_exit_stage.py --run 'full=models/e2e/len12k_s0.pt,models/e2e/len12k_s1.pt' \
        --run 'exit128=...' --inference 'full:flip_passes=last' \
        --inference 'exit128:placing_size=128,flip_passes=last' --versus 'exit128:full' --refine 1 \
        --out results/real/placing_exit_stage
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

import spanlib.evaluation.evaluate as evaluate_module
from spanlib.utils.files import write_text

EXIT_STAGE = 1
END_TO_END = Path(__file__).with_name("end_to_end.py")


class StageExit(torch.nn.Module):
    """The network up to stage ``stage``'s heatmap head: {"heatmaps": [logits], "offsets": None}."""

    def __init__(self, model: torch.nn.Module, stage: int):
        super().__init__()
        self.model, self.stage = model, stage
        self.params, self.scheme = model.params, model.scheme

    def forward(self, images: torch.Tensor) -> dict:
        m = self.model
        p = m.stem(m.stem_conv((images - m.mean) / m.std))
        for t in range(self.stage):
            stage = m.stage_modules[t]
            features = stage.features(p)
            heat = stage.heat(features)
            if t < self.stage - 1:  # shn_bali has no boundaries or SCPA between stages
                p = p + m.remap_features[t](features) + m.remap_heat[t](heat)
        return {"heatmaps": [heat], "offsets": None}


def main() -> None:
    whole_pass = evaluate_module._predict_pass

    def placing_from_stage(model, samples, settings, progress, boxes, flip, size):
        if settings.placing_size is not None and not flip:
            if getattr(model, "variant", None) != "shn_bali":
                raise SystemExit(f"placing_exit_stage.py: written for shn_bali, got {model.variant}")
            model = StageExit(model, EXIT_STAGE)
        return whole_pass(model, samples, settings, progress, boxes, flip, size)

    evaluate_module._predict_pass = placing_from_stage
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else None
    sys.argv = [str(END_TO_END)] + sys.argv[1:]
    runpy.run_path(str(END_TO_END), run_name="__main__")
    if out is not None:  # the report names the script that produced it
        md = out.with_suffix(".md")
        text = md.read_text().replace("python experiments/end_to_end.py", "python experiments/placing_exit_stage.py", 1)
        note = (f"\n\nRuns with `placing_size` place the re-crop from stage {EXIT_STAGE}'s heatmaps (an early exit; "
                "this script's docstring), the others from the whole network.\n")
        write_text(md, text.rstrip("\n") + note)


if __name__ == "__main__":
    main()
