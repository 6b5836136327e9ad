"""Training MLT (Choi et al., ICCV 2019) for ``runtime/mlt``: both stages in
:mod:`train.mlt.training` (``python train/mlt.py``)."""
