"""The scripts of a GPU session (issue 25): the jobs file and the resume plan of
experiments/device_sweep.py, the run discovery of experiments/real_study.py --trained, the data
packing of kernels/pack_device_data.py and the settings of kernels/gpu_throughput.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from eval_helpers import save_tiny_checkpoint
from spanlib.config.params import load_params
from spanlib.config.schema import apply_overrides

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load(REPO / "experiments" / "device_sweep.py", "device_sweep")
real_study = _load(REPO / "experiments" / "real_study.py", "real_study")
pack = _load(REPO / "kernels" / "pack_device_data.py", "pack_device_data")


def test_shipped_jobs_cover_every_variant_and_seed():
    jobs = sweep.read_jobs(REPO / "experiments" / "real_faces_gpu.jobs", {"PAPER_ITS": "1500", "PAPER_VAL": "500"})
    labels = [label for label, _ in jobs]
    ablation = {label for label in labels if label.startswith("abl_")}
    assert ablation == {f"abl_{v}_s{s}" for v in ("shn", "shn_bali", "shn_scpa", "scpan", "semi_scpan")
                        for s in (0, 1, 2)}
    # seeds 0 and 1 and the paper run first: 11 slots start them together
    assert all(label.endswith(("_s0", "_s1")) for label in labels[:10]) and labels[10] == "paper_scpan_s0"
    paper = dict(jobs)["paper_scpan_s0"]
    assert "train.iterations=1500" in paper and "train.val_every=500" in paper


def test_read_jobs_refuses_unreplaced_and_duplicate(tmp_path):
    jobs = tmp_path / "j.jobs"
    jobs.write_text("a --set x={N}\n")
    with pytest.raises(SystemExit, match="unreplaced variable"):
        sweep.read_jobs(jobs, {})
    assert sweep.read_jobs(jobs, {"N": "3"}) == [("a", ["--set", "x=3"])]
    jobs.write_text("a --x\n# comment\na --y  # again\n")
    with pytest.raises(SystemExit, match="duplicate"):
        sweep.read_jobs(jobs, {})


def _checkpoint(path: Path, iteration: int, total: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tiny_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["iteration"], ckpt["params"]["train"]["iterations"] = iteration, total
    torch.save(ckpt, path)
    return path


def test_resume_plan_keeps_finished_resumes_cut_starts_new(tmp_path):
    _checkpoint(tmp_path / "done" / "checkpoint.pt", 40, 40)
    _checkpoint(tmp_path / "cut" / "checkpoint.pt", 20, 40)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"cut mid-write")
    jobs = [("done", ["--a"]), ("cut", ["--b"]), ("new", ["--c"]), ("broken", ["--d"])]
    assert sweep.checkpoint_progress(tmp_path / "cut" / "checkpoint.pt") == (20, 40)
    assert sweep.checkpoint_progress(tmp_path / "new" / "checkpoint.pt") is None
    pending, records = sweep.plan(jobs, tmp_path)
    assert pending == [("cut", ["--b", "--resume"]), ("new", ["--c"]), ("broken", ["--d"])]
    assert records["done"]["status"] == "done earlier" and records["new"]["status"] == "not started"


def test_find_trained_pairs_seeds_across_variants(tmp_path):
    for name in ("abl_shn_s0", "abl_shn_s1", "abl_shn_bali_s0", "abl_shn_bali_s1", "abl_semi_scpan_s1",
                 "abl_semi_scpan_s0", "abl_scpan_s1", "paper_scpan_s0", "abl_unknown_s0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(b"")
    runs, seeds = real_study.find_trained(tmp_path)
    assert seeds == [1]  # scpan has seed 1 only
    assert list(runs) == ["shn", "shn_bali", "scpan", "semi_scpan"]  # the ablation's order
    assert runs["shn_bali"] == [tmp_path / "abl_shn_bali_s1" / "checkpoint.pt"]
    with pytest.raises(SystemExit, match="no abl_"):
        real_study.find_trained(tmp_path / "abl_unknown_s0")


def test_pack_reencodes_images_and_copies_landmarks(tmp_path):
    src = tmp_path / "src"
    face = src / "300w" / "afw"
    face.mkdir(parents=True)
    (src / "youtube-faces" / "unlabeled").mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(face / "a.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (face / "a.pts").write_text("version: 1\nn_points: 1\n{\n1 2\n}\n")
    cv2.imwrite(str(src / "youtube-faces" / "unlabeled" / "b.jpg"), image)
    out = tmp_path / "out"
    assert pack.main(["--src", str(src), "--out", str(out), "--quality", "60"]) == 0
    assert (out / "300w" / "afw" / "a.pts").read_bytes() == (face / "a.pts").read_bytes()
    original, packed = cv2.imread(str(face / "a.jpg")), cv2.imread(str(out / "300w" / "afw" / "a.jpg"))
    assert packed.shape == original.shape and not np.array_equal(packed, original)
    assert (out / "300w" / "afw" / "a.jpg").stat().st_size < (face / "a.jpg").stat().st_size
    # the PSNR the script reports is OpenCV's (decoders may differ by a level: within 0.5 dB)
    psnr = pack.reencode(face / "a.jpg", tmp_path / "c.jpg", 60)
    assert psnr == pytest.approx(cv2.PSNR(original, cv2.imread(str(tmp_path / "c.jpg"))), abs=0.5)
    with pytest.raises(SystemExit, match="--quality"):
        pack.main(["--src", str(src), "--out", str(out), "--quality", "0"])
    with pytest.raises(SystemExit, match="is not a folder"):
        pack.main(["--src", str(tmp_path / "nowhere"), "--out", str(out)])


def test_throughput_settings_parse():
    sys.path.insert(0, str(REPO / "kernels"))
    try:
        throughput = _load(REPO / "kernels" / "gpu_throughput.py", "gpu_throughput")
    finally:
        sys.path.remove(str(REPO / "kernels"))
    assert throughput.parse_config("fast variant=shn train.batch_size=64 train.device_targets=true") == (
        "fast", "shn", ["train.batch_size=64", "train.device_targets=true"])
    assert throughput.parse_config("plain") == ("plain", "scpan", [])
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        throughput.parse_config("bad variant")


def test_end_to_end_inference_settings_reach_the_evaluate_group():
    from spanlib.config.schema import ParamError
    from spanlib.evaluation.evaluate import evaluate_params

    end_to_end = _load(REPO / "experiments" / "end_to_end.py", "end_to_end")
    runs = {"base": ["a.pt"], "base_flip": ["a.pt"]}
    parsed = end_to_end._inference(["base_flip:flip_test=true,decode_radius=2"], runs)
    assert parsed == {"base_flip": {"flip_test": True, "decode_radius": 2}}
    settings = evaluate_params({"evaluate": {"decode_radius": 3}}, {**parsed["base_flip"], "refine": 1})
    assert settings.flip_test is True and settings.decode_radius == 2 and settings.refine == 1
    with pytest.raises(ParamError):
        evaluate_params({}, end_to_end._inference(["base:no_such_key=1"], runs)["base"])
    for bad in ["other:flip_test=true", "base", "base:flip_test"]:
        with pytest.raises(SystemExit):
            end_to_end._inference([bad], runs)


def test_knob_ranking_jobs_parse_and_pretraining_feeds_its_fine_tune():
    for path in sorted((REPO / "experiments").glob("knobs_short_cpu*.jobs")):
        jobs = dict(sweep.read_jobs(path, {}))
        assert jobs, path
        for label, args in jobs.items():
            assert args[0] == "--recipe" and set(args[1].split(",")) <= set(load_params()["recipes"]), (path, label)
            assert "train.iterations=1500" in args or label.startswith("k_synpre"), (path, label)
            # every --set names a real parameter with a valid value (a typo would fail only once on the machine)
            sets = args[args.index("--set") + 1:]
            apply_overrides({}, sets, origin=f"{path.name} {label}")
            init = [a for a in args if a.startswith("train.init_from=")]
            if init:  # the fine-tune starts from the pretraining job listed before it in the same file
                source = init[0].split("/")[-2]
                assert source in jobs and list(jobs).index(source) < list(jobs).index(label)
                steps = sum(int(a.split("=")[1]) for a in jobs[source] + args if a.startswith("train.iterations="))
                assert steps == 1500, (path, label)


def test_flip_symmetry_mirrors_faces_exactly_and_twice_is_identity():
    from spanlib.config.schemes import get_scheme
    from spanlib.data.sample import Sample

    flip = _load(REPO / "experiments" / "flip_symmetry.py", "flip_symmetry")
    scheme = get_scheme(68)
    perm = np.asarray(scheme.flip_perm)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    points = rng.uniform(5, 35, (68, 2)).astype(np.float32)
    once = flip.mirrored([Sample("face.png", points, image=image)], scheme)[0]
    np.testing.assert_array_equal(once.image, image[:, ::-1])
    # corner origin: column j's centre j + 0.5 goes to 50 - (j + 0.5); point k takes its mirror twin's place
    np.testing.assert_allclose(once.landmarks[:, 0], 50 - points[perm, 0])
    np.testing.assert_allclose(once.landmarks[:, 1], points[perm, 1])
    twice = flip.mirrored([once], scheme)[0]
    np.testing.assert_array_equal(twice.image, image)
    np.testing.assert_allclose(twice.landmarks, points, atol=1e-5)
    # to_crop applies each face's (2, 3) matrix
    m = np.array([[[2.0, 0.0, 1.0], [0.0, 2.0, -3.0]]])
    np.testing.assert_allclose(flip.to_crop(np.array([[[1.0, 2.0]]]), m), [[[3.0, 1.0]]])
