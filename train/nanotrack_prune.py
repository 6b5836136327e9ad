"""Train the pruning network of the NanoTrack v3 head: ``python train/nanotrack_prune.py --help``
(console command ``tracker-train-nanotrack-prune``).

A thin script over :mod:`train.nanotrack.head_pruning` (the code and every flag's documentation).
"""

import sys

from train.nanotrack.head_pruning import main

if __name__ == "__main__":
    sys.exit(main())
