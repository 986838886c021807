"""Training: exact resume, a short run that learns, the schedule, params checks, the CLI."""

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spanlib.data.synth.shape import TEMPLATE
from spanlib.utils.errors import DataError, ParamError
from spanlib.config.params import load_params
from spanlib.config.schemes import get_scheme
from spanlib.training.train import lr_at, train

REPO = Path(__file__).resolve().parents[1]
COLOURS = [(230, 80, 60), (60, 200, 90), (70, 90, 230), (220, 200, 60), (200, 70, 200), (60, 210, 210)]


def write_faces(folder: Path, count: int, seed: int, size: int = 96) -> None:
    """Simple drawn faces (the 68-point template under a random similarity, boundaries drawn as
    coloured polylines on a noisy background) as a folder of .png + .pts files."""
    rng = np.random.default_rng(seed)
    scheme = get_scheme(68)
    folder.mkdir(parents=True, exist_ok=True)
    template = TEMPLATE - TEMPLATE.mean(0)
    template /= np.ptp(template, axis=0).max()
    for n in range(count):
        a = math.radians(rng.uniform(-15, 15))
        s = size * rng.uniform(0.45, 0.6)
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = template @ rot.T + size / 2 + rng.uniform(-6, 6, size=2)
        image = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
        cv2.fillConvexPoly(image, np.round(pts[:17] * 16).astype(np.int32), (170, 150, 140), shift=4)
        for c, boundary in enumerate(scheme.boundaries):
            line = np.round(pts[list(boundary.indices)] * 16).astype(np.int32)
            cv2.polylines(image, [line], boundary.closed, COLOURS[c % len(COLOURS)], 1, cv2.LINE_AA, shift=4)
        cv2.imwrite(str(folder / f"face{n:03d}.png"), image[:, :, ::-1])
        lines = ["version: 1", "n_points: 68", "{"] + [f"{x:.3f} {y:.3f}" for x, y in pts] + ["}"]
        (folder / f"face{n:03d}.pts").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("faces")
    write_faces(root / "train", 96, seed=0)
    write_faces(root / "held", 24, seed=1)
    return {"train": root / "train", "held": root / "held"}


def small_params(faces: dict, **train_overrides) -> dict:
    params = load_params(REPO / "params.yaml")
    params["data"].update(source="pts", root=str(faces["train"]), train_split="all", test_splits=["all"],
                          unlabeled_source="pts", unlabeled_root=str(faces["held"]))
    params["crop"]["input_size"] = 64
    params["model"].update(stages=2, width=32, depth=2)
    params["targets"]["field_radius"] = 3
    params["evaluate"]["decode_radius"] = 2
    params["train"].update(iterations=6, batch_size=4, checkpoint_every=100, val_every=0, num_workers=0, threads=1,
                           unlabeled_ratio=0.5)
    params["train"].update(train_overrides)
    return params


def held_out_nme(model, faces, params) -> float:
    from spanlib.data.dataset import EvalFaceDataset
    from spanlib.data.sources import read_source
    from spanlib.training.train import validation_nme

    samples = read_source("pts", faces["held"], "all")
    dataset = EvalFaceDataset(samples, params["crop"]["input_size"], params["crop"]["scale"], prefer="landmarks")
    return validation_nme(model, dataset, get_scheme(68), params["evaluate"]["decode_radius"], torch.device("cpu"))


@pytest.mark.parametrize("variant", ["semi_scpan"])
def test_resume_gives_the_same_weights(faces, tmp_path, variant):
    """6 iterations in one go == 3 iterations, stop, resume for 3 more: weights equal exactly."""
    params = small_params(faces)
    full = train(params, variant, tmp_path / "full.pt", progress=False)
    part = tmp_path / "part.pt"
    train(params, variant, part, progress=False, stop_after=3)
    assert torch.load(part, weights_only=True)["iteration"] == 3
    train(params, variant, part, progress=False, resume=True)
    a, b = torch.load(full, weights_only=True), torch.load(part, weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    assert a["data_state"] == b["data_state"]
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    # and the weights did move
    assert a["format"] == "spanlib-checkpoint" and a["variant"] == variant and a["scheme"] == "68"


@pytest.mark.slow
def test_short_run_learns(faces, tmp_path):
    """NME_io on 24 held-out drawn faces falls at least 4x from the untrained model's after 80
    iterations of 8 pairs (scpan, 64 px input, Adam 4e-3, staircase at 60/80/90%)."""
    params = small_params(faces, iterations=80, batch_size=8, lr=4e-3, lr_milestones=[0.6, 0.8, 0.9])
    from spanlib.model import build_model

    torch.manual_seed(params["seed"])
    untrained = build_model(dict(params["model"], variant="scpan"), 68, 13, 64)
    before = held_out_nme(untrained, faces, params)
    out = train(params, "scpan", tmp_path / "scpan.pt", progress=False)
    model = build_model(dict(params["model"], variant="scpan"), 68, 13, 64)
    model.load_state_dict(torch.load(out, weights_only=True)["model_state"])
    after = held_out_nme(model, faces, params)
    print(f"held-out NME_io: untrained {before:.4f}, after 80 iterations {after:.4f}")
    # measured: 0.839 -> 0.046 (18x; 0.037 with loss.field_loss js); 4x leaves room for platforms
    assert after < before / 4


def test_lr_staircase():
    args = dict(total=200, base=2.5e-4, milestones=[0.05, 0.2, 0.5], divisors=[5, 2, 2])
    assert lr_at(0, **args) == pytest.approx(2.5e-4)
    assert lr_at(9, **args) == pytest.approx(2.5e-4)
    assert lr_at(10, **args) == pytest.approx(5e-5)
    assert lr_at(40, **args) == pytest.approx(2.5e-5)
    assert lr_at(100, **args) == pytest.approx(1.25e-5)
    assert lr_at(199, **args) == pytest.approx(1.25e-5)


@pytest.mark.parametrize("key, value, message", [
    ("targets.sigma", -1.0, "targets.sigma"),
    ("targets.field_radius", 40, "targets.field_radius"),
    ("train.lr_divisors", [5, 2], "train.lr_milestones"),
    ("train.optimizer", "lbfgs", "train.optimizer"),
])
def test_invalid_params_stop_clearly(faces, tmp_path, key, value, message):
    params = small_params(faces)
    group, name = key.split(".")
    params[group][name] = value
    with pytest.raises(ParamError, match=message):
        train(params, "scpan", tmp_path / "x.pt", progress=False)


def test_unknown_variant(faces, tmp_path):
    with pytest.raises(ParamError, match="unknown variant"):
        train(small_params(faces), "hrnet", tmp_path / "x.pt", progress=False)


def test_cli_trains_and_writes_checkpoint(faces, tmp_path):
    import yaml

    from spanlib.cli import main

    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(small_params(faces, iterations=2)))
    out = tmp_path / "m" / "shn.pt"
    assert main(["train", "--params", str(params_path), "--variant", "shn", "--out", str(out)]) == 0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["iteration"] == 2 and ckpt["variant"] == "shn"
    assert (tmp_path / "m" / "shn_live").is_dir()
    assert main(["train", "--params", str(params_path), "--variant", "nope", "--out", str(out)]) == 2
    # without --variant, the variant is params' after --set (it used to ignore the --set)
    other = tmp_path / "m" / "bali.pt"
    assert main(["train", "--params", str(params_path), "--set", "model.variant=shn_bali", "--out", str(other)]) == 0
    assert torch.load(other, weights_only=True)["variant"] == "shn_bali"
    # the run's output may not overwrite its teacher
    assert main(["train", "--params", str(params_path), "--variant", "shn", "--out", str(out),
                 "--set", f"train.teacher={out}"]) != 0


def test_val_fraction_holds_out_a_seeded_disjoint_subset(faces):
    """train.val_fraction: that share of the training faces is validated on and never trained on;
    train.val_seed alone picks the faces, so runs with other training seeds validate on the same ones."""
    from spanlib.training.train import build_setup

    params = small_params(faces, val_fraction=0.25, val_every=10, val_faces=1000)
    setups = [build_setup(params, "shn", torch.device("cpu"), progress=False) for _ in range(2)]
    held = [sorted(s.path for s in setup.val_dataset.samples) for setup in setups]
    assert held[0] == held[1] and len(held[0]) == 24
    assert len(setups[0].labeled.dataset) == 96 - 24
    all_paths = {str(p) for p in faces["train"].glob("*.png")}
    assert set(held[0]) < all_paths
    params["seed"] = 1
    same = build_setup(params, "shn", torch.device("cpu"), progress=False)
    assert sorted(s.path for s in same.val_dataset.samples) == held[0]
    params["train"]["val_seed"] = 1
    other = build_setup(params, "shn", torch.device("cpu"), progress=False)
    assert sorted(s.path for s in other.val_dataset.samples) != held[0]
    params["train"]["val_fraction"] = 1.0
    with pytest.raises(ParamError, match="train.val_fraction"):
        build_setup(params, "shn", torch.device("cpu"), progress=False)


def test_extra_train_faces_join_training_but_never_validation(faces, tmp_path):
    """data.extra_train: more labelled folders are added to the training faces after the held-out
    split is drawn from data.source, so the validation faces are the same with or without them."""
    from spanlib.training.train import build_setup

    params = small_params(faces, val_fraction=0.25, val_every=10, val_faces=1000)
    plain = build_setup(params, "shn", torch.device("cpu"), progress=False)
    params["data"]["extra_train"] = [{"source": "pts", "root": str(faces["held"]), "split": "all"}]
    extra = build_setup(params, "shn", torch.device("cpu"), progress=False)
    assert len(extra.labeled.dataset) == len(plain.labeled.dataset) + 24
    assert sorted(s.path for s in extra.val_dataset.samples) == sorted(s.path for s in plain.val_dataset.samples)
    assert {str(p) for p in faces["held"].glob("*.png")} <= set(extra.labeled.dataset.paths)
    # another landmark scheme cannot be mixed in
    five = tmp_path / "five"
    five.mkdir()
    cv2.imwrite(str(five / "a.png"), np.zeros((40, 40, 3), np.uint8))
    (five / "a.pts").write_text("version: 1\nn_points: 5\n{\n" + "10 10\n20 10\n15 20\n10 30\n20 30\n" + "}\n")
    params["data"]["extra_train"] = [{"source": "pts", "root": str(five), "split": "all"}]
    with pytest.raises(DataError, match=r"data.extra_train\[0\].*5 landmarks.*68"):
        build_setup(params, "shn", torch.device("cpu"), progress=False)


def test_init_from_copies_every_matching_weight_of_another_run(faces, tmp_path):
    """train.init_from (pretraining then fine-tuning): the tensors of an shn run that exist with the
    same shape in scpan start the scpan run; the SCPA and boundary heads keep their initialisation."""
    from spanlib.inference.checkpoint import load_model
    from spanlib.training.train import build_setup, init_weights

    donor = train(small_params(faces, iterations=2), "shn", tmp_path / "shn.pt", progress=False)
    fresh = build_setup(small_params(faces), "scpan", torch.device("cpu"), progress=False).model
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    info = init_weights(fresh, donor)
    shn_state = load_model(donor).state_dict()
    after = fresh.state_dict()
    shared = [k for k in after if k in shn_state and shn_state[k].shape == after[k].shape]
    assert info["copied"] == len(shared) > 0 and info["tensors"] == len(after)
    assert all(torch.equal(after[k], shn_state[k]) for k in shared)
    own_only = [k for k in after if k not in shn_state]
    assert own_only and all(torch.equal(after[k], before[k]) for k in own_only)
    out = train(small_params(faces, iterations=2, init_from=str(donor)), "scpan", tmp_path / "ft.pt", progress=False)
    assert torch.load(out, weights_only=True)["metrics"]["init_from"]["copied"] == info["copied"]
    with pytest.raises(ParamError, match=r"train.init_from: .*missing.pt not found"):
        init_weights(fresh, tmp_path / "missing.pt")


def test_term_gradients_show_js_weak_start_against_ce(faces):
    """At initialisation the softmax JS pushes the target's peak logit far more weakly than CE
    (p_j (g_j - E_p g) with p_j ~ 1/(h w), against p - q): the finding of docs/model.md."""
    from spanlib.study.loss_balance import term_gradients

    found = {}
    for kind in ("js", "ce"):
        params = small_params(faces)
        params["loss"]["heatmap_loss"] = kind
        found[kind] = term_gradients(params, "scpan", batches=1)
    assert set(found["js"]) == {"heat", "boundary", "field", "coord", "scl"}
    assert found["ce"]["heat"]["grad_peak"] > 20 * found["js"]["heat"]["grad_peak"]
    assert found["ce"]["heat"]["grad_params"] > 5 * found["js"]["heat"]["grad_params"]
    # the other terms do not depend on the heatmap reading
    assert found["ce"]["field"]["value"] == pytest.approx(found["js"]["field"]["value"])


def test_recipes_apply_in_order_and_unknown_names_are_refused():
    from spanlib.config.schema import apply_recipe

    params = load_params(REPO / "params.yaml")
    both = apply_recipe(params, "real,shared300w")
    assert both["loss"]["heatmap_loss"] == "ce" and both["data"]["root"] == "../shared/data/300w"
    assert apply_recipe(params, ["real"])["data"] == params["data"]  # the recipe leaves the data alone
    with pytest.raises(ParamError, match="--recipe nope"):
        apply_recipe(params, "real,nope")


# ---------------------------------------------------------------- resume, extend, interrupt
def _cli(tmp_path, params, variant, out, *extra):
    import yaml

    from spanlib.cli import main

    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return main(["train", "--params", str(params_path), "--variant", variant, "--out", str(out), *extra])


def _live_rows(out: Path, name: str) -> list[tuple[int, float]]:
    rows = (out.parent / f"{out.stem}_live" / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    return [(int(r.split("\t")[0]), float(r.split("\t")[1])) for r in rows[1:]]


def _same_weights(a: Path, b: Path) -> None:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert x["iteration"] == y["iteration"] and x["data_state"] == y["data_state"]
    for key, value in x["model_state"].items():
        assert torch.equal(value, y["model_state"][key]), key


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_resume_from_a_damaged_checkpoint_says_what_to_do(faces, tmp_path, capsys, damage):
    params = small_params(faces, iterations=2)
    out = tmp_path / "shn.pt"
    train(params, "shn", out, progress=False)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00not a checkpoint" * 64)
    capsys.readouterr()
    assert _cli(tmp_path, params, "shn", out, "--resume") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    reason = "not a readable torch checkpoint" if damage == "truncated" else "refused: it is not a pickle"
    assert err.startswith(f"spanlib train: error: {out}: {reason}")
    assert f"restore an intact copy of {out}" in err and "train without --resume to start over" in err


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"])
def test_unknown_device_is_a_param_error(faces, tmp_path, capsys, device):
    with pytest.raises(ParamError, match=f"--device {device}: unknown device; expected cpu, cuda or cuda:N"):
        train(small_params(faces), "shn", tmp_path / "x.pt", progress=False, device=device)
    assert _cli(tmp_path, small_params(faces), "shn", tmp_path / "x.pt", "--device", device) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_then_extend(faces, tmp_path, capsys, monkeypatch):
    """Ctrl-C on step 6 of 6 (checkpoint of step 4 on disk): one line naming the checkpoint and
    iteration and the resume command, exit 130. Resuming with train.iterations=8 extends the run:
    it says so, the dvclive curves hold each step once, the staircase stays scaled to the 6
    iterations the run started with (the extension runs at its last rate), and the weights equal
    an uninterrupted 6-iteration run extended to 8."""
    import spanlib.training.train as T

    params = small_params(faces, iterations=6, checkpoint_every=2, lr_milestones=[0.5], lr_divisors=[4],
                          unlabeled_ratio=0.5)
    out = tmp_path / "cut" / "scpan.pt"
    real_step, calls = T.train_step, [0]

    def interrupted_step(*args):
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(T, "train_step", interrupted_step)
    assert _cli(tmp_path, params, "scpan", out) == 130
    err = capsys.readouterr().err  # the progress bars, then one line
    said = [line for line in err.splitlines() if line.startswith("spanlib train:")]
    assert "Traceback" not in err and len(said) == 1 and err.rstrip().endswith(said[0]), err
    assert f"interrupted at iteration 5 of 6; the last checkpoint {out} (iteration 4) is intact" in err
    assert f"--out {out} --resume" in err
    assert [s for s, _ in _live_rows(out, "total")] == [1, 2, 3, 4, 5]  # the killed run logged step 5
    monkeypatch.setattr(T, "train_step", real_step)

    assert _cli(tmp_path, params, "scpan", out, "--resume", "--set", "train.iterations=8") == 0
    stdout = capsys.readouterr().out
    assert "resumed from iteration 4 of 6, extending the run to 8 iterations" in stdout
    assert [s for s, _ in _live_rows(out, "total")] == list(range(1, 9))  # step 5 once: no zigzag
    base = params["train"]["lr"]
    expected_lr = [base] * 3 + [base / 4] * 5  # the 6-iteration staircase (/4 from iteration 3), kept
    assert [v for _, v in _live_rows(out, "lr")] == pytest.approx(expected_lr)

    straight = tmp_path / "straight" / "scpan.pt"
    train(params, "scpan", straight, progress=False)
    train(params, "scpan", straight, progress=False, resume=True, overrides=["train.iterations=8"])
    _same_weights(out, straight)
    assert torch.load(out, weights_only=True)["schedule"] == {"lr_total": 6}


def test_extension_without_staircase_equals_a_longer_run(faces, tmp_path):
    """With a constant learning rate, a 4-iteration run stopped at 3 and extended to 6 is the
    uninterrupted 6-iteration run, bit for bit."""
    params = small_params(faces, iterations=4, lr_milestones=[], lr_divisors=[])
    part = tmp_path / "part.pt"
    train(params, "shn_bali", part, progress=False, stop_after=3)
    train(params, "shn_bali", part, progress=False, resume=True, overrides=["train.iterations=6"])
    longer = dict(params, train=dict(params["train"], iterations=6))
    full = train(longer, "shn_bali", tmp_path / "full.pt", progress=False)
    _same_weights(part, full)


def test_first_lr_step_by_hand():
    from spanlib.training.train import first_lr_step
    assert first_lr_step(6000, [0.6, 0.8, 0.9], [5, 2, 2]) == 3600
    assert first_lr_step(12000, [0.6, 0.8, 0.9], [5, 2, 2]) == 7200
    assert first_lr_step(10, [0.25, 0.5], [1, 2]) == 5  # a divisor of 1 is no step down
    assert first_lr_step(10, [], []) is None
    for total in (10, 20, 37):  # every iteration before it runs at the base rate, and it does not
        step = first_lr_step(total, [0.3, 0.7], [4, 2])
        assert all(lr_at(i, total, 1.0, [0.3, 0.7], [4, 2]) == 1.0 for i in range(step))
        assert lr_at(step, total, 1.0, [0.3, 0.7], [4, 2]) < 1.0


def test_a_longer_schedule_branches_from_the_first_lr_step_bit_for_bit(faces, tmp_path, capsys):
    """train.branch_checkpoint keeps the 8-iteration run at its first lr step (4 = 0.5 x 8) as
    <stem>_branch.pt. A copy resumed with train.iterations=12 rescales the staircase (nothing has
    stepped down yet) and ends equal to an uninterrupted 12-iteration run; the 8-iteration run's
    final checkpoint, past its step, extended to 12 keeps its own staircase and differs."""
    from spanlib.training.train import branch_path
    params = small_params(faces, iterations=8, lr_milestones=[0.5], lr_divisors=[4], branch_checkpoint=True,
                          unlabeled_ratio=0.0)
    short = tmp_path / "short" / "shn_bali.pt"
    train(params, "shn_bali", short, progress=False)
    branch = branch_path(short)
    assert branch.name == "shn_bali_branch.pt"
    saved = torch.load(branch, weights_only=True)
    assert saved["iteration"] == 4 and saved["schedule"] == {"lr_total": 8}
    assert torch.load(short, weights_only=True)["iteration"] == 8

    longer = tmp_path / "longer" / "shn_bali.pt"
    longer.parent.mkdir()
    longer.write_bytes(branch.read_bytes())
    capsys.readouterr()
    assert _cli(tmp_path, params, "shn_bali", longer, "--resume", "--set", "train.iterations=12") == 0
    assert "the staircase is rescaled to 12 iterations" in capsys.readouterr().out
    assert torch.load(longer, weights_only=True)["schedule"] == {"lr_total": 12}
    straight = train(dict(params, train=dict(params["train"], iterations=12)), "shn_bali",
                     tmp_path / "straight" / "shn_bali.pt", progress=False)
    _same_weights(longer, straight)
    assert torch.load(branch_path(straight), weights_only=True)["iteration"] == 6  # its own first step

    train(params, "shn_bali", short, progress=False, resume=True, overrides=["train.iterations=12"])
    assert torch.load(short, weights_only=True)["schedule"] == {"lr_total": 8}
    past = torch.load(short, weights_only=True)["model_state"]
    assert any(not torch.equal(v, torch.load(straight, weights_only=True)["model_state"][k])
               for k, v in past.items() if v.is_floating_point())


def test_resume_names_the_params_that_differ(faces, tmp_path):
    params = small_params(faces, iterations=2)
    out = tmp_path / "shn.pt"
    train(params, "shn", out, progress=False)
    changed = ["train.lr=0.001", "seed=3", "train.num_workers=1", "train.iterations=3"]
    with pytest.raises(ParamError) as info:
        train(params, "shn", out, progress=False, resume=True, overrides=changed)
    message = str(info.value)
    import re

    named = re.search(r"trained with different (.*?) \(", message).group(1).split(", ")
    assert sorted(named) == ["seed", "train.lr"]  # the two that change what is learned, and only those
    assert "train.lr: 0.004 in the checkpoint, 0.001 now" in message and "seed: 0 in the checkpoint, 3 now" in message
    assert "num_workers:" not in message and "iterations:" not in message
    with pytest.raises(ParamError, match="train.iterations: 1, but .* is already at iteration 2"):
        train(params, "shn", out, progress=False, resume=True, overrides=["train.iterations=1"])
    # execution settings may change: more workers and a later extension resume fine
    train(params, "shn", out, progress=False, resume=True, overrides=["train.num_workers=1", "train.iterations=3"])
    assert torch.load(out, weights_only=True)["iteration"] == 3


def test_a_key_added_later_at_its_default_is_not_a_difference():
    """A checkpoint written before a key existed ran with the key's schema default: resuming it
    with the key at that default is no change; at another value it is."""
    from spanlib.training.train import differing_params

    old = {"loss": {"gamma": 40.0}, "disturb": {"p_flip": 0.5}}
    assert differing_params(old, {"loss": {"gamma": 40.0, "unlabeled_weighting": "mean"},
                                  "disturb": {"p_flip": 0.5, "p_translate": 0.0}}) == []
    assert differing_params(old, {"loss": {"gamma": 40.0, "unlabeled_weighting": "sum"},
                                  "disturb": {"p_flip": 0.5}}) == ["loss.unlabeled_weighting"]
    assert differing_params(old, {"loss": {"gamma": 40.0, "no_such_key": 1}, "disturb": {"p_flip": 0.5}}) == [
        "loss.no_such_key"]
    assert differing_params({"loss": {"gamma": 40.0}}, {"loss": {}}) == ["loss.gamma"]  # required: no default
    # recipes are templates: a recipe edited since (a key added to it) is no difference, its resolved groups are
    assert differing_params({"recipes": {"real": {"train.iterations": 6000}}, "train": {"iterations": 6000}},
                            {"recipes": {"real": {"train.iterations": 6000, "train.branch_checkpoint": True}},
                             "train": {"iterations": 6000}}) == []
    assert differing_params({"recipes": {}, "train": {"lr": 1.0}}, {"train": {"lr": 2.0}}) == ["train.lr"]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_from_the_collate_workers_equal_the_items_concatenated(faces, workers):
    """next_batch (views joined by collate_pairs in the loader's workers) gives exactly what the
    dataset's items give when stacked by hand in the order the objective takes: [alpha of the
    labeled, alpha of the unlabeled, beta of the labeled, beta of the unlabeled]."""
    from spanlib.data.dataset import EpochShuffleSampler
    from spanlib.training.train import build_setup, next_batch

    params = small_params(faces, batch_size=4, unlabeled_ratio=0.5, num_workers=workers)
    setup = build_setup(params, "semi_scpan", torch.device("cpu"), progress=False)
    for _ in range(2):  # the second batch too: the stream's position moves on
        position = setup.labeled.position
        images, n, targets, pairs = next_batch(setup)
        lab = list(EpochShuffleSampler(len(setup.labeled.dataset), setup.labeled.seed))[4 * position:4 * position + 4]
        unl = list(EpochShuffleSampler(len(setup.unlabeled.dataset), setup.unlabeled.seed))[2 * position:2 * position + 2]
        li = [setup.labeled.dataset[i] for i in lab]
        ui = [setup.unlabeled.dataset[i] for i in unl]
        expected = torch.stack([it["a"]["image"] for it in li + ui] + [it["b"]["image"] for it in li + ui])
        assert n == 4 and torch.equal(images, expected)
        for key in ("landmarks", "field", "field_mask"):
            assert torch.equal(targets[key], torch.stack([it[v][key] for v in "ab" for it in li])), key
        for key in ("heatmaps", "boundaries"):
            for r, value in targets[key].items():
                assert torch.equal(value, torch.stack([it[v][key][r] for v in "ab" for it in li])), (key, r)
        assert torch.equal(pairs["theta"], torch.stack([it["theta"] for it in li + ui]))
        assert pairs["flipped"].tolist() == [it["flipped"] for it in li + ui]


def test_a_teacher_changes_the_heatmap_targets_only(faces, tmp_path):
    """train.teacher: a run distilled from another model trains, its heat term differs from the
    plain run's from the first step, and the other terms of the first step are those of the plain run
    (same weights, same batch: only the heatmap targets changed)."""
    from spanlib.training.train import build_setup, make_optimizer, train_step

    teacher = train(small_params(faces, iterations=2), "scpan", tmp_path / "teacher.pt", progress=False)
    first = {}
    for name, extra in (("plain", {}), ("taught", {"teacher": str(teacher), "teacher_weight": 0.5})):
        params = small_params(faces, **extra)
        params["crop"]["input_size"] = 48   # the student cuts smaller crops than the 64 px teacher
        setup = build_setup(params, "scpan", torch.device("cpu"), progress=False)
        opt = make_optimizer("adam", setup.model.parameters(), 1e-3)
        setup.model.train()
        first[name] = train_step(setup, opt, 1e-3)
    assert first["taught"]["heat"] != first["plain"]["heat"]
    for term in ("boundary", "field", "coord", "scl"):
        assert first["taught"][term] == first["plain"][term]
    params = small_params(faces, iterations=3, teacher=str(teacher))
    params["crop"]["input_size"] = 48
    out = train(params, "scpan", tmp_path / "student.pt", progress=False)
    assert out.exists()


@pytest.mark.parametrize("variant,teacher", [("semi_scpan", False), ("scpan", True)])
def test_device_targets_give_the_same_steps(faces, tmp_path, variant, teacher):
    """train.device_targets: the loader delivers images and landmarks only, next_batch builds the
    targets from the landmarks (here on the CPU); the targets and the loss terms of two steps equal
    those of the workers' numpy targets within 1e-5. semi_scpan: every stream and term (unlabeled
    pairs, boundaries, BALI field, SCL); scpan with a teacher: the distilled heatmaps."""
    from spanlib.training.train import build_setup, make_optimizer, next_batch, train_step

    extra = {}
    if teacher:
        extra = {"teacher": str(train(small_params(faces, iterations=1), "scpan", tmp_path / "teacher.pt",
                                      progress=False)), "teacher_weight": 0.5}
    targets, steps = {}, {}
    for flag in (False, True):
        params = small_params(faces, device_targets=flag, **extra)
        setup = build_setup(params, variant, torch.device("cpu"), progress=False)
        assert setup.labeled.dataset.target_kinds == (() if flag else setup.device_targets or
                                                      setup.labeled.dataset.target_kinds)
        targets[flag] = next_batch(setup)[2]
        setup = build_setup(params, variant, torch.device("cpu"), progress=False)
        opt = make_optimizer("adam", setup.model.parameters(), 1e-3)
        setup.model.train()
        steps[flag] = [train_step(setup, opt, 1e-3) for _ in range(2)]
    assert set(targets[True]) == set(targets[False]) >= {"heatmaps", "landmarks", "boundaries", "field", "field_mask"}
    for key, value in targets[False].items():
        for r, t in (value.items() if isinstance(value, dict) else [(None, value)]):
            got = targets[True][key][r] if r is not None else targets[True][key]
            torch.testing.assert_close(got, t, rtol=0, atol=1e-5, msg=f"{key} {r}")
    for plain, device in zip(steps[False], steps[True]):
        assert set(plain) == set(device)
        for term, value in plain.items():
            assert device[term] == pytest.approx(value, rel=1e-5, abs=1e-6), term


def test_the_moving_average_is_the_ema_of_the_steps_and_leaves_the_run_unchanged(faces, tmp_path):
    """train.ema_decay: the raw weights equal a run without the average bit for bit (validation of
    the average included); <stem>_ema.pt holds d-weighted averages of the weights after each step,
    recomputed here from the checkpoints of a run stopped and resumed after every step (which also
    checks that resume continues the average); load_model reads it; --resume refuses it."""
    from spanlib.inference.checkpoint import load_model

    d = 0.6
    plain = train(small_params(faces, iterations=3, val_every=2, val_faces=8, val_fraction=0.2), "shn_bali", tmp_path / "plain.pt",
                  progress=False)
    params = small_params(faces, iterations=3, val_every=2, val_faces=8, val_fraction=0.2, ema_decay=d)
    steps = tmp_path / "steps.pt"
    weights = []
    for n in (1, 2, 3):
        train(params, "shn_bali", steps, progress=False, stop_after=n, resume=n > 1)
        weights.append(torch.load(steps, weights_only=True)["model_state"])
    raw = torch.load(plain, weights_only=True)["model_state"]
    for key, value in raw.items():
        assert torch.equal(value, weights[-1][key]), key
    averaged = torch.load(tmp_path / "steps_ema.pt", weights_only=True)
    assert averaged["averaged"] == {"decay": d, "updates": 3, "of": "steps.pt"}
    assert "val_nme_io_ema" in torch.load(steps, weights_only=True)["metrics"]
    moved = 0
    for key, first in weights[0].items():
        if not first.is_floating_point():
            continue
        expected = (d * first.double() + (1 - d) * weights[1][key].double()) * d + (1 - d) * weights[2][key].double()
        assert torch.allclose(averaged["model_state"][key].double(), expected, rtol=1e-5, atol=1e-6), key
        moved += not torch.equal(averaged["model_state"][key], weights[2][key])
    assert moved > 10  # the average is not the last weights
    model = load_model(tmp_path / "steps_ema.pt")
    assert torch.equal(model.state_dict()[next(iter(raw))], averaged["model_state"][next(iter(raw))])
    with pytest.raises(ParamError, match="moving average"):
        train(params, "shn_bali", tmp_path / "steps_ema.pt", progress=False, resume=True)
