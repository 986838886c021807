"""The training loop: paired batches, the SPAN objective, the staircase schedule, exact resume.

``train(params, variant, out)`` trains one variant and writes the checkpoint ``out`` (atomically,
every ``train.checkpoint_every`` iterations and at the end), dvclive metrics beside it and a
validation NME_io every ``train.val_every`` iterations.

Exact resume: everything that decides the next step is in the checkpoint (weights, BN statistics,
optimiser moments, iteration, torch RNG state, and the data position (epoch, batch) of the labeled
and unlabeled streams); items depend only on (seed, epoch, index) (``spanlib.data.dataset``), so
a run interrupted and resumed on CPU ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .provenance import code_version
from .decode import decode_landmarks
from .errors import ParamError
from .checkpoint import CHECKPOINT_FORMAT, make_checkpoint, read_checkpoint, write_checkpoint  # noqa: F401
from .losses import LossConfig, span_objective
from .model import build_model, variant_spec
from .params import apply_overrides, load_params

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")


def lr_at(iteration: int, total: int, base: float, milestones: Iterable[float], divisors: Iterable[float]) -> float:
    """The paper's staircase scaled to the run: base, divided by each divisor once the iteration
    reaches its fraction of ``total`` (paper: /5, /2, /2 at 10k, 40k, 100k of 200k)."""
    lr = float(base)
    for fraction, divisor in zip(milestones, divisors):
        if iteration >= math.floor(fraction * total):
            lr /= float(divisor)
    return lr


def check_train_params(params: dict) -> None:
    """Stop early, naming the parameter, before any data is read."""
    tp = params["train"]
    for key, low in (("iterations", 1), ("batch_size", 1), ("checkpoint_every", 1), ("val_every", 0),
                     ("num_workers", 0), ("val_faces", 1), ("threads", 0)):
        value = tp.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ParamError(f"train.{key}: expected an integer >= {low}, got {value!r}")
    lr = tp.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ParamError(f"train.lr: expected a number > 0, got {lr!r}")
    milestones, divisors = list(tp.get("lr_milestones", [])), list(tp.get("lr_divisors", []))
    if len(milestones) != len(divisors):
        raise ParamError(f"train.lr_milestones / train.lr_divisors: expected lists of equal length, "
                         f"got {len(milestones)} and {len(divisors)}")
    if any(not 0 <= m <= 1 for m in milestones) or milestones != sorted(milestones):
        raise ParamError(f"train.lr_milestones: expected increasing fractions in [0, 1], got {milestones}")
    if any(not d > 0 for d in divisors):
        raise ParamError(f"train.lr_divisors: expected numbers > 0, got {divisors}")
    if tp.get("optimizer") not in OPTIMIZERS:
        raise ParamError(f"train.optimizer: expected one of {', '.join(OPTIMIZERS)}, got {tp.get('optimizer')!r}")
    fraction = tp.get("val_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ParamError(f"train.val_fraction: expected a number in [0, 1), got {fraction!r}")
    ratio = tp.get("unlabeled_ratio", 0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0:
        raise ParamError(f"train.unlabeled_ratio: expected a number >= 0, got {ratio!r}")
    for key in ("sigma", "boundary_sigma"):
        value = params["targets"].get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParamError(f"targets.{key}: expected a number > 0, got {value!r}")
    radius = params["evaluate"].get("decode_radius")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ParamError(f"evaluate.decode_radius: expected an integer >= 0, got {radius!r}")


def auto_threads() -> int:
    """torch intra-op threads for ``train.threads: 0``: the cores not already busy (1-minute load
    average), at least 1. On a quiet 2-core machine that is 2; on cores shared with other jobs it
    is 1, because oversubscribed intra-op threads made a step 4-60x slower (README, model)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def make_optimizer(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    if name == "rmsprop":  # Newell et al.'s stacked-hourglass optimiser, with their 2.5e-4
        return torch.optim.RMSprop(parameters, lr=lr)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True)


class BatchStream:
    """Endless batches of a PairedFaceDataset in the epoch's shuffle order, from any position.

    ``epoch`` and ``position`` count consumed batches, so a checkpoint taken between two steps
    resumes at the next unseen batch whatever the loader had prefetched.
    """

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int, epoch: int = 0, position: int = 0):
        from .data.dataset import EpochShuffleSampler

        if batch_size > len(dataset):
            raise ParamError(f"train.batch_size: {batch_size} is larger than the {len(dataset)} faces")
        self.dataset, self.batch_size, self.seed, self.num_workers = dataset, batch_size, seed, num_workers
        self.sampler = EpochShuffleSampler(len(dataset), seed)
        self.epoch, self.position = epoch, position
        self.batches_per_epoch = len(dataset) // batch_size
        self._iter = None

    def _start(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)
        order = list(iter(self.sampler))
        b = self.batch_size
        batches = [order[i * b:(i + 1) * b] for i in range(self.position, self.batches_per_epoch)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            persistent_workers=False)
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
    """Everything built from params before the first step."""

    params: dict
    variant: str
    scheme: object
    model: torch.nn.Module
    loss_config: LossConfig
    labeled: BatchStream
    unlabeled: BatchStream | None
    val_dataset: object | None
    device: torch.device


def _target_kinds(spec) -> tuple[str, ...]:
    return ("heatmaps",) + (("boundaries",) if spec.boundaries else ()) + (("field",) if spec.bali else ())


def build_setup(params: dict, variant: str, device: torch.device, progress: bool = True) -> TrainSetup:
    from .data.dataset import EvalFaceDataset, PairedFaceDataset
    from .data.sources import read_source
    from .data.split import held_out_split
    from .schemes import get_scheme

    params = apply_overrides(params, [f"model.variant={variant}"])
    spec = variant_spec(variant)
    check_train_params(params)
    tp, dp = params["train"], params["data"]
    input_size = params["crop"]["input_size"]
    seed = int(params.get("seed", 0))
    samples = read_source(dp["source"], dp["root"], dp["train_split"])
    samples, held_out = held_out_split(samples, float(tp.get("val_fraction", 0.0) or 0.0),
                                       int(tp.get("val_seed", 0)))
    scheme = get_scheme(len(samples[0].landmarks))
    torch.manual_seed(seed)
    model = build_model(params["model"], scheme.num_points, len(scheme.boundaries), input_size)
    resolutions = model.stage_resolutions
    loss_config = LossConfig.from_params(params["loss"], params["targets"], input_size, resolutions[-1])
    if 2 * params["evaluate"]["decode_radius"] + 1 > resolutions[-1]:
        raise ParamError(f"evaluate.decode_radius: the window is larger than the {resolutions[-1]}x"
                         f"{resolutions[-1]} last-stage map")
    dataset = PairedFaceDataset(samples, scheme, input_size, resolutions, resolutions[-1], params,
                                train=True, labeled=True, seed=seed, targets=_target_kinds(spec),
                                progress=progress)
    workers = tp["num_workers"]
    labeled = BatchStream(dataset, tp["batch_size"], seed, workers)
    unlabeled = None
    n_unlabeled = int(round(tp["batch_size"] * tp.get("unlabeled_ratio", 0)))
    if spec.unlabeled and n_unlabeled > 0:
        if not dp.get("unlabeled_source") or not dp.get("unlabeled_root"):
            raise ParamError("data.unlabeled_source / data.unlabeled_root: semi_scpan needs unlabeled faces")
        faces = read_source(dp["unlabeled_source"], dp["unlabeled_root"])
        udata = PairedFaceDataset(faces, scheme, input_size, resolutions, resolutions[-1], params,
                                  train=True, labeled=False, seed=seed + 1, targets=("heatmaps",),
                                  progress=progress)
        unlabeled = BatchStream(udata, n_unlabeled, seed + 1, workers)
    val_dataset = None
    if tp["val_every"] > 0 and (held_out or dp.get("test_splits")):
        val_samples = (held_out or read_source(dp.get("test_source") or dp["source"],
                                               dp.get("test_root") or dp["root"],
                                               dp["test_splits"][0]))[: tp["val_faces"]]
        val_dataset = EvalFaceDataset(val_samples, input_size, params["crop"]["scale"], prefer="landmarks")
    return TrainSetup(params, variant, scheme, model.to(device), loss_config, labeled, unlabeled,
                      val_dataset, device)


def _cat_views(batch: dict, key: str):
    a, b = batch["a"][key], batch["b"][key]
    if isinstance(a, dict):
        return {r: torch.cat([a[r], b[r]]) for r in a}
    return torch.cat([a, b])


def next_batch(setup: TrainSetup) -> tuple[torch.Tensor, int, dict, dict]:
    """The next training batch on the device: ``(images, num_labeled, targets, pairs)`` as
    :func:`spanlib.losses.span_objective` takes them (images are ``cat([alpha views, beta views])``)."""
    batch = next(setup.labeled)
    ubatch = next(setup.unlabeled) if setup.unlabeled is not None else None
    dev = setup.device
    n = batch["a"]["image"].shape[0]
    parts_a, parts_b = [batch["a"]["image"]], [batch["b"]["image"]]
    thetas, flips = [batch["theta"]], [batch["flipped"]]
    if ubatch is not None:
        parts_a.append(ubatch["a"]["image"]); parts_b.append(ubatch["b"]["image"])
        thetas.append(ubatch["theta"]); flips.append(ubatch["flipped"])
    images = torch.cat(parts_a + parts_b).to(dev, non_blocking=True)
    spec = setup.model.spec
    targets = {"heatmaps": _cat_views(batch, "heatmaps"), "landmarks": _cat_views(batch, "landmarks")}
    if spec.boundaries:
        targets["boundaries"] = _cat_views(batch, "boundaries")
    if spec.bali:
        targets["field"] = _cat_views(batch, "field")
        targets["field_mask"] = _cat_views(batch, "field_mask")
    targets = {k: ({r: t.to(dev) for r, t in v.items()} if isinstance(v, dict) else v.to(dev))
               for k, v in targets.items()}
    pairs = {"theta": torch.cat(thetas).to(dev), "flipped": torch.cat(flips).to(dev),
             "point_perm": setup.scheme.flip_perm, "boundary_perm": setup.scheme.boundary_flip_perm}
    return images, n, targets, pairs


def forward(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """The model's outputs; bf16 autocast and channels_last on CUDA."""
    if images.device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(images)
    return model(images)


def train_step(setup: TrainSetup, optimizer, lr: float) -> dict:
    """One optimisation step on the next labeled (and unlabeled) batch; returns the loss terms."""
    images, n, targets, pairs = next_batch(setup)
    for group in optimizer.param_groups:
        group["lr"] = lr
    outputs = forward(setup.model, images)
    total, terms = span_objective(outputs, n, targets, pairs, setup.model.spec, setup.loss_config)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    terms["total"] = float(total.detach())
    return terms


@torch.no_grad()
def validation_nme(model, dataset, scheme, radius: int, device, batch_size: int = 32) -> float:
    """Mean NME_io (fraction) of ``model`` on ``dataset`` (EvalFaceDataset), landmarks mapped back to
    image pixels through each crop's inverse transform."""
    from .metrics import nme_per_face

    was_training = model.training
    model.eval()
    preds, gts = [], []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size):
            images = batch["image"].to(device)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    outputs = model(images)
            else:
                outputs = model(images)
            crop_pts = decode_landmarks(outputs, radius).double().cpu()
            m = batch["crop_matrix"].double()  # image -> crop: p_c = A p_i + t
            inv = torch.linalg.inv(m[:, :, :2])
            img_pts = (crop_pts - m[:, None, :, 2]) @ inv.transpose(1, 2)
            preds.append(img_pts.numpy())
            gts.append(batch["landmarks"].double().numpy())
    finally:
        model.train(was_training)
    return float(np.mean(nme_per_face(np.concatenate(preds), np.concatenate(gts), "io", scheme)))


def _live_dir(params: dict, out: Path) -> Path:
    configured = params["train"].get("live_dir")
    return Path(configured) if configured else out.with_name(out.stem + "_live")


def save_checkpoint(path: Path, setup: TrainSetup, optimizer, iteration: int, metrics: dict) -> None:
    """Write the training checkpoint (format: ``spanlib.checkpoint``) atomically."""
    data_state = {"labeled": setup.labeled.state(),
                  "unlabeled": setup.unlabeled.state() if setup.unlabeled else None}
    write_checkpoint(path, make_checkpoint(
        variant=setup.variant, scheme=setup.scheme.name, params=setup.params, model=setup.model,
        optimizer=optimizer, iteration=iteration, data_state=data_state, metrics=metrics,
        code_version=code_version()))


def train(params: dict | str | Path, variant: str, out: str | Path, resume: bool = False,
          overrides: Iterable[str] = (), device: str | None = None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train ``variant`` and write its checkpoint to ``out``; returns ``out``.

    ``params``: the params dict or a params.yaml path; ``overrides``: ``key=value`` strings as for
    ``--set``. ``resume=True`` continues from ``out`` (same params required). ``stop_after``
    ends the run early after that many iterations in total (a checkpoint is written), which is
    how the resume test interrupts a run.
    """
    out = Path(out)
    if not isinstance(params, dict):
        params = load_params(params)
    params = apply_overrides(params, overrides)
    params["train"].setdefault("val_faces", 100)
    params["train"].setdefault("threads", 0)
    variant_spec(variant)
    check_train_params(params)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tp = params["train"]
    threads_before = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(tp["threads"] if tp["threads"] > 0 else auto_threads())
    try:
        return _train(params, variant, out, resume, dev, progress, stop_after)
    finally:
        torch.set_num_threads(threads_before)


def _train(params: dict, variant: str, out: Path, resume: bool, dev: torch.device, progress: bool,
           stop_after: int | None) -> Path:
    tp = params["train"]
    ckpt = None
    if resume:  # read (weights only: nothing in the file runs) and check it before any data is read
        if not out.is_file():
            raise ParamError(f"--resume: no checkpoint at {out} to resume from")
        ckpt = read_checkpoint(out, "cpu", resume=True)
        if ckpt["variant"] != variant:
            raise ParamError(f"--resume: {out} is a {ckpt['variant']} checkpoint, not {variant}")
    setup = build_setup(params, variant, dev, progress=progress)
    if dev.type == "cuda":
        setup.model = setup.model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(tp["optimizer"], setup.model.parameters(), tp["lr"])
    start, metrics = 0, {}
    if ckpt is not None:
        if ckpt["params"] != setup.params:
            raise ParamError(f"--resume: {out} was trained with different params; resume needs the same")
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
    total = tp["iterations"]
    end = total if stop_after is None else min(total, stop_after)
    live = None
    if tp["val_every"] > 0 or progress:
        from dvclive import Live

        live = Live(str(_live_dir(params, out)), resume=resume, save_dvc_exp=False, dvcyaml=False)
    setup.model.train()
    bar = tqdm(range(start, end), initial=start, total=total, desc=f"train {variant}", unit="it",
               disable=not progress, dynamic_ncols=True)
    images_per_step = 2 * tp["batch_size"] + (2 * setup.unlabeled.batch_size if setup.unlabeled else 0)
    t0, done = time.perf_counter(), 0
    for iteration in bar:
        lr = lr_at(iteration, total, tp["lr"], tp["lr_milestones"], tp["lr_divisors"])
        terms = train_step(setup, optimizer, lr)
        done += 1
        step = iteration + 1
        bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
        metrics["train"] = terms
        metrics["images_per_s"] = images_per_step * done / (time.perf_counter() - t0)
        metrics["threads"] = torch.get_num_threads() if dev.type == "cpu" else None
        if live is not None:
            live.step = step
            for name, value in terms.items():
                live.log_metric(f"train/{name}", value)
            live.log_metric("train/lr", lr)
        val_due = tp["val_every"] > 0 and (step % tp["val_every"] == 0 or step == total)
        if setup.val_dataset is not None and val_due:
            nme = validation_nme(setup.model, setup.val_dataset, setup.scheme,
                                 params["evaluate"]["decode_radius"], dev)
            metrics["val_nme_io"] = nme
            metrics.setdefault("val_history", []).append([step, nme])
            if live is not None:
                live.log_metric("val/nme_io", nme)
            where = (f"held-out {tp['val_fraction']:.0%} of {params['data']['train_split']}"
                     if tp.get("val_fraction") else params["data"]["test_splits"][0])
            bar.write(f"iteration {step}: validation NME_io {100 * nme:.2f}% "
                      f"({len(setup.val_dataset)} faces of {where})")
        if step % tp["checkpoint_every"] == 0 or step == end:
            save_checkpoint(out, setup, optimizer, step, metrics)
    bar.close()
    if live is not None:
        live.end()
    if start >= end:
        save_checkpoint(out, setup, optimizer, start, metrics)
    return out


def apply_profile(params: dict, name) -> dict:
    """params with the overrides of ``profiles: {name: {dotted.key: value}}`` applied.

    ``name`` may list several profiles, applied in order: ``"real,shared300w"`` or a list (a recipe
    and a data location are separate profiles, so a recipe never overrides the user's data)."""
    import yaml

    names = [n.strip() for n in name.split(",")] if isinstance(name, str) else [str(n) for n in name]
    profiles = params.get("profiles") or {}
    for one in names:
        if one not in profiles:
            raise ParamError(f"--profile {one}: unknown profile; params.yaml defines {sorted(profiles) or 'none'}")
        items = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for key, value in profiles[one].items()]
        params = apply_overrides(params, items)
    return params
