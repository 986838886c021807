"""Helpers shared by the evaluation tests: a tiny checkpoint in the contract format, an oracle
model whose BALI fields point exactly at known landmarks, and a small .pts folder."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import torch

from spanlib.data.pts import write_pts
from spanlib.data.targets import bali_fields
from spanlib.model import build_model
from spanlib.config.params import load_params
from spanlib.inference.predict import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION
from spanlib.config.schemes import get_scheme

REPO = Path(__file__).resolve().parents[1]


def tiny_params(variant: str = "scpan", input_size: int = 32) -> dict:
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["crop"]["input_size"] = input_size
    params["model"].update({"variant": variant, "stages": 2, "width": 8, "depth": 1})
    return params


def save_tiny_checkpoint(path: Path, variant: str = "scpan", input_size: int = 32, seed: int = 0,
                         scheme: str = "68") -> Path:
    params = tiny_params(variant, input_size)
    scheme = get_scheme(scheme)
    torch.manual_seed(seed)
    model = build_model(params["model"], scheme.num_points, scheme.num_boundaries, input_size)
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                "code_version": "test", "variant": variant, "scheme": scheme.name, "params": params,
                "model_state": model.state_dict(), "optimizer_state": {}, "iteration": 0,
                "rng_state": {}, "metrics": {}}, path)
    return path


class OracleModel(torch.nn.Module):
    """Predicts ``crop_points`` (K, 2) for every crop: flat heatmaps and BALI fields that point at
    the points from every pixel, so the windowed soft-argmax returns them exactly."""

    def __init__(self, crop_points: np.ndarray, params: dict, map_size: int):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.params, self.scheme, self.variant = params, get_scheme("68"), "oracle"
        self.checkpoint_info = {}
        size = params["crop"]["input_size"]
        stride = size / map_size
        fields, _ = bali_fields(np.asarray(crop_points) / stride, map_size, radius=1)
        self.register_buffer("fields", torch.from_numpy(fields))
        self.map_size, self.size = map_size, size

    def forward(self, images):
        b, k = images.shape[0], self.fields.shape[1]
        logits = torch.zeros(b, k, self.map_size, self.map_size)
        return {"heatmaps": [logits], "boundaries": [], "offsets": self.fields.expand(b, -1, -1, -1, -1),
                "input_size": self.size}


def face_template(rng) -> np.ndarray:
    """68 points of a face-like layout in a unit box, outer eye corners apart."""
    pts = rng.uniform(0.1, 0.9, size=(68, 2))
    pts[36], pts[45] = (0.25, 0.35), (0.75, 0.35)
    pts[0], pts[16], pts[8] = (0.0, 0.3), (1.0, 0.3), (0.5, 1.0)
    return pts


def write_pts_folder(folder: Path, n: int = 4, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    template = face_template(rng)
    out = []
    for i in range(n):
        scale = rng.uniform(30, 60)
        offset = rng.uniform(5, size - scale - 5, size=2)
        pts = (template * scale + offset).astype(np.float32)
        image = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"face{i}.png"), image)
        write_pts(folder / f"face{i}.pts", pts)
        out.append(pts)
    return out


def predict_with_own_settings(model, image: np.ndarray, box: np.ndarray, **evaluate):
    """The one face ``predict_image`` finds in ``box`` when these ``evaluate`` settings are the
    model's own params (restored afterwards): what a model file exported with them predicts."""
    from spanlib.inference.predict import predict_image

    params = copy.deepcopy(model.params)
    params.setdefault("evaluate", {}).update(evaluate)
    original, model.params = model.params, params
    try:
        (face,), _ = predict_image(model, image, boxes=[box])
    finally:
        model.params = original
    return face
