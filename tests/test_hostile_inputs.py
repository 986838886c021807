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
import pickle
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
import spanlib.inference.weights as weights
from eval_helpers import REPO, save_tiny_checkpoint, tiny_params, write_pts_folder
from spanlib.inference.checkpoint import export_safetensors, load_model, read_model_file, register_bundled
from spanlib.cli import main
from spanlib.utils.errors import DataError, DivergedError, ParamError

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
    from spanlib.training.train import init_weights

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
    """register_bundled pointed at a scratch weights folder and a copy of the registry JSON."""
    folder = tmp_path / "weights"
    folder.mkdir()
    source = tmp_path / "registry.json"
    shutil.copy(weights.REGISTRY, source)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    monkeypatch.setitem(weights.BUNDLED, "real_300w", dict(weights.BUNDLED["real_300w"]))
    return {"folder": folder, "source": source, "text": source.read_text()}


def test_register_refuses_a_model_nobody_can_load(tmp_path, registry):
    """Defect 3: width 10**9 was shipped, and load_model() then asked for 147 GB."""
    model = hostile_model_file(tmp_path, "wide", _set("model", "width", 10**9))
    with pytest.raises(DataError, match=r"wide.safetensors: model file declares a network .*model.width"):
        register_bundled(model, "real_300w", registry_file=registry["source"])
    assert list(registry["folder"].iterdir()) == [] and registry["source"].read_text() == registry["text"]


def test_params_file_with_a_huge_width_is_refused_at_load(tmp_path):
    from spanlib.config.params import load_params

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
        register_bundled(model, "real_300w", registry_file=registry["source"])
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
    import spanlib.inference.onnx_export as onnx_export

    model = load_model(save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn"))
    monkeypatch.setattr(onnx_export, "check_onnx", lambda *a, **k: {"max_abs_points_px": float("nan"),
                                                                     "max_abs_confidence": 0.0, "faces": 8})
    with pytest.raises(DataError, match=r"n.onnx: ONNX Runtime landmarks differ from PyTorch by nan px"):
        onnx_export.export_onnx(model, tmp_path / "n.onnx", real_root=None)
    assert not (tmp_path / "n.onnx").exists()


def test_infinite_learning_rate_is_refused(tmp_path):
    """`--set train.lr=.inf` trained to rc 0 with 349 of 412 tensors non-finite."""
    from spanlib.config.schema import apply_overrides
    from spanlib.config.params import load_params

    params = load_params(REPO / "params.yaml")
    with pytest.raises(ParamError, match=r"--set train.lr.*expected a number > 0, got inf \(NaN and infinities "
                                         r"are refused"):
        apply_overrides(params, ["train.lr=.inf"])


def test_non_finite_loss_stops_training_naming_the_step_and_the_last_checkpoint(tmp_path, monkeypatch):
    import spanlib.training.train as train_module
    from spanlib.inference.checkpoint import read_checkpoint

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
    import spanlib.inference.predict as predict_module
    from spanlib.inference.predict import FaceResult, FrameResult

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
    from spanlib.utils.files import read_image

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
    from spanlib.utils.files import image_problem

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
    code = ("import sys\nfrom spanlib.config.params import load_params\nfrom spanlib.utils.errors import ParamError\n"
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
    from spanlib.config.params import load_params

    params = tmp_path / "deep.yaml"
    params.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ParamError, match=r"deep.yaml: YAML nested (too deeply|deeper than 64)"):
        load_params(params)
    params.write_text("seed: " + "[" * 80 + "]" * 80 + "\n")
    with pytest.raises(ParamError, match=r"deep.yaml: YAML nested deeper than 64 levels"):
        load_params(params)


def test_recursive_alias_is_refused(tmp_path):
    from spanlib.config.params import load_params

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
    from spanlib.inference.predict import overlay_stems

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
    import spanlib.inference.predict as predict_module

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
    import spanlib.training.train as train_module

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
    import spanlib.inference.predict as predict_module

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


# ---------------------------------------------------------------- audit additions (issue 26, second pass)
def noisy_jpeg(path: Path, progressive: bool = False) -> Path:
    """A JPEG whose compressed data is large enough to cut (noise compresses badly)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    pixels = cv2.GaussianBlur(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8), (5, 5), 2)
    Image.fromarray(pixels).save(path, quality=90, progressive=progressive)
    return path


@pytest.mark.parametrize("variant", ["baseline", "progressive", "marker_then_padding"])
def test_a_cut_jpeg_with_an_end_marker_appended_is_refused(tmp_path, variant):
    """Defect 10: `head -c N a.jpg > t.jpg; printf '\\xff\\xd9' >> t.jpg` passed the end-marker check,
    and predict, inspect and evaluate used the grey rest."""
    from spanlib.data.sources import inspect_source
    from spanlib.utils.files import image_problem, read_image

    whole = noisy_jpeg(tmp_path / "whole.jpg", progressive=variant == "progressive")
    data = whole.read_bytes()
    cut = data[: len(data) // 2] + b"\xff\xd9" + (b"\0" * 8000 if variant == "marker_then_padding" else b"")
    faces = tmp_path / "faces"
    write_pts_folder(faces, n=2)
    (faces / "face1.png").unlink()
    (faces / "face1.jpg").write_bytes(cut)
    assert cv2.imread(str(faces / "face1.jpg")) is not None  # OpenCV alone accepts it
    assert image_problem(whole) is None
    assert "truncated JPEG" in image_problem(faces / "face1.jpg")
    with pytest.raises(DataError, match=r"face1.jpg: truncated JPEG \(libjpeg: .*premature end"):
        read_image(faces / "face1.jpg")
    entry = inspect_source("pts", faces)["splits"]["all"]
    assert entry["faces"] == 1 and [Path(b["path"]).name for b in entry["broken"]] == ["face1.jpg"]


def test_a_text_file_named_jpg_is_listed_by_data_inspect(tmp_path, capsys):
    """Smaller: a text file named .jpg aborted `data inspect` instead of being listed."""
    faces = tmp_path / "faces"
    write_pts_folder(faces, n=3)
    (faces / "face2.png").unlink()
    (faces / "face2.jpg").write_text("not an image at all\n")
    assert main(["data", "inspect", "--source", "pts", "--root", str(faces)]) == 1
    out = capsys.readouterr().out
    assert "broken images: 1" in out and f"{faces / 'face2.jpg'}: not a readable image" in out
    assert "all: 2 faces" in out


@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_pickle_refusal_names_the_function_and_keeps_the_warning(tmp_path, kind):
    """Defect 9: the message was cut on torch's "Re-running `torch.load` with `weights_only` set to
    `False`", dropped the warning about code execution and never named the function."""
    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / f"evil_{kind}.pt"
    if kind == "zip":
        torch.save({"format": "spanlib-checkpoint", "x": Payload()}, path)
    else:
        path.write_bytes(pickle.dumps({"format": "spanlib-checkpoint", "x": Payload()}, protocol=4))
    with pytest.raises(DataError) as caught:
        load_model(path)
    message = str(caught.value)
    assert f"{path}: refused: it needs the Python object '{os.system.__module__}.system'" in message
    assert "a pickle can run any code it names" in message and "Re-running" not in message
    assert "\n" not in message and not marker.exists()


@pytest.mark.parametrize("problem,content,expected", [
    ("not_utf8", b"image,x0,y0,x1,y1,x2,y2\ncaf\xe9.png,1,2,3,4,5,6\n", ": not UTF-8 text (invalid continuation"),
    ("huge_field", b"image,x0,y0,x1,y1,x2,y2\n\"" + b"a" * (200 * 1024) + b"\",1,2,3,4,5,6\n",
     ":2: not a readable CSV row (field larger than field limit"),
])
def test_a_bad_csv_file_is_a_message_naming_it(tmp_path, capsys, problem, content, expected):
    """Defect 7: a non-UTF-8 CSV and a field over 128 KiB were tracebacks."""
    root = tmp_path / "csv"
    root.mkdir()
    (root / "train.csv").write_bytes(content)
    assert main(["data", "inspect", "--source", "csv", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"spanlib data: error: {root / 'train.csv'}{expected}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("key", ["seed", "train.val_seed", "synth.seed", "pipeline.seeds"])
def test_a_seed_beyond_64_bits_is_refused(key):
    """Defect 7: `--set seed=` beyond 64 bits was torch's "Overflow when unpacking long" traceback."""
    from spanlib.config.schema import apply_overrides
    from spanlib.config.params import load_params

    value = 2**70 if key != "pipeline.seeds" else [0, 2**70]
    with pytest.raises(ParamError, match=rf"--set {key}: .*expected .*<= 9223372036854775807"):
        apply_overrides(load_params(REPO / "params.yaml"), [f"{key}={value}"])


def test_train_refuses_a_huge_seed_before_training(tmp_path, capsys, monkeypatch):
    import spanlib.training.train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert main(["train", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "x.pt"),
                 "--set", f"seed={2**64}"]) == 2
    err = capsys.readouterr().err
    assert f"spanlib train: error: --set seed: seed: expected an integer >= 0 and <= {2**63 - 1}, got {2**64}" in err


def test_a_detector_model_that_is_not_onnx_is_a_message(tmp_path, capsys):
    """Defect 7: a --detector-model that is not ONNX was OpenCV's traceback."""
    fake = tmp_path / "yunet.onnx"
    fake.write_text("this is not an ONNX graph\n")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    image = face_image(tmp_path / "face.png")
    assert main(["predict", str(image), "--checkpoint", str(ckpt), "--device", "cpu",
                 "--detector-model", str(fake)]) == 2
    err = capsys.readouterr().err
    assert f"spanlib predict: error: {fake}: not a YuNet face detector model OpenCV can read" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def _no_work(module: str, name: str):
    """Replace the long work of a command by a failure: a check that comes too late fails the test."""
    import importlib

    def fail(*args, **kwargs):
        raise AssertionError(f"{module}.{name} ran before its outputs were checked")

    return importlib.import_module(module), name, fail


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys, a folder nobody may create files in")
@pytest.mark.parametrize("command", ["predict", "evaluate", "export_onnx", "train"])
def test_an_output_in_a_folder_nobody_can_write_fails_before_the_work(tmp_path, capsys, monkeypatch, command):
    """Defect 7 (read-only folder): permission bits do not stop root, so the folder is probed; the
    status is 3 and nothing is computed first."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    target = Path("/sys") / f"spanlib_{os.getpid()}.out"
    argv, work = {
        "predict": (["predict", str(face_image(tmp_path / "f.png")), "--checkpoint", str(ckpt), "--box", "0,0,48,48",
                     "--device", "cpu", "--json", str(target)], ("spanlib.inference.predict", "predict_paths")),
        "evaluate": (["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path),
                      "--json", str(target)], ("spanlib.evaluation.evaluate", "evaluate")),
        "export_onnx": (["export", "onnx", str(ckpt), "--out", str(target)], ("spanlib.inference.onnx_export", "export_onnx")),
        "train": (["train", "--params", str(REPO / "params.yaml"), "--out", str(target)], ("spanlib.training.train", "train")),
    }[command]
    monkeypatch.setattr(*_no_work(*work))
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"{target}: cannot be written: the folder /sys is not writable" in err and "Traceback" not in err


def test_ctrl_c_in_export_is_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    import spanlib.inference.checkpoint as checkpoint_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "export_safetensors", interrupted)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.safetensors")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == ("spanlib export: interrupted (Ctrl-C); files are written atomically, so none is "
                           "half-written")
    assert not (tmp_path / "x.safetensors").exists()


def test_export_onnx_writes_atomically(tmp_path, capsys, monkeypatch):
    """Smaller: the ONNX file was written in place; an interrupted write left half a graph over the
    previous file."""
    pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    out = tmp_path / "net.onnx"
    out.write_bytes(b"the previous graph")
    real_write = Path.write_bytes

    def write_half_then_interrupt(self, data):
        if len(data) > 1000:  # the graph; small files pass
            real_write(self, data[: len(data) // 2])
            raise KeyboardInterrupt
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_half_then_interrupt)
    assert main(["export", "onnx", str(ckpt), "--out", str(out), "--real-root", str(tmp_path / "none")]) == 130
    assert out.read_bytes() == b"the previous graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "tiny.pt"]  # no temporary file left


@pytest.mark.parametrize("case", ["predict_json_is_the_checkpoint", "overlay_is_an_input_image",
                                  "evaluate_json_is_the_checkpoint", "train_out_is_the_params_file",
                                  "train_out_is_init_from", "export_onnx_out_is_the_model"])
def test_no_command_writes_over_its_inputs(tmp_path, capsys, monkeypatch, case):
    """Nothing on disk is damaged: every writer refuses an output that is one of its inputs, before
    any work (defect 2 was `export`; predict, evaluate, train and export onnx had the same gap)."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    (tmp_path / "ov").mkdir()
    image = face_image(tmp_path / "ov" / "face.png")
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    init = save_tiny_checkpoint(tmp_path / "init.pt", variant="shn")
    argv, work, expected = {
        "predict_json_is_the_checkpoint": (
            ["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--json", str(ckpt)],
            ("spanlib.inference.predict", "predict_paths"), "--json is --checkpoint"),
        "overlay_is_an_input_image": (
            ["predict", str(image), "--checkpoint", str(ckpt), "--box", "0,0,48,48", "--overlay", str(tmp_path / "ov")],
            ("spanlib.inference.predict", "predict_paths"), "the overlay of input 1 is input 1"),
        "evaluate_json_is_the_checkpoint": (
            ["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path), "--json", str(ckpt)],
            ("spanlib.evaluation.evaluate", "evaluate"), "--json is --checkpoint"),
        "train_out_is_the_params_file": (
            ["train", "--params", str(params), "--out", str(params)], ("spanlib.training.train", "train"), "--out is --params"),
        "train_out_is_init_from": (
            ["train", "--params", str(params), "--out", str(init), "--set", f"train.init_from={init}"],
            ("spanlib.training.train", "train"), "--out is train.init_from"),
        "export_onnx_out_is_the_model": (
            ["export", "onnx", str(ckpt), "--out", str(ckpt)], ("spanlib.inference.onnx_export", "export_onnx"),
            "--out is the model"),
    }[case]
    monkeypatch.setattr(*_no_work(*work))
    before = tree_digest(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "would overwrite an input" in err, err
    assert tree_digest(tmp_path) == before


def test_export_out_ending_in_json_is_refused(tmp_path, capsys):
    """Defect 2: `export --out m.json` is the file its own description copy would replace."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    out = tmp_path / "m.json"
    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    assert "--out and the .json copy beside --out are the same file" in capsys.readouterr().err
    assert not out.exists()


def test_register_with_an_unknown_name_is_refused_before_out_is_written(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    out = tmp_path / "x.safetensors"
    assert main(["export", str(ckpt), "--out", str(out), "--register", "no_such_model"]) == 2
    assert "bundled model 'no_such_model': unknown" in capsys.readouterr().err and not out.exists()


def test_a_fifo_as_metrics_file_is_refused_without_hanging(tmp_path):
    """Defect 12's kind, in `export --metrics`: the metrics JSON was read before checking it is a file."""
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    proc, seconds = run_limited(["export", str(ckpt), "--out", str(tmp_path / "x.safetensors"), "--metrics",
                                 str(fifo)], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{fifo}: a FIFO, not a regular file" in proc.stderr and seconds < 60
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("option", ["--max-frames", "--every"])
def test_zero_frames_is_a_usage_error(tmp_path, capsys, option):
    """Smaller: `--max-frames 0` read no frame and then said the video had none."""
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(tmp_path / "v.mp4"), option, "0"])
    assert stop.value.code == 2
    assert f"argument {option}: '0': expected a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "export_onnx"])
def test_a_huge_network_is_refused_by_the_other_entry_points(tmp_path, command):
    """Defect 1 named evaluate and export onnx besides predict (and train.init_from, tested above)."""
    model = hostile_model_file(tmp_path, "huge", _set("model", "stages", 10**7))
    write_pts_folder(tmp_path / "faces", n=2)
    argv = {"evaluate": ["evaluate", "--checkpoint", str(model), "--source", "pts", "--root", str(tmp_path / "faces"),
                         "--device", "cpu", "--quiet"],
            "export_onnx": ["export", "onnx", str(model), "--out", str(tmp_path / "net.onnx")]}[command]
    proc, seconds = run_limited(argv, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{model}: model file declares a network spanlib will not build" in proc.stderr
    assert "model.stages" in proc.stderr and "Traceback" not in proc.stderr and seconds < TIMEOUT_S


def test_figure_titles_carry_no_absolute_path():
    """Smaller: the committed model_view.png's title carried /work/main/spanlib/inference/weights/..."""
    from types import SimpleNamespace

    from spanlib.reporting.figures import model_view_title, shown_path

    bundled = weights.WEIGHTS_DIR / "real_300w.safetensors"
    assert shown_path(bundled) == "spanlib/inference/weights/real_300w.safetensors"
    assert shown_path(REPO.parent / "shared" / "data" / "300w" / "a.jpg") == "../shared/data/300w/a.jpg"
    assert shown_path("/far/away/models/run.pt") == "run.pt"
    title = model_view_title(SimpleNamespace(variant="scpan", checkpoint_path=str(bundled)), "synthetic face 0")
    assert title == "scpan (spanlib/inference/weights/real_300w.safetensors); synthetic face 0"
    notebook = (REPO / "notebooks" / "04_heatmap_distributions.ipynb").read_text()
    assert "model_view_title(model, face_note, checkpoint)" in notebook


def test_the_limits_are_in_docs_sharing():
    """`Done means`: the sharing page states the limits and the exit statuses, with the values the
    code uses."""
    from spanlib.config.schema import (MAX_DEPTH, MAX_INPUT_SIZE, MAX_SEED, MAX_STAGES, MAX_WIDTH, MAX_YAML_DEPTH,
                                       MAX_YAML_NODES)
    from spanlib.utils.files import MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV

    text = " ".join((REPO / "docs" / "sharing.md").read_text().split())
    for words in (f"`model.stages` <= {MAX_STAGES}", f"`model.width` <= {MAX_WIDTH}", f"`model.depth` <= {MAX_DEPTH}",
                  f"`crop.input_size` <= {MAX_INPUT_SIZE}", f"at most {MAX_IMAGE_PIXELS} pixels",
                  f"`{MAX_IMAGE_PIXELS_ENV}=N`", f"at most {MAX_YAML_NODES} nodes", f"{MAX_YAML_DEPTH} levels",
                  "<= 2^63 - 1", "0 success; 1 some inputs of a batch failed", "3 a file could not be read or written",
                  "130 interrupted"):
        assert words in text, words
    assert MAX_SEED == 2**63 - 1
    assert "docs/sharing.md" in (REPO / "README.md").read_text()
