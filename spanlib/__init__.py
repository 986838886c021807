"""spanlib: a reproducible study of SPAN (Self-Calibrated Pose Attention Network) for facial landmarks."""

from spanlib._version import __version__


def load_model(path=None, device="cpu"):
    """Load a training checkpoint or a .safetensors model file, without running code from it; with
    no path, the bundled model after checking its SHA-256. See :func:`spanlib.inference.checkpoint.load_model`."""
    from spanlib.inference.checkpoint import load_model as _load_model  # lazy: `import spanlib` stays torch-free

    return _load_model(path, device=device)


__all__ = ["__version__", "load_model"]
