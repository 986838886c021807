"""How small must the network be to run at dlib's speed? (issue 23, section 3)

    python experiments/speed_frontier.py [--root ../shared/data/300w] [--faces 40] [--rounds 3] \
        [--out results/real/speed_frontier]

ONNX Runtime ms/face (one thread, batch 1, crop given: network + windowed decode, the
``onnxruntime`` back-end ``spanlib predict`` picks) of scpan networks of several input sizes, widths
and stage counts, beside dlib's 68-point shape predictor on the same faces, interleaved face by
face in one run so that their ratios are fair on a busy machine. The networks have the shape of a
trained one but random weights: the time does not depend on the weights (no data-dependent branch
in the graph). Accuracy is not measured here: only the trained models of docs/model.md have it.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from spanlib.data.crop import box_from_landmarks, crop_for_model
from spanlib.data.sources import read_source
from spanlib.data.split import held_out_split
from spanlib.data.dataset import to_tensor_image
from spanlib.evaluation.evaluate import held_out_settings
from spanlib.evaluation.peers import DlibPeer
from spanlib.inference.checkpoint import load_model
from spanlib.inference.detect import DLIB_HOG_CALIBRATION
from spanlib.inference.onnx_export import onnx_session
from spanlib.inference.step import LandmarkHead
from spanlib.model import build_model
from spanlib.utils.files import write_json, write_text
from spanlib.utils.provenance import code_version, machine_info

# (input size, width, stages): the bundled model first, then smaller ones
SHAPES = [(128, 64, 2), (96, 48, 2), (96, 32, 2), (96, 48, 1), (64, 48, 2), (64, 32, 2), (64, 32, 1)]


def network(bundled, size: int, width: int, stages: int) -> torch.nn.Module:
    params = copy.deepcopy(bundled.params)
    params["crop"]["input_size"] = size
    params["model"].update(width=width, stages=stages)
    torch.manual_seed(0)
    model = build_model(params["model"], bundled.scheme.num_points, len(bundled.scheme.boundaries), size).eval()
    model.params = params
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/real/speed_frontier"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bundled = load_model(None)
    fraction, seed = held_out_settings(bundled.params, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samples = read_source("300w", args.root, "train")
    faces = [s for s in held_out_split(samples, fraction, seed)[1] if s.landmarks is not None][: args.faces]
    images = [np.ascontiguousarray(f.image) for f in faces]
    entries = []
    for size, width, stages in SHAPES:
        model = network(bundled, size, width, stages)
        head = LandmarkHead(model, int(bundled.params["evaluate"]["decode_radius"])).eval()
        session = onnx_session(head, torch.rand(1, 3, size, size), threads=1)
        crops = [to_tensor_image(crop_for_model(f.image, box_from_landmarks(f.landmarks), model.params)[0])[None].numpy()
                 for f in faces]
        entries.append({"input_size": size, "width": width, "stages": stages,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "session": session, "crops": crops, "s": []})
    peer = DlibPeer()
    boxes = [DLIB_HOG_CALIBRATION.from_landmark_box(box_from_landmarks(f.landmarks))[0] for f in faces]
    dlib_s = []
    for e in entries:  # warm-up
        e["session"].run(None, {"images": e["crops"][0]})
    for _ in range(args.rounds):
        for i in range(len(faces)):
            for e in entries:
                start = time.perf_counter()
                e["session"].run(None, {"images": e["crops"][i]})
                e["s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            peer.predict_box(images[i], boxes[i])
            dlib_s.append(time.perf_counter() - start)
    dlib_ms = float(np.median(dlib_s) * 1e3)
    rows = [{k: v for k, v in e.items() if k not in ("session", "crops", "s")}
            | {"ms_per_face": float(np.median(e["s"]) * 1e3), "p90_ms": float(np.percentile(e["s"], 90) * 1e3)}
            for e in entries]
    for row in rows:
        row["vs_dlib"] = row["ms_per_face"] / dlib_ms
    machine = machine_info()
    result = {"faces": len(faces), "rounds": args.rounds, "dlib_predictor_ms_per_face": dlib_ms,
              "dlib": f"dlib {peer.version}", "rows": rows, "code_version": code_version(),
              "machine": machine, "load_average": list(os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    lines = ["# How small must the network be to run at dlib's speed?", "",
             f"`python experiments/speed_frontier.py` ({code_version()}) on {machine.get('cpu', '?')}, one thread, "
             f"batch 1, crop given (network + windowed decode in ONNX Runtime); {len(faces)} held-out faces x "
             f"{args.rounds} rounds, interleaved with dlib's predictor face by face; median. Random weights "
             f"(time does not depend on them). Load average after: {result['load_average'][0]:.2f}.", "",
             "| input px | width | stages | parameters | ms/face | p90 | x dlib |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['input_size']} | {r['width']} | {r['stages']} | {r['parameters'] / 1e6:.2f} M | "
                     f"{r['ms_per_face']:.2f} | {r['p90_ms']:.2f} | {r['vs_dlib']:.2f} |")
    lines += ["", f"dlib's 68-point shape predictor ({peer.version}), same faces, its calibrated box: "
              f"**{dlib_ms:.2f} ms/face**.", ""]
    write_text(args.out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
