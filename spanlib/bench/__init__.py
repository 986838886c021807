"""Speed: inference back-ends, kernels, per-layer profiles."""
