"""The training loop: paired batches, the SPAN objective, the staircase schedule, exact resume.

``train(params, variant, out)`` trains one variant and writes the checkpoint ``out`` (atomically,
every ``train.checkpoint_every`` iterations and at the end), dvclive metrics beside it and a
validation NME_io every ``train.val_every`` iterations.

Exact resume: everything that decides the next step is in the checkpoint (weights, BN statistics,
optimiser moments, iteration, torch RNG state, and the data position (epoch, batch) of the labeled
and unlabeled streams); items depend only on (seed, epoch, index) (``spanlib.data.dataset``), so
a run interrupted and resumed on CPU ends with the same weights as an uninterrupted one.

Extending a run: resuming with a larger ``train.iterations`` continues it; the learning-rate
staircase stays scaled to the iterations the run was started with (checkpoint ``schedule``), so
the extension runs at the staircase's last rate instead of jumping back up.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from spanlib.config import schema as config
from spanlib.config.params import resolve
from spanlib.config.schema import OPTIMIZERS, Config  # noqa: F401  (OPTIMIZERS: make_optimizer's names)
from spanlib.config.schemes import get_scheme
from spanlib.config.variants import variant_spec
from spanlib.data.crop import train_box_preference
from spanlib.data.dataset import EpochShuffleSampler, EvalFaceDataset, PairedFaceDataset, collate_pairs
from spanlib.data.sources import read_extra_train, read_source
from spanlib.data.targets_torch import build_targets as build_device_targets
from spanlib.data.split import held_out_split
from spanlib.evaluation.metrics import nme_per_face
from spanlib.inference.checkpoint import (CHECKPOINT_FORMAT, load_model, make_checkpoint, read_checkpoint,
                                          write_checkpoint)  # noqa: F401
from spanlib.inference.step import crop_points_to_image, predict_crops
from spanlib.model import build_model
from spanlib.model.losses import LossConfig, objective_terms, span_objective
from spanlib.training import distributed
from spanlib.training.distill import distil_targets, load_teacher
from spanlib.training.ema import averaged_info, ema_path, ema_state, make_ema
from spanlib.utils.devices import resolve_device  # noqa: F401  (also spanlib.training.train's API)
from spanlib.utils.errors import DataError, DivergedError, ParamError
from spanlib.utils.files import write_text
from spanlib.utils.provenance import code_version, write_machine_sidecar


def lr_at(iteration: int, total: int, base: float, milestones: Iterable[float], divisors: Iterable[float]) -> float:
    """The paper's staircase scaled to the run: base, divided by each divisor once the iteration
    reaches its fraction of ``total`` (paper: /5, /2, /2 at 10k, 40k, 100k of 200k)."""
    lr = float(base)
    for fraction, divisor in zip(milestones, divisors):
        if iteration >= math.floor(fraction * total):
            lr /= float(divisor)
    return lr


def first_lr_step(total: int, milestones: Iterable[float], divisors: Iterable[float]) -> int | None:
    """The first iteration whose learning rate is below ``base`` under ``lr_at`` (None: the rate never
    steps down). Every iteration before it runs at ``base`` in a run of ``total`` iterations and in
    any longer one, which is what lets a longer schedule continue such a run (``_resume_schedule``)."""
    steps = [math.floor(f * total) for f, d in zip(milestones, divisors) if float(d) != 1.0]
    return min(steps) if steps else None


def branch_path(out: Path) -> Path:
    """``<stem>_branch.pt`` beside the checkpoint: the run at ``first_lr_step`` (``train.branch_checkpoint``)."""
    return out.with_name(f"{out.stem}_branch.pt")


def auto_threads() -> int:
    """torch intra-op threads for ``train.threads: 0``: the cores not already busy (1-minute load
    average), at least 1. On a quiet 2-core machine that is 2; on cores shared with other jobs it
    is 1, because oversubscribed intra-op threads made a step 4-60x slower (README, model)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def make_optimizer(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    # Adam's fused kernel: the for-loop version takes sqrt(v) through torch.sqrt, which ATen sends
    # to MKL's vector maths, whose result depends on the CPU even under the portable pins; the fused
    # kernel's sqrt is the hardware's correctly rounded one (docs/reproducibility.md)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4, fused=True)
    if name == "rmsprop":  # Newell et al.'s stacked-hourglass optimiser, with their 2.5e-4
        return torch.optim.RMSprop(parameters, lr=lr)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True)


class BatchStream:
    """Endless batches of a PairedFaceDataset in the epoch's shuffle order, from any position.

    ``epoch`` and ``position`` count consumed global batches, so a checkpoint taken between two
    steps resumes at the next unseen batch whatever the loader had prefetched, on any number of
    ranks. ``batch_size`` is the global batch; under torchrun each rank loads its contiguous
    slice of every global batch (``spanlib.training.distributed``). Batches come through
    :func:`spanlib.data.dataset.collate_pairs`; ``pin_memory`` (CUDA) lets the copy to the device
    overlap the step.
    """

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int, epoch: int = 0, position: int = 0,
                 ctx: distributed.DistContext | None = None, pin_memory: bool = False):
        if batch_size > len(dataset):
            raise ParamError(f"train.batch_size: {batch_size} is larger than the {len(dataset)} faces")
        self.dataset, self.batch_size, self.seed, self.num_workers = dataset, batch_size, seed, num_workers
        self.ctx = ctx or distributed.DistContext()
        self.pin_memory = pin_memory
        self.sampler = EpochShuffleSampler(len(dataset), seed)
        self.epoch, self.position = epoch, position
        self.batches_per_epoch = len(dataset) // batch_size
        self._iter = None

    def _start(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)
        order = list(iter(self.sampler))
        b = self.batch_size
        batches = [distributed.rank_slice(order[i * b:(i + 1) * b], self.ctx)
                   for i in range(self.position, self.batches_per_epoch)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=collate_pairs, pin_memory=self.pin_memory, persistent_workers=False)
        self._iter = iter(loader)

    def __next__(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iter = self.epoch + 1, 0, None
        if self._iter is None:
            self._start()
        batch = next(self._iter)
        self.position += 1
        return batch

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}


@dataclass
class TrainSetup:
    """Everything built from params before the first step. ``model`` is the network itself
    (checkpoints, validation); ``engine`` is what the training step calls: ``model``, or its DDP
    wrapper under torchrun, compiled when ``train.compile`` is true."""

    params: dict          # as given (what the checkpoint stores)
    config: Config        # the same, typed, defaults filled
    variant: str
    scheme: object
    model: torch.nn.Module
    loss_config: LossConfig
    labeled: BatchStream
    unlabeled: BatchStream | None
    val_dataset: object | None
    device: torch.device
    ctx: distributed.DistContext = distributed.DistContext()
    engine: torch.nn.Module | None = None
    teacher: torch.nn.Module | None = None   # train.teacher: its heatmaps join the targets (distill.py)
    device_targets: tuple[str, ...] = ()     # train.device_targets: the kinds next_batch builds on the device


def _target_kinds(spec) -> tuple[str, ...]:
    return ("heatmaps",) + (("boundaries",) if spec.boundaries else ()) + (("field",) if spec.bali else ())


def build_setup(params: dict, variant: str, device: torch.device, progress: bool = True,
                ctx: distributed.DistContext | None = None) -> TrainSetup:
    ctx = ctx or distributed.DistContext()
    params = resolve(params, overrides=[f"model.variant={variant}"])
    spec = variant_spec(variant)
    cfg = Config.from_params(params)  # the whole params checked before any data is read
    tc, dc = cfg.train, cfg.data
    distributed.per_rank(tc.batch_size, ctx, "train.batch_size")
    input_size = cfg.crop.input_size
    seed = int(cfg.seed)
    samples = read_source(dc.source, dc.root, dc.train_split)
    samples, held_out = held_out_split(samples, float(tc.val_fraction), int(tc.val_seed))
    scheme = get_scheme(len(samples[0].landmarks))
    samples = samples + read_extra_train(list(dc.extra_train), scheme.num_points)
    torch.manual_seed(seed)
    model = build_model(cfg.model, scheme.num_points, len(scheme.boundaries), input_size)
    resolutions = model.stage_resolutions
    loss_config = LossConfig.from_params(cfg.loss, cfg.targets, input_size, resolutions[-1])
    if 2 * cfg.evaluate.decode_radius + 1 > resolutions[-1]:
        raise ParamError(f"evaluate.decode_radius: the window is larger than the {resolutions[-1]}x"
                         f"{resolutions[-1]} last-stage map")
    # train.device_targets: the workers deliver images and landmarks only; next_batch builds the targets
    kinds = _target_kinds(spec)
    device_kinds = kinds if tc.device_targets else ()
    dataset = PairedFaceDataset(samples, scheme, input_size, resolutions, resolutions[-1], cfg,
                                train=True, labeled=True, seed=seed, targets=() if device_kinds else kinds,
                                progress=progress)
    pin = device.type == "cuda"
    labeled = BatchStream(dataset, tc.batch_size, seed, tc.num_workers, ctx=ctx, pin_memory=pin)
    unlabeled = None
    n_unlabeled = int(round(tc.batch_size * tc.unlabeled_ratio))
    if spec.unlabeled and n_unlabeled > 0:
        if not dc.unlabeled_source or not dc.unlabeled_root:
            raise ParamError("data.unlabeled_source / data.unlabeled_root: semi_scpan needs unlabeled faces")
        distributed.per_rank(n_unlabeled, ctx, "train.batch_size * train.unlabeled_ratio (unlabeled pairs)")
        faces = read_source(dc.unlabeled_source, dc.unlabeled_root)
        udata = PairedFaceDataset(faces, scheme, input_size, resolutions, resolutions[-1], cfg,
                                  train=True, labeled=False, seed=seed + 1, targets=(),  # no targets: unlabeled
                                  progress=progress)
        unlabeled = BatchStream(udata, n_unlabeled, seed + 1, tc.num_workers, ctx=ctx, pin_memory=pin)
    val_dataset = None
    if tc.val_every > 0 and (held_out or dc.test_splits):
        val_samples = (held_out or read_source(dc.test_source or dc.source, dc.test_root or dc.root,
                                               dc.test_splits[0]))[: tc.val_faces]
        # the training crop's box rule (crop.box), so validation sees faces at the scale training does
        val_dataset = EvalFaceDataset(val_samples, input_size, cfg.crop.scale,
                                      prefer=train_box_preference(cfg.crop.box))
    teacher = None
    if tc.teacher:
        teacher = load_teacher(tc.teacher, num_points=scheme.num_points, crop_scale=cfg.crop.scale, device=device)
    return TrainSetup(params, cfg, variant, scheme, model.to(device), loss_config, labeled, unlabeled,
                      val_dataset, device, ctx, teacher=teacher, device_targets=device_kinds)


def next_batch(setup: TrainSetup) -> tuple[torch.Tensor, int, dict, dict]:
    """The next training batch on the device: ``(images, num_labeled, targets, pairs)`` as
    :func:`spanlib.model.losses.span_objective` takes them (images are ``cat([alpha views, beta views])``,
    labeled before unlabeled in each half). The views come concatenated from the loader's workers
    (``collate_pairs``); only the images of an unlabeled stream are joined here, on the device.
    With ``train.device_targets`` the views hold images and landmarks only, and the labeled views'
    targets are built here, on the device, from their landmarks (``spanlib.data.targets_torch``:
    the same keys and layout as the workers' targets; unlabeled views have none either way)."""
    batch = next(setup.labeled)
    ubatch = next(setup.unlabeled) if setup.unlabeled is not None else None
    dev = setup.device

    def to_dev(t: torch.Tensor) -> torch.Tensor:
        return t.to(dev, non_blocking=True)  # asynchronous from pinned memory on CUDA

    views = batch["views"]
    n = batch["theta"].shape[0]
    if ubatch is None:
        images = to_dev(views["image"])
        theta, flipped = to_dev(batch["theta"]), to_dev(batch["flipped"])
    else:
        uimages, u = ubatch["views"]["image"], ubatch["theta"].shape[0]
        images = torch.cat([to_dev(views["image"][:n]), to_dev(uimages[:u]),
                            to_dev(views["image"][n:]), to_dev(uimages[u:])])
        theta = torch.cat([to_dev(batch["theta"]), to_dev(ubatch["theta"])])
        flipped = torch.cat([to_dev(batch["flipped"]), to_dev(ubatch["flipped"])])
    spec = setup.model.spec
    keys = ("heatmaps", "landmarks") + (("boundaries",) if spec.boundaries else ()) + \
        (("field", "field_mask") if spec.bali else ())
    if setup.device_targets:
        ds = setup.labeled.dataset
        landmarks = to_dev(views["landmarks"])  # queued after the copy on the same stream: no sync
        built = build_device_targets(landmarks, setup.scheme, ds.crop_size, ds.resolutions, ds.field_resolution,
                                     setup.config.targets, kinds=setup.device_targets)
        built["landmarks"] = landmarks
        targets = {k: built[k] for k in keys}
    else:
        targets = {k: ({r: to_dev(t) for r, t in views[k].items()} if isinstance(views[k], dict) else to_dev(views[k]))
                   for k in keys}
    pairs = {"theta": theta, "flipped": flipped,
             "point_perm": setup.scheme.flip_perm, "boundary_perm": setup.scheme.boundary_flip_perm}
    return images, n, targets, pairs


def make_engine(model: torch.nn.Module, ctx: distributed.DistContext, device: torch.device,
                compile_model: bool = False) -> torch.nn.Module:
    """What the training step calls: ``model``, wrapped in DDP under torchrun, then compiled when
    ``train.compile`` (lazily: the first step compiles). Checkpoints keep saving ``model``."""
    engine = distributed.wrap(model, ctx, device)
    return torch.compile(engine) if compile_model else engine


def forward(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """The model's outputs; bf16 autocast and channels_last on CUDA."""
    if images.device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(images)
    return model(images)


def train_step(setup: TrainSetup, optimizer, lr: float) -> dict:
    """One optimisation step on the next labeled (and unlabeled) batch; returns the loss terms
    (under torchrun: the global batch's, averaged over the ranks)."""
    images, n, targets, pairs = next_batch(setup)
    if setup.teacher is not None and n > 0:
        targets = distil_targets(setup.teacher, setup.config.train.teacher_weight, images, n, targets)
    for group in optimizer.param_groups:
        group["lr"] = lr
    engine = setup.engine if setup.engine is not None else setup.model
    outputs = forward(engine, images)
    if setup.ctx.enabled:
        total, terms = _rank_objective(setup, outputs, n, targets, pairs)
    else:
        total, terms = span_objective(outputs, n, targets, pairs, setup.model.spec, setup.loss_config)
    optimizer.zero_grad(set_to_none=True)
    total.backward()  # DDP averages the rank gradients here
    optimizer.step()
    terms["total"] = float(total.detach())
    return distributed.mean_over_ranks(terms, setup.ctx, setup.device)


def _rank_objective(setup: TrainSetup, outputs: dict, n: int, targets: dict, pairs: dict):
    """This rank's share of the objective, such that the mean over the ranks (DDP's gradient
    average) is the single-process objective of the global batch. Every term is a mean over
    equally many items per rank, except the l1 / smooth_l1 / l2 field loss, a ratio
    sum / mask.sum() over the batch: it is rescaled by this rank's mask sum over the ranks' mean."""
    terms = objective_terms(outputs, n, targets, pairs, setup.model.spec, setup.loss_config)
    if "field" in terms and setup.loss_config.field_loss != "js":
        local = targets["field_mask"].float().sum().clamp_min(1.0).reshape(1).double()
        mean = distributed.sum_over_ranks(local, setup.ctx) / setup.ctx.world_size
        terms["field"] = terms["field"] * (local / mean).float().squeeze(0)
    total = sum(terms.values())
    return total, {name: float(value.detach()) for name, value in terms.items()}


@torch.no_grad()
def validation_nme(model, dataset, scheme, radius: int, device, batch_size: int = 32) -> float:
    """Mean NME_io (fraction) of ``model`` on ``dataset`` (EvalFaceDataset), landmarks mapped back to
    image pixels through each crop's inverse transform."""
    was_training = model.training
    model.eval()
    preds, gts = [], []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size):
            cuda = device.type == "cuda"  # bf16 autocast and channels_last as in training
            images = batch["image"].to(device)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                crop_pts = predict_crops(model, images, radius)[0]
            preds.append(crop_points_to_image(crop_pts, batch["crop_matrix"]).numpy())
            gts.append(batch["landmarks"].double().numpy())
    finally:
        model.train(was_training)
    return float(np.mean(nme_per_face(np.concatenate(preds), np.concatenate(gts), "io", scheme)))


# What may differ between a checkpoint's params and the params that resume it: the iteration
# count (extending a run), and settings that change how the run executes, not what it learns.
RESUME_MAY_DIFFER = ("train.iterations", "train.num_workers", "train.checkpoint_every", "train.val_every",
                     "train.branch_checkpoint",
                     "train.compile", "train.device_targets")


def differing_params(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params dicts. A key on one side only counts,
    unless the other side's value is its schema default (a checkpoint written before the key
    existed ran with that default). The top-level ``recipes`` are templates, not settings: a run
    learns from the groups they were resolved into, so editing a recipe in params.yaml does not
    stop a run from resuming (the groups it changes are compared)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(old) + [k for k in new if k not in old]:
            name = f"{prefix}{key}"
            if name == "recipes":
                continue
            if key not in old or key not in new:
                if not _is_schema_default(name, new[key] if key in new else old[key]):
                    found.append(name)
            else:
                found += differing_params(old[key], new[key], name + ".")
        return found
    return [] if old == new else [prefix.rstrip(".")]


def _is_schema_default(dotted: str, value) -> bool:
    try:
        return config.default(dotted) == value
    except ParamError:  # required, or not a group.key of the schema
        return False


def _lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return "(absent)"
        value = value[part]
    return value


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what a user needs to go on: the iteration reached and the
    last checkpoint written (``checkpoint_iteration``; None when none was written by this run)."""

    def __init__(self, out: Path, iteration: int, checkpoint_iteration: int | None, total: int, is_main: bool):
        super().__init__(f"interrupted at iteration {iteration}")
        self.out, self.iteration, self.total = out, iteration, total
        self.checkpoint_iteration, self.is_main = checkpoint_iteration, is_main

    def message(self, resume_command: str) -> str:
        head = f"interrupted at iteration {self.iteration} of {self.total}"
        if self.checkpoint_iteration is None:
            return (f"{head}; no checkpoint was written yet (train.checkpoint_every), so there is nothing to "
                    f"resume: run the command again without --resume")
        return (f"{head}; the last checkpoint {self.out} (iteration {self.checkpoint_iteration}) is intact. "
                f"Resume with: {resume_command}")


def _live_dir(train_config, out: Path) -> Path:
    return Path(train_config.live_dir) if train_config.live_dir else out.with_name(out.stem + "_live")


def truncate_live(live_dir: Path, step: int) -> int:
    """Drop the rows past ``step`` from dvclive's metric files (``plots/metrics/**.tsv``: columns
    timestamp, step, value), so a resumed run's curves continue from its checkpoint instead of
    zigzagging back over the killed run's last steps. Returns the number of rows removed."""
    removed = 0
    for path in sorted(Path(live_dir).glob("plots/metrics/**/*.tsv")):
        lines = path.read_text().splitlines(keepends=True)
        if not lines:
            continue
        header = lines[0].rstrip("\n").split("\t")
        if "step" not in header:
            continue
        column = header.index("step")
        kept = [lines[0]] + [row for row in lines[1:] if row.strip() and int(row.split("\t")[column]) <= step]
        if len(kept) != len(lines):
            removed += len(lines) - len(kept)

            write_text(path, "".join(kept))
    return removed


def diverged_message(what: str, step: int, out: Path, saved: int | None) -> str:
    """What a user needs when training diverges: the step, and which checkpoint is still good."""
    if saved is None:
        last = f"no checkpoint was written by this run ({out} is untouched)"
    else:
        last = f"the last good checkpoint is {out} (iteration {saved})"
    return (f"train: {what} at step {step}; training stopped before writing that step. {last}. Lower "
            f"train.lr, check the data, or resume from that checkpoint")


def non_finite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of the model's floating tensors (weights and BN statistics) holding a NaN or infinity."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: Path, setup: TrainSetup, optimizer, iteration: int, metrics: dict,
                    lr_total: int | None = None, ema=None) -> None:
    """Write the training checkpoint (format: ``spanlib.inference.checkpoint``) atomically; a model with
    non-finite weights is a DivergedError and the file at ``path`` stays as it was. With ``ema`` (the
    moving average, ``train.ema_decay``) its state goes in the checkpoint and the averaged model to
    ``<stem>_ema.pt`` beside it (``spanlib.training.ema``)."""
    bad = non_finite_tensors(setup.model)
    if bad:
        raise DivergedError(f"{path}: not written: {len(bad)} weight tensors are NaN or infinite at "
                            f"iteration {iteration} (first: {bad[0]})")
    data_state = {"labeled": setup.labeled.state(),
                  "unlabeled": setup.unlabeled.state() if setup.unlabeled else None}
    lr_total = setup.config.train.iterations if lr_total is None else lr_total
    common = dict(variant=setup.variant, scheme=setup.scheme.name, params=setup.params, optimizer=optimizer,
                  iteration=iteration, data_state=data_state, metrics=metrics, code_version=code_version(),
                  schedule={"lr_total": int(lr_total)})
    if ema is not None:  # the average first: the training checkpoint is what resume trusts
        write_checkpoint(ema_path(path), make_checkpoint(
            model=ema.module, averaged=averaged_info(ema, setup.config.train.ema_decay, path), **common))
    write_checkpoint(path, make_checkpoint(model=setup.model, ema_state=ema_state(ema) if ema is not None else None,
                                           **common))


def train(params: dict | str | Path, variant: str, out: str | Path, resume: bool = False,
          overrides: Iterable[str] = (), device: str | None = None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train ``variant`` and write its checkpoint to ``out``; returns ``out``.

    ``params``: the params dict or a params.yaml path; ``overrides``: ``key=value`` strings as for
    ``--set``. ``resume=True`` continues from ``out``: same params, except a larger
    ``train.iterations`` (extending the run) and the execution settings of ``RESUME_MAY_DIFFER``.
    ``stop_after`` ends the run early after that many iterations in total (a checkpoint is
    written), which is how the resume test interrupts a run. Under ``torchrun`` (RANK /
    WORLD_SIZE in the environment) this process is one rank of a data-parallel run
    (``spanlib.training.distributed``); rank 0 writes the checkpoint and the logs.
    """
    out = Path(out)
    params = resolve(params, overrides=overrides)
    variant_spec(variant)
    threads = Config.from_params(params).train.threads
    dev = resolve_device(device)
    threads_before = torch.get_num_threads()
    ctx, dev = distributed.setup(dev)
    if dev.type == "cpu":
        torch.set_num_threads(threads if threads > 0 else auto_threads())
    try:
        return _train(params, variant, out, resume, dev, progress, stop_after, ctx)
    finally:
        torch.set_num_threads(threads_before)
        distributed.teardown(ctx)


def init_weights(model: torch.nn.Module, source: str | Path) -> dict:
    """Start ``model`` from the weights of another run (``train.init_from``: a training checkpoint
    or a .safetensors model file): every tensor whose name and shape match is copied, the rest keep
    their initialisation (e.g. the boundary and SCPA heads when the source is an shn). Used for
    pretraining then fine-tuning (synthetic -> real faces; 300W-LP -> 300W, the paper's SCPAN*).
    Returns what was copied, with the source's SHA-256."""
    source = Path(source)
    if not source.is_file():
        raise ParamError(f"train.init_from: {source} not found (a checkpoint or .safetensors model file)")
    donor = load_model(source).state_dict()
    own = model.state_dict()
    matched = {k: v for k, v in donor.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ParamError(f"train.init_from: no weight of {source} fits this model (variant, width or depth differ)")
    model.load_state_dict(matched, strict=False)
    return {"path": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "copied": len(matched), "tensors": len(own),
            "skipped": sorted(k for k in own if k not in matched)[:50]}


def _read_resume(out: Path, variant: str) -> dict:
    """The checkpoint to resume from (weights only: nothing in the file runs), read and checked
    before any data is read; a damaged file is a DataError saying what to do."""
    if not out.is_file():
        raise ParamError(f"--resume: no checkpoint at {out} to resume from")
    try:
        ckpt = read_checkpoint(out, "cpu", resume=True)
    except DataError as exc:  # the reader's reason (naming the file) first, then what to do
        raise DataError(f"{exc}. --resume cannot continue from it: restore an intact copy of {out}, or move it "
                        f"away and train without --resume to start over (checkpoints are written atomically, so "
                        f"it was damaged or replaced afterwards)") from None
    if ckpt["variant"] != variant:
        raise ParamError(f"--resume: {out} is a {ckpt['variant']} checkpoint, not {variant}")
    if "averaged" in ckpt:
        raise ParamError(f"--resume: {out} holds the moving average of a run (train.ema_decay), not its "
                         f"training state: resume from {ckpt['averaged'].get('of', 'the training checkpoint')} "
                         f"beside it")
    return ckpt


def _resume_schedule(out: Path, ckpt: dict, params: dict, total: int) -> int:
    """Check that ``params`` may resume ``ckpt`` and return the iterations its learning-rate
    staircase is scaled to: those the run was started with, also when it is extended."""
    refused = [k for k in differing_params(ckpt["params"], params) if k not in RESUME_MAY_DIFFER]
    if refused:
        shown = "; ".join(f"{k}: {_lookup(ckpt['params'], k)!r} in the checkpoint, {_lookup(params, k)!r} now"
                          for k in refused[:6]) + ("; ..." if len(refused) > 6 else "")
        raise ParamError(f"--resume: {out} was trained with different {', '.join(refused)} ({shown}). Only "
                         f"train.iterations (to extend the run) and {', '.join(RESUME_MAY_DIFFER[1:])} may "
                         f"change on resume: set the checkpoint's values back, or start a new run without --resume")
    iteration = int(ckpt["iteration"])
    if total < iteration:
        raise ParamError(f"train.iterations: {total}, but {out} is already at iteration {iteration}; a resumed "
                         f"run can only be extended")
    schedule = ckpt.get("schedule") or {}
    lr_total = int(schedule.get("lr_total", ckpt["params"]["train"]["iterations"]))
    tc = ckpt["params"]["train"]
    before = [first_lr_step(n, tc["lr_milestones"], tc["lr_divisors"]) for n in (lr_total, total)]
    if total > lr_total and all(b is None or iteration <= b for b in before):
        # every step so far ran at train.lr, as the first steps of a `total`-iteration run do: the
        # staircase scaled to `total` continues it as that run, bit for bit
        return total
    return lr_total


def _init_from(setup: TrainSetup, source: str, main: bool) -> dict:
    """``train.init_from``: copy the matching weights of another run; the metrics entry it makes."""
    info = init_weights(setup.model, source)
    if main:
        print(f"initialised {info['copied']} of {info['tensors']} weight tensors from {source} "
              f"(sha256 {info['sha256'][:12]})", flush=True)
    return {"init_from": info}


def _restore(setup: TrainSetup, optimizer, ckpt: dict, out: Path, dev: torch.device,
             main: bool) -> tuple[int, dict, int]:
    """Resume from ``ckpt``: weights, optimizer, RNG and data positions; returns (start iteration,
    metrics so far, the iteration count the learning-rate staircase is scaled to)."""
    tc = setup.config.train
    total = tc.iterations
    lr_total = _resume_schedule(out, ckpt, setup.params, total)
    setup.model.load_state_dict(ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    start, metrics = int(ckpt["iteration"]), dict(ckpt.get("metrics", {}))
    torch.set_rng_state(ckpt["rng_state"]["torch"])
    if dev.type == "cuda" and ckpt["rng_state"].get("cuda") is not None:
        torch.cuda.set_rng_state_all(ckpt["rng_state"]["cuda"])
    data = ckpt["data_state"]
    setup.labeled.epoch, setup.labeled.position = data["labeled"]["epoch"], data["labeled"]["position"]
    if setup.unlabeled is not None and data.get("unlabeled"):
        setup.unlabeled.epoch = data["unlabeled"]["epoch"]
        setup.unlabeled.position = data["unlabeled"]["position"]
    if main:
        planned = int(ckpt["params"]["train"]["iterations"])
        note = ""
        if total != planned and lr_total == total:
            note = (f", extending the run to {total} iterations (the learning rate has not stepped down "
                    f"yet: the staircase is rescaled to {total} iterations, as if the run had started with them)")
        elif total != planned:
            lr = lr_at(start, lr_total, tc.lr, tc.lr_milestones, tc.lr_divisors)
            note = (f", extending the run to {total} iterations (the learning-rate staircase stays "
                    f"scaled to {lr_total} iterations: {lr:.3g} from here)")
        print(f"resumed from iteration {start} of {planned}{note}", flush=True)
    return start, metrics, lr_total


def _open_live(train_config, out: Path, resume: bool, start: int):
    """The dvclive log of the run (resumed: cut back to ``start``), or None without dvclive."""
    try:
        from dvclive import Live  # lazy: dvclive is optional (training logs nothing without it)
    except ImportError:  # an environment without the pins (a cluster's image): train, log nothing
        print("dvclive is not installed: training without the metrics log (pip install dvclive)")
        return None
    if resume:
        truncate_live(_live_dir(train_config, out), start)
    return Live(str(_live_dir(train_config, out)), resume=resume, save_dvc_exp=False, dvcyaml=False)


def _record_step(metrics: dict, live, step: int, terms: dict, lr: float, images_per_s: float,
                 dev: torch.device) -> dict:
    """One step's loss terms into ``metrics`` (saved with the checkpoint) and the live log; returns
    the speed, which goes beside the checkpoint (<stem>.machine.json), not in it: the checkpoint
    must be the same bytes on every machine (portable mode)."""
    metrics["train"] = terms
    if live is not None:
        live.step = step
        for name, value in terms.items():
            live.log_metric(f"train/{name}", value)
        live.log_metric("train/lr", lr)
    return {"images_per_s": images_per_s, "threads": torch.get_num_threads() if dev.type == "cpu" else None}


def _validate(setup: TrainSetup, metrics: dict, live, bar, step: int, dev: torch.device, ema=None) -> None:
    """Validation NME_io at ``step`` (and of the moving average ``ema``): into ``metrics``, the live
    log and a line under the bar."""
    tc = setup.config.train
    radius = setup.config.evaluate.decode_radius
    nme = validation_nme(setup.model, setup.val_dataset, setup.scheme, radius, dev)
    metrics["val_nme_io"] = nme
    metrics.setdefault("val_history", []).append([step, nme])
    if live is not None:
        live.log_metric("val/nme_io", nme)
    where = (f"held-out {tc.val_fraction:.0%} of {setup.config.data.train_split}"
             if tc.val_fraction else setup.config.data.test_splits[0])
    line = f"iteration {step}: validation NME_io {100 * nme:.2f}%"
    if ema is not None:
        # under fork_rng: a DataLoader draws its base seed from the global RNG, and the average
        # must not change the run it averages (the same weights as without it, bit for bit)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            nme_ema = validation_nme(ema.module, setup.val_dataset, setup.scheme, radius, dev)
        metrics["val_nme_io_ema"] = nme_ema
        metrics.setdefault("val_history_ema", []).append([step, nme_ema])
        if live is not None:
            live.log_metric("val/nme_io_ema", nme_ema)
        line += f", moving average {100 * nme_ema:.2f}%"
    bar.write(f"{line} ({len(setup.val_dataset)} faces of {where})")


def _train(params: dict, variant: str, out: Path, resume: bool, dev: torch.device, progress: bool,
           stop_after: int | None, ctx: distributed.DistContext) -> Path:
    """The run: set up (fresh, from ``init_from``, or resumed), then the loop of steps, each logged,
    validated and checkpointed when due."""
    main = ctx.is_main
    ckpt = _read_resume(out, variant) if resume else None
    setup = build_setup(params, variant, dev, progress=progress and main, ctx=ctx)
    tc = setup.config.train
    if ctx.enabled:
        setup.model = distributed.sync_batchnorm(setup.model, dev)
    if dev.type == "cuda":
        setup.model = setup.model.to(memory_format=torch.channels_last)
    total = tc.iterations
    metrics = _init_from(setup, tc.init_from, main) if ckpt is None and tc.init_from else {}
    optimizer = make_optimizer(tc.optimizer, setup.model.parameters(), tc.lr)
    start, lr_total = 0, total
    if ckpt is not None:
        start, metrics, lr_total = _restore(setup, optimizer, ckpt, out, dev, main)
    ema = make_ema(setup.model, tc.ema_decay)
    if ema is not None and ckpt is not None:  # same ema_decay as the checkpoint (_resume_schedule)
        ema.load_state_dict(ckpt["ema_state"])
    setup.engine = make_engine(setup.model, ctx, dev, tc.compile)
    end = total if stop_after is None else min(total, stop_after)
    live = _open_live(tc, out, resume, start) if main and (tc.val_every > 0 or progress) else None
    setup.model.train()
    bar = tqdm(range(start, end), initial=start, total=total, desc=f"train {variant}", unit="it",
               disable=not (progress and main), dynamic_ncols=True)
    images_per_step = 2 * tc.batch_size + (2 * setup.unlabeled.batch_size if setup.unlabeled else 0)
    t0, done = time.perf_counter(), 0
    saved = start if ckpt is not None else None  # the iteration of the intact checkpoint at ``out``
    branch = first_lr_step(lr_total, tc.lr_milestones, tc.lr_divisors) if tc.branch_checkpoint else None
    try:
        for iteration in bar:
            lr = lr_at(iteration, lr_total, tc.lr, tc.lr_milestones, tc.lr_divisors)
            terms = train_step(setup, optimizer, lr)
            if ema is not None:
                ema.update_parameters(setup.model)
            done += 1
            step = iteration + 1
            # terms["total"] is already a Python float (train_step synchronised): the check is free.
            # The same value on every rank (averaged), so all ranks stop together.
            if not math.isfinite(terms["total"]):
                raise DivergedError(diverged_message(f"the loss is {terms['total']} (terms: "
                                                     f"{ {k: v for k, v in terms.items() if k != 'total'} })",
                                                     step, out, saved))
            bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
            speed = _record_step(metrics, live, step, terms, lr, images_per_step * done / (time.perf_counter() - t0), dev)
            val_due = tc.val_every > 0 and (step % tc.val_every == 0 or step == total)
            if main and setup.val_dataset is not None and val_due:
                _validate(setup, metrics, live, bar, step, dev, ema)
            if step % tc.checkpoint_every == 0 or step == end:
                bad = non_finite_tensors(setup.model)  # a finite loss can still leave inf weights (lr .inf)
                if bad:
                    raise DivergedError(diverged_message(f"{len(bad)} weight tensors became NaN or infinite "
                                                         f"(first: {bad[0]})", step, out, saved))
                if main:
                    save_checkpoint(out, setup, optimizer, step, metrics, lr_total, ema)
                    write_machine_sidecar(out, iteration=step, device=str(dev), **speed)
                saved = step
            if main and step == branch:  # the last state a longer schedule shares (train.branch_checkpoint)
                save_checkpoint(branch_path(out), setup, optimizer, step, metrics, lr_total, ema)
    except KeyboardInterrupt:
        bar.close()
        raise TrainingInterrupted(out, start + done, saved, total, main) from None
    bar.close()
    if live is not None:
        live.end()
    if start >= end and main:
        save_checkpoint(out, setup, optimizer, start, metrics, lr_total, ema)
    return out
