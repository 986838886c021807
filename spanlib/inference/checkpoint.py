"""Model files, and loading them without running any code they might carry.

Two formats:

- **Training checkpoint** (``spanlib train``, ``.pt``): a ``torch.save`` dict of tensors and plain
  data only (dicts, lists, tuples, strings, numbers, booleans, None): ``format:
  "spanlib-checkpoint"``, ``format_version: 1``, ``code_version``, ``variant``, ``scheme`` (name),
  ``params`` (the full params dict), ``model_state``, ``optimizer_state``, ``iteration``,
  ``rng_state``, ``data_state``, ``metrics``, and optionally ``schedule`` (``{"lr_total": N}``:
  the iterations the learning-rate staircase is scaled to, kept when a run is extended; absent
  in older files, where it is ``params.train.iterations``), ``ema_state`` (``train.ema_decay`` > 0:
  the moving average of the weights, for resume) and ``averaged`` (on ``<stem>_ema.pt``, whose
  ``model_state`` is that average: ``spanlib.training.ema``). It is read with ``torch.load(weights_only=True)``,
  whose unpickler rebuilds only those types: a file that needs any other Python object (a class, a
  function such as ``exec``) is refused with a ``DataError`` naming the file, before anything in it
  runs.
- **Sharing file** (``spanlib export``, ``.safetensors``): the model's tensors in the safetensors
  format (a JSON header and raw little-endian arrays, no pickle at all), with a JSON description
  under the header metadata key ``"spanlib"`` (see :func:`describe_checkpoint`). A copy of the
  description is written beside it as ``<name>.json`` for people; loading reads only the header.

``load_model(path)`` reads either (told apart by their first bytes, not their names);
``load_model()`` with no path loads the model bundled in ``spanlib/inference/weights`` after checking its
SHA-256 (``spanlib.inference.weights``).

Limits before allocation (issue 26): a file names its own architecture, so before any network is
built :func:`check_model_state` checks the declared sizes against spanlib's upper bounds
(``model.stages`` <= 16, ``model.width`` <= 1024, ``model.depth`` <= 8, ``crop.input_size`` <= 1024:
``spanlib.config.schema.MAX_*``), builds the network's skeleton on the ``meta`` device (no memory) and
compares every tensor's name, shape and kind (floating or integer) in the file with it, and refuses
NaN or infinite weights. ``load_model``, ``export`` (and ``--register``) and ``train.init_from``
all go through it. Only regular files are opened (a FIFO would block the reader forever).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import safetensors.torch

from spanlib._version import __version__
from spanlib.config.schema import apply_overrides, as_group, migrate
from spanlib.config.schemes import get_scheme
from spanlib.inference import weights
from spanlib.model import build_model
from spanlib.utils.devices import resolve_device
from spanlib.utils.errors import DataError, ParamError
from spanlib.utils.files import check_outputs, file_problem, save_torch, write_bytes, write_text

CHECKPOINT_FORMAT = "spanlib-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "variant", "scheme", "params", "model_state")
RESUME_KEYS = ("optimizer_state", "iteration", "rng_state", "data_state")

MODEL_FORMAT = "spanlib-model"
MODEL_FORMAT_VERSION = 1
METADATA_KEY = "spanlib"
MODEL_REQUIRED_KEYS = ("format", "format_version", "variant", "scheme", "params")

VAL_PROTOCOL = ("val_nme_io: mean NME_io (fraction of the outer-eye-corner distance) of the model "
                "during training, on the first train.val_faces faces of the held-out train.val_fraction "
                "of data.train_split, or else of data.test_splits[0]; crops on the ground-truth "
                "landmarks' box, decoded with r = evaluate.decode_radius")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- training checkpoints
def make_checkpoint(*, variant: str, scheme: str, params: dict, model: torch.nn.Module, optimizer,
                    iteration: int, data_state: dict, metrics: dict, code_version: str,
                    schedule: dict | None = None, ema_state: dict | None = None,
                    averaged: dict | None = None) -> dict:
    """The training checkpoint dict: everything an exact resume needs, as tensors and plain data.
    ``ema_state``: the moving average's state (resume); ``averaged``: set on the checkpoint whose
    ``model_state`` is that average (``spanlib.training.ema``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "code_version": code_version,
        "variant": variant,
        "scheme": scheme,
        "params": params,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict(),
        "iteration": int(iteration),
        "rng_state": {"torch": torch.get_rng_state(),
                      "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "data_state": data_state,
        "metrics": metrics,
        **({"schedule": schedule} if schedule is not None else {}),
        **({"ema_state": ema_state} if ema_state is not None else {}),
        **({"averaged": averaged} if averaged is not None else {}),
    }


def plain_data(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy scalars and arrays turned into Python numbers and tensors; a ParamError
    naming the key for anything else that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass that pickles as numpy
        return obj.item()
    if isinstance(obj, (torch.Tensor, str, bytes, bool, int, float, type(None))):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, dict):
        return type(obj)((k, plain_data(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain_data(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise ParamError(f"{where}: a {type(obj).__name__} cannot go in a checkpoint (only tensors, numbers, "
                     f"strings, lists and dicts load without running code)")


def write_checkpoint(path: str | Path, state: dict) -> None:
    """Write a training checkpoint atomically, holding only types a weights-only load accepts."""
    save_torch(plain_data(state), path)


def _weights_only_reason(exc: Exception, path: str | Path) -> str:
    """What the refused pickle wanted, in a few words: the function or class it names. torch's own
    message is not shown: it leads with "Re-running `torch.load` with `weights_only` set to
    `False` will likely succeed", advice that runs the file's code."""
    text = str(exc)
    match = re.search(r"unsupported global:? GLOBAL ([\w.]+)", text, re.I)
    names = [match.group(1)] if match else pickle_globals(path)
    if names:
        shown = ", ".join(map(repr, names[:3])) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"it needs the Python object {shown}, which unpickling would call"
    match = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|Check the documentation|$)", text, re.S)
    detail = " ".join((match.group(1) if match else type(exc).__name__).split())[:120]
    return f"it is not a pickle of tensors and plain data only ({detail})"


# what torch.save itself names in a checkpoint of tensors and plain data
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.bytearray",
                  "builtins.complex", "builtins.slice")
_PICKLE_BYTES = 64 * 2**20  # the pickle inside a checkpoint is small (tensor data lies beside it)


def pickle_globals(path: str | Path) -> list[str]:
    """The functions and classes a pickle (plain, or the ``data.pkl`` of a torch zip file) names,
    other than torch's own, read with ``pickletools`` (which parses opcodes and runs nothing);
    [] when it cannot be read."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                info = next((i for i in archive.infolist() if i.filename.endswith("data.pkl")), None)
                if info is None or info.file_size > _PICKLE_BYTES:
                    return []
                data = archive.read(info)
        else:
            with open(path, "rb") as handle:
                data = handle.read(_PICKLE_BYTES)
        names, strings = [], []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str) and ("UNICODE" in opcode.name or opcode.name.endswith("STRING")):
                strings.append(str(arg))
    except Exception:  # noqa: BLE001 - a pickle pickletools cannot follow: name nothing
        return []
    return list(dict.fromkeys(n for n in names if not n.startswith(_TORCH_GLOBALS)))


def load_plain(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: only tensors and plain data are rebuilt. A file
    that needs anything else, or is not a torch file, is a DataError naming it; nothing in it runs."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected a checkpoint file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4 ..." on foreign pickles
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path}: refused: {_weights_only_reason(exc, path)}; a pickle can run any code it names, so "
            f"nothing in it was run (load it unrestricted, with pickle or torch.load, only if you trust "
            f"who made it). spanlib reads only checkpoints of tensors and plain data (spanlib train) and "
            f".safetensors model files (spanlib export)") from None
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise DataError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu", resume: bool = False) -> dict:
    """The training checkpoint dict after checking its format, version and keys (DataError
    otherwise); ``resume=True`` also requires the optimiser, RNG and data states."""
    path = Path(path)
    if is_safetensors(path):
        raise DataError(f"{path}: a .safetensors model file holds weights only, not a training "
                        f"checkpoint (no optimiser, RNG or data state)")
    ckpt = load_plain(path, device)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a spanlib checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    keys = REQUIRED_KEYS + (RESUME_KEYS if resume else ())
    missing = [key for key in keys if key not in ckpt]
    if missing:
        raise DataError(f"{path}: checkpoint lacks keys {missing} (expected {list(keys)})")
    if ckpt["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise DataError(
            f"{path}: checkpoint format_version {ckpt['format_version']!r} was written by spanlib "
            f"{ckpt.get('code_version', '?')}; this spanlib reads format_version {CHECKPOINT_FORMAT_VERSION}"
        )
    if isinstance(ckpt["params"], dict):
        ckpt["params"] = migrate(ckpt["params"])  # params written under older names read as today's
    return ckpt


# ---------------------------------------------------------------- sharing files (.safetensors)
def is_safetensors(path: str | Path) -> bool:
    """True when the file starts as a safetensors file: an 8-byte little-endian header length
    that fits the file, then ``{``. Never opens anything but a regular file."""
    path = Path(path)
    if file_problem(path):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def describe_checkpoint(ckpt: dict, checkpoint_path: str | Path | None = None,
                        evaluations: list[dict] | None = None) -> dict:
    """The JSON description of a model file made from a training checkpoint.

    Keys: ``format``/``format_version`` (of the description), ``variant``, ``scheme``, ``params``
    (the full params; ``model`` and ``crop.input_size`` build the network), ``build`` (just those),
    ``code_version`` (that trained it) and ``exported_with``, ``training_data`` (params' data
    group), ``seed``, ``iteration``, ``source_checkpoint`` (name, sha256), ``metrics``
    (``training``: the checkpoint's own, with ``training_protocol``; ``evaluations``: summaries of
    ``spanlib evaluate`` JSON files of this checkpoint, each with its protocol).
    """
    params = ckpt["params"]
    data = params.get("data", {}) or {}
    source = None
    if checkpoint_path is not None:
        source = {"name": Path(checkpoint_path).name,
                  "sha256": sha256_bytes(Path(checkpoint_path).read_bytes())}
    training = {k: v for k, v in (ckpt.get("metrics") or {}).items()}
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "variant": ckpt["variant"],
        "scheme": ckpt["scheme"],
        "params": params,
        "build": {"model": {**params.get("model", {}), "variant": ckpt["variant"]},
                  "input_size": (params.get("crop") or {}).get("input_size")},
        "code_version": ckpt.get("code_version"),
        "exported_with": __version__,
        "training_data": {k: data.get(k) for k in ("source", "root", "train_split", "unlabeled_source",
                                                    "unlabeled_root", "extra_train") if k in data},
        "seed": params.get("seed"),
        "iteration": ckpt.get("iteration"),
        "source_checkpoint": source,
        "metrics": {"training": training, "training_protocol": VAL_PROTOCOL,
                    "evaluations": list(evaluations or [])},
    }


def evaluation_summary(metrics_path: str | Path, checkpoint_sha256: str | set | None = None) -> dict:
    """The parts of a ``spanlib evaluate`` JSON worth shipping: where, with which protocol, and
    NME / FR / AUC per subset (no per-face lists). DataError if it scored another checkpoint
    (``checkpoint_sha256``: the one, or a set of those that carry the same weights)."""
    metrics_path = Path(metrics_path)
    problem = file_problem(metrics_path)  # a FIFO would block read_text forever
    if problem:
        raise DataError(f"{metrics_path}: {problem} (expected a spanlib evaluate metrics JSON)")
    try:
        result = json.loads(metrics_path.read_text())
        prov = result["provenance"]
        subsets = result["subsets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{metrics_path}: not a spanlib evaluate metrics JSON ({type(exc).__name__}: {exc})") from None
    allowed = {checkpoint_sha256} if isinstance(checkpoint_sha256, str) else set(checkpoint_sha256 or ()) - {None}
    if allowed and prov.get("checkpoint_sha256") not in allowed | {None}:
        raise DataError(f"{metrics_path}: these metrics scored checkpoint sha256 {prov.get('checkpoint_sha256')}, "
                        f"not the exported one ({' or '.join(sorted(allowed))})")
    return {
        "file": metrics_path.name,
        "source": prov.get("source"), "root": prov.get("root"), "split": prov.get("split"),
        "checkpoint_sha256": prov.get("checkpoint_sha256"), "code_version": prov.get("code_version"),
        "nme_norms": prov.get("nme_norms"), "protocol": prov.get("protocol"),
        "subsets": {name: {k: s.get(k) for k in ("n", "nme", "fr", "auc", "norm") if k in s}
                    for name, s in subsets.items()},
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def export_safetensors(checkpoint: str | Path, out: str | Path, metrics: list[str | Path] = (),
                       write_json_copy: bool = True, inference_overrides: list[str] = ()) -> dict:
    """Turn a training checkpoint into a sharing file ``out`` (.safetensors, atomically) and,
    unless ``write_json_copy`` is False, ``out`` with suffix ``.json`` beside it. ``checkpoint`` may
    also be a model file: the same weights and history with new ``inference_overrides`` (added to
    its ``exported_overrides``) and more evaluations. ``metrics``:
    ``spanlib evaluate`` JSON files of this checkpoint to include. The written file is read back
    and its tensors compared with the checkpoint's. Returns the description, plus ``sha256``.

    Refused before anything is written: an ``out`` (or its ``.json`` copy) that is the checkpoint
    or a metrics file, and a checkpoint that fails :func:`check_model_state` (sizes past the bounds,
    tensors that do not fit, NaN weights). The same checkpoint gives the same bytes in any process
    (:func:`canonical_safetensors`). ``inference_overrides``: ``evaluate.KEY=VALUE`` settings that
    the model file carries as its own inference defaults (e.g. ``evaluate.refine=1``, the re-crop
    passes of ``spanlib predict``), recorded under ``exported_overrides``; training keys are refused
    (they describe how the weights were made)."""
    checkpoint, out = Path(checkpoint), Path(out)
    outputs = {"--out": out, **({"the .json copy beside --out": out.with_suffix(".json")} if write_json_copy else {})}
    check_outputs(outputs, {"the checkpoint": checkpoint,
                            **{f"--metrics file {i + 1}": Path(m) for i, m in enumerate(metrics)}})
    if is_safetensors(checkpoint):
        state, description = _model_file_with_overrides(checkpoint, inference_overrides)
        # metrics of the training checkpoint or of this model file: the same weights
        shas = {(description.get("source_checkpoint") or {}).get("sha256"), sha256_bytes(checkpoint.read_bytes())}
        description["metrics"]["evaluations"] += [evaluation_summary(m, shas) for m in metrics]
    else:
        ckpt = read_checkpoint(checkpoint)
        ckpt["params"] = check_model_state(checkpoint, ckpt["variant"], ckpt["scheme"], ckpt["params"],
                                           ckpt["model_state"], "checkpoint")
        ckpt["params"] = with_inference_overrides(ckpt["params"], inference_overrides)
        description = describe_checkpoint(ckpt, checkpoint)
        if inference_overrides:
            description["exported_overrides"] = list(inference_overrides)
        ckpt_sha = description["source_checkpoint"]["sha256"]
        description["metrics"]["evaluations"] = [evaluation_summary(m, ckpt_sha) for m in metrics]
        state = ckpt["model_state"]
    text = json.dumps(description, sort_keys=True, default=_json_default)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
    data = canonical_safetensors(safetensors.torch.save(state, metadata={"format": MODEL_FORMAT, METADATA_KEY: text}))
    back, _ = read_model_file(out, data)
    for key, value in state.items():
        if not torch.equal(back[key], value):
            raise DataError(f"{out}: tensor {key} does not read back as written")
    write_bytes(out, data)
    if write_json_copy:
        write_text(out.with_suffix(".json"), json.dumps(json.loads(text), indent=2) + "\n")
    return {**description, "sha256": sha256_bytes(data)}


def _model_file_with_overrides(path: Path, overrides: list[str]) -> tuple[dict, dict]:
    """(tensors, description) of model file ``path`` with new inference defaults: the weights and
    their history (params other than ``evaluate``, source checkpoint, evaluations) stay; the
    overrides join ``exported_overrides``."""
    state, description = read_model_file(path)
    params = check_model_state(path, description["variant"], description["scheme"], description["params"],
                               state, "model file")
    description["params"] = with_inference_overrides(params, overrides)
    description["exported_overrides"] = list(description.get("exported_overrides") or []) + list(overrides)
    description["exported_with"] = __version__
    description.setdefault("metrics", {}).setdefault("evaluations", [])
    return state, description


def with_inference_overrides(params: dict, overrides: list[str]) -> dict:
    """``params`` with ``evaluate.KEY=VALUE`` overrides applied and the evaluate group checked by
    the schema; any other group is a ParamError (a model file's training params are its history)."""
    if not overrides:
        return params
    for item in overrides:
        if not str(item).strip().startswith("evaluate."):
            raise ParamError(f"export --set {item!r}: only evaluate.* (inference settings such as "
                             f"evaluate.refine) can change at export; training params describe the weights")
    out = apply_overrides(params, overrides, origin="export --set")
    as_group("evaluate", out.get("evaluate") or {}, "export --set")
    return out


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header rewritten with sorted keys. The safetensors
    library writes the metadata from a hash map whose order changes from one process to the next, so
    the same weights gave different bytes (and hashes, and DVC cache entries); the tensors' bytes
    and offsets are unchanged. The header is padded with spaces to a multiple of 8 bytes, as the
    format asks."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def read_model_file(path: str | Path, data: bytes | None = None) -> tuple[dict, dict]:
    """(tensors, description) of a .safetensors model file (``data``: its bytes, already read).
    Only the JSON header and the raw arrays are parsed; DataError for anything else."""
    path = Path(path)
    if data is None:
        problem = file_problem(path)
        if problem:
            raise DataError(f"{path}: {problem} (expected a .safetensors model file)")
        data = path.read_bytes()
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if n <= 0 or n > len(data) - 8 or data[8:9] != b"{":
        raise DataError(f"{path}: not a safetensors file (no valid header)")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise DataError(f"{path}: safetensors header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: safetensors header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get(METADATA_KEY, ""), str):
        raise DataError(f"{path}: safetensors header metadata must map names to strings (the spanlib "
                        f"description is a JSON string under {METADATA_KEY!r})")
    if METADATA_KEY not in meta:
        raise DataError(f"{path}: a safetensors file without a spanlib description (header metadata "
                        f"key {METADATA_KEY!r}); export models with `spanlib export`")
    try:
        description = json.loads(meta[METADATA_KEY])
    except ValueError as exc:
        raise DataError(f"{path}: the spanlib description in the header is not JSON ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != MODEL_FORMAT:
        raise DataError(f"{path}: not a spanlib model file (expected format {MODEL_FORMAT!r})")
    missing = [k for k in MODEL_REQUIRED_KEYS if k not in description]
    if missing:
        raise DataError(f"{path}: model description lacks keys {missing} (expected {list(MODEL_REQUIRED_KEYS)})")
    if description["format_version"] != MODEL_FORMAT_VERSION:
        raise DataError(f"{path}: model format_version {description['format_version']!r} was written by "
                        f"spanlib {description.get('exported_with', '?')}; this spanlib reads "
                        f"format_version {MODEL_FORMAT_VERSION}")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # truncated data section, bad offsets
        raise DataError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    return tensors, description


# ---------------------------------------------------------------- building the model
def check_model_state(path, variant: Any, scheme_name: Any, params: Any, state: Any,
                      what: str = "checkpoint") -> dict:
    """Check a file's declared network against its tensors before anything real is built; returns
    its params (migrated). DataError naming ``path`` for: params that are not a dict or lack
    ``model`` / ``crop``; sizes past spanlib's bounds (``spanlib.config.schema.MAX_*``); a tensor that is
    missing, unexpected, of another shape or kind than the network those params build (built on the
    ``meta`` device: no memory); a NaN or infinite value in any floating tensor."""
    if not isinstance(params, dict):
        raise DataError(f"{path}: {what} params are {type(params).__name__}, not a dict (expected the "
                        f"params the model was trained with)")
    params = migrate(params)
    for key in ("model", "crop"):
        if not isinstance(params.get(key), dict):
            raise DataError(f"{path}: {what} params lack the {key!r} group")
    if not isinstance(variant, str) or not isinstance(scheme_name, str):
        raise DataError(f"{path}: {what} variant and scheme must be names, got {variant!r} and {scheme_name!r}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: {what} weights are not a dict of tensors")
    input_size = params["crop"].get("input_size")
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise DataError(f"{path}: {what} params crop.input_size: expected an integer, got {input_size!r}")
    try:
        scheme = get_scheme(scheme_name)
        with torch.device("meta"):  # shapes only: a hostile size cannot allocate anything here
            skeleton = build_model({**params["model"], "variant": variant}, scheme.num_points,
                                   scheme.num_boundaries, input_size)
    except ParamError as exc:
        raise DataError(f"{path}: {what} declares a network spanlib will not build: {exc}") from None
    expected = skeleton.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise DataError(
            f"{path}: {what} weights do not fit variant {variant!r} with params.model {params['model']}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, want in expected.items():
        have = state[key]
        if tuple(have.shape) != tuple(want.shape) or have.is_floating_point() != want.is_floating_point() \
                or have.is_complex():
            raise DataError(f"{path}: {what} tensor {key}: {have.dtype} of shape {list(have.shape)}, but "
                            f"params.model {params['model']} builds {want.dtype} of shape {list(want.shape)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DataError(f"{path}: {what} holds NaN or infinite weights in {len(bad)} of {len(state)} tensors "
                        f"(first: {bad[0]}); the training run diverged: use an earlier checkpoint")
    return params


def _build(path, variant: str, scheme_name: str, params: dict, state: dict, device, what: str):
    params = check_model_state(path, variant, scheme_name, params, state, what)
    scheme = get_scheme(scheme_name)
    model_params = {**params["model"], "variant": variant}
    model = build_model(model_params, scheme.num_points, scheme.num_boundaries, int(params["crop"]["input_size"]))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DataError(
            f"{path}: model_state does not fit variant {variant!r} with params.model "
            f"{params['model']}: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    model.to(device).eval()
    model.params, model.scheme, model.variant = params, scheme, variant
    model.checkpoint_path = str(path)
    return model


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A ready model (eval mode, on ``device``) with ``.params``, ``.scheme``, ``.variant``,
    ``.checkpoint_path`` and ``.checkpoint_info`` (code_version, iteration, file format, and for a
    model file its description).

    ``path``: a training checkpoint or a .safetensors model file; None loads the bundled model
    (``spanlib.inference.weights.DEFAULT``) after checking its SHA-256. Nothing in the file is executed.
    """
    device = resolve_device(device)
    data = None
    if path is None:
        path, data = weights.verified_bundled()
    path = Path(path)
    if data is None:
        problem = file_problem(path)
        if problem:
            raise DataError(f"{path}: {problem} (expected a checkpoint or .safetensors model file)")
    if data is not None or is_safetensors(path):
        tensors, desc = read_model_file(path, data)
        model = _build(path, desc["variant"], desc["scheme"], desc["params"], tensors, device, "model file")
        model.checkpoint_info = {"code_version": desc.get("code_version"), "iteration": desc.get("iteration"),
                                 "format": "safetensors", "description": desc}
        return model
    ckpt = read_checkpoint(path, device)
    model = _build(path, ckpt["variant"], ckpt["scheme"], ckpt["params"], ckpt["model_state"], device, "checkpoint")
    model.checkpoint_info = {"code_version": ckpt.get("code_version"), "iteration": ckpt.get("iteration"),
                             "format": "checkpoint"}
    return model


def register_bundled(path: str | Path, name: str = weights.DEFAULT, registry_file: str | Path | None = None) -> str:
    """Ship the model file ``path`` as bundled model ``name``: check it is a spanlib model file,
    copy it into ``weights.WEIGHTS_DIR`` (unless it is already there), and write its SHA-256 into
    the registry (``weights.record_sha256``: ``registry_file``, default
    spanlib/inference/weights/registry.json) and in the running process. Returns the hash."""
    entry, path = weights.BUNDLED.get(name), Path(path)
    if entry is None:
        raise ParamError(f"bundled model {name!r}: unknown; spanlib ships {sorted(weights.BUNDLED)}")
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem} (expected a .safetensors model file)")
    data = path.read_bytes()
    tensors, desc = read_model_file(path, data)  # a spanlib .safetensors model file, or DataError
    # a model that load_model() would refuse (sizes past the bounds, NaN weights) is not shipped
    check_model_state(path, desc["variant"], desc["scheme"], desc["params"], tensors, "model file")
    digest = hashlib.sha256(data).hexdigest()
    target = weights.WEIGHTS_DIR / entry["file"]
    if not (target.exists() and target.resolve() == path.resolve()):
        write_bytes(target, data)
        description = path.with_suffix(".json")  # the readable copy export writes beside it
        if description.is_file():
            write_bytes(target.with_suffix(".json"), description.read_bytes())
    weights.record_sha256(name, digest, registry_file)
    return digest
