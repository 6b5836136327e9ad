"""INT8 calibration from real tracking crops: the calibration set (``calib.build``) and Q/DQ
quantization of the backbone graph (``calib.quantize``); docs/int8.md."""
