"""Torch datasets (issue 2, section 8): paired (original, disturbed) training items with all targets
and D, and plain evaluation crops.

Speed: every face is decoded and cropped ONCE, at construction, to a canonical "context" crop
(``crop.context`` times the training crop's side, at the training crop's pixel scale), held in one
uint8 array that DataLoader workers share copy-on-write. View a is then a slice of it and view b a
single warp from it, so no image is decoded again in any epoch.

Determinism: item ``index`` of epoch ``epoch`` draws everything from
``np.random.default_rng([seed, epoch, index])``, and the shuffle order from
``default_rng([seed, epoch, SHUFFLE_STREAM])``, so batches repeat exactly with any number of
workers. Call ``set_epoch`` (or use ``iterate_batches``) between epochs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm import tqdm

from spanlib.config.schema import group_of
from spanlib.data.crop import (apply_affine, box_from_landmarks, crop_face, invert_affine, train_box_preference,
                               warp_image)
from spanlib.data.disturb import Warp, disturb
from spanlib.data.targets import build_targets
from spanlib.utils.errors import DataError, ParamError

SHUFFLE_STREAM = 7_919  # third seed word of the shuffle generator (items use the index there)
JITTER_STREAM = 104_729  # fourth seed word of the box jitter's generator (its own stream: the
# disturbance draws keep their place, so runs without jitter repeat bit for bit)
JITTER_CUT = 3.0  # jitter draws are cut at this many sd (a detector's box is never that far off)
TARGET_KINDS = ("heatmaps", "boundaries", "field")


def keep_freed_memory(limit_bytes: int = 64 << 20) -> bool:
    """Ask glibc to keep freed blocks up to ``limit_bytes`` for reuse instead of returning them to
    the system (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD via mallopt).

    Each item allocates a few MB of targets that the collate step frees again; by default glibc
    serves such blocks with fresh mmap()s and unmaps them on free, so every item pays ~1,000 page
    faults, which measured as about half of all the item time. Returns False where mallopt is not
    available (not glibc); the settings are inherited by forked DataLoader workers.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, int(limit_bytes))
                    and libc.mallopt(m_trim_threshold, int(limit_bytes)))
    except (OSError, AttributeError):
        return False


def face_box(sample, prefer: str = "landmarks") -> np.ndarray:
    """The box a face is cropped from: its landmarks' box or its detector box (``prefer`` says which
    comes first when both exist), else the whole image."""
    has_points = sample.landmarks is not None and np.isfinite(sample.landmarks).all(axis=1).any()
    has_box = sample.box is not None
    if prefer not in ("landmarks", "detector"):
        raise ParamError(f"box preference: expected 'landmarks' or 'detector', got {prefer!r}")
    if has_points and (prefer == "landmarks" or not has_box):
        return box_from_landmarks(sample.landmarks)
    if has_box:
        return np.asarray(sample.box, dtype=np.float32)
    width, height = sample.image_size()
    return np.array([0, 0, width, height], dtype=np.float32)


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 in [0, 1] (in numpy: torch's intra-op thread pool
    costs milliseconds per small op on a busy machine, numpy does it in microseconds)."""
    out = np.empty((3,) + image.shape[:2], dtype=np.float32)
    np.multiply(image.transpose(2, 0, 1), np.float32(1 / 255), out=out)
    return torch.from_numpy(out)


class PairedFaceDataset(Dataset):
    """Training pairs: view a (the crop) and view b (its disturbed copy), targets of both, and D.

    ``params``: a ``spanlib.config.schema.Config`` or a params mapping (its ``crop``, ``targets`` and
    ``disturb`` groups are used, checked by the schema).
    ``train=False`` gives b = a and D = identity. ``labeled=False`` ignores landmarks: views carry
    the image and NaN landmarks only. ``targets`` names the target kinds to build (a variant
    without boundaries or fields need not pay for them); the default builds all, ``()`` none (views
    carry the image and landmarks only: ``train.device_targets`` builds the targets of a whole batch
    on the device, ``spanlib.data.targets_torch``).
    """

    def __init__(self, samples: Sequence, scheme, crop_size: int, resolutions: Sequence[int],
                 field_resolution: int, params, train: bool = True, labeled: bool = True,
                 seed: int = 0, targets: Sequence[str] = TARGET_KINDS, progress: bool = True):
        if len(samples) == 0:
            raise DataError("PairedFaceDataset: no samples given")
        unknown = set(targets) - set(TARGET_KINDS)
        if unknown:
            raise ParamError(f"PairedFaceDataset targets: unknown kinds {sorted(unknown)}, "
                             f"expected a subset of {TARGET_KINDS}")
        self.scheme = scheme
        self.crop_size = int(crop_size)
        self.resolutions = sorted({int(r) for r in resolutions})
        self.field_resolution = int(field_resolution)
        crop = group_of(params, "crop")
        self.target_settings = group_of(params, "targets")
        self.disturb_settings = group_of(params, "disturb")
        self.train, self.labeled, self.seed = bool(train), bool(labeled), int(seed)
        self.target_kinds = tuple(targets)
        self.epoch = 0
        keep_freed_memory()
        self.margin = int(round(self.crop_size * (float(crop.context) - 1) / 2))
        self.crop_scale = float(crop.scale)
        self.jitter_shift = tuple(float(v) for v in crop.jitter_shift)
        self.jitter_scale = float(crop.jitter_scale)
        self._cache_faces(samples, float(crop.scale), progress, crop.box)

    def _cache_faces(self, samples: Sequence, scale: float, progress: bool, box_rule: str = "dataset") -> None:
        # labeled faces: the crop.box rule (default: the box evaluation crops from); unlabeled: any box
        prefer = train_box_preference(box_rule) if self.labeled else "detector"
        size, m = self.crop_size, self.margin
        big = size + 2 * m
        k = self.scheme.num_points
        self.images = np.zeros((len(samples), big, big, 3), dtype=np.uint8)
        self.points = np.full((len(samples), k, 2), np.nan, dtype=np.float32)
        self.pixel_scale = np.ones(len(samples), dtype=np.float64)  # view-a px per image px
        self.paths = [s.path for s in samples]
        for i, sample in enumerate(tqdm(samples, desc="caching faces", unit="face",
                                        disable=not progress, leave=False)):
            if self.labeled:
                if sample.landmarks is None:
                    raise DataError(f"{sample.path}: labeled dataset, but this face has no landmarks")
                if sample.landmarks.shape != (k, 2):
                    raise DataError(f"{sample.path}: expected ({k}, 2) landmarks for scheme "
                                    f"{self.scheme.name}, got {sample.landmarks.shape}")
            box = face_box(sample, prefer)
            # same centre and pixel scale as the training crop, ``big`` pixels wide
            crop, transform = crop_face(sample.image, box, big, scale * big / size)
            self.images[i] = crop
            self.pixel_scale[i] = transform.scale
            if self.labeled:
                self.points[i] = transform.to_crop(sample.landmarks) - m

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index``'s disturbance (plan and noise values).

        ``disturb.redraw: epoch`` (ours, the default): seeded [seed, epoch, index], a new view b every
        epoch. ``once`` (Algorithm 1, step 1: each disturbance is generated once, before the epoch
        loop): always the epoch-0 seed [seed, 0, index], so view b is the same in every epoch and
        equals the default's first-epoch view (the two readings differ from epoch 1 on only)."""
        epoch = self.epoch if self.disturb_settings.redraw == "epoch" else 0
        return np.random.default_rng([self.seed, epoch, int(index)])

    def jitter_matrix(self, index: int) -> np.ndarray | None:
        """(2, 3) context pixels -> view-a pixels of a jittered crop box, or None without jitter.

        The box a detector gives differs from the landmarks' box the training crop is cut around
        (``spanlib.inference.detect.box_residuals``: on 300-W, the calibrated HOG box's centre is off by sd
        0.09 / 0.05 of the box side in x / y, its side by sd 0.09 in log): the crop's centre moves
        by N(0, jitter_shift) box sides per axis and its side scales by exp(N(0, jitter_scale)),
        seeded [seed, epoch, index, JITTER_STREAM], so the network sees crops like the detector's."""
        if not self.train or (max(self.jitter_shift) <= 0 and self.jitter_scale <= 0):
            return None
        rng = np.random.default_rng([self.seed, self.epoch, int(index), JITTER_STREAM])
        z = np.clip(rng.standard_normal(3), -JITTER_CUT, JITTER_CUT)
        size, m = self.crop_size, self.margin
        box_side = size / self.crop_scale  # the box's side in view-a pixels
        dx, dy = z[:2] * np.asarray(self.jitter_shift) * box_side
        s = float(np.exp(z[2] * self.jitter_scale))  # crop side grows by s: the face shrinks by 1/s
        c = size / 2.0
        return np.array([[1 / s, 0.0, c - (m + c + dx) / s], [0.0, 1 / s, c - (m + c + dy) / s]])

    def _view(self, image: np.ndarray, points: np.ndarray | None) -> dict:
        view = {"image": to_tensor_image(image)}
        if points is None:
            view["landmarks"] = torch.full((self.scheme.num_points, 2), float("nan"))
            return view
        view["landmarks"] = torch.from_numpy(np.asarray(points, dtype=np.float32))
        if not self.target_kinds:  # targets=(): built later from the landmarks (train.device_targets)
            return view
        built = build_targets(points, self.scheme, self.crop_size, self.resolutions,
                              self.field_resolution, self.target_settings,
                              kinds=self.target_kinds)
        for key, value in built.items():
            view[key] = ({r: torch.from_numpy(v) for r, v in value.items()}
                         if isinstance(value, dict) else torch.from_numpy(value))
        return view

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        m, size = self.margin, self.crop_size
        context = self.images[index]
        image_a = context[m:m + size, m:m + size]
        points_a = self.points[index] if self.labeled else None
        shift = np.array([[1.0, 0.0, m], [0.0, 1.0, m]])  # crop-a points -> context points
        jitter = self.jitter_matrix(index)
        if jitter is not None:  # view a from a jittered box: one warp of the context crop
            image_a = warp_image(context, jitter, size)
            if points_a is not None:
                points_a = apply_affine(jitter, points_a + np.float32(m)).astype(np.float32)
            shift = invert_affine(jitter)
        if self.train:
            # disturb.mirror_offset is in image px; view a's px per image px include the jitter's zoom
            offset = self.disturb_settings.mirror_offset
            if offset:
                offset *= self.pixel_scale[index] * (1.0 if jitter is None else float(jitter[0, 0]))
            out = disturb(image_a, points_a, self.scheme, self.disturb_settings, self.rng(index),
                          context=(context, shift), mirror_offset=offset)
            image_b, points_b, D = out.image, out.landmarks, out.D
            view_a, view_b = self._view(image_a, points_a), self._view(image_b, points_b)
        else:  # no disturbance: view b is view a (built once)
            D = Warp.identity()
            view_a = self._view(image_a, points_a)
            view_b = view_a
        return {"a": view_a, "b": view_b,
                "theta": torch.from_numpy(np.asarray(D.theta, dtype=np.float32)),
                "flipped": bool(D.flipped), "labeled": self.labeled, "index": int(index)}


def collate_pairs(items: list[dict]) -> dict:
    """PairedFaceDataset items -> one batch whose two views are already concatenated, as the
    objective takes them: ``views[key]`` is (2n, ...) ordered [a_1..a_n, b_1..b_n] (per
    resolution for dict-valued targets); ``theta`` (n, 2, 3), ``flipped`` (n,), ``index`` (n,).

    Why here: as a ``collate_fn`` it runs in the DataLoader workers, so the (a, b) concatenation of
    the targets (110 ms of a 206 ms step on an H200, done in the training process before) is off
    the critical path. Values and order equal ``torch.cat([default_collate(a), default_collate(b)])``;
    ``default_collate`` stacks straight into shared memory inside a worker (no extra copy).
    """
    views = [item["a"] for item in items] + [item["b"] for item in items]
    stacked = {}
    for key, value in views[0].items():
        if isinstance(value, dict):
            stacked[key] = {r: default_collate([v[key][r] for v in views]) for r in value}
        else:
            stacked[key] = default_collate([v[key] for v in views])
    return {"views": stacked,
            "theta": default_collate([item["theta"] for item in items]),
            "flipped": torch.tensor([item["flipped"] for item in items], dtype=torch.bool),
            "index": torch.tensor([item["index"] for item in items], dtype=torch.int64),
            "labeled": bool(items[0]["labeled"])}


class EvalFaceDataset(Dataset):
    """Evaluation crops: {"image" (3, S, S), "landmarks" (K, 2) image px (NaN when unlabeled),
    "crop_matrix" (2, 3) float64 image -> crop, "box" (4,), "index"}.

    The crop comes from the detector box when the sample has one (``prefer="detector"``), else
    from the landmarks' box, or from ``boxes`` when given; images are decoded on access (each is
    read once per evaluation).
    """

    def __init__(self, samples: Sequence, crop_size: int, scale: float, prefer: str = "detector",
                 num_points: int | None = None, boxes: np.ndarray | None = None):
        if len(samples) == 0:
            raise DataError("EvalFaceDataset: no samples given")
        self.samples = list(samples)
        # boxes (N, 4): the crop boxes to use instead of face_box (a detector's calibrated boxes, or
        # the box of a first pass's points when re-cropping)
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(len(self.samples), 4)
        self.crop_size, self.scale, self.prefer = int(crop_size), float(scale), prefer
        labeled = [s.landmarks for s in self.samples if s.landmarks is not None]
        self.num_points = num_points or (len(labeled[0]) if labeled else 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        box = face_box(sample, self.prefer) if self.boxes is None else self.boxes[index]
        crop, transform = crop_face(sample.image, box, self.crop_size, self.scale)
        points = (np.full((self.num_points, 2), np.nan, np.float32) if sample.landmarks is None
                  else sample.landmarks.astype(np.float32))
        return {"image": to_tensor_image(crop), "landmarks": torch.from_numpy(points),
                "crop_matrix": torch.from_numpy(transform.matrix),
                "box": torch.from_numpy(np.asarray(box, dtype=np.float32)), "index": int(index)}


class EpochShuffleSampler(Sampler):
    """A permutation of range(n) drawn from ``default_rng([seed, epoch, SHUFFLE_STREAM])``."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), bool(shuffle), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        order = np.random.default_rng([self.seed, self.epoch, SHUFFLE_STREAM]).permutation(self.n)
        return iter(order.tolist())


def make_train_loader(samples: Sequence, scheme, params, resolutions: Sequence[int],
                      field_resolution: int, batch_size: int, num_workers: int = 0, seed: int = 0,
                      labeled: bool = True, train: bool = True, targets: Sequence[str] = TARGET_KINDS,
                      crop_size: int | None = None, progress: bool = True) -> DataLoader:
    """DataLoader of PairedFaceDataset batches, shuffled per epoch, last partial batch dropped.

    ``crop_size`` defaults to ``crop.input_size``. Iterate with ``iterate_batches``, which
    sets the epoch of the sampler and the dataset, so any number of workers gives the same batches.
    Workers are not persistent: each epoch forks fresh ones that see the new epoch.
    """
    size = int(crop_size or group_of(params, "crop").input_size)
    dataset = PairedFaceDataset(samples, scheme, size, resolutions, field_resolution, params,
                                train=train, labeled=labeled, seed=seed, targets=targets,
                                progress=progress)
    if batch_size > len(dataset):
        raise ParamError(f"train.batch_size: {batch_size} is larger than the {len(dataset)} faces")
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffleSampler(len(dataset), seed),
                      num_workers=num_workers, drop_last=True, persistent_workers=False,
                      pin_memory=False)


def iterate_batches(loader: DataLoader, start_epoch: int = 0) -> Iterator[tuple[int, dict]]:
    """Endless (epoch, batch) stream over ``loader``, setting the epoch before each pass."""
    epoch = start_epoch
    while True:
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch
        epoch += 1
