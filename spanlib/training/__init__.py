"""Training runs: the loop, data parallelism, multi-seed runs."""
