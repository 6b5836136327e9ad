"""Training, laid out as ``runtime/``: ``train/rtmdnet/`` (MetaRTT on the RT-MDNet-style tracker:
episodes, meta-training, pruning-network training) and ``train/mlt/`` (MLT's two stages), over the
shared ``train/datasets.py`` (training videos) and ``train/tooling.py`` (settings, resumable
state, logs). ``train/meta.py``, ``train/prune.py`` and ``train/mlt.py`` are the command-line
scripts; each calls a package's ``main``.
"""
