"""Scoring trackers: the OTB/LaSOT metrics (:mod:`runtime.evaluation.metrics`) and the one-pass
evaluation core (:mod:`runtime.evaluation.one_pass`). Used by ``bench/`` (the benchmarks) and by
``train/`` (validation during training); imports nothing from either."""
