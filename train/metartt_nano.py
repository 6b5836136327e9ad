"""Meta-train the target layer on the NanoTrack v3 base: ``python train/metartt_nano.py --help``
(console command ``tracker-train-metartt-nano``).

A thin script over :mod:`train.nanotrack.metartt_nano` (the code and every flag's documentation).
"""

import sys

from train.nanotrack.metartt_nano import main

if __name__ == "__main__":
    sys.exit(main())
