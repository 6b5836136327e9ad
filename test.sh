#!/usr/bin/env bash
# Set up (first time) and run the test suite on the CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh dev
exec python -m pytest "$@"
