"""Reading and writing the project's own checkpoint files (meta checkpoint, pruning network).

One format check for all of them: a file is a ``torch.save``'d dict with a ``"format"`` key,
loaded with ``weights_only=True`` (no code runs on load), written atomically; its sha256 is what
other artifacts record to say which checkpoint they were made for.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from runtime.atomic import write_atomic


def save_payload(path: Path | str, payload: dict) -> str:
    """Write ``payload`` atomically; returns the file's sha256."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    write_atomic(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def load_payload(
    path: Path | str, fmt: str, error: type[Exception], role: str, what: str, hint: str
) -> tuple[dict, str]:
    """``(payload, sha256)`` of a ``fmt`` checkpoint; ``error`` with a clear message otherwise.

    ``role`` ("meta checkpoint") names the missing file, ``what`` ("MetaRTT checkpoint") the
    format a wrong file is not, ``hint`` where a right one comes from.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{role} not found: {path}")
    data = path.read_bytes()
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means "not ours"
        # Not PyTorch's message: it suggests weights_only=False, which would run the file's code.
        raise error(
            f"{path} is not a readable checkpoint, not one of this project's {what}s (not "
            f"written by torch.save, truncated, or holding more than tensors and plain data); "
            f"{hint}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"{path} is not a {what} (format {fmt!r}); {hint}")
    return payload, hashlib.sha256(data).hexdigest()


def load_bound_payload(
    path: Path | str,
    fmt: str,
    error: type[Exception],
    role: str,
    what: str,
    train_command: str,
    base_sha256: str,
) -> tuple[dict, str]:
    """:func:`load_payload` for a checkpoint trained on a frozen base network: refused (``error``)
    unless its ``base_sha256`` is the base weights' (``train_command`` makes a new one)."""
    payload, sha = load_payload(path, fmt, error, role, what, f"make one with {train_command}")
    if payload.get("base_sha256") != base_sha256:
        raise error(
            f"{path} was trained for NanoTrack v3 weights with sha256 "
            f"{payload.get('base_sha256')}, these have {base_sha256}; retrain it with "
            f"{train_command}"
        )
    return payload, sha
