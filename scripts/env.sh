#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv), then activate it.
# Sourced by run.sh and test.sh; re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRACKER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[env] creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

STAMP_BASE="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
STAMP="$STAMP_BASE${EXTRAS:+-$EXTRAS}"
# An install with extras (dev) includes the plain one: run.sh after test.sh installs nothing.
if [ -z "$EXTRAS" ] && compgen -G "$STAMP_BASE*" > /dev/null; then
    STAMP="$(compgen -G "$STAMP_BASE*" | head -n 1)"
fi
if [ ! -f "$STAMP" ]; then
    echo "[env] installing the project${EXTRAS:+ with [$EXTRAS]} (first run takes a few minutes)"
    python -m pip install --quiet --upgrade pip
    # torch first and pinned: the CPU wheel; never let a resolver pull a CUDA build.
    python -m pip install --quiet "torch==2.13.0"
    python -m pip install --quiet -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    touch "$STAMP"
fi
