"""Meta-train MetaRTT's initial weights and rates: ``python train/meta.py --help``
(console command ``tracker-train-meta``).

A thin script over :mod:`train.rtmdnet.meta_training` (the code and every flag's documentation).
It imports the project as installed (``pip install -e .``, as ``scripts/env.sh`` does) or from the
repository root on ``PYTHONPATH``.
"""

import sys

from train.rtmdnet.meta_training import main

if __name__ == "__main__":
    sys.exit(main())
