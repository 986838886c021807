"""Inference back-ends: a loaded model turned into a function crops -> (points, confidence).

``LandmarkHead`` is the network plus the decoding in plain tensor ops (no autograd Function, no
Python-side shapes that depend on the batch), so one graph can be traced, frozen, compiled or
exported to ONNX. It computes what ``spanlib.inference.predict.predict_crops`` (flip off) computes:

- points: the windowed BALI soft-argmax of eq. 5 (``spanlib.ops.bali_decode``), written as a 0/1
  window mask around each map's argmax (first in row-major order on ties, like ``torch.argmax``
  and ONNX ``ArgMax``), times the stride input_size / map width;
- confidence: the softmax mass inside that window, which is the decoding's own denominator, so it
  equals ``predict.window_mass`` without a second pass.

Outputs the decoding does not use (the boundary maps, the earlier stages' heatmaps) are dropped, so
a frozen or exported graph does not compute the last stage's boundary head at all.

``make_runner(model, backend)`` returns a ``Runner``; the back-ends and what they do:

=================  ==============================================================================
``eager``          ``predict_crops``: the network and ``spanlib.ops`` as training and evaluate use them
``head``           ``LandmarkHead`` in eager PyTorch
``channels_last``  ``head`` with the weights and input in ``torch.channels_last``
``jit``            ``torch.jit.trace`` of ``head``, ``torch.jit.freeze`` (BatchNorm folded into the
                   convolutions), ``torch.jit.optimize_for_inference``
``compile``        ``torch.compile`` of ``head`` (Inductor, needs a C++ compiler; compiles on first call)
``onnxruntime``    the network alone (``step.NetworkMaps``: heatmap and last features) exported
                   by ``torch.onnx`` (``onnx_export.network_bytes``), run by ONNX Runtime, decoded
                   by ``step.decode_features``: the BALI fields at the decoding windows only
                   (results/real/decode_outside_graph.md)
``onnxruntime_int8``  the same network graph with its convolutions statically quantised to INT8
                   (``onnx_export.quantize_int8``: per-channel weights, ranges calibrated on
                   ``calibration`` crops, which the caller must give); NOT within ``step.TOLERANCE_PX``
                   of eager: its NME change is measured, not assumed (results/real/inference_speed.md)
=================  ==============================================================================

Which is fastest, and how close each stays to ``eager``, is measured by ``python -m
spanlib.bench.inference_speed`` (results/real/inference_speed.md); ``AUTO_ORDER`` follows that table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch

from spanlib.inference.onnx_export import make_session, network_bytes, quantize_int8
from spanlib.inference.options import AUTO_MIN_IMAGES, BACKENDS  # noqa: F401  (their home: light for --help)
from spanlib.inference.step import LandmarkHead, bali_head, decode_features, decode_radius, predict_crops
from spanlib.model.network import check_input_size
from spanlib.utils.errors import ParamError

# `predict --backend auto`: the fastest back-end of results/real/inference_speed.md whose landmarks
# stayed within TOLERANCE_PX of eager, then the next ones, eager last (always available).
AUTO_ORDER = ("onnxruntime", "jit", "eager")


@dataclass
class Runner:
    """``runner(images)`` -> (points (B, K, 2), confidence (B, K)), float32 CPU tensors. ``size``:
    the crop side it was built for (a traced or exported graph takes that size only)."""

    backend: str
    radius: int
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    note: str = ""
    size: int = 0

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            points, confidence = self.fn(images)
        return points.float().cpu(), confidence.float().cpu()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_runner(model: torch.nn.Module, backend: str = "eager", radius: int | None = None,
                example_batch: int = 1, calibration: torch.Tensor | None = None,
                size: int | None = None) -> Runner:
    """A ``Runner`` for ``model`` (left as it is: back-ends that change weights work on a copy).
    ``radius``: the decoding window, default ``evaluate.decode_radius`` of the model's params.
    ``calibration`` (N, 3, S, S): the crops ``onnxruntime_int8`` calibrates its ranges on (required
    there: real training crops, not the faces it will be measured on). ``size``: the crop side,
    default ``crop.input_size``; another is for the placing passes (``evaluate.placing_size``)."""
    if backend not in BACKENDS:
        raise ParamError(f"inference backend: expected one of {BACKENDS}, got {backend!r}")
    radius = decode_radius(model.params) if radius is None else int(radius)
    device = _device(model)
    size = int(model.params["crop"]["input_size"]) if size is None else int(size)
    if size != int(model.params["crop"]["input_size"]):
        check_input_size(size, int(model.params["model"]["depth"]), "evaluate.placing_size")
    runner = _make_runner(model, backend, radius, device, torch.rand(example_batch, 3, size, size, device=device),
                          calibration)
    runner.size = size
    return runner


def _make_runner(model, backend: str, radius: int, device: torch.device, example: torch.Tensor,
                 calibration: torch.Tensor | None) -> Runner:
    if backend == "eager":
        def eager(images):
            points, confidence, _ = predict_crops(model, images, radius)
            return points, confidence
        return Runner(backend, radius, eager, "network + spanlib.ops.bali_decode, as evaluate runs them")

    head = LandmarkHead(model, radius).eval()
    if backend == "head":
        return Runner(backend, radius, lambda images: head(images.to(device)), "network + masked decode, eager")
    if backend == "channels_last":
        head = LandmarkHead(copy.deepcopy(model).to(memory_format=torch.channels_last), radius).eval()
        return Runner(backend, radius,
                      lambda images: head(images.to(device).contiguous(memory_format=torch.channels_last)),
                      "weights and input in channels_last")
    if backend == "jit":
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(head, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return Runner(backend, radius, lambda images: frozen(images.to(device)),
                      "torch.jit.trace + freeze + optimize_for_inference")
    if backend == "compile":
        compiled = torch.compile(head, dynamic=False)
        return Runner(backend, radius, lambda images: compiled(images.to(device)),
                      "torch.compile (Inductor), recompiles for each new batch size")

    graph = network_bytes(model, example.cpu())  # the network alone, decoded after it (decode_features)
    bali = bali_head(model)
    if backend == "onnxruntime_int8":
        if calibration is None:
            raise ParamError("backend onnxruntime_int8: give calibration crops (make_runner(..., calibration=...)); "
                             "its ranges come from them")
        session = make_session(quantize_int8(graph, calibration), torch.get_num_threads())
        note = (f"ONNX Runtime, Conv INT8 (QDQ, per-channel weights), calibrated on {len(calibration)} crops; "
                "decoded by step.decode_features")
    else:
        session = make_session(graph, torch.get_num_threads())
        note = ("torch.onnx export of the network, ONNX Runtime CPU, as many intra-op threads as torch uses; "
                "decoded by step.decode_features")

    def run_ort(images):
        maps = [torch.from_numpy(m) for m in session.run(None, {"images": images.detach().cpu().float().numpy()})]
        return decode_features(maps[0], maps[1] if len(maps) > 1 else None, bali, radius, images.shape[-1])
    return Runner(backend, radius, run_ort, note)


def auto_runner(model: torch.nn.Module, radius: int | None = None, size: int | None = None) -> tuple[Runner, list[str]]:
    """The first back-end of ``AUTO_ORDER`` that builds here (and, on CPU, is ``onnxruntime`` or
    ``jit``), with the reasons the ones before it were skipped; ``eager`` always builds."""
    skipped = []
    for backend in AUTO_ORDER:
        if backend != "eager" and _device(model).type != "cpu":
            skipped.append(f"{backend}: measured on CPU only")
            continue
        try:
            return make_runner(model, backend, radius, size=size), skipped
        except Exception as exc:  # a missing package or a failed trace: fall back, say why
            skipped.append(f"{backend}: {type(exc).__name__}: {exc}".splitlines()[0])
    raise AssertionError("unreachable: eager always builds")


def placing_runners(model: torch.nn.Module, runner: Runner, placing_size: int | None,
                    calibration: torch.Tensor | None = None) -> list[Runner]:
    """``runner`` and, when the placing passes run at another size (``evaluate.placing_size``, None:
    the model's), one more of the same back-end built for it: what ``predict_paths`` takes.
    ``calibration``: crops of the placing size, which an ``onnxruntime_int8`` runner calibrates on."""
    if placing_size is None or int(placing_size) == runner.size:
        return [runner]
    return [runner, make_runner(model, runner.backend, runner.radius, size=placing_size, calibration=calibration)]


def runner_for(runners, size: int, radius: int) -> Runner | None:
    """Of ``runners`` (a Runner, a sequence of them, or None), the one built for this crop size and
    decoding window, else None (the caller runs eager ``predict_crops``)."""
    if runners is None:
        return None
    for runner in [runners] if isinstance(runners, Runner) else runners:
        if runner.radius == radius and runner.size == size:
            return runner
    return None
