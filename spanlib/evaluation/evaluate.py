"""The evaluation protocol (issue 5, section 2): crop as in training, predict, decode with the 7x7
window, map back to image pixels, and score every subset the dataset has.

Protocol, stated once:
- crop: the model's crop (``crop_face`` at ``crop.input_size`` and ``crop.scale`` of the
  checkpoint's params, ``spanlib.data.crop.model_crop_size``), centred on the dataset's face box
  when it ships one (WFLW, COFW, AFLW: ``evaluate.crop_box: detector``) and else on the
  ground-truth landmarks' box (300W, Menpo, 300VW, synthetic: the usual protocol of HRNet and its
  peers); training crops from the same kind of box (``crop.box: dataset``,
  ``spanlib.data.dataset.PairedFaceDataset``), so both crops share centre and scale;
- decode: windowed BALI soft-argmax (eq. 5) with r = ``evaluate.decode_radius`` (3: 7x7);
- points back to the original image by the inverse of the crop's affine transform;
- NME under io / ip / box / diag (eq. 21, ``spanlib.evaluation.metrics``; NME_box divides by the face's
  provided box size where the reader gives one, AFLW's ``box_size``, as in the paper's Table III);
  FR and AUC at 0.08 and 0.1 on the per-face NME under ``evaluate.nme_norm``; per landmark NME_io;
- subsets: every tag the reader gives the faces (300W common / challenging and their parts, WFLW's
  six attributes, AFLW frontal, 300VW scenario, synthetic common / challenging) plus ``full`` (all
  faces of the split) when no tag already covers them all.

``held_out`` evaluates only the validation faces ``spanlib.data.split.held_out_split`` holds out of
a training split (the faces training validated on: ``train.val_fraction`` / ``train.val_seed``).
``peer`` (``"dlib"``) scores a peer detector on exactly the same faces and subsets
(``spanlib/evaluation/peers.py``), under ``"peers"`` in the metrics dict.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from spanlib.config import schema as config
from spanlib.config.schema import default
from spanlib.data.crop import CropTransform, box_from_landmarks, model_crop_size
from spanlib.data.dataset import EvalFaceDataset
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.evaluation.metrics import DEFAULT_THRESHOLDS, format_metrics, subset_metrics
from spanlib.evaluation.peers import evaluate_peer, peer_summary_text
from spanlib.evaluation.stats import flagged_landmarks
from spanlib.inference import detect
from spanlib.inference.checkpoint import load_model
from spanlib.inference.detect import match_detection
from spanlib.inference.step import crop_mirror_offsets, pass_flips, pass_sizes, predict_crops
from spanlib.utils.devices import resolve_device
from spanlib.utils.errors import DataError, ParamError
from spanlib.utils.files import write_json
from spanlib.utils.provenance import code_version, machine_info, write_result_json  # noqa: F401  (code_version: evaluate's API too)



def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def subset_groups(samples: Sequence) -> dict[str, np.ndarray]:
    """{subset name: indices}: every tag of the faces, plus "full" unless a tag covers all faces."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        for tag in sample.subsets:
            groups.setdefault(tag, []).append(i)
    n = len(samples)
    if "full" not in groups and not any(len(v) == n for v in groups.values()):
        groups = {"full": list(range(n)), **groups}
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def provided_box_sizes(samples: Sequence) -> np.ndarray | None:
    """(N,) each face's ``attributes["box_size"]`` (AFLW's NME_box normaliser), NaN where a face has
    none; None when no face has one (every NME_box then uses the landmarks' tight box)."""
    sizes = np.array([float(s.attributes.get("box_size", np.nan)) for s in samples], dtype=np.float64)
    return sizes if np.isfinite(sizes).any() else None


def box_norm_text(box_sizes: np.ndarray | None) -> str:
    """What NME_box was divided by, for the provenance."""
    tight = "sqrt(w * h) of the ground-truth landmarks' tight box"
    if box_sizes is None:
        return tight
    given, n = int(np.isfinite(box_sizes).sum()), len(box_sizes)
    rest = "" if given == n else f"; the other {n - given} faces: {tight}"
    return f"the dataset's box_size (AFLW: sqrt of the face box area) for {given} of {n} faces{rest}"


def crop_rule_mismatch(params: dict, settings) -> str | None:
    """A warning when the checkpoint's training crops (``crop.box``) came from another kind of box
    than this evaluation's (``evaluate.crop_box`` of ``settings``, an EvaluateConfig): their
    scales then differ on faces with a box."""
    trained = (params.get("crop") or {}).get("box", config.default("crop.box"))
    tested = settings.crop_box
    if (trained == "dataset") == (tested == "detector"):
        return None
    return (f"evaluate.crop_box={tested!r} but the checkpoint trained with crop.box={trained!r}: on faces with a "
            f"dataset box the test crops differ from the training crops (use --crop-box "
            f"{'detector' if trained == 'dataset' else 'landmarks'})")


def evaluate_params(params: dict, overrides: dict | None = None) -> config.EvaluateConfig:
    """The ``evaluate`` group of ``params`` (a checkpoint's) with ``overrides`` applied, typed and
    checked (defaults from the schema)."""
    merged = {**(params.get("evaluate") or {}), **(overrides or {})}
    return config.as_group("evaluate", merged, "evaluate settings")


def detector_boxes(samples: Sequence, detector, min_iou: float = 0.3, progress: bool = True) -> dict:
    """The end-to-end protocol's boxes: for each labelled face, the detection that overlaps its
    landmarks' box (IoU > ``min_iou``, ``spanlib.inference.detect.match_detection``), as the detector gives it
    ("raw", (N, 4), NaN where missed) and calibrated to a landmark box ("box", as ``spanlib predict``
    crops), "found" (N,) bool, and "seconds" (N,) in the detector."""
    raw = np.full((len(samples), 4), np.nan, np.float32)
    seconds = np.zeros(len(samples))
    for i, sample in enumerate(tqdm(samples, desc=f"detect ({detector.kind})", unit="face", disable=not progress)):
        image = sample.image
        start = time.perf_counter()
        boxes = detector.detect_raw(image)
        seconds[i] = time.perf_counter() - start
        best = match_detection(boxes, box_from_landmarks(sample.landmarks), min_iou)
        if best is not None:
            raw[i] = boxes[best]
    found = np.isfinite(raw).all(axis=1)
    calibrated = np.full_like(raw, np.nan)
    if found.any():
        calibrated[found] = detector.calibration.to_landmark_box(raw[found])
    return {"raw": raw, "box": calibrated, "found": found, "seconds": seconds}


def predict_samples(model, samples: Sequence, settings, progress: bool = True,
                    boxes: np.ndarray | None = None) -> dict:
    """Predictions in image pixels for labeled samples: {"pred" (N, K, 2), "gt", "box",
    "confidence" (N, K), "crop_matrix" (N, 2, 3)}. ``settings``: an EvaluateConfig (or a mapping).
    ``boxes`` (N, 4): crop boxes instead of the protocol's (``evaluate.crop_box``). With
    ``evaluate.refine`` = n, n more passes each crop on the box of the previous pass's points; with
    ``evaluate.flip_test``, ``evaluate.flip_passes`` says which passes average with the mirrored crop,
    and ``evaluate.placing_size`` the input size of the passes before the last."""
    settings = config.as_group("evaluate", settings, "evaluate settings")

    flips = pass_flips(settings.flip_test, settings.refine, settings.flip_passes)
    sizes = pass_sizes(model.params, settings.refine, settings.placing_size)
    preds = _predict_pass(model, samples, settings, progress, boxes, flips[0], sizes[0])
    for flip, size in zip(flips[1:], sizes[1:]):
        boxes = np.stack([box_from_landmarks(p) for p in preds["pred"]])
        preds = _predict_pass(model, samples, settings, progress, boxes, flip, size)
    return preds


@torch.no_grad()
def _predict_pass(model, samples: Sequence, settings, progress: bool, boxes: np.ndarray | None,
                  flip: bool, size: int) -> dict:
    _, scale = model_crop_size(model.params)
    dataset = EvalFaceDataset(samples, size, scale, prefer=settings.crop_box, num_points=model.scheme.num_points,
                              boxes=boxes)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False,
                        num_workers=settings.num_workers)
    out = {"pred": [], "gt": [], "box": [], "confidence": [], "crop_matrix": []}
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
        offset = crop_mirror_offsets(model.params, batch["crop_matrix"]) if flip else 0.0
        points, conf, _ = predict_crops(model, batch["image"], settings.decode_radius, flip=flip, offset=offset)
        points = points.double().cpu().numpy()
        for matrix, pts in zip(batch["crop_matrix"].numpy(), points):
            out["pred"].append(CropTransform(matrix, size).to_image(pts))
        out["gt"].append(batch["landmarks"].numpy())
        out["box"].append(batch["box"].numpy())
        out["confidence"].append(conf.cpu().numpy())
        out["crop_matrix"].append(batch["crop_matrix"].numpy())
    return {"pred": np.stack(out["pred"]).astype(np.float32), "gt": np.concatenate(out["gt"]),
            "box": np.concatenate(out["box"]), "confidence": np.concatenate(out["confidence"]),
            "crop_matrix": np.concatenate(out["crop_matrix"])}


def held_out_settings(params: dict, held_out) -> tuple[float, int]:
    """(fraction, seed) of the held-out split: ``held_out`` True takes the checkpoint's
    ``train.val_fraction`` / ``train.val_seed``; a (fraction, seed) pair overrides them (None: keep)."""
    train = params.get("train") or {}
    fraction, seed = (None, None) if held_out is True else tuple(held_out)
    if fraction is None:
        fraction = train.get("val_fraction")
        fraction = default("train.val_fraction") if fraction is None else fraction
    if seed is None:
        seed = train.get("val_seed")
        seed = default("train.val_seed") if seed is None else seed
    fraction, seed = float(fraction), int(seed)
    if not 0 < fraction < 1:
        raise ParamError(f"--held-out: the validation fraction must be in (0, 1), got {fraction} (the checkpoint's "
                         f"train.val_fraction is {train.get('val_fraction')!r}; give --val-fraction)")
    return fraction, seed


def evaluate(checkpoint: str | Path, source: str, root: str | Path, split: str | None = None,
             device: str = "auto", settings: dict | None = None, json_path: str | Path | None = None,
             progress: bool = True, return_predictions: bool = False, samples: Sequence | None = None,
             held_out=None, peer: str | None = None) -> dict:
    """Evaluate ``checkpoint`` on one split of a dataset; returns the metrics JSON dict
    (docs/architecture.md, "Metrics JSON") and writes it to ``json_path`` when given.

    ``settings`` overrides the checkpoint's ``evaluate`` params (keys of the ``evaluate`` group).
    ``samples`` skips reading the source (already read faces). With ``return_predictions`` the dict
    also holds "predictions" (numpy arrays, not written to JSON).
    ``held_out`` (True, or (fraction, seed)) keeps only the faces ``held_out_split`` holds out of
    the split (``held_out_settings``); ``peer`` also scores that peer (``spanlib.evaluation.peers``) on the same
    faces, under result["peers"][peer].
    """
    model = load_model(checkpoint, device=resolve_device(device))
    settings = evaluate_params(model.params, settings)
    pass_sizes(model.params, settings.refine, settings.placing_size)  # a size the network cannot take stops here
    if samples is None:
        samples = read_source(source, root, split)
    held_info = None
    if held_out is not None and held_out is not False:
        samples, held_info = _held_out_faces(model.params, samples, held_out, source, split)
    labeled = _labeled_faces(samples, model, checkpoint, source, root, split)
    mismatch = crop_rule_mismatch(model.params, settings)
    if mismatch and any(s.box is not None for s in labeled) and settings.boxes == "ground_truth":
        warnings.warn(mismatch, stacklevel=2)
    detection, peer_boxes = None, None
    if settings.boxes == "detector":  # end to end: only the faces the detector finds are scored
        labeled, detection, peer_boxes = _detect_faces(labeled, settings, progress)
    preds = predict_samples(model, labeled, settings, progress,
                            None if detection is None else detection.pop("boxes"))
    box_sizes = provided_box_sizes(labeled)
    thresholds = sorted({*DEFAULT_THRESHOLDS, float(settings.fr_threshold), float(settings.auc_threshold)})
    groups = subset_groups(labeled)
    subsets = {name: subset_metrics(preds["pred"][idx], preds["gt"][idx], model.scheme, thresholds=thresholds,
                                    norm=settings.nme_norm, box_sizes=None if box_sizes is None else box_sizes[idx])
               for name, idx in groups.items()}
    peers, peer_preds = {}, {}
    if peer is not None:
        peers[peer] = evaluate_peer(peer, labeled, groups, model.scheme, thresholds, settings.nme_norm,
                                    progress, return_predictions=True, boxes=peer_boxes)
        peer_preds[peer] = peers[peer].pop("predictions")
    result = {"provenance": _provenance(model, checkpoint, source, root, split, held_info, settings, box_sizes),
              "subsets": subsets}
    if detection is not None:
        result["detection"] = detection
    if peers:
        result["peers"] = peers
    if json_path is not None:
        write_result_json(json_path, result)  # provenance.machine goes to the .machine.json sidecar
    if return_predictions:
        result["predictions"] = {**preds, "paths": [s.path for s in labeled],
                                 "frames": [s.frame for s in labeled]}
        for name, entry in peers.items():
            entry["predictions"] = peer_preds[name]
    return result


def _held_out_faces(params: dict, samples: Sequence, held_out, source: str, split: str | None) -> tuple[list, dict]:
    """(the faces ``held_out_split`` holds out of ``samples``, the "held_out" entry of the provenance);
    warns when the checkpoint trained on another source or split than this one."""
    fraction, seed = held_out_settings(params, held_out)
    total = len(samples)
    _, samples = held_out_split(samples, fraction, seed)
    data = params.get("data") or {}
    held_info = {"fraction": fraction, "seed": seed, "n": len(samples), "of": total,
                 "training_data": {k: data.get(k) for k in ("source", "root", "train_split")}}
    if (data.get("source"), data.get("train_split")) != (source, split):
        warnings.warn(f"--held-out: the checkpoint trained on source {data.get('source')!r} split "
                      f"{data.get('train_split')!r}, not {source!r} {split!r}: these held-out faces are "
                      f"not the ones its training validated on", stacklevel=3)
    return samples, held_info


def _labeled_faces(samples: Sequence, model, checkpoint, source: str, root, split: str | None) -> list:
    """The faces with landmarks; DataError when there are none or their count is not the model's."""
    labeled = [s for s in samples if s.landmarks is not None]
    if not labeled:
        raise DataError(f"{root}: source {source!r} split {split!r} has no labeled faces to evaluate")
    k = model.scheme.num_points
    wrong = {len(s.landmarks) for s in labeled} - {k}
    if wrong:
        raise DataError(f"{root}: faces have {sorted(wrong)} points but checkpoint {checkpoint} "
                        f"predicts {k} (scheme {model.scheme.name})")
    return labeled


def _provenance(model, checkpoint, source: str, root, split: str | None, held_info: dict | None, settings,
                box_sizes: np.ndarray | None) -> dict:
    """The "provenance" entry of the metrics JSON: what was evaluated, on what, by which protocol."""
    return {
        "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
        "variant": model.variant, "scheme": model.scheme.name, "params": model.params,
        "source": source, "root": str(root), "split": split, "held_out": held_info,
        "code_version": code_version(),
        "machine": machine_info(),
        "checkpoint_code_version": model.checkpoint_info.get("code_version"),
        "iteration": model.checkpoint_info.get("iteration"),
        "device": str(next(model.parameters()).device),
        "nme_norms": {
            "io": f"outer eye corners {model.scheme.io_indices}",
            "ip": f"eye centres / pupils: means of {model.scheme.ip_groups}",
            "box": box_norm_text(box_sizes),
            "diag": "diagonal of the ground-truth landmarks' tight box",
            "fr_auc_norm": settings.nme_norm,
        },
        "protocol": {**config.to_mapping(settings), "auc": "Simpson's rule (scipy.integrate.simpson) on the CED, step 1e-4",
                     "fr": "fraction of faces with NME > threshold"},
    }


def _detect_faces(labeled: list, settings, progress: bool) -> tuple[list, dict, np.ndarray | None]:
    """The end-to-end protocol's faces: (the faces the detector finds, the "detection" entry of the
    metrics JSON with their calibrated crop boxes under "boxes" (popped before writing), the raw
    boxes to give the dlib peer when the detector is dlib's HOG, else None: the peer finds its own)."""
    detector = detect.FaceDetector(backend=settings.detector)  # looked up per call: tests put a fake detector there
    if not detector.available or detector.kind not in ("dlib", "haar"):
        raise DataError(f"evaluate.boxes=detector: {detector.describe()}")
    found = detector_boxes(labeled, detector, progress=progress)
    keep = np.flatnonzero(found["found"])
    if len(keep) == 0:
        raise DataError(f"evaluate.boxes=detector: {detector.describe()} found none of the {len(labeled)} faces")
    entry = {"detector": detector.describe(), "kind": detector.kind, "calibration": vars(detector.calibration),
             "match": "the detection with IoU > 0.3 against the landmarks' box", "faces": len(labeled),
             "found": int(len(keep)), "missed": int(len(labeled) - len(keep)),
             "missed_paths": [labeled[i].path for i in np.flatnonzero(~found["found"])],
             "detector_ms_per_face": float(1000 * np.median(found["seconds"])),
             "boxes": found["box"][keep]}
    peer_boxes = found["raw"][keep] if detector.kind == "dlib" else None
    return [labeled[i] for i in keep], entry, peer_boxes


def summary_text(result: dict) -> str:
    """The metrics as text, headed by what produced them."""
    prov = result["provenance"]
    seed = (prov.get("params") or {}).get("seed")
    ckpt = Path(prov["checkpoint"])
    where = f"{ckpt.parent.name}/{ckpt.name}" if ckpt.parent.name else ckpt.name
    head = (f"# {prov['variant']}{'' if seed is None else f' seed {seed}'} on {prov['source']}:{prov['split']} "
            f"({prov['root']}); checkpoint {where} sha256 {prov['checkpoint_sha256'][:12]}; FR/AUC on NME_"
            f"{prov['nme_norms']['fr_auc_norm']}; decode r={prov['protocol']['decode_radius']}; "
            f"code {prov['code_version']}")
    held = prov.get("held_out")
    if held:
        head += (f"\n# held-out validation faces: {held['n']} of {held['of']} (held_out_split fraction "
                 f"{held['fraction']:g}, seed {held['seed']})")
    det = result.get("detection")
    if det:
        head += (f"\n# end to end: crops from {det['detector']} boxes (calibrated), {det['found']} of {det['faces']} "
                 f"faces found and scored, {det['missed']} missed (listed in the JSON); "
                 f"re-crop passes: {prov['protocol']['refine']}")
    elif prov["protocol"].get("refine"):
        head += f"\n# re-crop passes on the model's own points: {prov['protocol']['refine']}"
    if prov["protocol"].get("refine") and prov["protocol"].get("placing_size"):
        head += (f"\n# the passes before the last at {prov['protocol']['placing_size']} px "
                 f"(evaluate.placing_size), the last at {prov['params']['crop']['input_size']} px")
    if prov["protocol"].get("flip_test"):
        last = prov["protocol"].get("refine") and prov["protocol"].get("flip_passes") == "last"
        head += ("\n# flip test: each crop's estimate averaged with its mirrored crop's (twice the cost)" if not last else
                 "\n# flip test on the last pass only: its estimate averaged with its mirrored crop's")
    text = head + "\n" + format_metrics(result["subsets"])
    for subset, flagged in flagged_landmarks(result["subsets"]).items():
        for index, error, median in flagged:
            text += (f"\n# FLAGGED {subset}: landmark {index} has mean NME_io {100 * error:.1f} %, over 3x the "
                     f"{100 * median:.1f} % of the median landmark and of its neighbours: a dead or swapped "
                     f"heatmap channel?")
    if result.get("peers"):
        for name, entry in result["peers"].items():
            text += "\n" + peer_summary_text(name, entry)
    return text
