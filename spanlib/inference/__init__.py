"""A trained model in use: checkpoints and bundled weights, the inference step, back-ends, ONNX, face detection, predict."""
