"""Where the shared data lives: one place, never hard-coded elsewhere.

The data folder is, in order: an explicit argument, the ``TRACKER_DATA`` environment variable,
or ``../shared/data`` relative to the project root.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "TRACKER_DATA"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The shared data folder (may not exist; callers that need a file check for it)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming what is missing."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found at {path}. Point --data (or ${DATA_ENV_VAR}) at the folder that "
            f"holds the shared data, or pass the file's path explicitly."
        )
    return path
