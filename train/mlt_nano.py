"""Train MLT's kernel generator on the NanoTrack v3 base: ``python train/mlt_nano.py --help``
(console command ``tracker-train-mlt-nano``).

A thin script over :mod:`train.nanotrack.mlt_nano` (the code and every flag's
documentation).
"""

import sys

from train.nanotrack.mlt_nano import main

if __name__ == "__main__":
    sys.exit(main())
