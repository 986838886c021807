"""Portable mode (spanlib/utils/portable.py): a tiny training and evaluation give the same bits on every
x86-64 CPU. Other CPUs are emulated with QEMU's user-mode emulator: ``qemu-x86_64 -cpu Haswell``
runs this venv's Python as on an AVX2 CPU, ``-cpu Nehalem`` as on an SSE4.2 one, ``-cpu EPYC`` as on
an AMD one (``.ci/run`` installs Debian's qemu-user; without it these tests skip with the reason).

The probe (tests/portable/probe.py) prints one JSON line: the loss terms after 3 steps of scpan and
of semi_scpan, a sha256 of their weights, and a sha256 of every number of their evaluation.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from spanlib.utils import portable

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "portable" / "probe.py"
QEMU = shutil.which("qemu-x86_64")
CPUS = ("Haswell", "Nehalem", "EPYC")


def _run_probe(faces: Path, out: Path, env: dict, cpu: str | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(PROBE), str(faces), str(out)]
    if cpu is not None:
        command = [QEMU, "-cpu", cpu] + command
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, f"{' '.join(command[:3])}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from spanlib.data.synth.writer import write_synthetic_dataset

    root = tmp_path_factory.mktemp("portable_faces")
    write_synthetic_dataset(root, n_train=16, n_common=6, n_challenging=0, n_unlabeled=8, size=96, seed=0,
                            progress=False)
    return root


def test_launcher_sets_the_settings_before_the_command_starts(tmp_path):
    """``python -m spanlib.utils.portable CMD`` runs CMD with every setting; pipeline.portable: false
    runs it without them."""
    code = "import os, json; print(json.dumps({k: os.environ.get(k) for k in %r}))" % list(portable.PORTABLE_ENV)
    env = {k: v for k, v in os.environ.items() if k not in portable.PORTABLE_ENV}
    on = subprocess.run([sys.executable, "-m", "spanlib.utils.portable", sys.executable, "-c", code], env=env,
                        capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(on.stdout) == portable.PORTABLE_ENV
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("  portable: true", "  portable: false"))
    off = subprocess.run([sys.executable, "-m", "spanlib.utils.portable", "--params", str(params), sys.executable,
                          "-c", code], env=env, capture_output=True, text=True, cwd=REPO, check=True)
    assert set(json.loads(off.stdout).values()) == {None}
    missing = subprocess.run([sys.executable, "-m", "spanlib.utils.portable", "no-such-program-here"], env=env,
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 127 and "no-such-program-here" in missing.stderr


def test_torch_sees_the_settings():
    """In a process started by the launcher, torch runs its plain kernels and NumPy its baseline."""
    code = ("import torch, numpy, json; from numpy._core._multiarray_umath import __cpu_features__ as f; "
            "from spanlib.utils import portable; "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), bool(f.get('X86_V3')), portable.active()]))")
    done = subprocess.run([sys.executable, "-m", "spanlib.utils.portable", sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(done.stdout) == ["DEFAULT", False, True]


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the emulated CPUs are x86-64 ones")
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 not installed (Debian: apt-get install qemu-user)")
def test_same_bits_on_emulated_cpus_and_different_bits_without_portable_mode(faces, tmp_path):
    """Natively and under Haswell, Nehalem and EPYC: identical losses, weights and metrics in
    portable mode; without it (our C kernels still off, as -march=native code cannot run on an
    older emulated CPU), Nehalem's run differs from the native one, so the test can fail."""
    pinned = portable.portable_env()
    plain = {k: v for k, v in os.environ.items() if k not in portable.PORTABLE_ENV}
    plain["SPANLIB_NATIVE"] = "0"
    jobs = {"native": (pinned, None), **{cpu: (pinned, cpu) for cpu in CPUS},
            "plain native": (plain, None), "plain Nehalem": (plain, "Nehalem")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_probe, faces, tmp_path / name.replace(" ", "_"), env, cpu)
                   for name, (env, cpu) in jobs.items()}
        results = {name: f.result() for name, f in futures.items()}
    reference = results["native"]
    assert reference["torch_cpu_capability"] == "DEFAULT"
    for cpu in CPUS:
        assert results[cpu] == reference, f"portable mode under -cpu {cpu} differs from the native run"
    assert results["plain native"]["scpan"] != results["plain Nehalem"]["scpan"], \
        "without portable mode the emulated SSE4.2 CPU should round differently (else this test proves nothing)"


def _executed_notebook(start: str, seconds: float, rate: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": start, "end_time": start, "duration": seconds,
                                "parameters": {"params_file": "params.yaml"}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    cell = nbformat.v4.new_code_cell("print('NME 4.2')")
    cell.metadata["execution"] = {"iopub.execute_input": start}
    cell.metadata["papermill"] = {"start_time": start, "end_time": start, "duration": seconds, "status": "completed"}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="NME 4.2\n"),
                    nbformat.v4.new_output("stream", name="stderr", text=f"train: 100% 250/250 [{rate} it/s]\n")]
    nb.cells = [cell]
    return nb


def test_published_copy_is_the_same_bytes_whatever_the_run_times(tmp_path):
    """Two runs that differ only in wall times and progress-bar rates publish identical copies; the
    times go to the copy's .machine.json sidecar, which .dvcignore keeps out of dvc.lock."""
    import nbformat

    from spanlib.study.lab import publish

    copies = []
    for run, (start, seconds, rate) in enumerate([("2026-12-01T10:00:00", 61.5, "4.1"),
                                                  ("2026-12-04T03:00:00", 93.0, "2.7")]):
        src = tmp_path / f"run{run}" / "executed.ipynb"
        src.parent.mkdir()
        nbformat.write(_executed_notebook(start, seconds, rate), str(src))
        dst = publish(src, tmp_path / f"run{run}" / "copy.ipynb")
        copies.append(dst.read_bytes())
        sidecar = json.loads((tmp_path / f"run{run}" / "copy.machine.json").read_text())
        assert sidecar["run_times"]["notebook"]["duration"] == seconds
        assert sidecar["run_times"]["cells"][0]["start_time"] == start
        assert sidecar["portable"] is portable.active() and "cpu" in sidecar["machine"]
    assert copies[0] == copies[1]
    text = copies[0].decode()
    assert "NME 4.2" in text and "it/s" not in text and "duration" not in text and "params_file" in text
    ignored = (REPO / ".dvcignore").read_text().split()
    assert "*.machine.json" in ignored and "*.machine.md" in ignored


def test_metrics_json_keeps_the_machine_in_its_sidecar(tmp_path):
    from spanlib.utils.provenance import machine_info, machine_sidecar, write_result_json

    result = {"provenance": {"variant": "scpan", "machine": machine_info()}, "subsets": {"full": {"n": 3}}}
    path = tmp_path / "s0.json"
    write_result_json(path, result)
    written = json.loads(path.read_text())
    assert written == {"provenance": {"variant": "scpan"}, "subsets": {"full": {"n": 3}}}
    assert machine_sidecar(path) == tmp_path / "s0.machine.json"
    assert json.loads(machine_sidecar(path).read_text())["machine"]["cpu"] == machine_info()["cpu"]
    assert result["provenance"]["machine"]  # the caller's dict is left as it was
