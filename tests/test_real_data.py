"""A short training on the real faces of ../shared/data with the real recipe (skips without them)."""

from pathlib import Path

import pytest
import torch

from spanlib.config.params import load_params
from spanlib.config.schema import apply_recipe
from spanlib.training.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_short_real_face_training_validates_on_the_held_out_split(shared_data, tmp_path):
    from spanlib.data.sources import read_source
    from spanlib.data.split import held_out_split

    params = apply_recipe(load_params(REPO / "params.yaml"), "real,shared300w")
    params["data"]["root"] = str(shared_data / "300w")
    params["crop"]["input_size"] = 64
    params["model"].update(width=16, depth=2)
    params["targets"]["field_radius"] = 3
    params["train"].update(iterations=4, val_every=4, val_faces=8, checkpoint_every=4, batch_size=4)
    out = train(params, "scpan", tmp_path / "real.pt", progress=False)
    ckpt = torch.load(out, weights_only=True)
    history = ckpt["metrics"]["val_history"]
    assert history[-1][0] == 4 and 0 < history[-1][1] < 2.0
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        faces = read_source("300w", shared_data / "300w", "train")
    # 300-W's training split in full since lfpw/trainset arrived: afw + helen/trainset + lfpw/trainset
    assert not [w for w in caught if "lfpw/trainset" in str(w.message)], "no part of the train split is missing"
    assert {"afw", "helen", "lfpw"} <= {part for s in faces for part in Path(s.path).parts}
    assert len(faces) == 2011
    train_faces, held = held_out_split(faces, 0.1, 0)
    assert len(held) == 201 and len(train_faces) == len(faces) - 201
    assert not {s.path for s in held} & {s.path for s in train_faces}
