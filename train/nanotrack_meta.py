"""Meta-train the target layer on the NanoTrack v3 base: ``python train/nanotrack_meta.py --help``
(console command ``tracker-train-nanotrack-meta``).

A thin script over :mod:`train.nanotrack.meta_layer` (the code and every flag's documentation).
"""

import sys

from train.nanotrack.meta_layer import main

if __name__ == "__main__":
    sys.exit(main())
