"""The schema of params.yaml: one frozen dataclass per group, with types, ranges and defaults,
and the two ways params change: ``--set`` overrides and named recipes (``recipes:``), the steps of
``spanlib.config.params.resolve`` (file, then recipes, then overrides; the result checked).

``check_params`` validates a loaded params mapping as a whole (unknown groups and keys, with the
nearest valid name; types; ranges; the ``recipes:`` overrides); ``check_override`` does the same
for one ``--set`` key. ``Config.from_params`` builds the typed view, filling the defaults.

Modules take the typed groups (``DisturbConfig``, ``TrainConfig``, ...): the entry points
(``spanlib.training.train.train``, ``spanlib.evaluation.evaluate.evaluate``, the commands) build a ``Config`` once;
``as_group`` turns a plain mapping into its group where a caller hands one in (checked, defaults
filled), so every default lives here and nowhere else. The plain dict stays what files hold:
params.yaml, and a checkpoint's ``params`` (written as given, so resuming compares like with like).

Kept free of torch and the model code so that loading params stays fast; the choices that mirror
constants elsewhere (variants, optimizers, losses, norms, heatmap distributions) are checked against those
constants by tests/test_params.py.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Iterable, Mapping

import yaml

from spanlib.config.schemes import SOURCE_POINTS
from spanlib.config.variants import VARIANTS
from spanlib.utils.errors import ParamError

SOURCES = tuple(SOURCE_POINTS)
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
FIELD_LOSSES = ("l1", "smooth_l1", "l2", "js")
HEATMAP_LOSSES = ("js", "ce", "js_pixel")
COORD_LOSSES = ("distance", "squared_sum")
SCL_STAGES = ("all", "intermediate")
HEATMAP_DISTRIBUTIONS = ("gaussian", "ged", "student_t")
NORMS = ("io", "ip", "box", "diag")


def param(default: Any = MISSING, *, low: float | None = None, high: float | None = None,
          gt: float | None = None, lt: float | None = None, choices: tuple | None = None,
          length: int | None = None) -> Any:
    """A field: its default (none: required) and the range or choices each value (or each item of
    a list) must satisfy. Lists are stored as tuples in defaults (the dataclasses are frozen)."""
    meta = {k: v for k, v in dict(low=low, high=high, gt=gt, lt=lt, choices=choices, length=length).items()
            if v is not None}
    return field(default=default, metadata=meta)


_FROZEN = dict(frozen=True, kw_only=True)

# Seeds reach torch.manual_seed and numpy as 64-bit integers: a larger one was a ValueError traceback
# ("Overflow when unpacking long long") after the params were accepted (issue 26).
MAX_SEED = 2**63 - 1


@dataclass(**_FROZEN)
class DataConfig:
    source: str = param(choices=SOURCES)
    root: str = param()
    train_split: str = param()
    test_source: str = param(choices=SOURCES)
    test_root: str = param()
    test_splits: list[str] = param()
    unlabeled_source: str | None = param(None, choices=SOURCES)
    unlabeled_root: str | None = param(None)
    # more labelled faces for training only, each {source, root, split?} (validation stays on `source`)
    extra_train: list[dict] = param(())


@dataclass(**_FROZEN)
class SynthConfig:
    out_dir: str = param()
    seed: int = param(low=0, high=MAX_SEED)
    size: int = param(low=16)
    n_train: int = param(low=0)
    n_common: int = param(low=0)
    n_challenging: int = param(low=0)
    n_unlabeled: int = param(low=0)


@dataclass(**_FROZEN)
class CropConfig:
    input_size: int = param(low=8)
    scale: float = param(gt=0)
    context: float = param(1.5, low=1)
    # training crops of labeled faces: `dataset` = the dataset's face box when it ships one (as
    # evaluate.crop_box: detector), else the landmarks' box; `landmarks` = always the landmarks' box
    box: str = param("dataset", choices=("dataset", "landmarks"))
    # box jitter of the training crops (view a; docs/model.md "Crops that look like the detector's"):
    # the crop box's centre moves by N(0, sd) per axis (x, y), as fractions of the box's side, and
    # its side scales by exp(N(0, sd)), drawn anew each epoch and cut at 3 sd. 0: no jitter (no draw)
    jitter_shift: list[float] = param((0.0, 0.0), low=0, length=2)
    jitter_scale: float = param(0.0, low=0)


@dataclass(**_FROZEN)
class TargetsConfig:
    sigma: float = param(gt=0)
    boundary_sigma: float = param(gt=0)
    field_radius: int = param(low=0)
    distribution: str = param("gaussian", choices=HEATMAP_DISTRIBUTIONS)  # Table VII
    ged_shape: float = param(0.0, gt=-1)   # d: exponent 2 / (1 + d), d = 0 the Gaussian
    student_df: float = param(3.0, gt=0)
    boundary_xi: float = param(0.0)


@dataclass(**_FROZEN)
class DisturbConfig:
    # defaults: the fallbacks of spanlib.data.disturb (a group without the key draws no such disturbance)
    p_gaussian_noise: float = param(0.0, low=0, high=1)
    noise_std: float = param(10.0, low=0)
    p_salt_noise: float = param(0.0, low=0, high=1)
    salt_fraction: float = param(0.02, low=0, high=1)
    p_blur: float = param(0.0, low=0, high=1)
    blur_sizes: list[int] = param((64,), low=1)
    blur_reference_size: int = param(256, low=1)
    p_occlusion_box: float = param(0.0, low=0, high=1)
    p_occlusion_patch: float = param(0.0, low=0, high=1)
    occlusion_max_fraction: float = param(0.4, low=0, high=1)
    p_flip: float = param(0.0, low=0, high=1)
    p_rotate: float = param(0.0, low=0, high=1)
    max_rotation: float = param(0.0, low=0, high=180)
    p_scale: float = param(0.0, low=0, high=1)
    scale_range: list[float] = param((1.0, 1.0), gt=0, length=2)
    # translation (section III-B; no range in the paper): 0 draws nothing, runs repeat bit for bit
    p_translate: float = param(0.0, low=0, high=1)
    max_translation: float = param(0.1, low=0, high=1)  # fraction of the crop side, per axis
    # a new disturbance every epoch (ours) | drawn once per face as Algorithm 1's step 1
    redraw: str = param("epoch", choices=("epoch", "once"))
    # image px the labels sit right of their mirror-symmetric place: flips (and evaluate.flip_test)
    # mirror them to W - x + 2 offset; 0 = exact mirror (docs/model.md, "Flip symmetry")
    mirror_offset: float = param(0.0, low=-16, high=16)


# Upper bounds on the architecture. A model file or checkpoint declares its own sizes, and the network
# is built from them: without a bound a small hostile file asks for any amount of memory (issue 26).
# The paper's network (stages 4, width 256, depth 4, input 256) is well inside them; at the bounds the
# network has about 1.6e9 weights (6 GB). crop.input_size's bound is checked with the model
# (spanlib.model.network.check_model_params): at most MAX_INPUT_SIZE pixels a side.
MAX_STAGES, MAX_WIDTH, MAX_DEPTH, MAX_INPUT_SIZE = 16, 1024, 8, 1024


@dataclass(**_FROZEN)
class ModelConfig:
    variant: str = param(choices=VARIANTS)
    stages: int = param(low=1, high=MAX_STAGES)
    width: int = param(low=8, high=MAX_WIDTH)
    depth: int = param(low=1, high=MAX_DEPTH)


@dataclass(**_FROZEN)
class LossConfigParams:
    lambda1: float = param(low=0)
    lambda2: float = param(low=0)
    gamma: float = param(low=0)
    eta: float = param(low=0)
    field_loss: str = param("l1", choices=FIELD_LOSSES)
    coord_loss: str = param("distance", choices=COORD_LOSSES)
    scl_stages: str = param("all", choices=SCL_STAGES)
    heatmap_loss: str = param("js", choices=HEATMAP_LOSSES)
    # eq. 20's unlabeled pairs: averaged with the labeled under eta (ours) | summed, weight 1 (as printed)
    unlabeled_weighting: str = param("mean", choices=("mean", "sum"))


@dataclass(**_FROZEN)
class TrainConfig:
    iterations: int = param(low=1)
    batch_size: int = param(low=1)
    lr: float = param(gt=0)
    lr_milestones: list[float] = param(low=0, high=1)
    lr_divisors: list[float] = param(gt=0)
    optimizer: str = param(choices=OPTIMIZERS)
    checkpoint_every: int = param(low=1)
    val_every: int = param(low=0)
    num_workers: int = param(low=0)
    unlabeled_ratio: float = param(0.0, low=0)
    val_faces: int = param(100, low=1)
    val_fraction: float = param(0.0, low=0, lt=1)
    val_seed: int = param(0, low=0, high=MAX_SEED)
    threads: int = param(0, low=0)        # 0: auto (spanlib.training.train.auto_threads)
    live_dir: str | None = param(None)    # None: <checkpoint stem>_live beside the checkpoint
    compile: bool = param(False)          # torch.compile the model (GPU runs)
    init_from: str | None = param(None)   # a checkpoint or model file whose matching weights start the run (fine-tuning)
    teacher: str | None = param(None)     # a model whose last-stage heatmaps are mixed into the targets (distillation)
    teacher_weight: float = param(0.5, low=0, high=1)  # w of the mixture (1 - w) ground truth + w teacher
    # build the targets (heatmaps, boundaries, BALI field) on the training device from each batch's
    # landmarks (spanlib.data.targets_torch) instead of in the loader's workers: the same targets to
    # float32 rounding (~1e-6 of the peak), no ~1.3 MB per image of host->device copies, no CPU cost
    # per item (GPU runs, issue 25). false: numpy targets in the workers, results bit-identical to before
    device_targets: bool = param(False)
    # > 0: also keep an exponential moving average of the weights with this decay, written as
    # <stem>_ema.pt beside the checkpoint (spanlib.training.ema); 0: none
    ema_decay: float = param(0.0, low=0, lt=1)
    # also keep the checkpoint at the iteration where the learning rate first steps down, as
    # <stem>_branch.pt: every step before it ran at train.lr, as in any longer run, so a copy resumed
    # with a larger train.iterations continues as that longer run, bit for bit (docs/model.md)
    branch_checkpoint: bool = param(False)


@dataclass(**_FROZEN)
class EvaluateConfig:
    # the order is that of the evaluation JSON's "protocol"
    decode_radius: int = param(3, low=0)  # r: the (2r+1)^2 decoding window at test time (7x7)
    nme_norm: str = param("io", choices=NORMS)
    fr_threshold: float = param(0.1, gt=0)
    auc_threshold: float = param(0.1, gt=0)
    batch_size: int = param(16, low=1)
    crop_box: str = param("detector", choices=("detector", "landmarks"))
    num_workers: int = param(0, low=0)
    profile_seconds: float = param(2.0, gt=0)
    profile_batch: int = param(16, low=1)
    flip_test: bool = param(False)
    # the face boxes crops start from: ground_truth (the benchmark protocol: crop_box's rule) |
    # detector (end to end, as `spanlib predict`: the face detector's calibrated box; docs/evaluation.md)
    boxes: str = param("ground_truth", choices=("ground_truth", "detector"))
    detector: str = param("auto", choices=("auto", "dlib", "haar"))  # with boxes: detector
    refine: int = param(0, low=0, high=4)  # passes that re-crop on the model's own points (each costs one forward)
    # with flip_test and refine: all (every pass averages with its mirrored crop) | last (only the last
    # pass does; the earlier passes only place the next crop: one forward fewer per re-crop)
    flip_passes: str = param("all", choices=("all", "last"))
    # with refine: the input px of the passes that only place the next crop (all but the last), a
    # multiple of 4 * 2**model.depth; null: crop.input_size. 96 for 128: 0.56 of a forward for the
    # first pass, +0.02 NME_io end to end (docs/model.md, "A smaller placing pass")
    placing_size: int | None = param(None, low=8)


@dataclass(**_FROZEN)
class PipelineConfig:
    kernel: str = param()
    variants: list[str] = param(choices=VARIANTS)
    preview_faces: int = param(low=1)
    recipe: str | None = param(None)      # names in `recipes:`, comma-separated; checked against them
    seeds: list[int] = param((0,), low=0, high=MAX_SEED)  # one run per seed in every table row (spanlib.training.seeds)
    workers: int = param(1, low=1)        # training runs side by side
    portable: bool = param(True)          # dvc.yaml starts each notebook in portable mode (spanlib.utils.portable)


@dataclass(**_FROZEN)
class DistributionsConfig:
    variant: str = param(choices=VARIANTS)
    settings: list[dict] = param()        # each {distribution, ged_shape?, student_df?} (checked against `targets`)
    iterations: int = param(low=1)
    batch_size: int = param(low=1)
    test_faces: int = param(low=1)


@dataclass(**_FROZEN)
class SensitivityConfig:
    variant: str = param(choices=VARIANTS)
    iterations: int = param(low=1)
    batch_size: int = param(low=1)
    test_faces: int = param(low=1)
    settings: list[dict] = param()        # each a mapping of loss weights (checked against `loss`)


@dataclass(**_FROZEN)
class RealStudyConfig:
    recipe: str = param()                 # recipes applied to the params first (e.g. real,shared300w)
    variants: list[str] = param(choices=VARIANTS)
    seeds: list[int] = param(low=0, high=MAX_SEED)
    iterations: int = param(low=1)
    reference: str = param(choices=VARIANTS)
    workers: int = param(2, low=1)        # runs side by side, one torch thread each


@dataclass(**_FROZEN)
class KernelProfilingConfig:
    run: str = param(choices=("auto", "always", "never"))
    results_dir: str = param()


# group -> dataclass; "seed" is the one top-level scalar, "recipes" the named override sets.
GROUPS: dict[str, type] = {
    "data": DataConfig, "synth": SynthConfig, "crop": CropConfig, "targets": TargetsConfig,
    "disturb": DisturbConfig, "model": ModelConfig, "loss": LossConfigParams, "train": TrainConfig,
    "evaluate": EvaluateConfig, "pipeline": PipelineConfig, "distributions": DistributionsConfig,
    "sensitivity": SensitivityConfig, "kernel_profiling": KernelProfilingConfig, "real_study": RealStudyConfig,
}
TOP_LEVEL = ("seed", *GROUPS, "recipes")
# names that changed (issue 12: "profile" had five meanings), old -> new: a params file with an old
# name is told the new one; a checkpoint's params are renamed when read (``migrate``)
# old name -> new name of the keys `migrate` renames (distributions.settings[].profile -> distribution
# is per list item: `migrate` and `_check_across` handle it)
RENAMED = {"profiles": "recipes", "targets.profile": "targets.distribution", "pipeline.profile": "pipeline.recipe",
           "real_study.profile": "real_study.recipe"}
# what training, evaluation and the commands read without a fallback; the pipeline groups
# (synth, pipeline, distributions, sensitivity, kernel_profiling) only the notebooks need
REQUIRED_GROUPS = ("data", "crop", "targets", "disturb", "model", "loss", "train", "evaluate")
SEED_DEFAULT = 0


@dataclass(**_FROZEN)
class Config:
    """The typed params: ``Config.from_params(resolve(...))``."""

    seed: int
    data: DataConfig
    crop: CropConfig
    targets: TargetsConfig
    disturb: DisturbConfig
    model: ModelConfig
    loss: LossConfigParams
    train: TrainConfig
    evaluate: EvaluateConfig
    synth: SynthConfig | None = None
    pipeline: PipelineConfig | None = None
    distributions: DistributionsConfig | None = None
    sensitivity: SensitivityConfig | None = None
    kernel_profiling: KernelProfilingConfig | None = None
    real_study: RealStudyConfig | None = None
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: "Mapping | Config", origin: str = "params") -> "Config":
        if isinstance(params, Config):
            return params
        check_params(params, origin, complete=True)
        groups = {name: _build(GROUPS[name], params[name]) for name in GROUPS if name in params}
        return cls(seed=params.get("seed", SEED_DEFAULT), recipes=dict(params.get("recipes") or {}), **groups)


def _build(cls: type, values: Mapping) -> Any:
    def frozen(value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    return cls(**{k: frozen(v) for k, v in values.items()})


def as_group(name: str, value: Any, origin: str = "params") -> Any:
    """The typed group ``name`` (e.g. ``"disturb"`` -> DisturbConfig): ``value`` itself when it is
    one, else a mapping checked against the schema (required keys included) with the defaults filled."""
    cls = GROUPS[name]
    if isinstance(value, cls):
        return value
    _check_group(name, value, lambda _: origin, complete=True)
    return _build(cls, value)


def group_of(params: Any, name: str) -> Any:
    """Group ``name`` of ``params`` typed: from a Config, or from a params mapping (``as_group``)."""
    if isinstance(params, Config):
        group = getattr(params, name)
        if group is None:
            raise ParamError(f"params: group {name!r} is missing")
        return group
    if not isinstance(params, Mapping) or name not in params:
        raise ParamError(f"params: group {name!r} is missing")
    return as_group(name, params[name])


def to_mapping(group: Any) -> dict:
    """A typed group as the plain mapping params.yaml would hold (tuples back to lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(group).items()}


def migrate(params: Mapping) -> dict:
    """A copy of params written under older names (a checkpoint's) with the current names (RENAMED)."""
    out = copy.deepcopy(dict(params))
    if "profiles" in out and "recipes" not in out:
        out["recipes"] = out.pop("profiles")
    for old in ("targets.profile", "pipeline.profile", "real_study.profile"):
        group, key = old.split(".")
        node = out.get(group)
        if isinstance(node, dict) and key in node:
            node[RENAMED[old].split(".")[1]] = node.pop(key)
    for setting in (out.get("distributions") or {}).get("settings") or []:
        if isinstance(setting, dict) and "profile" in setting:
            setting["distribution"] = setting.pop("profile")
    for items in (out.get("recipes") or {}).values():
        if isinstance(items, dict):
            for old in [k for k in items if k in RENAMED]:
                items[RENAMED[old]] = items.pop(old)
    return out


# ---- YAML with bounded alias expansion --------------------------------------------------------------
# YAML aliases (&a / *a) let a few lines stand for a huge tree: nine levels of nine aliases are 9**9
# nodes, and walking, copying or printing them hangs or takes gigabytes (issue 26). PyYAML builds an
# alias as a shared object, so loading is cheap; what is bounded is the tree the aliases expand to,
# counted on the node graph in linear time before anything walks it. params.yaml has about 450.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


def check_yaml_node(node: yaml.Node, origin: str) -> int:
    """The number of nodes ``node`` stands for with every alias expanded; a ParamError naming
    ``origin`` when that is over MAX_YAML_NODES, nesting is deeper than MAX_YAML_DEPTH, or an
    alias refers to a node that contains it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node, depth: int) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ParamError(f"{origin}: a YAML alias refers to a node that contains it (line "
                             f"{n.start_mark.line + 1}); spanlib reads no recursive YAML")
        if depth > MAX_YAML_DEPTH:
            raise ParamError(f"{origin}: YAML nested deeper than {MAX_YAML_DEPTH} levels (line "
                             f"{n.start_mark.line + 1}); params are a few levels deep")
        active.add(key)
        if isinstance(n, yaml.MappingNode):
            children = [c for pair in n.value for c in pair]
        elif isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        else:
            children = []
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                raise ParamError(f"{origin}: YAML expands to more than {MAX_YAML_NODES} nodes through its aliases "
                                 f"(&anchor / *alias, line {n.start_mark.line + 1}); refused before reading it "
                                 f"(an alias bomb, or write the values out)")
        active.discard(key)
        sizes[key] = total
        return total

    return size(node, 0)


def compose_checked(loader: yaml.SafeLoader, origin: str) -> yaml.Node | None:
    """The loader's single document node, checked by :func:`check_yaml_node` (too deep for PyYAML's
    recursive composer is the same ParamError)."""
    try:
        node = loader.get_single_node()
    except RecursionError:
        raise ParamError(f"{origin}: YAML nested too deeply to read (over {MAX_YAML_DEPTH} levels)") from None
    if node is not None:
        check_yaml_node(node, origin)
    return node


def safe_load_bounded(text: str, origin: str) -> Any:
    """``yaml.safe_load(text)`` with alias expansion and nesting bounded (:func:`check_yaml_node`)."""
    loader = yaml.SafeLoader(text)
    try:
        node = compose_checked(loader, origin)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


# ---- changing params: --set overrides and named recipes ------------------------------------------

def apply_overrides(params: dict, overrides: Iterable[str] | Mapping[str, Any], origin: str = "--set") -> dict:
    """A step of ``spanlib.config.params.resolve``: a copy of ``params`` with ``overrides`` applied,
    either ``a.b=value`` strings (the value parsed as YAML, as ``--set`` gives them) or a mapping
    ``{dotted key: value}`` (a recipe, a notebook's parameters), in order.

    The key must be in the schema and the value fit it, so a typo stops with a message naming
    ``origin``, the key and the nearest valid key instead of being ignored. An optional key the file
    leaves out (e.g. ``train.compile``) may be set.
    """
    params = copy.deepcopy(params)
    items = overrides.items() if isinstance(overrides, Mapping) else (_parse_override(i, origin) for i in overrides)
    for key, value in items:
        key = str(key).strip()
        check_override(key, value, f"{origin} {key}")
        group, _, name = key.partition(".")
        if not name:
            params[group] = copy.deepcopy(value)
            continue
        node = params.setdefault(group, {})
        if not isinstance(node, dict):
            raise ParamError(f"{origin} {key}: {group!r} is not a group in these params")
        node[name] = copy.deepcopy(value)
    return params


def _parse_override(item: str, origin: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``, the value parsed as YAML."""
    if "=" not in item:
        raise ParamError(f"{origin} {item!r}: expected key=value, e.g. train.iterations=200")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        return key, safe_load_bounded(raw, f"{origin} {key}")
    except yaml.YAMLError as exc:
        raise ParamError(f"{origin} {key}: the value {raw!r} is not valid YAML ({exc})") from exc


def recipe_names(name: str | Iterable[str] | None) -> list[str]:
    """``"real,shared300w"`` or a list -> the recipe names, in the order they apply (None, "": none)."""
    if not name:
        return []
    return [n.strip() for n in name.split(",")] if isinstance(name, str) else [str(n) for n in name]


def apply_recipe(params: dict, name: str | Iterable[str]) -> dict:
    """A step of ``spanlib.config.params.resolve``: params with the overrides of the named recipes
    ``recipes: {name: {dotted.key: value}}`` applied, in order (``"real,shared300w"``: a recipe and a
    data location are separate entries, so a recipe never overrides the user's data). Each value is
    checked as a ``--set`` would be; the paper's configuration is the recipe ``paper`` (the one place
    it is written)."""
    recipes = params.get("recipes") or {}
    for one in recipe_names(name):
        if one not in recipes:
            raise ParamError(f"--recipe {one}: unknown recipe; params.yaml defines {sorted(recipes) or 'none'}"
                             f"{_suggest(one, list(recipes))}")
        params = apply_overrides(params, recipes[one], origin=f"recipes.{one}:")
    return params


# ---- look-ups ------------------------------------------------------------------------------------

def fields_of(group: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(GROUPS[group])}


def all_keys() -> list[str]:
    """Every valid dotted key: ``seed`` and ``group.key``."""
    return ["seed"] + [f"{g}.{k}" for g in GROUPS for k in fields_of(g)]


def default(key: str) -> Any:
    """The default of an optional ``group.key`` (a ParamError for required or unknown keys)."""
    if key == "seed":
        return SEED_DEFAULT
    f = _field(key, f"default of {key}")
    if f.default is MISSING:
        raise ParamError(f"{key}: a required parameter, it has no default")
    return list(f.default) if isinstance(f.default, tuple) else f.default


def _suggest(name: str, candidates: list[str]) -> str:
    if name in RENAMED:
        return f" (renamed to {RENAMED[name]!r})"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field(key: str, origin: str) -> dataclasses.Field:
    group, _, name = key.partition(".")
    if group not in GROUPS:
        raise ParamError(f"{origin}: unknown group {group!r}{_suggest(group, list(TOP_LEVEL))}; "
                         f"params.yaml has {', '.join(TOP_LEVEL)}")
    known = fields_of(group)
    if name not in known:
        raise ParamError(f"{origin}: unknown parameter {key!r}"
                         f"{_suggest(key, [f'{group}.{k}' for k in known] + all_keys())}")
    return known[name]


# ---- checks --------------------------------------------------------------------------------------

def check_params(params: Any, origin: str = "params", complete: bool = False,
                 lines: Mapping[str, int] | None = None) -> None:
    """Raise a ParamError naming ``origin`` (the file), the key, its line when known, and the
    nearest valid name, for anything the schema does not accept. ``complete``: also require every
    group of REQUIRED_GROUPS and every field without a default in each group present."""
    lines = lines or {}

    def where(key: str) -> str:
        return f"{origin} line {lines[key]}" if key in lines else origin

    if not isinstance(params, Mapping):
        raise ParamError(f"{origin}: expected a mapping of groups at the top level, got {type(params).__name__}")
    for group, values in params.items():
        if group not in TOP_LEVEL:
            raise ParamError(f"{where(group)}: unknown group {group!r}{_suggest(str(group), list(TOP_LEVEL))}; "
                             f"params.yaml has {', '.join(TOP_LEVEL)}")
        if group == "seed":
            _raise_if(where("seed"), "seed", values, int, {"low": 0, "high": MAX_SEED})
        elif group == "recipes":
            _check_recipes(values, where, origin)
        else:
            _check_group(group, values, where, complete)
    if complete:
        missing = [g for g in REQUIRED_GROUPS if g not in params]
        if missing:
            raise ParamError(f"{origin}: missing group{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(required; see the repository's params.yaml for every group)")
    _check_across(params, where)


def check_override(key: str, value: Any, origin: str) -> None:
    """One ``--set`` (or recipe) ``key=value``: the key must be in the schema, the value fit it."""
    if key == "seed":
        return _raise_if(origin, key, value, int, {"low": 0, "high": MAX_SEED})
    if key in GROUPS:  # a whole group replaced
        return _check_group(key, value, lambda _: origin, complete=False)
    f = _field(key, origin)
    _raise_if(origin, key, value, _hints(key.partition(".")[0])[f.name], f.metadata)


def _check_group(group: str, values: Any, where, complete: bool) -> None:
    if not isinstance(values, Mapping):
        raise ParamError(f"{where(group)}: group {group!r} must be a mapping of keys, got {values!r}")
    known = fields_of(group)
    hints = _hints(group)
    for key, value in values.items():
        dotted = f"{group}.{key}"
        if key not in known:
            raise ParamError(f"{where(dotted)}: unknown parameter {dotted!r}"
                             f"{_suggest(dotted, [f'{group}.{k}' for k in known])}")
        _raise_if(where(dotted), dotted, value, hints[key], known[key].metadata)
    if complete:
        missing = [k for k, f in known.items() if f.default is MISSING and k not in values]
        if missing:
            raise ParamError(f"{where(group)}: group {group!r} lacks {', '.join(missing)} (required)")
    _check_within(group, values, where)


def _check_within(group: str, values: Mapping, where) -> None:
    """Rules between two keys of one group, checked when both are present."""
    if group == "train" and isinstance(values.get("lr_milestones"), (list, tuple)) \
            and isinstance(values.get("lr_divisors"), (list, tuple)):
        milestones, divisors = list(values["lr_milestones"]), list(values["lr_divisors"])
        if len(milestones) != len(divisors):
            raise ParamError(f"{where('train.lr_divisors')}: train.lr_milestones / train.lr_divisors: expected "
                             f"lists of equal length, got {len(milestones)} and {len(divisors)}")
        if milestones != sorted(milestones):
            raise ParamError(f"{where('train.lr_milestones')}: train.lr_milestones: expected increasing "
                             f"fractions, got {milestones}")
    scale_range = values.get("scale_range") if group == "disturb" else None
    if isinstance(scale_range, (list, tuple)) and len(scale_range) == 2 and scale_range[0] > scale_range[1]:
        raise ParamError(f"{where('disturb.scale_range')}: disturb.scale_range: expected [low, high], "
                         f"got {list(scale_range)}")


def _check_recipes(recipes: Any, where, origin: str) -> None:
    if recipes is None:
        return
    if not isinstance(recipes, Mapping):
        raise ParamError(f"{where('recipes')}: expected named sets of overrides, got {recipes!r}")
    for name, items in recipes.items():
        if not isinstance(items, Mapping):
            raise ParamError(f"{where('recipes.' + str(name))}: recipe {name!r} must map dotted keys "
                             f"(e.g. train.iterations) to values")
        for key, value in items.items():
            check_override(str(key), value, f"{where('recipes.' + str(name) + '.' + str(key))} (recipe {name})")


def _check_across(params: Mapping, where) -> None:
    """Rules between groups, and on the items of list-valued keys."""
    for i, extra in enumerate((params.get("data") or {}).get("extra_train") or []):
        key = f"data.extra_train[{i}]"
        if not isinstance(extra, Mapping) or not {"source", "root"} <= set(extra) or set(extra) - {"source", "root", "split"}:
            raise ParamError(f"{where('data.extra_train')}: {key}: expected a mapping with keys source, root and "
                             f"optionally split, got {extra!r}")
        if extra["source"] not in SOURCES:
            raise ParamError(f"{where('data.extra_train')}: {key}.source: {extra['source']!r} is not one of "
                             f"{', '.join(SOURCES)}{_suggest(str(extra['source']), list(SOURCES))}")
    for i, setting in enumerate((params.get("distributions") or {}).get("settings") or []):
        if isinstance(setting, Mapping) and "profile" in setting and "distribution" not in setting:
            raise ParamError(f"{where('distributions.settings')}: distributions.settings[{i}]: 'profile' was renamed "
                             f"to 'distribution', got {setting!r}")
        if not isinstance(setting, Mapping) or "distribution" not in setting:
            raise ParamError(f"{where('distributions.settings')}: distributions.settings[{i}]: expected a mapping "
                             f"with 'distribution' (and ged_shape or student_df), got {setting!r}")
        for key, value in setting.items():
            check_override(f"targets.{key}", value, f"{where('distributions.settings')} (distributions.settings[{i}])")
    for i, setting in enumerate((params.get("sensitivity") or {}).get("settings") or []):
        if not isinstance(setting, Mapping):
            raise ParamError(f"{where('sensitivity.settings')}: sensitivity.settings[{i}]: expected a mapping "
                             f"of loss weights, got {setting!r}")
        for key, value in setting.items():
            check_override(f"loss.{key}", value, f"{where('sensitivity.settings')} (sensitivity.settings[{i}])")
    recipe = (params.get("pipeline") or {}).get("recipe")
    if isinstance(recipe, str) and "recipes" in params:
        defined = list(params.get("recipes") or {})
        for name in recipe_names(recipe):
            if name not in defined:
                raise ParamError(f"{where('pipeline.recipe')}: pipeline.recipe names {name!r}, not in "
                                 f"recipes ({', '.join(defined) or 'none'}){_suggest(name, defined)}")


def _hints(group: str) -> dict[str, Any]:
    return typing.get_type_hints(GROUPS[group])


def _raise_if(where: str, key: str, value: Any, hint: Any, meta: Mapping) -> None:
    problem = _problem(value, hint, meta)
    if problem:
        raise ParamError(f"{where}: {key}: expected {problem}, got {value!r}{_yaml_hint(value, hint)}")


def _problem(value: Any, hint: Any, meta: Mapping) -> str | None:
    """None when ``value`` fits the type ``hint`` and ``meta``'s range; else what was expected."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        problem = _problem(value, args[0], meta)
        return problem and f"{problem} or null"
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return f"a list of {_name(item)}"
        if "length" in meta and len(value) != meta["length"]:
            return f"a list of {meta['length']} {_name(item)}"
        for v in value:
            problem = _problem(v, item, {k: m for k, m in meta.items() if k != "length"})
            if problem:
                return f"a list of {problem.removeprefix('a ').removeprefix('an ')}"
        return None
    if not _is(value, hint):
        return _name(hint, meta)
    if "choices" in meta and value not in meta["choices"]:
        return f"one of {', '.join(map(str, meta['choices']))}"
    bad = (("low" in meta and value < meta["low"]) or ("high" in meta and value > meta["high"])
           or ("gt" in meta and not value > meta["gt"]) or ("lt" in meta and not value < meta["lt"]))
    return _name(hint, meta) if bad else None


def _is(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # .inf and .nan are YAML numbers, but no parameter means them (issue 26)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is dict:
        return isinstance(value, Mapping)
    return isinstance(value, hint)


def _name(hint: Any, meta: Mapping | None = None) -> str:
    base = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))
    meta = meta or {}
    if "choices" in meta:
        return f"one of {', '.join(map(str, meta['choices']))}"
    bounds = [f"{op} {meta[k]}" for k, op in (("low", ">="), ("gt", ">"), ("high", "<="), ("lt", "<")) if k in meta]
    return f"{base} {' and '.join(bounds)}" if bounds else base


def _yaml_hint(value: Any, hint: Any) -> str:
    """PyYAML reads YAML 1.1, where 1e-3 (no dot) is text, not a number: say so."""
    if isinstance(value, float) and not math.isfinite(value):
        return " (NaN and infinities are refused: no parameter means them)"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (a string: YAML 1.1 reads a number without a dot such as 1e-3 as text; write 1.0e-3)"
    return ""
