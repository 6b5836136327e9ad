"""Train MetaRTT's channel-pruning network: ``python train/prune.py --help``
(console command ``tracker-train-prune``).

A thin script over :mod:`train.rtmdnet.prune_training` (the code and every flag's documentation).
It imports the project as installed (``pip install -e .``, as ``scripts/env.sh`` does) or from the
repository root on ``PYTHONPATH``.
"""

import sys

from train.rtmdnet.prune_training import main

if __name__ == "__main__":
    sys.exit(main())
