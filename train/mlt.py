"""Train MLT's matching network and meta-learner: ``python train/mlt.py --help``
(console command ``tracker-train-mlt``).

A thin script over :mod:`train.mlt.training` (the code and every flag's documentation).
``import train.mlt`` is the package ``train/mlt/``, not this file (a package wins over a module
of the same name): this file is only ever run as a script.
It imports the project as installed (``pip install -e .``, as ``scripts/env.sh`` does) or from the
repository root on ``PYTHONPATH``.
"""

import sys

from train.mlt.training import main

if __name__ == "__main__":
    sys.exit(main())
