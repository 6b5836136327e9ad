"""The README's two commands pass their arguments through (issue 19, item 1).

``scripts/env.sh`` is sourced by ``run.sh``; a bare ``source`` handed it ``run.sh``'s own
arguments, which it took as a pip extra (``pip install -e .[VIDEO]`` -> InvalidRequirement).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def _installed_by_env_sh() -> bool:
    """Whether scripts/env.sh installed this pyproject.toml into this venv (its stamp names the
    file's hash): otherwise run.sh would (re)install the project first."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return any(VENV.glob(f".installed-{digest}*"))


@pytest.mark.skipif(
    not _installed_by_env_sh(),
    reason="this interpreter's venv was not set up by scripts/env.sh for this pyproject.toml "
    "(no .installed-<its hash> stamp), so run.sh would install the project first",
)
def test_run_sh_hands_its_arguments_to_the_tracker_not_to_pip():
    env = {**os.environ, "TRACKER_VENV": str(VENV)}
    done = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m runtime.track" in done.stdout
    assert "installing" not in done.stdout + done.stderr  # nothing reinstalled either
