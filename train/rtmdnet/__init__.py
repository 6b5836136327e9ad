"""Training MetaRTT (Jung et al., AAAI 2020) for ``runtime/rtmdnet``: simulated tracking episodes
(:mod:`train.rtmdnet.episodes`), the meta-learning core (:mod:`train.rtmdnet.meta_learning`),
meta-training (:mod:`train.rtmdnet.meta_training`, ``python train/meta.py``) and the pruning
network's training (:mod:`train.rtmdnet.prune_training`, ``python train/prune.py``)."""
