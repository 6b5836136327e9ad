"""Crash-safe file writes.

:func:`write_atomic`: a reader (or a killed run) never sees a half-written file. Its temporary is
``.NAME.tmp<pid>`` beside the target; a process killed mid-write (SIGKILL, power loss) leaves that
temporary behind, so every write first removes the temporaries of the same target whose writer
process is no longer alive (:func:`remove_stale_temporaries`).

:class:`LineFile`: a text file that grows one whole line at a time (one ``write`` system call per
line, no user-space buffer), so a run killed at any moment leaves every line it wrote and no half
line; for outputs that must survive an interrupted run (the tracker's per-frame boxes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import TracebackType


def _pid_alive(pid: int) -> bool:
    """Whether a process of this id exists (on this host's pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:  # anything unexpected: assume alive, never delete another's file
        return True
    return True


def _temporary_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp{pid}")


def remove_stale_temporaries(path: Path | str) -> list[Path]:
    """Delete ``.NAME.tmp<pid>`` files beside ``path`` whose process ``pid`` is not alive.

    Temporaries of live processes (this one included) are left alone: they may be mid-write.
    Returns the files removed. Only on POSIX, where a pid can be probed; elsewhere a no-op.
    """
    path = Path(path)
    if os.name != "posix" or not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.tmp") + r"(\d+)")
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return []
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            candidate.unlink()
        except FileNotFoundError:  # another writer cleaned it first
            continue
        except OSError:  # not ours to remove (permissions): leave it
            continue
        removed.append(candidate)
    return removed


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename.

    Temporaries that earlier, killed writes of the same ``path`` left behind are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temporary_name(path, os.getpid())
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LineFile:
    """A text file written line by line, each line reaching the OS before :meth:`write_line`
    returns: what was written survives the process being killed, and no line is ever half there.

    The file is created (or emptied) on construction. :meth:`close` also syncs it to disk.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lines = 0
        # buffering=0: a raw file, so each write() below is one system call with the whole line.
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed by close())

    def write_line(self, text: str) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is already closed")
        if "\n" in text:
            raise ValueError("write_line takes one line, without its newline")
        data = memoryview((text + "\n").encode())
        while data:  # a raw write may be short (full disk, signals): finish the line
            written = self._file.write(data)
            data = data[written or 0 :]
        self.lines += 1

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        """Sync to disk and close (idempotent)."""
        if self._file is None:
            return
        try:
            os.fsync(self._file.fileno())
        except OSError:  # some file systems (pipes, /dev/null) cannot sync; the data is written
            pass
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> LineFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
