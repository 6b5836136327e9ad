"""What an input string names: a camera index, a stream URL or a path (:func:`parse_source`)."""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from runtime.io.frames import InputError

# Network sources OpenCV's FFmpeg opens. A camera index, rtsp, rtmp, udp, rtp, srt and tcp are
# live (frames come at the sender's pace and a slow reader falls behind); http(s) is often a
# video file on a web server, tracked frame by frame unless --live says it is a live feed (an IP
# camera's MJPEG, say).
STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "rtp", "srt", "tcp")
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "udp", "rtp", "srt", "tcp"})
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")


class SourceKind(enum.Enum):
    CAMERA = "camera"
    STREAM = "stream"  # a URL
    PATH = "path"  # a file or folder (it may not exist)


@dataclass(frozen=True)
class SourceSpec:
    """What an input string names; :func:`parse_source` is the one place that decides."""

    text: str
    kind: SourceKind
    camera: int | None = None
    url: str | None = None
    scheme: str | None = None
    path: Path | None = None

    @property
    def live_by_default(self) -> bool:
        """Cameras and live-stream schemes (:data:`LIVE_SCHEMES`); --live makes any source live."""
        return self.kind is SourceKind.CAMERA or self.scheme in LIVE_SCHEMES

    @property
    def stream_name(self) -> str:
        """A file-name-safe name for a camera or stream (its outputs are named after it): the
        URL's last path part without suffix, else its host and port."""
        if self.camera is not None:
            return f"camera{self.camera}"
        parts = urlsplit(self.url or "")
        last = PurePosixPath(parts.path).stem or parts.netloc.rsplit("@", 1)[-1] or "stream"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._") or "stream"


def parse_source(spec: str | os.PathLike[str]) -> SourceSpec:
    """Whether ``spec`` is a camera index (digits, unless a path of that name exists), a stream
    URL (``scheme://...``; kept as text: a Path would fold its ``//``) or a path.

    Raises :class:`InputError` for a URL whose scheme OpenCV cannot open.
    """
    text = os.fspath(spec)
    found = _URL.match(text.strip())
    if found is not None:
        scheme = found.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            raise InputError(
                f"cannot open {text}: {scheme}:// is not a stream this tracker reads "
                f"(it reads {', '.join(s + '://' for s in STREAM_SCHEMES)})"
            )
        return SourceSpec(text, SourceKind.STREAM, url=text.strip(), scheme=scheme)
    path = Path(text).expanduser()
    if text.strip().isdigit() and not path.exists():
        return SourceSpec(text, SourceKind.CAMERA, camera=int(text))
    return SourceSpec(text, SourceKind.PATH, path=path)
