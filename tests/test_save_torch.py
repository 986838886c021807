"""spanlib.utils.files.save_torch: the same object gives the same bytes, whatever the temporary
file was called (DVC hashes checkpoints: a rerun of the pipeline must not rewrite dvc.lock)."""

import hashlib
import zipfile

import torch

from spanlib.utils.files import save_torch


def test_the_same_object_saves_to_the_same_bytes(tmp_path):
    obj = {"weights": torch.arange(12, dtype=torch.float32).reshape(3, 4), "iteration": 7}
    a, b = tmp_path / "one" / "checkpoint.pt", tmp_path / "two" / "checkpoint.pt"
    for path in (a, b, a):  # a twice: the second write goes through another random temporary name
        path.parent.mkdir(exist_ok=True)
        save_torch(obj, path)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    # no temporary name inside the archive, and the file loads back as saved
    assert all(name.startswith("archive/") for name in zipfile.ZipFile(a).namelist())
    back = torch.load(a, weights_only=True)
    assert back["iteration"] == 7 and torch.equal(back["weights"], obj["weights"])
