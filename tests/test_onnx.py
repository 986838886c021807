"""Inference back-ends and the ONNX export: each must give the landmarks of the eager path
(``predict_crops``: the network, then ``spanlib.ops.bali_decode`` and ``window_mass``)."""

import json
import sys

import numpy as np
import pytest
import torch

from eval_helpers import save_tiny_checkpoint
from spanlib import load_model
from spanlib.inference.backends import auto_runner, make_runner
from spanlib.inference.step import LandmarkHead
from spanlib.cli import main
from spanlib.inference.predict import predict_crops

SIZE = 32


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=SIZE, seed=3)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_model(tiny_path)


def _crops(n, seed=0):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["scpan", "shn"])  # with BALI fields, and without (zero offsets)
def test_landmark_head_equals_predict_crops(tmp_path, variant):
    model = load_model(save_tiny_checkpoint(tmp_path / f"{variant}.pt", variant=variant, input_size=SIZE))
    crops = _crops(4)
    points, confidence, _ = predict_crops(model, crops, 2)
    with torch.no_grad():
        head_points, head_conf = LandmarkHead(model, 2)(crops)
    assert head_points.shape == points.shape and head_conf.shape == confidence.shape
    np.testing.assert_allclose(head_points.numpy(), points.numpy(), atol=1e-4)
    np.testing.assert_allclose(head_conf.numpy(), confidence.numpy(), atol=1e-5)


def test_landmark_head_window_by_hand():
    """One map, all logits equal but a peak: the point is the peak's pixel centre plus its BALI offset."""

    class Fixed(torch.nn.Module):
        params = {"crop": {"input_size": 16}}

        def forward(self, images):
            logits = torch.full((images.shape[0], 1, 8, 8), -30.0)
            logits[:, 0, 2, 5] = 0.0
            offsets = torch.zeros(images.shape[0], 2, 1, 8, 8)
            offsets[:, 0, 0, 2, 5], offsets[:, 1, 0, 2, 5] = 0.25, -0.5
            return {"heatmaps": [logits], "offsets": offsets}

    points, confidence = LandmarkHead(Fixed(), 1)(torch.zeros(2, 3, 16, 16))
    # map pixel (row 2, col 5) -> centre (5.5, 2.5) + (0.25, -0.5), times the stride 16 / 8
    np.testing.assert_allclose(points.numpy(), [[[11.5, 4.0]]] * 2, atol=1e-5)
    assert confidence.numpy() == pytest.approx(np.ones((2, 1)), abs=1e-6)


@pytest.mark.parametrize("backend", ["head", "channels_last", "jit"])
def test_torch_backends_match_eager_at_any_batch(tiny, backend):
    runner = make_runner(tiny, backend)
    eager = make_runner(tiny, "eager")
    for n in (1, 3):  # traced with batch 1: a baked-in batch size would fail at 3
        points, confidence = runner(_crops(n, seed=n))
        ref_points, ref_conf = eager(_crops(n, seed=n))
        assert points.shape == (n, 68, 2)
        np.testing.assert_allclose(points.numpy(), ref_points.numpy(), atol=1e-3)
        np.testing.assert_allclose(confidence.numpy(), ref_conf.numpy(), atol=1e-4)


def test_export_onnx_command_and_onnxruntime_against_pytorch(tiny_path, tiny, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", "--checkpoint", str(tiny_path), "--out", str(out),
                 "--real-root", str(tmp_path / "absent")]) == 0
    assert "max |points| difference" in capsys.readouterr().out
    desc = json.loads(out.with_suffix(".json").read_text())
    assert desc["input"]["shape"] == ["batch", 3, SIZE, SIZE] and set(desc["check"]) == {"random"}
    # the file alone, in a fresh ONNX Runtime session, at a batch size it was not exported with
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    crops = _crops(5, seed=7)
    points, confidence = session.run(None, {"images": crops.numpy()})
    ref_points, ref_conf, _ = predict_crops(tiny, crops, desc["decode_radius"])
    assert points.shape == (5, 68, 2)
    np.testing.assert_allclose(points, ref_points.numpy(), atol=1e-3)
    np.testing.assert_allclose(confidence, ref_conf.numpy(), atol=1e-4)
    # and the same through the runner predict uses
    np.testing.assert_allclose(make_runner(tiny, "onnxruntime")(crops)[0].numpy(), ref_points.numpy(), atol=1e-3)


@pytest.mark.parametrize("variant", ["scpan", "shn"])  # two outputs (heatmap, BALI fields), and one
def test_onnxruntime_backend_runs_the_network_and_decodes_like_eager(tmp_path, variant):
    """The ONNX Runtime back-end exports the network alone (``NetworkMaps``) and decodes after it
    (``decode_features``: the BALI fields at the windows only): the landmarks and confidences of
    ``predict_crops`` at any batch size."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")
    import onnx

    from spanlib.inference.onnx_export import network_bytes

    model = load_model(save_tiny_checkpoint(tmp_path / f"{variant}.pt", variant=variant, input_size=SIZE))
    graph = onnx.load_from_string(network_bytes(model, _crops(1)))
    # with BALI fields the graph hands out the features the head reads, not the head's output
    assert [o.name for o in graph.graph.output] == (["heatmap", "features"] if variant == "scpan" else ["heatmap"])
    runner = make_runner(model, "onnxruntime")
    for n in (1, 3):  # exported with batch 1
        crops = _crops(n, seed=10 + n)
        points, confidence = runner(crops)
        ref_points, ref_conf, _ = predict_crops(model, crops, runner.radius)
        assert points.shape == (n, 68, 2) and confidence.shape == (n, 68)
        np.testing.assert_allclose(points.numpy(), ref_points.numpy(), atol=1e-3)
        np.testing.assert_allclose(confidence.numpy(), ref_conf.numpy(), atol=1e-5)


def test_missing_onnxruntime_names_the_extra(tiny, tiny_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(Exception, match=r"onnxruntime.*\.\[onnx\]"):
        make_runner(tiny, "onnxruntime")
    assert main(["export", "onnx", "--checkpoint", str(tiny_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert ".[onnx]" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    runner, skipped = auto_runner(tiny)  # predict --backend auto goes on without it
    assert runner.backend == "jit" and skipped and skipped[0].startswith("onnxruntime")


def test_export_arguments_are_checked(tiny_path, tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "CHECKPOINT is required" in capsys.readouterr().err
    assert main(["export", "onnx", str(tiny_path), "--format", "safetensors", "--out", str(tmp_path / "x")]) == 2
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(Exception, match="backend"):
        make_runner(load_model(tiny_path), "tensorrt")
