"""Export: the fixed network to ONNX (checked against torch) and TensorRT 10 engines."""
