"""The package version, in a module of its own that imports nothing: ``spanlib/__init__`` and the
modules that record the version (checkpoints, provenance, synthetic data, the CLI) read it here."""

__version__ = "0.1.0"
