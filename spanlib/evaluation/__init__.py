"""Scores of a model on a dataset: evaluate, metrics, statistics, peer detectors."""
