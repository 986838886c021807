"""Data-parallel training on CPU with gloo: W processes learn what one process learns (the global
batch stays the params' batch), and a killed multi-process run resumes exactly.

The reference is an independent single-process run of the same params; the 2-process runs go
through ``torch.multiprocessing`` (as torchrun would set RANK / WORLD_SIZE) and through the real
``torchrun -m spanlib train`` command line."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from spanlib.utils.errors import ParamError
from test_train import small_params, write_faces

REPO = Path(__file__).resolve().parents[1]
VARIANT = "semi_scpan"  # every stream and term: unlabeled pairs, boundaries, BALI field, SCL
# 2 ranks against 1 process differ only by float rounding: BN statistics from two all-reduced
# halves (GlobalBatchNorm2d's two-pass formula alone moves gradients by up to 5e-4 relative on one
# process), gradients summed over the ranks. SGD keeps that rounding at its size; Adam would
# turn it into +-lr steps of the parameters whose exact gradient is 0 (conv biases that a
# BatchNorm cancels: |g| ~ 1e-9 of noise), as any change of summation order would.
# The coordinate term decodes around each heatmap's argmax, a discontinuous choice: on the nearly
# flat maps of the first steps, rounding moves some argmax by a pixel (measured: 0.4% on step 4).
# Measured over 4 SGD steps: the other terms within 6e-5 relative (scl; heat 3e-6, field 2e-7),
# coord within 0.4%, parameters within 1.5e-5 absolute (the coord gradient follows the argmax;
# they moved by up to 1.1e-3), BN running statistics within 1e-4 of each
# tensor's largest value.
OPTIMIZER = dict(optimizer="sgd", lr=1e-3)
LOSS_RTOL, COORD_RTOL, WEIGHT_ATOL, STATS_RTOL = 5e-4, 2e-2, 5e-5, 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, params: dict, out: str, die_at: int | None) -> None:
    """One rank, with the environment torchrun gives it. ``die_at``: rank 1 kills itself (SIGKILL,
    no clean-up) on that training step, once rank 0's checkpoint of the step before is on disk."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import spanlib.training.train as T

    if die_at is not None and rank == 1:
        real_step, calls = T.train_step, [0]

        def dying_step(setup, optimizer, lr):
            calls[0] += 1
            if calls[0] == die_at:
                deadline = time.time() + 60
                while not Path(out).is_file() and time.time() < deadline:
                    time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(setup, optimizer, lr)

        T.train_step = dying_step
    T.train(params, VARIANT, out, device="cpu", progress=True)


def run_ranks(params: dict, out: Path, world: int = 2, die_at: int | None = None) -> None:
    mp.start_processes(_rank_main, args=(world, free_port(), params, str(out), die_at), nprocs=world,
                       join=True, start_method="spawn")


def curve(out: Path, name: str = "total") -> list[tuple[int, float]]:
    """(step, value) rows of a term in the run's dvclive log (written by rank 0)."""
    rows = (out.parent / f"{out.stem}_live" / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    step, value = header.index("step"), header.index(name)
    return [(int(r.split("\t")[step]), float(r.split("\t")[value])) for r in rows[1:]]


@pytest.fixture(scope="module")
def ddp_params(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ddp_faces")
    write_faces(root / "train", 48, seed=0)
    write_faces(root / "held", 16, seed=1)
    return small_params({"train": root / "train", "held": root / "held"}, iterations=4, batch_size=8,
                        checkpoint_every=2, unlabeled_ratio=0.5, **OPTIMIZER)


@pytest.fixture(scope="module")
def two_rank_run(ddp_params, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp2") / "m.pt"
    run_ranks(ddp_params, out)
    return out


@pytest.mark.slow
def test_two_ranks_learn_what_one_process_learns(ddp_params, two_rank_run, tmp_path):
    """2 processes x 4 pairs == 1 process x 8 pairs: the same loss terms at every step and the
    same weights and BN statistics, within float summation order."""
    from spanlib.training.train import train

    one = train(ddp_params, VARIANT, tmp_path / "one.pt", device="cpu", progress=True)
    a, b = torch.load(one, weights_only=True), torch.load(two_rank_run, weights_only=True)
    assert a["iteration"] == b["iteration"] == 4 and a["data_state"] == b["data_state"]
    for term in ("total", "heat", "boundary", "field", "coord", "scl"):
        ref, got = curve(one, term), curve(two_rank_run, term)
        assert [s for s, _ in ref] == [s for s, _ in got] == [1, 2, 3, 4]
        assert got[0][1] == pytest.approx(ref[0][1], rel=1e-6), term  # step 1: the same weights
        for (_, x), (_, y) in zip(ref, got):
            assert y == pytest.approx(x, rel=COORD_RTOL if term in ("coord", "total") else LOSS_RTOL), term
    assert set(a["model_state"]) == set(b["model_state"])  # the network's own keys, not DDP's module.*
    for key, value in a["model_state"].items():
        other = b["model_state"][key]
        if "running_" in key:
            assert float((other - value).abs().max()) <= STATS_RTOL * float(value.abs().max()), key
        elif value.is_floating_point():
            torch.testing.assert_close(other, value, rtol=0, atol=WEIGHT_ATOL, msg=key)
        else:
            assert torch.equal(other, value), key  # num_batches_tracked
    from spanlib.model import build_model  # and the weights moved by far more than the tolerance

    torch.manual_seed(ddp_params["seed"])
    fresh = build_model(dict(ddp_params["model"], variant=VARIANT), 68, 13, 64).state_dict()
    moved = max(float((a["model_state"][k] - v).abs().max()) for k, v in fresh.items() if "running_" not in k
                and v.is_floating_point())
    assert moved > 10 * WEIGHT_ATOL


@pytest.mark.slow
def test_a_killed_rank_resumes_exactly_with_torchrun(ddp_params, two_rank_run, tmp_path):
    """Rank 1 is SIGKILLed on step 3 (rank 0's checkpoint of step 2 on disk); `torchrun
    --nproc-per-node 2 -m spanlib train --resume` then ends with the uninterrupted run's weights."""
    import yaml

    out = tmp_path / "m.pt"
    with pytest.raises(mp.ProcessExitedException):
        run_ranks(ddp_params, out, die_at=3)
    assert torch.load(out, weights_only=True)["iteration"] == 2
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(ddp_params))
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
               "-m", "spanlib", "train", "--params", str(params_path), "--variant", VARIANT,
               "--out", str(out), "--device", "cpu", "--resume"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("resumed from iteration 2 of 4") == 1  # rank 0 only
    a, b = torch.load(two_rank_run, weights_only=True), torch.load(out, weights_only=True)
    assert b["iteration"] == 4 and a["data_state"] == b["data_state"]
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert [s for s, _ in curve(out)] == [1, 2, 3, 4]  # no row of the killed step 3 repeated


def test_global_batch_must_divide_among_ranks(ddp_params):
    from spanlib.training import distributed
    from spanlib.training.train import build_setup

    ctx = distributed.DistContext(rank=0, world_size=3)
    with pytest.raises(ParamError, match="train.batch_size: 8 does not divide among 3 processes"):
        build_setup(ddp_params, VARIANT, torch.device("cpu"), progress=False, ctx=ctx)


def test_rank_slices_cover_the_global_batch():
    """The ranks' slices of a global batch, in rank order, are that batch (so rank batches are the
    single-process batch, and the data position is the same on every rank)."""
    from spanlib.training.distributed import DistContext, rank_slice

    batch = [9, 3, 7, 1, 0, 4, 8, 2]
    slices = [rank_slice(batch, DistContext(r, 4)) for r in range(4)]
    assert slices == [[9, 3], [7, 1], [0, 4], [8, 2]]


def test_compile_wraps_the_model_lazily(ddp_params):
    """train.compile: true compiles what the step calls, around the network itself, which the
    checkpoints save (no _orig_mod. keys); nothing compiles before a step runs, so this is quick."""
    from spanlib.training.distributed import DistContext
    from spanlib.config.schema import Config
    from spanlib.training.train import make_engine

    params = {**ddp_params, "train": {**ddp_params["train"], "compile": "yes"}}
    with pytest.raises(ParamError, match="train.compile"):
        Config.from_params(params)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert make_engine(model, DistContext(), torch.device("cpu"), False) is model
    engine = make_engine(model, DistContext(), torch.device("cpu"), True)
    assert engine is not model and engine._orig_mod is model
