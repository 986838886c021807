"""Time and memory of every variant (section IV-G): parameters, size on disk, FLOPs, inference
images per second at batch 1 and at a large batch, and peak memory on CUDA.

Timing: ``model.eval()`` under ``torch.inference_mode``, forward plus decoding (the whole
inference step, ``spanlib.inference.predict.predict_crops``) on random crops; one warm-up call, then as many
calls as fit in ``seconds`` (at least 2); the median call time gives images/s. CUDA is synchronised
around each call. FLOPs: ``spanlib.model.count_flops`` (torch.utils.flop_counter: a multiply-add is
2 FLOPs, convolutions and matmuls only), for one image.

At the paper's configuration (model.stages 4, width 256, depth 4, crop.input_size 256, the
recipe ``paper`` of params.yaml's ``recipes:``) only parameters, size and FLOPs are
reported: timing it on a 2-core CPU would take minutes per variant. Those models are built on
PyTorch's meta device, so counting needs no memory and no arithmetic; their size is the bytes of
their float32 state (a saved file adds about 0.1% of pickle framing).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from spanlib.config.params import resolve
from spanlib.config.schema import as_group
from spanlib.config.schemes import get_scheme
from spanlib.config.variants import VARIANTS
from spanlib.inference.step import decode_radius, predict_crops
from spanlib.model import build_model, count_flops, count_parameters, size_on_disk
from spanlib.reporting.paper_numbers import SECTION_IV_G, SECTION_IV_G_DEVICE, SECTION_IV_G_READINGS
from spanlib.utils.devices import resolve_device
from spanlib.utils.errors import ParamError



def paper_params(params: dict) -> dict:
    """``params`` at the paper's configuration: the recipe ``paper`` of ``recipes:`` (the one place
    it is written; model and crop keys are what counting needs)."""
    if "paper" not in (params.get("recipes") or {}):
        raise ParamError("recipes.paper: these params define no paper recipe to count the paper's configuration "
                         "with (the repository's params.yaml has one); or leave the paper rows out (--no-paper)")
    return resolve(params, "paper")


def _build(params: dict, variant: str):
    scheme = get_scheme(params.get("data", {}).get("source", "68"))
    model_params = {**params["model"], "variant": variant}
    return build_model(model_params, scheme.num_points, scheme.num_boundaries, int(params["crop"]["input_size"]))


def time_inference(model, batch: int, device: torch.device, seconds: float, radius: int) -> dict:
    """{"batch", "calls", "median_s", "images_per_s"} of the full inference step."""
    size = model.input_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        predict_crops(model, images, radius)  # warm-up: allocator, cuDNN / Triton autotuning
        sync()
        start = time.perf_counter()
        while len(times) < 2 or (time.perf_counter() - start < seconds and len(times) < 200):
            t0 = time.perf_counter()
            predict_crops(model, images, radius)
            sync()
            times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"batch": batch, "calls": len(times), "median_s": median, "images_per_s": batch / median}


def profile_variant(params: dict, variant: str, device: torch.device, seconds: float = 2.0,
                    large_batch: int = 16, timing: bool = True) -> dict:
    if timing:
        model = _build(params, variant).to(device).eval()
        size = size_on_disk(model)
    else:
        # counting only: build on the meta device (no memory, no arithmetic), size = tensor bytes
        with torch.device("meta"):
            model = _build(params, variant).eval()
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    entry = {
        "variant": variant,
        "input_size": int(params["crop"]["input_size"]),
        "model": {k: params["model"][k] for k in ("stages", "width", "depth")},
        "params": count_parameters(model),
        "size_mb": size / 2**20,
        "gflops": count_flops(model, batch=1) / 1e9,
    }
    if timing:
        radius = decode_radius(params)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        entry["batch1"] = time_inference(model, 1, device, seconds, radius)
        entry["large_batch"] = time_inference(model, large_batch, device, seconds, radius)
        if device.type == "cuda":
            entry["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return entry


def profile(params: dict, variants=VARIANTS, device: str = "cpu", seconds: float | None = None,
            large_batch: int | None = None, paper: bool = True, progress: bool = True) -> dict:
    """{"device", "torch", "threads", "settings", "default": [...], "paper": [...]}."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ParamError(f"--variant: unknown {unknown}; expected one of {VARIANTS} or all")
    dev = resolve_device(device)
    settings = as_group("evaluate", params.get("evaluate") or {})
    seconds = float(seconds if seconds is not None else settings.profile_seconds)
    large_batch = int(large_batch if large_batch is not None else settings.profile_batch)
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "settings": {"seconds_per_timing": seconds, "large_batch": large_batch,
                     "timing": "median of >= 2 calls after 1 warm-up; forward + BALI decode; random input"},
        "default": [], "paper": [],
    }
    for variant in tqdm(list(variants), desc="profile", unit="variant", disable=not progress):
        result["default"].append(profile_variant(params, variant, dev, seconds, large_batch))
        if paper:
            result["paper"].append(profile_variant(paper_params(params), variant, torch.device("meta"), timing=False))
    return result


def profile_table(result: dict) -> str:
    """Markdown: one row per variant and configuration (ours, measured), then section IV-G of the
    paper beside our figures at the paper's configuration (``paper_profile_table``).

    Our sizes are MiB (2^20 bytes) of the float32 parameters and buffers; peak memory is MiB."""
    lines = [f"Device: {result['device']}, torch {result['torch']}; timings: "
             f"{result['settings']['timing']}, about {result['settings']['seconds_per_timing']} s each.", "",
             "| config | variant | input | params (M) | size (MiB, float32 state) | GFLOPs / image "
             "| img/s batch 1 | img/s batch N | peak mem (MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config in ("default", "paper"):
        for e in result.get(config, []):
            m = e["model"]
            b1 = e.get("batch1", {}).get("images_per_s")
            bn = e.get("large_batch")
            cells = [
                f"ours: {config} (T={m['stages']}, w={m['width']}, d={m['depth']})", e["variant"], str(e["input_size"]),
                f"{e['params'] / 1e6:.2f}", f"{e['size_mb']:.1f}", f"{e['gflops']:.2f}",
                "-" if b1 is None else f"{b1:.1f}",
                "-" if bn is None else f"{bn['images_per_s']:.1f} (N={bn['batch']})",
                f"{e['peak_memory_mb']:.0f}" if "peak_memory_mb" in e else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + paper_profile_table(result)


def paper_profile_table(result: dict | None = None) -> str:
    """Markdown: the paper's section IV-G figures (rows "paper: ..."), each beside our parameter
    count and float32 size at the paper's configuration for the same variant (from
    ``result["paper"]``, when given). The paper's "MB" is shown as printed and, since the paper
    does not define it, also converted to MiB on the reading 1 MB = 10^6 bytes."""
    ours = {e["variant"]: e for e in (result or {}).get("paper", [])}
    lines = [f"Section IV-G of the paper (measured by its authors on {SECTION_IV_G_DEVICE}), beside ours at "
             "the paper's configuration (T=4, w=256, d=4, 256 px input; counted, not timed):", "",
             "| model | params (M) | model size as printed (MB) | = MiB if 1 MB = 10^6 B | float32 weights of "
             "those params (MiB) | FPS | NME_io 300W challenging (%) | ours: params (M) | ours: size (MiB, "
             "float32 state) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in SECTION_IV_G:
        mine = ours.get(row.variant) if row.variant else None
        cells = [
            f"paper: {row.model}", f"{row.params_m:.2f}", f"{row.size_mb:g}", f"{row.size_mb * 1e6 / 2**20:.1f}",
            f"{row.params_m * 1e6 * 4 / 2**20:.1f}", "-" if row.fps is None else f"{row.fps:g}",
            "-" if row.nme_io_challenging is None else f"{row.nme_io_challenging:.2f}",
            "-" if mine is None else f"{mine['params'] / 1e6:.2f} ({mine['variant']})",
            "-" if mine is None else f"{mine['size_mb']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- reading of the paper: {r}" for r in SECTION_IV_G_READINGS]
    lines.append("- ours: MiB = 2^20 bytes of the float32 parameters and buffers (a saved file adds about 0.1 %); "
                 "the paper's FPS is on a V100 GPU, our img/s above on the device named at the top.")
    return "\n".join(lines)
