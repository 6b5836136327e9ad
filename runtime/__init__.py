"""Everything a deployed tracker needs: models, RoIAlign, sampling, adaptation, trackers, I/O, CLI.

Nothing in here imports from ``train/``, ``bench/`` or ``export/``.
"""
