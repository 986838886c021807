"""Synthetic faces do not depend on the CPU: the same bytes with every library's SIMD dispatch
turned down (what another CPU would pick), checked in fresh processes. See docs/reproducibility.md.

The faces below are ones that differed before the generator was made portable: train 47, 71,
1331 and challenging 29 through Intel IPP's SSE4.2 / AVX2 resize (in OpenCV), train 132 and
challenging 38 through glibc's FMA / non-FMA sin and cos, every face through OpenBLAS without FMA.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spanlib.data.synth import GENERATOR_VERSION, portable, render_face, sample_face
from spanlib.data.synth.writer import encode_image

FACES = [("train", 47), ("train", 71), ("train", 132), ("train", 1331), ("challenging", 29),
         ("challenging", 38), ("common", 36)]

# each setting forces what a CPU without these instruction sets would run, library by library
OPENCV_CPU_DISABLE = "AVX512F,AVX512BW,AVX512CD,AVX512DQ,AVX512VL,AVX2,FMA3,FP16,AVX,SSE4.2,SSE4.1,POPCNT,SSSE3"
SETTINGS = {
    # an AVX2 CPU without AVX-512 (AMD Zen 2/3, most Intel desktops): Intel IPP's AVX2 code
    "ipp_avx2": {"OPENCV_IPP": "avx2"},
    # OpenCV without IPP (other builds, ARM)
    "ipp_off": {"OPENCV_IPP": "disabled"},
    # everything down to the x86-64 baseline at once
    "baseline_isa": {
        "OPENCV_IPP": "sse42", "OPENCV_CPU_DISABLE": OPENCV_CPU_DISABLE, "OPENBLAS_CORETYPE": "Prescott",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX", "JSIMD_FORCENONE": "1",
    },
}

_CHILD = r"""
import hashlib, json, sys
import numpy as np
from spanlib.data.pts import format_pts
from spanlib.data.synth import render_face, sample_face
from spanlib.data.synth.writer import encode_image


def arrays(x, out):
    if isinstance(x, np.ndarray):
        out.append(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    elif isinstance(x, dict):
        for k in sorted(x):
            arrays(x[k], out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            arrays(v, out)
    elif isinstance(x, (float, int, np.floating, np.integer)):
        out.append(np.float64(x).tobytes())
    elif isinstance(x, str):
        out.append(x.encode())
    return out


sha = lambda b: hashlib.sha256(b).hexdigest()
res = {}
for split, i in json.loads(sys.argv[1]):
    spec = sample_face(0, split, i, 256)
    image = render_face(spec)
    res[f"{split}_{i}"] = {
        # every float of the specification, bit for bit: catches differences that rounding to
        # 1/16 pixel or to the .pts decimals would still hide in these faces
        "spec": sha(b"".join(arrays([spec.landmarks, spec.geometry, spec.occluders], []))),
        "meta": sha(json.dumps(spec.meta, sort_keys=True).encode()),
        "pixels": sha(image.tobytes()),
        "jpg": sha(encode_image(image, "jpg")),
        "png": sha(encode_image(image, "png")),
        "pts": sha(format_pts(spec.landmarks).encode()),
    }
print(json.dumps(res))
"""


def _draw_in_subprocess(extra_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_IPP", "OPENCV_CPU_DISABLE", "OPENBLAS_CORETYPE",
                                                             "GLIBC_TUNABLES", "JSIMD_FORCENONE",
                                                             "NPY_DISABLE_CPU_FEATURES")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(FACES)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _numpy_dispatch_off() -> dict:
    """NPY_DISABLE_CPU_FEATURES naming every dispatched feature this CPU has (baseline excluded)."""
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as mu

    found = [f for f in mu.__cpu_dispatch__ if mu.__cpu_features__.get(f) and f not in mu.__cpu_baseline__]
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(found)} if found else {}


@pytest.fixture(scope="module")
def reference():
    return _draw_in_subprocess({})


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_same_bytes_whatever_the_simd_dispatch(reference, setting):
    env = dict(SETTINGS[setting])
    if setting == "baseline_isa":
        env.update(_numpy_dispatch_off())
    other = _draw_in_subprocess(env)
    differ = {face: [k for k in v if other[face][k] != v[k]] for face, v in reference.items()}
    assert not any(differ.values()), f"{setting} ({env}): differs in {differ}"


def test_portable_sin_cos_match_libm_to_one_ulp_and_are_exact_at_quadrants():
    x = np.random.default_rng(0).uniform(-40, 40, 20000)
    s, c = portable.sincos(x)
    assert np.max(np.abs(s - np.sin(x))) <= 2.3e-16 and np.max(np.abs(c - np.cos(x))) <= 2.3e-16
    # the scalar path performs the same operations as the array path
    assert all(portable.sincos(float(v)) == (a, b) for v, a, b in zip(x[:500], s[:500], c[:500]))
    assert portable.sincos(0.0) == (0.0, 1.0)
    assert portable.sincos(-np.pi / 2)[0] == -1.0
    with pytest.raises(ValueError):
        portable.sincos(1e7)


def test_known_bytes_of_generator_version():
    """What this generator version draws, on any CPU (computed on an AMD EPYC with AVX-512 and
    checked there with the settings above). Changing the generator on purpose: bump
    GENERATOR_VERSION in writer.py and update these three digests."""
    assert GENERATOR_VERSION == "2"
    spec = sample_face(0, "challenging", 29, 256)
    image = render_face(spec)
    sha = lambda b: hashlib.sha256(b).hexdigest()
    assert sha(np.ascontiguousarray(spec.landmarks).tobytes()) == "305d1be04e6a1a8a37b2cb4ef0ba02d8915fa5ea856dd7f1d3e5f8e1c464f0dc"
    assert sha(image.tobytes()) == "40812c1e249b6d5d7d77b9f99932181a8894ea404b4e5ca26942f482893d7076"
    assert sha(encode_image(image, "jpg")) == "793ac017538435bb1cfa14f5ea2eabf74ea6ca3f4e78ed5519d8e6e8bbcbb4d8"
