"""INT8 calibration from real tracking crops: the calibration sets (``calib.build``: RT-MDNet
search crops; ``calib.pairs``: nanotrack template/search pairs), Q/DQ quantization of the
RT-MDNet backbone graph (``calib.quantize``) and of the nanotrack search graph
(``calib.siamese``); docs/int8.md."""
