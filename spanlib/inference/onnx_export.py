"""ONNX export of a landmark model: ``spanlib export onnx``.

The exported graph is ``spanlib.inference.step.LandmarkHead``: the network *and* the BALI decoding
(masked windowed soft-argmax, confidence = window mass), so the file maps crops straight to
points: input ``images`` (B, 3, S, S) float32 in [0, 1], RGB, the crop of ``spanlib.data.crop``;
outputs ``points`` (B, K, 2) in crop pixels (corner origin) and ``confidence`` (B, K). The batch
axis is dynamic. The legacy TorchScript-based exporter of ``torch.onnx`` is used
(``dynamo=False``): it needs only the ``onnx`` package, not ``onnxscript``.

``check_onnx`` runs the file in ONNX Runtime beside PyTorch on the same crops and reports the
largest landmark difference in crop pixels; ``export_onnx`` refuses a file that differs by more
than ``TOLERANCE_PX`` from eager PyTorch (``spanlib.inference.step.TOLERANCE_PX``).

Needs the optional packages of the ``onnx`` extra: ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from spanlib.data.crop import box_from_landmarks, crop_for_model, model_crop_size
from spanlib.data.dataset import to_tensor_image
from spanlib.data.sources import read_source
from spanlib.inference.step import TOLERANCE_PX, LandmarkHead, NetworkMaps, decode_radius, predict_crops
from spanlib.utils.errors import DataError, SpanlibError
from spanlib.utils.files import check_writable, write_bytes, write_json

ONNX_PIP = "pip install -e '.[onnx]'  (or: pip install onnx==1.23.2 onnxruntime==1.32.0)"
OPSET = 17


class MissingPackageError(SpanlibError):
    """An optional package is not installed."""


def require(name: str):
    """Import ``onnx`` or ``onnxruntime``, or stop with the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingPackageError(f"the package {name!r} is not installed ({exc}); install the onnx extra: "
                                  f"{ONNX_PIP}") from None


def onnx_bytes(head: torch.nn.Module, example: torch.Tensor,
               output_names: tuple[str, ...] = ("points", "confidence")) -> bytes:
    """The ONNX model of ``head`` (a ``LandmarkHead`` by default; dynamic batch) as bytes."""
    require("onnx")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter announces its deprecation on every call; the graph is checked below
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(head.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=list(output_names),
                          dynamic_axes={name: {0: "batch"} for name in ("images", *output_names)})
    return buffer.getvalue()


def network_bytes(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX model of the network alone (``step.NetworkMaps``: outputs ``heatmap`` and, with a
    BALI head, ``features``; dynamic batch), which the ONNX Runtime back-ends run and decode
    outside the graph (``step.decode_features``)."""
    maps = NetworkMaps(model).eval()
    return onnx_bytes(maps, example, maps.output_names)


def make_session(model_bytes_or_path, threads: int = 1):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and one inter-op thread."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model_bytes_or_path) if isinstance(model_bytes_or_path, (str, Path)) else model_bytes_or_path
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_session(head: LandmarkHead, example: torch.Tensor, threads: int | None = None):
    """Export ``head`` in memory and open it in ONNX Runtime (threads: torch's current count)."""
    return make_session(onnx_bytes(head, example), torch.get_num_threads() if threads is None else threads)


def quantize_int8(model_bytes: bytes, calibration: torch.Tensor) -> bytes:
    """Static INT8 quantisation of an exported graph (``onnxruntime.quantization``): the
    convolutions' weights per output channel (int8, symmetric), their inputs per tensor (uint8)
    with ranges calibrated (MinMax) on ``calibration`` (N, 3, S, S) crops, in QDQ format so that
    ONNX Runtime fuses each Q/DQ pair into an integer convolution. Only ``Conv`` is quantised: the
    decoding after the network (softmax, argmax, window sums) stays float32, as the points need."""
    require("onnxruntime")
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)  # lazy: onnxruntime is optional (the onnx extra)

    if calibration.ndim != 4 or calibration.shape[0] == 0:
        raise DataError(f"INT8 calibration: expected (N, 3, S, S) crops with N > 0, got {tuple(calibration.shape)}")

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"images": c[None].float().numpy()} for c in calibration.cpu()])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = (os.path.join(tmp, name) for name in ("f.onnx", "pre.onnx", "q.onnx"))
        Path(src).write_bytes(model_bytes)
        # shape inference + constant folding first (ORT's recommended pre-processing); the symbolic
        # pass cannot follow the decode's argmax arithmetic, ONNX's own shape inference can
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, Crops(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return Path(out).read_bytes()


def check_onnx(session, model: torch.nn.Module, crops: torch.Tensor, radius: int) -> dict:
    """ORT against eager PyTorch (``predict_crops``) on ``crops``: max abs differences."""
    points, confidence, _ = predict_crops(model, crops, radius)
    ort_points, ort_conf = session.run(None, {"images": crops.cpu().float().numpy()})
    return {"faces": int(crops.shape[0]),
            "max_abs_points_px": float(np.abs(ort_points - points.cpu().numpy()).max()),
            "max_abs_confidence": float(np.abs(ort_conf - confidence.cpu().numpy()).max())}


def real_crops(root: str | Path, params, limit: int = 16) -> torch.Tensor | None:
    """Up to ``limit`` face crops from a 300W-style folder (crops around the landmarks' box, as a
    model with these ``params`` takes them), or None when ``root`` holds no labeled face."""
    root = Path(root)
    if not root.is_dir():
        return None
    try:
        with warnings.catch_warnings():  # a copy without lfpw/ is fine for a check
            warnings.simplefilter("ignore", UserWarning)
            samples = [s for s in read_source("300w", root, "train") if s.landmarks is not None][:limit]
    except SpanlibError:
        return None
    crops = [to_tensor_image(crop_for_model(s.image, box_from_landmarks(s.landmarks), params)[0]) for s in samples]
    return torch.stack(crops) if crops else None


def export_onnx(model: torch.nn.Module, out: str | Path, radius: int | None = None,
                real_root: str | Path | None = None, seed: int = 0) -> dict:
    """Write ``out`` (.onnx) and ``out``.json (what it is, and the check), after checking it in ONNX
    Runtime against PyTorch on 8 random crops and, when ``real_root`` holds 300W faces, 16 real ones.
    Raises DataError when a landmark differs by more than TOLERANCE_PX."""
    out = Path(out)
    for path in (out, out.with_suffix(".json")):  # before the export and the check, not after
        check_writable(path)

    radius = decode_radius(model.params) if radius is None else int(radius)
    model = model.cpu().eval()
    size, scale = model_crop_size(model.params)
    head = LandmarkHead(model, radius)
    data = onnx_bytes(head, torch.zeros(1, 3, size, size))
    onnx = require("onnx")
    onnx.checker.check_model(onnx.load_from_string(data))
    session = make_session(data)
    generator = torch.Generator().manual_seed(seed)
    checks = {"random": check_onnx(session, model, torch.rand(8, 3, size, size, generator=generator), radius)}
    if real_root is not None:
        crops = real_crops(real_root, model.params)
        if crops is not None:
            checks["real"] = {**check_onnx(session, model, crops, radius), "root": str(real_root)}
    worst = max(c["max_abs_points_px"] for c in checks.values())
    # `not <=`: a NaN difference (non-finite outputs) fails the check; `worst > TOLERANCE_PX` let it pass
    if not all(c["max_abs_points_px"] <= TOLERANCE_PX for c in checks.values()):
        raise DataError(f"{out}: ONNX Runtime landmarks differ from PyTorch by {worst:.4g} px "
                        f"(tolerance {TOLERANCE_PX} px): {json.dumps(checks)}; file not written")
    out = Path(out)
    write_bytes(out, data)  # atomically: an interrupted write leaves the previous file, not half a graph
    ort = require("onnxruntime")
    description = {
        "file": out.name, "source": str(model.checkpoint_path), "variant": model.variant,
        "scheme": model.scheme.name, "input": {"name": "images", "shape": ["batch", 3, size, size],
                                               "dtype": "float32", "range": "[0, 1] RGB crop (spanlib.data.crop)",
                                               "crop_scale": scale},
        "outputs": {"points": "(batch, K, 2) crop pixels, corner origin",
                    "confidence": "(batch, K) softmax mass in the decoding window"},
        "decode_radius": radius, "opset": OPSET, "torch": torch.__version__, "onnx": onnx.__version__,
        "onnxruntime": ort.__version__, "tolerance_px": TOLERANCE_PX, "check": checks,
    }
    write_json(out.with_suffix(".json"), description)
    return description
