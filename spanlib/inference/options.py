"""The choices ``spanlib predict`` offers, kept free of torch so that ``spanlib predict --help``
answers at once: the back-end names (``spanlib.inference.backends`` builds them), how many images make
a faster back-end worth building, and the file suffixes read as videos (``spanlib.inference.predict``)."""

BACKENDS = ("eager", "head", "channels_last", "jit", "compile", "onnxruntime", "onnxruntime_int8")
# building the ONNX Runtime or TorchScript back-end costs about a second (export / trace, measured in
# results/real/inference_speed.md) and saves some 20 ms per face on one thread: `predict --backend
# auto` builds one only when the inputs hold a video or at least this many images
AUTO_MIN_IMAGES = 50
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
