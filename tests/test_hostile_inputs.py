"""Hostile and careless inputs (issue 26): every file spanlib reads is checked against bounds before
memory is spent on it, no output replaces an input, non-finite numbers are refused, and a user's
mistake is one line with a documented exit status, not a traceback.

Where memory or time is at stake, the case runs in its own process under an address-space limit
(``RLIMIT_AS``, 1.5 GiB: about half of it is torch's own mappings) and a timeout, and must end
quickly with the message. Each test also checks that nothing outside its scratch folder changed
(the one place spanlib writes outside its outputs is ``spanlib/weights``, by ``--register``)."""

import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import spanlib
import spanlib.weights as weights
from eval_helpers import REPO, save_tiny_checkpoint, tiny_params, write_pts_folder
from spanlib.checkpoint import export_safetensors, load_model, read_model_file
from spanlib.cli import main
from spanlib.errors import DataError, DivergedError, ParamError

MEMORY_LIMIT = int(1.5 * 2**30)
TIMEOUT_S = 120  # generous for a loaded 2-core machine; the refusals take a few seconds


# ---------------------------------------------------------------- helpers
def run_limited(args: list[str], cwd: Path, timeout: float = TIMEOUT_S, env: dict | None = None,
                python: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m spanlib ARGS`` (or ``python -c CODE``) in its own process under MEMORY_LIMIT;
    (result, seconds). A run past ``timeout`` fails the test (TimeoutExpired)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    argv = [sys.executable, "-c", python, *args] if python else [sys.executable, "-m", "spanlib", *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TRITON_INTERPRET": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env=full_env)
    return proc, time.perf_counter() - start


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(autouse=True)
def weights_untouched():
    """spanlib/weights (the bundled models and their registry) is the same after every case."""
    folder = weights.WEIGHTS_DIR
    before = tree_digest(folder)
    yield
    assert tree_digest(folder) == before


def face_image(path: Path, size: int = 48) -> Path:
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))
    return path


def png_bomb(path: Path, side: int) -> Path:
    """A grey PNG of side x side pixels, all zero: a few tens of KB that decode to side**2 bytes."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def hostile_model_file(tmp_path: Path, name: str, edit_desc=None, edit_tensors=None) -> Path:
    """A .safetensors model file made from a real tiny export, with its description (and tensors)
    changed the way an attacker would: the file stays small and well formed."""
    ckpt = save_tiny_checkpoint(tmp_path / f"{name}_src.pt", variant="shn")
    source = tmp_path / f"{name}_src.safetensors"
    export_safetensors(ckpt, source, write_json_copy=False)
    tensors, desc = read_model_file(source)
    if edit_desc:
        edit_desc(desc)
    if edit_tensors:
        edit_tensors(tensors)
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"format": "spanlib-model", "spanlib": json.dumps(desc)})
    return path


def hostile_checkpoint(tmp_path: Path, name: str, edit) -> Path:
    """A training checkpoint (torch.save of plain data) with ``edit(ckpt)`` applied."""
    path = save_tiny_checkpoint(tmp_path / f"{name}.pt", variant="shn")
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


def _set(group: str, key: str, value):
    def edit(desc):
        desc["params"][group][key] = value
    return edit


# ---------------------------------------------------------------- 1, 3: architecture bounds
@pytest.mark.parametrize("group,key,value,bound", [
    ("model", "stages", 10**7, "16"),
    ("model", "width", 30000, "1024"),
    ("model", "depth", 50, "8"),
    ("crop", "input_size", 40000, "1024"),
])
def test_model_file_declaring_a_huge_network_is_refused_in_bounded_memory(tmp_path, group, key, value, bound):
    """Defect 1: `stages: 10**7` grew past 2.6 GB, width 30000 to 3.7 GB, input 40000 asked for 19 GB."""
    model = hostile_model_file(tmp_path, "huge", _set(group, key, value))
    image = face_image(tmp_path / "face.png")
    proc, seconds = run_limited(["predict", str(image), "--checkpoint", str(model), "--box", "0,0,48,48",
                                 "--device", "cpu", "--json", str(tmp_path / "p.json")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{model}: model file declares a network spanlib will not build" in proc.stderr
    assert f"{group}.{key}" in proc.stderr and bound in proc.stderr
    assert "Traceback" not in proc.stderr and seconds < TIMEOUT_S
    assert not (tmp_path / "p.json").exists()


def test_tensor_shapes_must_fit_the_declared_network(tmp_path):
    """A tensor of another shape than the declared network's (here: one far larger) is refused by
    comparing shapes with a skeleton on the meta device, before the real network is built."""
    def grow(tensors):
        key = next(k for k, v in tensors.items() if v.ndim == 4)
        tensors[key] = torch.zeros(64, *tensors[key].shape[1:])

    model = hostile_model_file(tmp_path, "shapes", edit_tensors=grow)
    with pytest.raises(DataError, match=r"shapes.safetensors: model file tensor \S+: torch.float32 of shape "
                                        r"\[.*\], but params.model .* builds torch.float32 of shape"):
        load_model(model)


def test_tensor_dtypes_must_fit_the_declared_network(tmp_path):
    def to_int(tensors):
        key = next(k for k, v in tensors.items() if v.is_floating_point())
        tensors[key] = tensors[key].to(torch.int32)

    model = hostile_model_file(tmp_path, "dtypes", edit_tensors=to_int)
    with pytest.raises(DataError, match=r"dtypes.safetensors: model file tensor \S+: torch.int32 of shape"):
        load_model(model)


def test_checkpoint_declaring_a_huge_width_is_refused_by_load_model_and_init_from(tmp_path):
    from spanlib.model import build_model
    from spanlib.train import init_weights

    ckpt = hostile_checkpoint(tmp_path, "wide", lambda c: c["params"]["model"].update(width=10**9))
    with pytest.raises(DataError, match=r"wide.pt: checkpoint declares a network spanlib will not build: .*model.width"):
        load_model(ckpt)
    own = build_model(tiny_params("shn")["model"], 68, 13, 32)
    with pytest.raises(DataError, match=r"wide.pt: checkpoint declares .*model.width"):
        init_weights(own, ckpt)  # train.init_from


def test_export_refuses_a_checkpoint_that_declares_a_huge_network(tmp_path, capsys):
    ckpt = hostile_checkpoint(tmp_path, "wide", lambda c: c["params"]["model"].update(width=10**9))
    out = tmp_path / "wide.safetensors"
    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"spanlib export: error: {ckpt}: checkpoint declares a network spanlib will not build" in err
    assert "model.width" in err and not out.exists() and not out.with_suffix(".json").exists()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """register_bundled pointed at a scratch weights folder and a copy of the registry source."""
    folder = tmp_path / "weights"
    folder.mkdir()
    source = tmp_path / "registry.py"
    shutil.copy(weights.__file__, source)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    monkeypatch.setitem(weights.BUNDLED, "real_scpan", dict(weights.BUNDLED["real_scpan"]))
    return {"folder": folder, "source": source, "text": source.read_text()}


def test_register_refuses_a_model_nobody_can_load(tmp_path, registry):
    """Defect 3: width 10**9 was shipped, and load_model() then asked for 147 GB."""
    model = hostile_model_file(tmp_path, "wide", _set("model", "width", 10**9))
    with pytest.raises(DataError, match=r"wide.safetensors: model file declares a network .*model.width"):
        weights.register_bundled(model, "real_scpan", registry_file=registry["source"])
    assert list(registry["folder"].iterdir()) == [] and registry["source"].read_text() == registry["text"]


def test_params_file_with_a_huge_width_is_refused_at_load(tmp_path):
    from spanlib.params import load_params

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("width: 32 ", "width: 30000 ", 1))
    with pytest.raises(ParamError, match=r"model.width: expected an integer >= 8 and <= 1024, got 30000"):
        load_params(params)


# ---------------------------------------------------------------- 5: finite or refused
def _nan_weights(tensors):
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key].clone().fill_(float("nan"))


def test_load_model_refuses_nan_weights(tmp_path):
    model = hostile_model_file(tmp_path, "nan", edit_tensors=_nan_weights)
    with pytest.raises(DataError, match=r"nan.safetensors: model file holds NaN or infinite weights in 1 of \d+ "
                                        r"tensors \(first: \S+\)"):
        load_model(model)


def test_export_refuses_nan_weights(tmp_path, capsys):
    ckpt = hostile_checkpoint(tmp_path, "nan", lambda c: _nan_weights(c["model_state"]))
    out = tmp_path / "nan.safetensors"
    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    assert f"{ckpt}: checkpoint holds NaN or infinite weights" in capsys.readouterr().err
    assert not out.exists()


def test_register_refuses_nan_weights(tmp_path, registry):
    model = hostile_model_file(tmp_path, "nan", edit_tensors=_nan_weights)
    with pytest.raises(DataError, match="nan.safetensors: model file holds NaN or infinite weights"):
        weights.register_bundled(model, "real_scpan", registry_file=registry["source"])
    assert list(registry["folder"].iterdir()) == [] and registry["source"].read_text() == registry["text"]


def test_export_onnx_refuses_nan_weights(tmp_path, capsys):
    """`export onnx` of a model with NaN weights exited 0 (`worst > TOLERANCE_PX` is false for NaN)."""
    pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
    model = hostile_model_file(tmp_path, "nan", edit_tensors=_nan_weights)
    out = tmp_path / "nan.onnx"
    assert main(["export", "onnx", str(model), "--out", str(out)]) == 2
    assert f"{model}: model file holds NaN or infinite weights" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_onnx_check_fails_on_a_nan_difference(tmp_path, monkeypatch):
    """The check itself: a NaN difference is no pass, whatever let the model through."""
    pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
    import spanlib.onnx_export as onnx_export

    model = load_model(save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn"))
    monkeypatch.setattr(onnx_export, "check_onnx", lambda *a, **k: {"max_abs_points_px": float("nan"),
                                                                     "max_abs_confidence": 0.0, "faces": 8})
    with pytest.raises(DataError, match=r"n.onnx: ONNX Runtime landmarks differ from PyTorch by nan px"):
        onnx_export.export_onnx(model, tmp_path / "n.onnx", real_root=None)
    assert not (tmp_path / "n.onnx").exists()


def test_infinite_learning_rate_is_refused(tmp_path):
    """`--set train.lr=.inf` trained to rc 0 with 349 of 412 tensors non-finite."""
    from spanlib.config import apply_overrides
    from spanlib.params import load_params

    params = load_params(REPO / "params.yaml")
    with pytest.raises(ParamError, match=r"--set train.lr.*expected a number > 0, got inf \(NaN and infinities "
                                         r"are refused"):
        apply_overrides(params, ["train.lr=.inf"])


def test_non_finite_loss_stops_training_naming_the_step_and_the_last_checkpoint(tmp_path, monkeypatch):
    import spanlib.train as train_module
    from spanlib.checkpoint import read_checkpoint

    write_pts_folder(tmp_path / "faces", n=4)
    params = tiny_params("shn")
    params["data"].update(source="pts", root=str(tmp_path / "faces"), train_split="all", test_splits=["all"])
    params["train"].update(iterations=6, batch_size=2, checkpoint_every=2, val_every=0, num_workers=0, threads=1,
                           init_from=None)
    real_step, calls = train_module.train_step, []

    def step_that_diverges(setup, optimizer, lr):
        terms = real_step(setup, optimizer, lr)
        calls.append(1)
        return {**terms, "total": float("nan")} if len(calls) == 3 else terms

    monkeypatch.setattr(train_module, "train_step", step_that_diverges)
    out = tmp_path / "run.pt"
    with pytest.raises(DivergedError, match=rf"the loss is nan .* at step 3; training stopped before writing that "
                                            rf"step. the last good checkpoint is {out} \(iteration 2\)"):
        train_module.train(params, "shn", out, device="cpu", progress=False)
    assert read_checkpoint(out)["iteration"] == 2 and len(calls) == 3


def test_predict_json_is_valid_json_when_a_value_is_nan(tmp_path, monkeypatch, capsys):
    """`predict` with a diverged model wrote the bare word NaN into --json."""
    import spanlib.predict as predict_module
    from spanlib.predict import FaceResult, FrameResult

    def nan_results(model, paths, **kwargs):
        face = FaceResult(box=[0.0, 0.0, 48.0, 48.0], landmarks=[[float("nan"), 1.0]] * 68,
                          confidence=float("nan"), landmark_confidence=[float("inf")] * 68, box_source="given")
        return [FrameResult(str(p), None, [face], "1 face(s)") for p in paths]

    monkeypatch.setattr(predict_module, "predict_paths", nan_results)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    image = face_image(tmp_path / "face.png")
    out = tmp_path / "p.json"
    assert main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--device", "cpu",
                 "--backend", "eager", "--json", str(out)]) == 0

    def refuse(word):
        raise AssertionError(f"{word} in --json")

    face = json.loads(out.read_text(), parse_constant=refuse)["results"][0]["faces"][0]
    assert face["confidence"] is None and face["landmarks"][0] == [None, 1.0]
    assert face["landmark_confidence"][0] is None


# ---------------------------------------------------------------- 6: decompression bombs
@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", 8000)


def test_image_bomb_is_refused_by_its_header_in_bounded_memory_and_time(tmp_path, bomb):
    """A 62 KB PNG of 8000x8000 took 3.4 GB and 38 s in `predict`."""
    assert bomb.stat().st_size < 200_000
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    proc, seconds = run_limited(["predict", str(bomb), "--checkpoint", str(ckpt), "--box", "0,0,48,48",
                                 "--device", "cpu"], tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert (f"{bomb}: declares 8000x8000 = 64000000 pixels, over the limit of 50000000 pixels (not decoded; "
            f"a larger limit: SPANLIB_MAX_IMAGE_PIXELS=N)") in proc.stdout
    assert "Traceback" not in proc.stderr and seconds < 60


def test_a_bomb_in_a_batch_leaves_the_other_images_their_results(tmp_path, bomb):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    good, grey = face_image(tmp_path / "good.png"), face_image(tmp_path / "grey.png", 64)
    out = tmp_path / "b.json"
    proc, _ = run_limited(["predict", str(good), str(bomb), str(grey), "--checkpoint", str(ckpt), "--box",
                           "0,0,48,48", "--device", "cpu", "--json", str(out)], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"1 of 3 input(s) failed: {bomb}" in proc.stderr
    results = {Path(r["path"]).name: r for r in json.loads(out.read_text())["results"]}
    assert "over the limit of 50000000 pixels" in results["bomb.png"]["error"]
    assert len(results["good.png"]["faces"]) == 1 and len(results["grey.png"]["faces"]) == 1


def test_pixel_budget_is_set_by_the_environment(tmp_path, monkeypatch):
    from spanlib.io import read_image

    image = face_image(tmp_path / "face.png")  # 48 x 48 = 2304 pixels
    monkeypatch.setenv("SPANLIB_MAX_IMAGE_PIXELS", "2000")
    with pytest.raises(DataError, match=r"face.png: declares 48x48 = 2304 pixels, over the limit of 2000 pixels"):
        read_image(image)
    monkeypatch.setenv("SPANLIB_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ParamError, match="SPANLIB_MAX_IMAGE_PIXELS='lots': expected a positive number"):
        read_image(image)
    monkeypatch.setenv("SPANLIB_MAX_IMAGE_PIXELS", "3000")
    assert read_image(image).shape == (48, 48, 3)


def test_image_size_of_a_huge_header_is_read_without_decoding(tmp_path):
    """`data inspect` asks each image's size: Pillow's own bomb error was a traceback at 20000x20000."""
    from spanlib.data.sample import image_file_size
    from spanlib.io import image_problem

    huge = png_bomb(tmp_path / "huge.png", 20000)
    assert image_file_size(str(huge)) == (20000, 20000)
    assert "declares 20000x20000 = 400000000 pixels" in image_problem(huge)


# ---------------------------------------------------------------- 4: YAML alias bombs
def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_params_file_is_refused_quickly(tmp_path):
    """Nine levels of aliases hung params._walk (about 7x longer a level)."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text() + "\nbomb:\n" +
                      "".join(f"  {line}\n" for line in _alias_bomb().splitlines()))
    code = ("import sys\nfrom spanlib.params import load_params\nfrom spanlib.errors import ParamError\n"
            "try:\n    load_params(sys.argv[1])\nexcept ParamError as exc:\n    print(exc)\n")
    proc, seconds = run_limited([str(params)], tmp_path, timeout=60, python=code)
    assert proc.returncode == 0, proc.stderr
    assert f"{params}: YAML expands to more than 100000 nodes through its aliases" in proc.stdout
    assert seconds < 60


def test_alias_bomb_in_a_set_value_is_refused_quickly(tmp_path):
    """The same inside `--set data.extra_train=...` reached 3.4 GB in 40 s."""
    value = "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}"
    proc, seconds = run_limited(["train", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "x.pt"),
                                 "--set", f"data.extra_train={value}"], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--set data.extra_train: YAML expands to more than 100000 nodes" in proc.stderr
    assert seconds < 60 and not (tmp_path / "x.pt").exists()


def test_deep_yaml_nesting_is_a_message(tmp_path):
    from spanlib.params import load_params

    params = tmp_path / "deep.yaml"
    params.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ParamError, match=r"deep.yaml: YAML nested (too deeply|deeper than 64)"):
        load_params(params)
    params.write_text("seed: " + "[" * 80 + "]" * 80 + "\n")
    with pytest.raises(ParamError, match=r"deep.yaml: YAML nested deeper than 64 levels"):
        load_params(params)


def test_recursive_alias_is_refused(tmp_path):
    from spanlib.params import load_params

    params = tmp_path / "loop.yaml"
    params.write_text("seed: &a [1, *a]\n")
    with pytest.raises(ParamError, match="loop.yaml: a YAML alias refers to a node that contains it"):
        load_params(params)


# ---------------------------------------------------------------- 11: reproducible export
def test_export_gives_the_same_bytes_in_every_process(tmp_path):
    """The safetensors library wrote the metadata in hash-map order, different between processes."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    digests = set()
    for i, seed in enumerate(["1", "2", "3"]):
        out = tmp_path / f"e{i}.safetensors"
        proc, _ = run_limited(["export", str(ckpt), "--out", str(out), "--no-json"], tmp_path,
                              env={"PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    data = out.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n].decode().rstrip(" ")
    assert n % 8 == 0 and header == json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False)
    assert load_model(out).variant == "shn"


# ---------------------------------------------------------------- 12: FIFOs and other non-files
def test_fifo_as_checkpoint_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    image = face_image(tmp_path / "face.png")
    proc, seconds = run_limited(["predict", str(image), "--checkpoint", str(fifo), "--box", "0,0,48,48",
                                 "--device", "cpu"], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{fifo}: a FIFO, not a regular file" in proc.stderr and seconds < 60


def test_fifo_as_image_is_an_error_for_that_input_only(tmp_path):
    fifo = tmp_path / "face.jpg"
    os.mkfifo(fifo)
    good = face_image(tmp_path / "good.png")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    proc, seconds = run_limited(["predict", str(fifo), str(good), "--checkpoint", str(ckpt), "--box", "0,0,48,48",
                                 "--device", "cpu"], tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"{fifo}: error: {fifo}: a FIFO, not a regular file" in proc.stdout
    assert f"{good}: 1 face(s)" in proc.stdout and seconds < 60


def test_directory_and_symlink_loop_are_named_as_such(tmp_path):
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(DataError, match=r"folder.pt: is a directory, not a file"):
        load_model(tmp_path / "folder.pt")
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"loop.pt: a symbolic link loop"):
        load_model(loop)


# ---------------------------------------------------------------- 13: overlays
def test_overlays_of_inputs_with_one_name_do_not_collide(tmp_path, capsys):
    from spanlib.predict import overlay_stems

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    first, second = face_image(a / "face.png"), face_image(b / "face.png", 64)
    single = face_image(tmp_path / "alone.png")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    assert main(["predict", str(first), str(second), str(single), "--checkpoint", str(ckpt), "--box", "0,0,40,40",
                 "--device", "cpu", "--overlay", str(tmp_path / "ov")]) == 0
    stems = overlay_stems([first, second, single])
    written = sorted(p.name for p in (tmp_path / "ov").iterdir())
    assert written == sorted(f"{stems[p]}.png" for p in (first, second, single))
    assert len(written) == 3 and "alone.png" in written
    assert cv2.imread(str(tmp_path / "ov" / f"{stems[second]}.png")).shape[:2] == (64, 64)


# ---------------------------------------------------------------- 2: outputs that are inputs
@pytest.fixture
def exported(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=2)
    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(metrics), "--device", "cpu", "--quiet"]) == 0
    return {"ckpt": ckpt, "metrics": metrics, "digest": tree_digest(tmp_path)}


@pytest.mark.parametrize("out_name,expected", [
    ("tiny.pt", "--out is the checkpoint"),
    ("m.json", "--out is --metrics file 1"),
    ("m.safetensors", "the .json copy beside --out is --metrics file 1"),
])
def test_export_refuses_to_overwrite_its_inputs(tmp_path, capsys, exported, out_name, expected):
    out = tmp_path / out_name
    code = main(["export", str(exported["ckpt"]), "--out", str(out), "--metrics", str(exported["metrics"])])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "would overwrite an input" in err
    assert tree_digest(tmp_path) == exported["digest"]  # nothing changed, nothing added


def test_export_onnx_refuses_an_out_that_its_description_would_replace(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    assert main(["export", "onnx", str(ckpt), "--out", str(tmp_path / "net.json")]) == 2
    assert "--out and the .json description beside --out are the same file" in capsys.readouterr().err
    assert not (tmp_path / "net.json").exists()


def test_register_name_is_checked_before_out_is_written(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    out = tmp_path / "x.safetensors"
    assert main(["export", str(ckpt), "--out", str(out), "--register", ""]) == 2
    assert "bundled model '': unknown" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------- 7: messages, not tracebacks
def test_non_utf8_params_file_is_a_message(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_bytes((REPO / "params.yaml").read_bytes() + b"\n# caf\xe9\n")
    assert main(["train", "--params", str(params), "--out", str(tmp_path / "x.pt")]) == 2
    assert f"spanlib train: error: {params}: not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["directory", "parent_is_a_file"])
def test_unwritable_json_output_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, where):
    import spanlib.predict as predict_module

    def no_work(*args, **kwargs):
        raise AssertionError("predicted before checking --json")

    monkeypatch.setattr(predict_module, "predict_paths", no_work)
    if where == "directory":
        out = tmp_path / "out.json"
        out.mkdir()
        expected = f"spanlib predict: error: {out}: is an existing directory, not a file to write"
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "out.json"
        expected = f"spanlib predict: error: {out}: cannot be written: {tmp_path / 'afile'} is a file, not a folder"
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    image = face_image(tmp_path / "face.png")
    code = main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--device", "cpu",
                 "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and expected in err and "Traceback" not in err


def test_train_out_that_is_a_directory_fails_before_training(tmp_path, capsys, monkeypatch):
    """Defect 8: `train --out DIR` trained first, then died after the last iteration."""
    import spanlib.train as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(train_module, "train", no_training)
    (tmp_path / "run.pt").mkdir()
    assert main(["train", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "run.pt")]) == 3
    assert f"spanlib train: error: {tmp_path / 'run.pt'}: is an existing directory" in capsys.readouterr().err


def test_predict_json_may_not_overwrite_an_input_image(tmp_path, capsys):
    image = face_image(tmp_path / "face.png")
    before = image.read_bytes()
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    assert main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--json", str(image)]) == 2
    assert "--json is input 1" in capsys.readouterr().err and image.read_bytes() == before


def test_ctrl_c_in_predict_is_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    import spanlib.predict as predict_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "predict_paths", interrupted)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    image = face_image(tmp_path / "face.png")
    assert main(["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--device", "cpu"]) == 130
    assert "spanlib predict: interrupted (Ctrl-C)" in capsys.readouterr().err


def test_metadata_that_is_not_a_string_is_a_message(tmp_path):
    source = hostile_model_file(tmp_path, "plain")
    data = source.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["spanlib"] = {"format": "spanlib-model"}  # an object, not a JSON string
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    bad = tmp_path / "object.safetensors"
    bad.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    with pytest.raises(DataError, match="object.safetensors: safetensors header metadata must map names to strings"):
        load_model(bad)


def test_export_of_a_checkpoint_whose_params_are_none_is_a_message(tmp_path, capsys):
    ckpt = hostile_checkpoint(tmp_path, "noparams", lambda c: c.update(params=None))
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert f"{ckpt}: checkpoint params are NoneType, not a dict" in capsys.readouterr().err


def test_the_limits_and_exit_statuses_are_in_the_help():
    from spanlib.cli import build_parser

    text = build_parser().format_help()
    for words in ("Exit status: 0 success, 1 some inputs", "3 a file could not be read or written",
                  "130 interrupted", "SPANLIB_MAX_IMAGE_PIXELS", "model.width <= 1024"):
        assert words in " ".join(text.split()), words
