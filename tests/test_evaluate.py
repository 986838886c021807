import hashlib
import json
import re

import numpy as np
import pytest
import torch

from eval_helpers import OracleModel, face_template, save_tiny_checkpoint, tiny_params, write_pts_folder
from spanlib import load_model
from spanlib.cli import main
from spanlib.data.crop import box_from_landmarks, square_crop_matrix, apply_affine
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError
from spanlib.evaluation.evaluate import evaluate, evaluate_params, predict_samples, subset_groups
from spanlib.evaluation.metrics import subset_metrics


def _similar_faces(n=5, seed=0):
    """Faces that are one template moved and scaled: all land on the same crop points."""
    rng = np.random.default_rng(seed)
    template = face_template(rng)
    samples = []
    for i in range(n):
        scale, offset = rng.uniform(40, 120), rng.uniform(0, 60, size=2)
        pts = (template * scale + offset).astype(np.float32)
        h, w = int(pts[:, 1].max() + 40), int(pts[:, 0].max() + 40)
        image = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        samples.append(Sample(f"face{i}", landmarks=pts, subsets=("common" if i % 2 else "challenging",),
                              image=image))
    return samples


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_points_map_back_to_image_pixels_exactly(shift):
    params = tiny_params(input_size=64)
    size, scale = 64, params["crop"]["scale"]
    samples = _similar_faces()
    matrix0 = square_crop_matrix(box_from_landmarks(samples[0].landmarks), size, scale)
    crop_points = apply_affine(matrix0, samples[0].landmarks.astype(np.float64))
    model = OracleModel(crop_points + [shift, 0.0], params, map_size=32)
    settings = evaluate_params(params, {"crop_box": "landmarks", "batch_size": 2})
    out = predict_samples(model, samples, settings, progress=False)
    for s, pred in zip(samples, out["pred"]):
        side = scale * np.ptp(s.landmarks, axis=0).max()
        # one crop pixel to the right is side / size image pixels to the right
        expected = s.landmarks + [shift * side / size, 0.0]
        np.testing.assert_allclose(pred, expected, atol=2e-3)
    if shift == 0.0:
        m = subset_metrics(out["pred"], out["gt"], model.scheme)
        assert m["nme"]["io"] < 1e-4 and m["fr"]["0.1"] == 0.0 and m["auc"]["0.1"] > 0.999


def test_subset_groups_add_full_only_when_no_tag_covers_all():
    a = Sample("a", subsets=("common", "helen"))
    b = Sample("b", subsets=("challenging", "ibug"))
    groups = subset_groups([a, b])
    assert list(groups) == ["full", "common", "helen", "challenging", "ibug"]
    assert groups["full"].tolist() == [0, 1] and groups["ibug"].tolist() == [1]
    assert "full" not in subset_groups([Sample("a", subsets=("scenario1",))] * 2)
    wflw = subset_groups([Sample("a", subsets=("full", "pose")), Sample("b", subsets=("full",))])
    assert wflw["full"].tolist() == [0, 1] and wflw["pose"].tolist() == [0]


def test_evaluate_writes_metrics_json_with_provenance(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    write_pts_folder(tmp_path / "faces", n=3)
    out = tmp_path / "m" / "metrics.json"
    result = evaluate(ckpt, "pts", tmp_path / "faces", None, device="cpu", json_path=out, progress=False)
    written = json.loads(out.read_text())
    prov = written["provenance"]
    assert prov["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov["variant"] == "scpan" and prov["params"]["crop"]["input_size"] == 32
    assert prov["nme_norms"]["fr_auc_norm"] == "io" and prov["protocol"]["decode_radius"] == 3
    (name, subset), = written["subsets"].items()
    assert subset["n"] == 3 and set(subset["nme"]) == {"io", "ip", "box", "diag"}
    assert all(np.isfinite(v) and v > 0 for v in subset["nme"].values())
    assert set(subset["fr"]) >= {"0.08", "0.1"} and len(subset["per_landmark_nme_io"]) == 68
    assert result["subsets"][name]["nme"] == subset["nme"]


def test_evaluate_command_line(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=2)
    code = main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--json", str(tmp_path / "m.json"), "--device", "cpu", "--quiet", "--norm", "ip"])
    text = capsys.readouterr().out
    assert code == 0 and "NME_io" in text and "FR_ip@0.1" in text and re.search(r"# shn( seed \d+)? on pts", text)
    assert json.loads((tmp_path / "m.json").read_text())["provenance"]["nme_norms"]["fr_auc_norm"] == "ip"


def test_evaluate_command_line_placing_size(tmp_path, capsys):
    """--placing-size reaches the protocol and the summary; one the network cannot take (depth 1:
    multiples of 8) stops before any face is read, naming the parameter."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", variant="shn")
    write_pts_folder(tmp_path / "faces", n=2)
    common = ["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
              "--device", "cpu", "--quiet", "--refine", "1"]
    assert main(common + ["--placing-size", "16", "--json", str(tmp_path / "m.json")]) == 0
    assert "the passes before the last at 16 px (evaluate.placing_size), the last at 32 px" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["provenance"]["protocol"]["placing_size"] == 16
    assert main(common + ["--placing-size", "20", "--json", str(tmp_path / "bad.json")]) == 2
    assert "evaluate.placing_size: expected a multiple of 8" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()


def test_load_model_checks_format_and_keys(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    model = load_model(ckpt)
    assert not model.training and model.variant == "scpan" and model.scheme.num_points == 68
    assert model.params["crop"]["input_size"] == 32
    state = torch.load(ckpt, weights_only=True)
    for change, message in (({"format_version": 2}, "format_version 2"),
                            ({"format": "other"}, "not a spanlib checkpoint")):
        torch.save({**state, **change}, tmp_path / "bad.pt")
        with pytest.raises(DataError, match=message):
            load_model(tmp_path / "bad.pt")
    torch.save({k: v for k, v in state.items() if k != "model_state"}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="lacks keys.*model_state"):
        load_model(tmp_path / "bad.pt")
    wrong = dict(state, model_state={k: v for k, v in state["model_state"].items() if "bali" not in k})
    torch.save(wrong, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="missing"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="not found"):
        load_model(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")


def test_held_out_evaluates_exactly_the_held_out_split(tmp_path, capsys):
    """--held-out scores the faces held_out_split holds out (the checkpoint's train.val_fraction /
    train.val_seed, or the ones given), nothing else."""
    from spanlib.data.sources import read_source
    from spanlib.data.split import held_out_split
    from spanlib.utils.errors import ParamError

    write_pts_folder(tmp_path / "faces", n=10)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    state = torch.load(ckpt, weights_only=False)
    state["params"]["train"].update({"val_fraction": 0.3, "val_seed": 4})
    state["params"]["data"].update({"source": "pts", "train_split": None})
    torch.save(state, ckpt)
    faces = read_source("pts", tmp_path / "faces")
    for held_out, (fraction, seed) in ((True, (0.3, 4)), ((0.2, 9), (0.2, 9)), ((None, 1), (0.3, 1))):
        result = evaluate(ckpt, "pts", tmp_path / "faces", None, device="cpu", progress=False,
                          return_predictions=True, held_out=held_out)
        expected = [s.path for s in held_out_split(faces, fraction, seed)[1]]
        assert result["predictions"]["paths"] == expected and len(expected) == round(10 * fraction)
        assert result["provenance"]["held_out"] == {"fraction": fraction, "seed": seed, "n": len(expected), "of": 10,
                                                    "training_data": {"source": "pts", "root": "data/synthetic",
                                                                      "train_split": None}}
    assert len({tuple(evaluate(ckpt, "pts", tmp_path / "faces", None, device="cpu", progress=False,
                               return_predictions=True, held_out=(0.3, s))["predictions"]["paths"])
                for s in (4, 5)}) == 2  # the seed matters
    code = main(["evaluate", "--checkpoint", str(ckpt), "--source", "pts", "--root", str(tmp_path / "faces"),
                 "--device", "cpu", "--quiet", "--held-out", "--json", str(tmp_path / "h.json")])
    assert code == 0 and "held-out validation faces: 3 of 10 (held_out_split fraction 0.3, seed 4)" in capsys.readouterr().out
    assert [m["n"] for m in json.loads((tmp_path / "h.json").read_text())["subsets"].values()] == [3]
    with pytest.raises(ParamError, match="val-fraction"):
        evaluate(ckpt, "pts", tmp_path / "faces", None, device="cpu", progress=False, held_out=(0.0, 0))
    with pytest.warns(UserWarning, match="not the ones its training validated on"):
        evaluate(ckpt, "300w", tmp_path / "faces", "train", device="cpu", progress=False, held_out=True,
                 samples=faces)


def _tiny_checkpoint_19(path):
    """A 19-point (AFLW) checkpoint in the contract format, untrained."""
    from spanlib.model import build_model
    from spanlib.inference.predict import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION
    from spanlib.config.schemes import get_scheme

    params, scheme = tiny_params(), get_scheme("19")
    torch.manual_seed(0)
    model = build_model(params["model"], scheme.num_points, scheme.num_boundaries, 32)
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                "code_version": "test", "variant": "scpan", "scheme": scheme.name, "params": params,
                "model_state": model.state_dict(), "optimizer_state": {}, "iteration": 0,
                "rng_state": {}, "metrics": {}}, path)
    return path


def test_aflw_nme_box_divides_by_the_annotated_box_size(tmp_path):
    """AFLW (Table III protocol): each face's NME_box is its mean point error over the CSV's
    box_size column, not over its landmarks' tight box; the provenance says so."""
    import cv2

    rng = np.random.default_rng(3)
    header = "image_name,scale,box_size,center_w,center_h," + ",".join(f"x{i},y{i}" for i in range(19))
    rows, sizes = [], [37.0, 81.5]
    for i, size in enumerate(sizes):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
        pts = rng.uniform(20, 60, size=(19, 2))
        rows.append(f"im{i}.png,0.2,{size},40,40," + ",".join(f"{v:.3f}" for v in pts.ravel()))
    (tmp_path / "face_landmarks_aflw_test.csv").write_text("\n".join([header] + rows) + "\n")
    ckpt = _tiny_checkpoint_19(tmp_path / "aflw.pt")
    result = evaluate(ckpt, "aflw", tmp_path, "test", device="cpu", progress=False, return_predictions=True)
    pred, gt = result["predictions"]["pred"], result["predictions"]["gt"]
    errors = np.linalg.norm(pred.astype(np.float64) - gt, axis=-1).mean(axis=1)
    full = result["subsets"]["full"]
    np.testing.assert_allclose(full["per_face_nme"]["box"], errors / sizes, rtol=1e-6)
    tight = np.sqrt(np.prod(np.ptp(gt, axis=1), axis=1))
    assert not np.allclose(full["per_face_nme"]["box"], errors / tight)
    assert result["provenance"]["nme_norms"]["box"].startswith("the dataset's box_size")
