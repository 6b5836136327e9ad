"""INT8 calibration from real tracking crops (Q/DQ graphs for ONNX Runtime and TensorRT); not yet built."""
