"""Decoding inside the ONNX graph, or after it? (issue 23, section 3: "whatever the profile says")

    python experiments/decode_outside_graph.py [--root ../shared/data/300w] [--faces 60] [--rounds 3] \
        [--out results/real/decode_outside_graph]

ONNX Runtime's profiler put the windowed BALI decoding of ``LandmarkHead`` (softmax, argmax, masks,
window sums written as tensor ops) at about a fifth of a forward of the bundled model, and
``torch.utils.flop_counter`` puts the BALI head (a 1x1 convolution giving 2 x 68 fields at every
64 x 64 pixel) at 14 % of its FLOPs, of which the decoding reads 68 windows of 7 x 7. The
``onnxruntime`` back-end now exports the network up to the last features (``step.NetworkMaps``)
and decodes after it (``step.decode_features``: one softmax, then one C kernel of
``spanlib.ops`` computes the fields at the windows only, the points and the window's mass). This
times, one thread, batch 1, crop given, interleaved face by face on the same held-out crops (the
crop around the landmarks' box):

- ``LandmarkHead`` exported whole (the ``onnxruntime`` back-end until 2026-12-05; still what
  ``spanlib export onnx`` writes, a file that maps crops to points on its own);
- the network with the head's full fields exported, decoded after the graph (``step.decode_maps``);
- the ``onnxruntime`` back-end as ``spanlib predict`` now builds it;
- its network graph alone, without any decoding (the floor);
- dlib's 68-point shape predictor on the same faces (its calibrated box), for scale;

and the largest point difference of each from eager PyTorch (``predict_crops``).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.dataset import to_tensor_image
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.evaluation.evaluate import held_out_settings
from spanlib.evaluation.peers import DlibPeer
from spanlib.inference.backends import make_runner
from spanlib.inference.checkpoint import load_model
from spanlib.inference.detect import DLIB_HOG_CALIBRATION
from spanlib.inference.onnx_export import make_session, network_bytes, onnx_bytes, onnx_session
from spanlib.inference.step import LandmarkHead, decode_maps, decode_radius, predict_crops
from spanlib.utils.files import write_json, write_text
from spanlib.utils.provenance import code_version, machine_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled real-face model)")
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--faces", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/real/decode_outside_graph"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.checkpoint).eval()
    radius = decode_radius(model.params)
    size = int(model.params["crop"]["input_size"])
    fraction, seed = held_out_settings(model.params, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", args.root, "train")
    faces = [s for s in held_out_split(samples, fraction, seed)[1] if s.landmarks is not None][: args.faces]
    crops = torch.stack([to_tensor_image(crop_for_model(f.image, box_from_landmarks(f.landmarks), model.params)[0])
                         for f in faces])
    example = torch.rand(1, 3, size, size)
    head_session = onnx_session(LandmarkHead(model, radius).eval(), example, threads=1)
    network_session = make_session(network_bytes(model, example), 1)
    runner = make_runner(model, "onnxruntime")
    fields_session = make_session(onnx_bytes(_WithFields(model).eval(), example, ("heatmap", "offsets")), 1)

    def fields_then_decode(x):
        heat, offsets = (torch.from_numpy(m) for m in fields_session.run(None, {"images": x.numpy()}))
        return decode_maps(heat, offsets, radius, size)[0]

    ways = {
        "LandmarkHead graph (decoding in ONNX Runtime; spanlib export onnx)":
            lambda x: torch.from_numpy(head_session.run(None, {"images": x.numpy()})[0]),
        "network graph with the head's full fields + step.decode_maps": fields_then_decode,
        "network graph to the last features + step.decode_features (the onnxruntime back-end)":
            lambda x: runner(x)[0],
        "that network graph alone (no decoding: the floor)":
            lambda x: network_session.run(None, {"images": x.numpy()}),
    }
    eager = predict_crops(model, crops, radius)[0]
    deviation = {name: float((torch.cat([way(c[None]) for c in crops]) - eager).abs().max())
                 for name, way in ways.items() if "alone" not in name}
    peer = DlibPeer()
    images = [np.ascontiguousarray(f.image) for f in faces]
    boxes = [DLIB_HOG_CALIBRATION.from_landmark_box(box_from_landmarks(f.landmarks))[0] for f in faces]
    seconds = {name: [] for name in ways} | {"dlib": []}
    for way in ways.values():  # warm-up
        way(crops[:1])
    for _ in range(args.rounds):
        for i, crop in enumerate(crops):
            for name, way in ways.items():
                start = time.perf_counter()
                way(crop[None])
                seconds[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            peer.predict_box(images[i], boxes[i])
            seconds["dlib"].append(time.perf_counter() - start)
    ms = {name: float(np.median(s) * 1e3) for name, s in seconds.items()}
    machine = machine_info()
    result = {"faces": len(faces), "rounds": args.rounds, "ms_per_face_median": ms,
              "p90_ms": {name: float(np.percentile(s, 90) * 1e3) for name, s in seconds.items()},
              "max_abs_points_vs_eager_px": deviation, "dlib": f"dlib {peer.version}",
              "checkpoint": args.checkpoint or "bundled real_300w", "code_version": code_version(),
              "machine": machine, "load_average": list(os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    base = ms["LandmarkHead graph (decoding in ONNX Runtime; spanlib export onnx)"]
    lines = ["# Decoding inside the ONNX graph, or after it", "",
             f"`python experiments/decode_outside_graph.py` ({code_version()}) on {machine.get('cpu', '?')} "
             f"(torch {torch.__version__}, ONNX Runtime {_ort_version()}), model {result['checkpoint']}, one thread, "
             f"batch 1, crop given; {len(faces)} held-out faces x {args.rounds} rounds, interleaved face by face with "
             f"dlib's predictor; median. Load average after: {result['load_average'][0]:.2f}.", "",
             "| way | ms/face | p90 | vs the LandmarkHead graph | max |points - eager| (crop px) |",
             "|---|---|---|---|---|"]
    for name in ways:
        dev = f"{deviation[name]:.1e}" if name in deviation else "-"
        lines.append(f"| {name} | {ms[name]:.2f} | {result['p90_ms'][name]:.2f} | {ms[name] / base:.2f}x | {dev} |")
    lines += [f"| dlib's 68-point shape predictor ({peer.version}), its calibrated box | {ms['dlib']:.2f} | "
              f"{result['p90_ms']['dlib']:.2f} | {ms['dlib'] / base:.2f}x | - |", ""]
    write_text(args.out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
    return 0


class _WithFields(torch.nn.Module):
    """The network with its BALI head's fields over every pixel (the comparison row)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        outputs = self.model(images)
        return outputs["heatmaps"][-1], outputs["offsets"]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    raise SystemExit(main())
