#!/usr/bin/env bash
# Set up (first time) and track the default clip: writes outputs/*_tracked.mp4 and *_boxes.txt.
# Extra arguments go to `python -m runtime.track` (e.g. a video path and --init x,y,w,h).
set -euo pipefail
cd "$(dirname "$0")"
# An explicit (empty) extras argument: a bare `source` would hand env.sh this script's own
# arguments (the video path) as the pip extra.
source scripts/env.sh ""
exec python -m runtime.track "$@"
