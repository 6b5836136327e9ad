"""Train the pruning network of the NanoTrack v3 head: ``python train/metartt_nano_prune.py --help``
(console command ``tracker-train-metartt-nano-prune``).

A thin script over :mod:`train.nanotrack.metartt_nano_prune` (the code and every flag's
documentation).
"""

import sys

from train.nanotrack.metartt_nano_prune import main

if __name__ == "__main__":
    sys.exit(main())
