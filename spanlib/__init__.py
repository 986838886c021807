"""spanlib: a reproducible study of SPAN (Self-Calibrated Pose Attention Network) for facial landmarks."""

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Load a trained checkpoint; see :func:`spanlib.predict.load_model`."""
    from .predict import load_model as _load_model

    return _load_model(path, device=device)


__all__ = ["__version__", "load_model"]
