"""Face data: samples, dataset readers (``spanlib.data.sources``), crops, disturbances, targets.

Kept light on purpose: importing ``spanlib.data`` loads nothing heavy; each module imports what it
needs (OpenCV, h5py, SciPy, torch) itself.
"""
