"""PairedFaceDataset / EvalFaceDataset / make_train_loader: structure, consistency with D,
exact repetition with any number of workers."""

import copy

import cv2
import numpy as np
import pytest
import torch

from spanlib.data.crop import apply_affine, box_from_landmarks, crop_face
from spanlib.data.dataset import (EvalFaceDataset, PairedFaceDataset, iterate_batches,
                                  make_train_loader)
from spanlib.data.sample import Sample
from spanlib.utils.errors import DataError, ParamError
from spanlib.config.schemes import get_scheme

from test_targets import mean_face

SCHEME = get_scheme("68")
PARAMS = {
    "crop": {"input_size": 64, "scale": 1.25, "context": 1.5},
    "targets": {"distribution": "gaussian", "sigma": 1.0, "ged_shape": 2.0, "student_df": 3.0,
                "boundary_sigma": 1.0, "boundary_xi": 0.0, "field_radius": 3},
    "disturb": {"p_gaussian_noise": 0.3, "noise_std": 12.0, "p_salt_noise": 0.2,
                "salt_fraction": 0.02, "p_blur": 0.3, "blur_sizes": [128, 64, 32, 16],
                "blur_reference_size": 256, "p_occlusion_box": 0.3, "p_occlusion_patch": 0.2,
                "occlusion_max_fraction": 0.4, "p_flip": 0.5, "p_rotate": 0.7, "max_rotation": 60,
                "p_scale": 0.5, "scale_range": [0.5, 1.0]},
}


def make_samples(n: int, labeled: bool = True, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        # smooth random images: OpenCV rounds sampling positions to 1/32 px, so two crops that
        # agree mathematically may differ by 1/32 px times the image gradient
        noise = rng.uniform(0, 255, (90, 110, 3)).astype(np.float32)
        image = np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 4 - 382, 0, 255).astype(np.uint8)
        points = mean_face(50) + rng.uniform(10, 35, 2).astype(np.float32)
        samples.append(Sample(f"face{i}.png", points if labeled else None,
                              box=None if labeled else box_from_landmarks(points), image=image))
    return samples


def test_item_structure_and_consistency_with_D():
    samples = make_samples(6)
    ds = PairedFaceDataset(samples, SCHEME, 64, [16, 32], 32, PARAMS, seed=3, progress=False)
    assert len(ds) == 6
    for index in range(6):
        item = ds[index]
        a, b = item["a"], item["b"]
        assert a["image"].shape == (3, 64, 64) and a["image"].dtype == torch.float32
        assert 0.0 <= float(b["image"].min()) and float(b["image"].max()) <= 1.0
        assert set(a["heatmaps"]) == {16, 32} and a["heatmaps"][32].shape == (68, 32, 32)
        assert b["boundaries"][16].shape == (SCHEME.num_boundaries, 16, 16)
        assert b["field"].shape == (2, 68, 32, 32) and b["field_mask"].shape == (68, 32, 32)
        assert item["theta"].shape == (2, 3) and item["labeled"] and item["index"] == index
        # view b's landmarks are D(view a's landmarks), relabelled when mirrored
        moved = apply_affine(item["theta"].numpy(), a["landmarks"].numpy())
        if item["flipped"]:
            moved = moved[SCHEME.flip_perm]
        np.testing.assert_allclose(b["landmarks"].numpy(), moved, atol=1e-3)
        # view a is the crop protocol applied to the original image (same pixels, same points)
        crop, t = crop_face(samples[index].image, box_from_landmarks(samples[index].landmarks), 64, 1.25)
        np.testing.assert_allclose(a["landmarks"].numpy(), t.to_crop(samples[index].landmarks), atol=1e-3)
        # up to 1/32 px (OpenCV's position rounding) x max gradient 64 levels/px, +1 for rounding
        assert np.abs(a["image"].numpy().transpose(1, 2, 0) * 255 - crop).max() <= 3.0


def test_epochs_repeat_and_differ():
    ds = PairedFaceDataset(make_samples(4), SCHEME, 64, [16], 16, PARAMS, seed=1, progress=False)
    first = ds[2]["b"]["image"].clone()
    assert torch.equal(ds[2]["b"]["image"], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["b"]["image"], first)
    ds.set_epoch(0)
    assert torch.equal(ds[2]["b"]["image"], first)


def test_unlabeled_views_carry_images_only():
    ds = PairedFaceDataset(make_samples(3, labeled=False), SCHEME, 64, [16], 16, PARAMS,
                           labeled=False, progress=False)
    item = ds[0]
    assert set(item["a"]) == {"image", "landmarks"} and set(item["b"]) == {"image", "landmarks"}
    assert torch.isnan(item["b"]["landmarks"]).all() and item["labeled"] is False


def test_eval_mode_has_identity_D():
    ds = PairedFaceDataset(make_samples(2), SCHEME, 64, [16], 16, PARAMS, train=False, progress=False)
    item = ds[1]
    assert torch.equal(item["a"]["image"], item["b"]["image"]) and not item["flipped"]
    torch.testing.assert_close(item["theta"], torch.eye(2, 3))


def flatten(batch, prefix=""):
    if isinstance(batch, dict):
        out = {}
        for key, value in batch.items():
            out.update(flatten(value, f"{prefix}/{key}"))
        return out
    return {prefix: batch}


def test_loaders_with_0_and_2_workers_give_identical_batches():
    samples = make_samples(8)
    batches = {}
    for workers in (0, 2):
        loader = make_train_loader(samples, SCHEME, PARAMS, [16], 16, batch_size=3,
                                   num_workers=workers, seed=5, progress=False)
        stream = iterate_batches(loader)
        batches[workers] = [flatten(next(stream)[1]) for _ in range(5)]  # 2 epochs of 2, then 1
    for one, two in zip(batches[0], batches[2]):
        assert one.keys() == two.keys()
        for key in one:
            assert torch.equal(torch.as_tensor(one[key]), torch.as_tensor(two[key])), key
    # shuffled: epochs visit the faces in different orders
    orders = [b["/index"].tolist() for b in batches[0]]
    assert orders[0] + orders[1] != orders[2] + orders[3]


def test_eval_dataset_crop_and_matrix():
    samples = make_samples(2)
    samples[1].box = np.array([20, 18, 70, 72], np.float32)  # a detector box wins when present
    ds = EvalFaceDataset(samples, 64, 1.25)
    item = ds[1]
    crop, t = crop_face(samples[1].image, samples[1].box, 64, 1.25)
    np.testing.assert_allclose(item["crop_matrix"].numpy(), t.matrix)
    np.testing.assert_allclose(item["landmarks"].numpy(), samples[1].landmarks)
    assert np.abs(item["image"].numpy().transpose(1, 2, 0) * 255 - crop).max() <= 0.5
    torch.testing.assert_close(ds[0]["box"], torch.from_numpy(box_from_landmarks(samples[0].landmarks)))


def test_bad_input():
    samples = make_samples(2, labeled=False)
    with pytest.raises(DataError, match="face0.png.*no landmarks"):
        PairedFaceDataset(samples, SCHEME, 64, [16], 16, PARAMS, progress=False)
    wrong = make_samples(1)
    wrong[0].landmarks = wrong[0].landmarks[:60]
    with pytest.raises(DataError, match="face0.png.*\\(68, 2\\)"):
        PairedFaceDataset(wrong, SCHEME, 64, [16], 16, PARAMS, progress=False)
    with pytest.raises(DataError, match="no samples"):
        PairedFaceDataset([], SCHEME, 64, [16], 16, PARAMS, progress=False)


def test_real_300w_faces(shared_data):
    from spanlib.data.sources import read_source

    samples = read_source("pts", shared_data / "300w" / "afw")[:4]
    params = copy.deepcopy(PARAMS)
    ds = PairedFaceDataset(samples, SCHEME, 64, [16, 32], 32, params, progress=False)
    item = ds[0]
    points = item["a"]["landmarks"].numpy()
    # crop protocol: the landmark box fills 1 / 1.25 of the crop, centred
    extent = points.max(0) - points.min(0)
    assert extent.max() == pytest.approx(64 / 1.25, abs=1e-3)
    np.testing.assert_allclose((points.max(0) + points.min(0)) / 2, [32, 32], atol=1e-3)


def test_throughput_one_core():
    """Items per second of the default training configuration (crop 128, stage maps 32 and 64,
    field 64, all targets for both views, default disturbance probabilities) in this process.
    Printed for the README (`pytest -s -k throughput`); a timing depends on the machine's load, so
    only the items' content is asserted."""
    import time

    params = copy.deepcopy(PARAMS)
    params["disturb"].update({"p_gaussian_noise": 0.2, "p_salt_noise": 0.1, "p_blur": 0.2,
                              "p_occlusion_box": 0.2, "p_occlusion_patch": 0.1, "p_flip": 0.5,
                              "p_rotate": 0.5, "p_scale": 0.3})
    params["targets"]["field_radius"] = 5
    rng = np.random.default_rng(0)
    samples = [Sample(f"face{i}.png", mean_face(100) + rng.uniform(40, 60, 2).astype(np.float32),
                      image=rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)) for i in range(16)]
    ds = PairedFaceDataset(samples, SCHEME, 128, [32, 64], 64, params, progress=False)
    for i in range(4):
        ds[i]
    start_cpu, start = time.process_time(), time.perf_counter()
    n = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
            n += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"\nPairedFaceDataset (crop 128, maps 32+64, field 64, all targets, 2 views): "
          f"{n / wall:.0f} items/s wall, {n / cpu:.0f} items/s per CPU-second ({n} items)")
    item = ds[0]
    for view in ("a", "b"):
        assert item[view]["heatmaps"][64].shape == (68, 64, 64) and item[view]["boundaries"][32].shape == (13, 32, 32)
        assert item[view]["field"].shape == (2, 68, 64, 64) and np.isfinite(np.asarray(item[view]["landmarks"])).all()


def _with_crop_box(rule: str) -> dict:
    params = copy.deepcopy(PARAMS)
    params["crop"]["box"] = rule
    return params


def test_faces_without_a_box_cache_the_same_bytes_under_either_crop_rule():
    """crop.box changes nothing for faces without a dataset box (300W-style folders, synthetic
    faces): the cached context crops are byte for byte the landmark-box crop of before, and an
    unlabeled face still crops from its box."""
    samples = make_samples(4)
    big = 64 + 2 * 16  # context 1.5
    before = np.stack([crop_face(s.image, box_from_landmarks(s.landmarks), big, 1.25 * big / 64)[0]
                       for s in samples])
    for rule in ("dataset", "landmarks"):
        ds = PairedFaceDataset(samples, SCHEME, 64, [16], 16, _with_crop_box(rule), progress=False)
        assert ds.images.tobytes() == before.tobytes(), rule
    default = PairedFaceDataset(samples, SCHEME, 64, [16], 16, PARAMS, progress=False)  # no crop.box key
    assert default.images.tobytes() == before.tobytes()
    unlabeled = make_samples(2, labeled=False)
    ds = PairedFaceDataset(unlabeled, SCHEME, 64, [16], 16, _with_crop_box("landmarks"), labeled=False,
                           progress=False)
    from_box = crop_face(unlabeled[1].image, unlabeled[1].box, big, 1.25 * big / 64)[0]
    assert ds.images[1].tobytes() == from_box.tobytes()


def test_train_and_test_crops_of_a_face_with_a_dataset_box_are_the_same_crop():
    """A face with a dataset box (WFLW, COFW, AFLW): the training crop (crop.box: dataset, the
    default) and the evaluation crop (evaluate.crop_box: detector, the default) have the same
    centre and scale; crop.box: landmarks would not."""
    from spanlib.evaluation.evaluate import crop_rule_mismatch, evaluate_params

    defaults = evaluate_params({})

    face = make_samples(1)[0]
    face.box = np.array([12, 20, 80, 86], np.float32)  # not the landmarks' box: other centre, other side
    test = EvalFaceDataset([face], 64, 1.25, prefer=defaults.crop_box)[0]
    matrix = test["crop_matrix"].numpy()
    train = PairedFaceDataset([face], SCHEME, 64, [16], 16, PARAMS, train=False, progress=False)[0]["a"]
    points = train["landmarks"].numpy().astype(np.float64)
    # scale: crop pixels per image pixel; centre: the image point at the crop's centre
    scale = np.ptp(points, axis=0) / np.ptp(face.landmarks, axis=0)
    np.testing.assert_allclose(scale, [matrix[0, 0]] * 2, rtol=1e-5)
    assert matrix[0, 0] == pytest.approx(64 / (1.25 * 68))  # side = 1.25 * max(w, h) of the box
    centre = face.landmarks.mean(0) + (32 - points.mean(0)) / scale
    np.testing.assert_allclose(centre, [46, 53], atol=1e-3)  # the dataset box's centre
    np.testing.assert_allclose(points, apply_affine(matrix, face.landmarks), atol=1e-3)
    crop_pixels = test["image"].numpy().transpose(1, 2, 0) * 255
    assert np.abs(train["image"].numpy().transpose(1, 2, 0) * 255 - crop_pixels).max() <= 3.0
    assert crop_rule_mismatch({"crop": PARAMS["crop"]}, defaults) is None
    old = PairedFaceDataset([face], SCHEME, 64, [16], 16, _with_crop_box("landmarks"), train=False,
                            progress=False)[0]["a"]["landmarks"].numpy()
    assert np.abs(old - points).max() > 5  # the former rule: another crop
    assert "crop.box='landmarks'" in crop_rule_mismatch({"crop": {"box": "landmarks"}}, defaults)


def test_an_unknown_crop_box_rule_names_the_param():
    from spanlib.utils.errors import ParamError

    with pytest.raises(ParamError, match="crop.box: expected one of dataset, landmarks, got 'face'"):
        PairedFaceDataset(make_samples(1), SCHEME, 64, [16], 16, _with_crop_box("face"), progress=False)


def test_redraw_once_keeps_the_views_of_the_first_epoch():
    """disturb.redraw: ``epoch`` (default) draws a new view b every epoch; ``once`` (Algorithm 1,
    step 1) gives the same view b, landmarks and D in every epoch, the default's epoch-0 ones."""
    def views(redraw, epoch):
        params = copy.deepcopy(PARAMS)
        if redraw is not None:
            params["disturb"]["redraw"] = redraw
        ds = PairedFaceDataset(make_samples(3), SCHEME, 64, [16], 16, params, seed=5, progress=False)
        ds.set_epoch(epoch)
        return [(it["b"]["image"], it["b"]["landmarks"], it["theta"], it["flipped"]) for it in map(ds.__getitem__, range(3))]

    def same(x, y):
        return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
                   and a[3] == b[3] for a, b in zip(x, y))

    default0, default1 = views(None, 0), views(None, 1)
    assert same(default0, views("epoch", 0)) and same(default1, views("epoch", 1))  # the key's default
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(default0, default1))    # epoch: redrawn
    once0, once1, once7 = views("once", 0), views("once", 1), views("once", 7)
    assert same(once0, once1) and same(once0, once7) and same(once0, default0)
    params = copy.deepcopy(PARAMS)
    params["disturb"]["redraw"] = "never"
    with pytest.raises(ParamError, match="disturb.redraw"):
        PairedFaceDataset(make_samples(1), SCHEME, 64, [16], 16, params, progress=False)[0]


def test_mirror_offset_is_image_pixels_times_the_crop_scale():
    """``disturb.mirror_offset`` (image px): a flipped view b's points are the mirror of view a's
    moved by 2 * offset * (crop px per image px); the image is still the exact mirror."""
    samples = make_samples(3)
    params = copy.deepcopy(PARAMS)
    params["disturb"] = {**{k: (0.0 if k.startswith("p_") else v) for k, v in PARAMS["disturb"].items()},
                         "p_flip": 1.0}
    plain = PairedFaceDataset(samples, SCHEME, 64, [16], 16, params, seed=1, progress=False)
    params["disturb"]["mirror_offset"] = 0.75
    moved = PairedFaceDataset(samples, SCHEME, 64, [16], 16, params, seed=1, progress=False)
    for i, sample in enumerate(samples):
        _, transform = crop_face(sample.image, box_from_landmarks(sample.landmarks), 64, 1.25)
        a, b = plain[i], moved[i]
        assert b["flipped"]
        np.testing.assert_array_equal(b["b"]["image"].numpy(), a["b"]["image"].numpy())
        np.testing.assert_array_equal(b["b"]["image"].numpy(), a["a"]["image"].numpy()[..., ::-1])
        expected = a["b"]["landmarks"].numpy() + [2 * 0.75 * transform.scale, 0.0]
        np.testing.assert_allclose(b["b"]["landmarks"].numpy(), expected, atol=1e-4)
        np.testing.assert_allclose(b["theta"][0, 2] - a["theta"][0, 2], 2 * 0.75 * transform.scale, atol=1e-4)
