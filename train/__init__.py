"""Training: dataset loaders, MetaRTT episodes (meta-training and pruning build on these)."""
