"""Model files safe to share (issue 16): pickles that would run code are refused everywhere, a
.safetensors export loads back to the same model, and the bundled model is checked by SHA-256."""

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import spanlib
import spanlib.inference.weights as weights
from eval_helpers import REPO, save_tiny_checkpoint, write_pts_folder
from spanlib.inference.checkpoint import (export_safetensors, is_safetensors, load_model, read_checkpoint,
                                          register_bundled, write_checkpoint)
from spanlib.cli import main
from spanlib.utils.errors import DataError, ParamError


class Evil:
    """Unpickling this runs ``exec``, which writes ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Two malicious files: a torch.save zip that looks like a spanlib checkpoint, and a bare pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    zipped = folder / "evil_zip.pt"
    torch.save({"format": "spanlib-checkpoint", "format_version": 1, "variant": "scpan", "scheme": "68",
                "params": {}, "model_state": {}, "payload": Evil(marker)}, zipped)
    raw = folder / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    return {"zip": zipped, "raw": raw}


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "marker.txt"
    files = _evil_files(tmp_path / "evil", marker)
    return {"marker": marker, **files}


def test_the_malicious_files_really_run_code(tmp_path):
    """The files of these tests are real: plain unpickling of either writes the marker."""
    proof = tmp_path / "proof.txt"
    files = _evil_files(tmp_path / "proof_files", proof)
    pickle.loads(files["raw"].read_bytes())
    assert proof.read_text() == "code ran"
    proof.unlink()
    with zipfile.ZipFile(files["zip"]) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickle.loads(archive.read(name))
    assert proof.read_text() == "code ran"


@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_load_model_refuses_malicious_pickle(evil, kind):
    path = evil[kind]
    with pytest.raises(DataError, match=rf"{path.name}: refused: .*'exec'.*nothing in it was run"):
        spanlib.load_model(path)
    with pytest.raises(DataError, match="refused"):
        read_checkpoint(path, resume=True)
    assert not evil["marker"].exists()


def _commands(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((48, 48, 3), 128, np.uint8))
    return {
        "predict": ["predict", str(image), "--checkpoint", str(path), "--box", "0,0,48,48", "--device", "cpu"],
        "evaluate": ["evaluate", "--checkpoint", str(path), "--source", "pts", "--root", str(tmp_path / "faces"),
                     "--device", "cpu", "--quiet"],
        "train": ["train", "--params", str(REPO / "params.yaml"), "--variant", "scpan", "--out", str(path),
                  "--resume", "--device", "cpu"],
        "export": ["export", "--format", "safetensors", str(path), "--out", str(tmp_path / "x.safetensors")],
    }


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "export"])
@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_cli_refuses_malicious_pickle(evil, tmp_path, capsys, command, kind):
    code = main(_commands(evil[kind], tmp_path)[command])
    err = capsys.readouterr().err
    assert code == 2
    assert f"spanlib {command}: error: {evil[kind]}: refused" in err and "nothing in it was run" in err
    assert not evil["marker"].exists()
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_console_script_refuses_malicious_pickle(evil, tmp_path, command):
    """The installed ``spanlib`` command, in its own process: non-zero exit, a clear message."""
    script = Path(sys.executable).with_name("spanlib")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "spanlib"]
    proc = subprocess.run(argv + _commands(evil["zip"], tmp_path)[command], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{evil['zip']}: refused: it needs the Python object 'exec'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not evil["marker"].exists()


def test_no_unsafe_load_in_the_package():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "spanlib").rglob("*.py")
                 if "weights_only=False" in p.read_text()]
    assert offenders == []


# ---------------------------------------------------------------- export and load again
def _safetensors_header(path: Path) -> dict:
    """The header, read by hand from the format's definition: 8-byte little-endian length, JSON."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])


@pytest.mark.parametrize("variant", ["scpan", "shn"])
def test_export_round_trip_gives_identical_outputs(tmp_path, variant):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant=variant, seed=3)
    out = tmp_path / "tiny.safetensors"
    desc = export_safetensors(ckpt, out)
    assert desc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert is_safetensors(out) and not is_safetensors(ckpt)

    header = _safetensors_header(out)
    meta = header.pop("__metadata__")
    assert meta["format"] == "spanlib-model"
    described = json.loads(meta["spanlib"])
    original = torch.load(ckpt, weights_only=True)
    assert set(header) == set(original["model_state"])  # every tensor, and nothing else
    assert described["variant"] == variant and described["scheme"] == "68"
    assert described["params"] == original["params"]
    assert described["build"]["model"]["width"] == 8 and described["build"]["input_size"] == 32
    assert described["seed"] == original["params"]["seed"] and described["code_version"] == "test"
    assert described["training_data"]["source"] == original["params"]["data"]["source"]
    assert described["source_checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert "NME_io" in described["metrics"]["training_protocol"]
    assert json.loads(out.with_suffix(".json").read_text()) == described

    a, b = load_model(ckpt), load_model(out)
    assert b.checkpoint_info["format"] == "safetensors" and b.variant == variant
    assert b.params == a.params and b.scheme.name == a.scheme.name
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        oa, ob = a(images), b(images)
    for x, y in zip(oa["heatmaps"] + oa["boundaries"], ob["heatmaps"] + ob["boundaries"]):
        assert torch.equal(x, y)
    assert (oa["offsets"] is None) == (ob["offsets"] is None)
    if oa["offsets"] is not None:
        assert torch.equal(oa["offsets"], ob["offsets"])


def test_export_command_and_model_file_in_predict_and_evaluate(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=2)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m.json"), "--device", "cpu", "--quiet"]) == 0
    out = tmp_path / "shared" / "tiny.safetensors"
    assert main(["export", "--format", "safetensors", str(ckpt), "--out", str(out),
                 "--metrics", str(tmp_path / "m.json")]) == 0
    assert "sha256" in capsys.readouterr().out
    described = json.loads(out.with_suffix(".json").read_text())
    [evaluation] = described["metrics"]["evaluations"]
    full = json.loads((tmp_path / "m.json").read_text())
    assert evaluation["protocol"] == full["provenance"]["protocol"]
    assert evaluation["subsets"]["all"]["nme"] == full["subsets"]["all"]["nme"]

    # the model file evaluates to the same numbers as the checkpoint it came from
    assert main(["evaluate", "--checkpoint", str(out), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m2.json"), "--device", "cpu", "--quiet"]) == 0
    again = json.loads((tmp_path / "m2.json").read_text())
    assert again["subsets"]["all"]["nme"] == full["subsets"]["all"]["nme"]
    image = next((tmp_path / "faces").glob("*.png"))
    assert main(["predict", str(image), "--checkpoint", str(out), "--box", "10,10,80,80", "--device", "cpu",
                 "--json", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["variant"] == "shn"

    # metrics of another checkpoint are not attached to this one
    other = save_tiny_checkpoint(tmp_path / "other.pt", variant="shn", seed=1)
    with pytest.raises(DataError, match="m.json: these metrics scored checkpoint"):
        export_safetensors(other, tmp_path / "other.safetensors", metrics=[tmp_path / "m.json"])


def test_model_file_is_not_a_training_checkpoint(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "tiny.safetensors"
    export_safetensors(ckpt, out, write_json_copy=False)
    assert not out.with_suffix(".json").exists()
    with pytest.raises(DataError, match="holds weights only"):
        read_checkpoint(out, resume=True)


def test_broken_model_files_are_clear_errors(tmp_path):
    from safetensors.torch import save_file

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "tiny.safetensors"
    export_safetensors(ckpt, out)
    data = out.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError, match="cut.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "cut.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "bare.safetensors")
    with pytest.raises(DataError, match="bare.safetensors: a safetensors file without a spanlib description"):
        load_model(tmp_path / "bare.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "v9.safetensors",
              metadata={"spanlib": json.dumps({"format": "spanlib-model", "format_version": 9, "variant": "shn",
                                               "scheme": "68", "params": {}})})
    with pytest.raises(DataError, match="v9.safetensors: model format_version 9"):
        load_model(tmp_path / "v9.safetensors")


def test_checkpoints_hold_only_plain_data(tmp_path):
    """write_checkpoint turns numpy values into plain ones (so weights_only reads them back) and
    refuses any other object, naming where it is."""
    write_checkpoint(tmp_path / "c.pt", {"metrics": {"nme": np.float64(0.25), "curve": np.arange(3)}})
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["metrics"]["nme"] == 0.25 and type(back["metrics"]["nme"]) is float
    assert torch.equal(back["metrics"]["curve"], torch.arange(3))
    with pytest.raises(ParamError, match=r"checkpoint\['metrics'\]\['when'\]: a PurePosixPath"):
        from pathlib import PurePosixPath

        write_checkpoint(tmp_path / "d.pt", {"metrics": {"when": PurePosixPath("x")}})
    assert not (tmp_path / "d.pt").exists()


# ---------------------------------------------------------------- the bundled model
@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A registry pointed at a temp folder holding an exported tiny model as real_300w."""
    folder = tmp_path / "weights"
    folder.mkdir()
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", seed=5)
    export_safetensors(ckpt, folder / "real_300w.safetensors")
    digest = hashlib.sha256((folder / "real_300w.safetensors").read_bytes()).hexdigest()
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    monkeypatch.setitem(weights.BUNDLED, "real_300w", dict(weights.BUNDLED["real_300w"], sha256=digest))
    return {"file": folder / "real_300w.safetensors", "sha256": digest, "checkpoint": ckpt}


def test_bundled_model_loads_when_its_hash_matches(bundle):
    model = spanlib.load_model()
    assert model.checkpoint_path == str(bundle["file"]) and model.variant == "scpan"
    reference = load_model(bundle["checkpoint"])
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


@pytest.mark.parametrize("damage", ["changed", "truncated"])
def test_tampered_bundled_model_is_refused(bundle, damage):
    data = bytearray(bundle["file"].read_bytes())
    if damage == "changed":
        data[-1] ^= 0xFF  # one bit of one weight: still a valid safetensors file
    else:
        data = data[: len(data) // 2]
    bundle["file"].write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"real_300w.safetensors: bundled model 'real_300w' fails its check: "
                                        rf"expected sha256 {bundle['sha256']}, got [0-9a-f]{{64}}"):
        spanlib.load_model()


def test_missing_bundled_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(DataError, match="the bundled model 'real_300w' is missing"):
        spanlib.load_model()


def test_shipped_bundled_model_matches_its_hash():
    """Once spanlib/inference/weights/real_300w.safetensors is shipped, it must load and match BUNDLED."""
    path = weights.bundled_path("real_300w")
    if not path.is_file():
        with pytest.raises(DataError, match="is missing"):
            spanlib.load_model()
        pytest.skip(f"{path} is not shipped in this checkout")
    model = spanlib.load_model()
    assert model.checkpoint_info["format"] == "safetensors"


def test_register_bundled_records_the_hash(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    registry = tmp_path / "registry.json"
    shutil.copy(weights.REGISTRY, registry)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    monkeypatch.setitem(weights.BUNDLED, "real_300w", dict(weights.BUNDLED["real_300w"]))
    export_safetensors(save_tiny_checkpoint(tmp_path / "tiny.pt"), tmp_path / "model.safetensors")
    digest = register_bundled(tmp_path / "model.safetensors", "real_300w", registry_file=registry)
    assert digest == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert (folder / "real_300w.safetensors").read_bytes() == (tmp_path / "model.safetensors").read_bytes()
    assert (folder / "real_300w.json").is_file()
    assert weights.read_registry(registry)["real_300w"]["sha256"] == digest
    assert spanlib.load_model().variant == "scpan"
    evil = _evil_files(tmp_path / "evil", tmp_path / "marker")
    with pytest.raises(DataError, match="evil_zip.pt: not a safetensors file"):
        register_bundled(evil["zip"], "real_300w", registry_file=registry)
    assert not (tmp_path / "marker").exists()
    with pytest.raises(ParamError, match="unknown"):
        register_bundled(tmp_path / "model.safetensors", "nope", registry_file=registry)


def test_package_data_ships_the_weights():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(project["tool"]["setuptools"]["package-data"]["spanlib.inference.weights"]) == {"*.safetensors", "*.json"}
    assert any(d.startswith("safetensors==") for d in project["project"]["dependencies"])


def test_export_set_carries_inference_defaults_and_refuses_training_keys(tmp_path, capsys):
    """`export --set evaluate.refine=1`: the model file predicts with one re-crop pass by default
    (box_source "+refined", as `predict --refine 1` on the checkpoint gives, point for point);
    training keys and out-of-range values are refused before anything is written."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=1)
    image = str(next((tmp_path / "faces").glob("*.png")))
    out = tmp_path / "refine.safetensors"
    assert main(["export", str(ckpt), "--out", str(out), "--set", "evaluate.refine=1"]) == 0
    described = json.loads(out.with_suffix(".json").read_text())
    assert described["params"]["evaluate"]["refine"] == 1 and described["exported_overrides"] == ["evaluate.refine=1"]
    assert load_model(out).params["evaluate"]["refine"] == 1
    assert read_checkpoint(ckpt)["params"].get("evaluate", {}).get("refine", 0) == 0  # the source is untouched

    common = ["--box", "10,10,80,80", "--device", "cpu", "--backend", "eager"]
    assert main(["predict", image, "--checkpoint", str(out), *common, "--json", str(tmp_path / "a.json")]) == 0
    assert main(["predict", image, "--checkpoint", str(ckpt), *common, "--refine", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    assert main(["predict", image, "--checkpoint", str(ckpt), *common, "--json", str(tmp_path / "c.json")]) == 0
    (a,), (b,), (c,) = (json.loads((tmp_path / f"{n}.json").read_text())["results"][0]["faces"] for n in "abc")
    assert a["box_source"] == "given+refined" and a["landmarks"] == b["landmarks"]
    assert c["box_source"] == "given" and c["landmarks"] != a["landmarks"]

    for bad, match in (("train.lr=0.1", "only evaluate"), ("evaluate.refine=9", "refine"),
                       ("evaluate.nope=1", "nope")):
        target = tmp_path / f"bad_{bad.split('=')[0]}.safetensors"
        assert main(["export", str(ckpt), "--out", str(target), "--set", bad]) == 2
        assert match in capsys.readouterr().err and not target.exists()


def test_a_model_file_exported_again_keeps_its_weights_and_history(tmp_path, capsys):
    """`export MODEL.safetensors --set evaluate.KEY=VALUE`: the same tensors (bit for bit), params
    but the new inference default, source checkpoint and earlier evaluations; the overrides
    accumulate; training keys are still refused, and metrics of other weights too."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=2)
    first = tmp_path / "first.safetensors"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m.json"), "--device", "cpu", "--quiet"]) == 0
    assert main(["export", str(ckpt), "--out", str(first), "--set", "evaluate.refine=1",
                 "--metrics", str(tmp_path / "m.json")]) == 0
    assert main(["evaluate", "--checkpoint", str(first), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m2.json"), "--device", "cpu", "--quiet"]) == 0
    again = tmp_path / "again.safetensors"
    assert main(["export", str(first), "--out", str(again), "--set", "evaluate.flip_test=true",
                 "evaluate.flip_passes=last", "--metrics", str(tmp_path / "m2.json")]) == 0
    before, after = (json.loads(p.with_suffix(".json").read_text()) for p in (first, again))
    assert after["exported_overrides"] == ["evaluate.refine=1", "evaluate.flip_test=true", "evaluate.flip_passes=last"]
    assert after["params"]["evaluate"] == {**before["params"]["evaluate"], "flip_test": True, "flip_passes": "last"}
    assert {k: v for k, v in after["params"].items() if k != "evaluate"} == \
        {k: v for k, v in before["params"].items() if k != "evaluate"}
    assert after["source_checkpoint"] == before["source_checkpoint"]
    assert [e["file"] for e in after["metrics"]["evaluations"]] == ["m.json", "m2.json"]
    header_a, header_b = _safetensors_header(first), _safetensors_header(again)
    data_a, data_b = first.read_bytes(), again.read_bytes()
    tensors = lambda data: data[8 + int.from_bytes(data[:8], "little"):]  # noqa: E731  the data section
    assert tensors(data_a) == tensors(data_b)
    assert {k: v for k, v in header_a.items() if k != "__metadata__"} == \
        {k: v for k, v in header_b.items() if k != "__metadata__"}
    model = load_model(again)
    assert model.params["evaluate"]["flip_passes"] == "last"

    assert main(["export", str(first), "--out", str(tmp_path / "bad.safetensors"), "--set", "train.lr=0.1"]) == 2
    assert "only evaluate" in capsys.readouterr().err and not (tmp_path / "bad.safetensors").exists()
    other = save_tiny_checkpoint(tmp_path / "other.pt", variant="shn", seed=1)
    assert main(["evaluate", "--checkpoint", str(other), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m3.json"), "--device", "cpu", "--quiet"]) == 0
    with pytest.raises(DataError, match="m3.json: these metrics scored checkpoint"):
        export_safetensors(first, tmp_path / "x.safetensors", metrics=[tmp_path / "m3.json"])


def test_the_bundled_model_is_its_recipe_in_params_yaml():
    """`Done means`: the bundled model's recipe is in params.yaml. Every setting of `--recipe
    real,shared300w` (the defaults plus both recipes) equals the bundled file's build params, but
    the thread count its command line set (one core each for two seeds side by side). A key the
    file predates counts as its schema default."""
    from spanlib.config.params import resolve
    from spanlib.config.schema import default

    recipe = resolve(REPO / "params.yaml", ["real", "shared300w"])
    bundled = load_model().params

    def bundled_value(group, key):
        return bundled[group][key] if key in bundled[group] else default(f"{group}.{key}")

    differ = [f"{group}.{key}: recipe {recipe[group][key]!r}, bundled {bundled_value(group, key)!r}"
              for group in recipe if isinstance(recipe[group], dict) and group in bundled and group != "recipes"
              for key in recipe[group] if recipe[group][key] != bundled_value(group, key)]
    assert differ == ["train.threads: recipe 2, bundled 1"]
    assert bundled["evaluate"]["flip_test"] is True and bundled["evaluate"]["refine"] == 1
    assert bundled["evaluate"]["flip_passes"] == "last" and bundled["evaluate"]["placing_size"] == 96
