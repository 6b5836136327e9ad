"""What a ``python -m runtime.track`` call asks for, parsed once into typed, checked values.

The CLI parses its flags into a :class:`TrackRequest` (:meth:`TrackRequest.from_args`) and works
from that alone: the tracker is built from :class:`TrackerChoice` (name and the options it sets),
never by copying flags around. Every check that needs no file is done here, so a typo fails
before a model loads or a video opens.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.io.capture import DEFAULT_TIMEOUT
from runtime.registry import ALL_NAMES, TRACKER_NAMES, tracker_family, unknown_tracker_message
from runtime.rtmdnet.prune import FIT, SHIPPED, PruneCheckpointError, prune_setting
from runtime.specs import SpecError, parse_spec

# The full NanoTrack v3 network: the most accurate and fastest here (docs/nanotrack.md).
DEFAULT_TRACKER = "nanotrack"
# --meta / --prune without --tracker mean MetaRTT (the only tracker that takes them).
META_TRACKER = "metartt"
# Needs no weight file, so the default run works on a machine without the shared data (it tracks
# far worse: the VGG-M trunk is untrained). Used only when --tracker was not given.
FALLBACK_TRACKER = "rtmdnet[backbone=vggm]"


class UsageError(ValueError):
    """Something the user gave cannot be used; the CLI prints it as one ``error:`` line."""


def _prune_option(tracker: str | None, value: str) -> str:
    """A ``--prune`` value -> the tracker's ``prune`` setting: MetaRTT's (:func:`prune_setting`),
    or for the NanoTrack-base trackers the head's pruning network ("shipped" or a path)."""
    # No --tracker (--prune then means metartt) or a test double's name: MetaRTT's setting.
    name = None if tracker is None else parse_spec(tracker).name
    if name not in TRACKER_NAMES or tracker_family(tracker) != "nanotrack":
        return prune_setting(value)
    if value == FIT:
        raise UsageError(
            f"--prune fit is MetaRTT's first-frame fit; {tracker} takes the shipped head-pruning "
            f"network (--prune) or a checkpoint of python train/metartt_nano_prune.py"
        )
    if value != SHIPPED and not Path(value).is_file():
        raise UsageError(f"--prune: no head-pruning checkpoint at {value}")
    return value


@dataclass(frozen=True)
class TrackerChoice:
    """Which tracker, and the config fields the CLI's flags set on it (``None``: not given)."""

    name: str
    named: bool  # --tracker was given (else a default, which may fall back: see fallback())
    backend: str | None = None
    export_dir: Path | None = None
    precision: str | None = None
    meta: Path | None = None
    prune: str | None = None  # a pruning checkpoint path or "fit" (prune_setting)

    def options(self) -> dict[str, object]:
        """The config overrides for :func:`runtime.registry.create_tracker` (set ones only)."""
        values = {
            "backend": self.backend,
            "export_dir": None if self.export_dir is None else str(self.export_dir),
            "precision": self.precision,
            "meta": None if self.meta is None else str(self.meta),
            "prune": self.prune,
        }
        return {key: value for key, value in values.items() if value is not None}

    def fallback(self) -> TrackerChoice | None:
        """The tracker to use when a default one cannot load its weights (None when named):
        :data:`FALLBACK_TRACKER`, without checkpoints (they belong to the backbone they were
        trained on)."""
        if self.named:
            return None
        return replace(self, name=FALLBACK_TRACKER, meta=None, prune=None)


@dataclass(frozen=True)
class TrackRequest:
    """One CLI run: input, first box, tracker, outputs and run settings, all checked."""

    input: str | None  # video file, image folder, camera index, stream URL; None: default video
    init: tuple[str, ...]  # the --init texts, one per target (1-based x,y,w,h), parsed later
    tracker: TrackerChoice
    data: Path | None
    boxes: Path | None
    output: Path | None
    max_frames: int | None
    threads: int | None  # None: from the free cores (runtime.threads.default_threads)
    show: bool
    quiet: bool
    live: bool = False  # --live: track the newest frame (cameras, rtsp://, udp://... always are)
    timeout: float = DEFAULT_TIMEOUT  # seconds a stream may take to open or to send a frame

    @classmethod
    def from_args(cls, args: argparse.Namespace, check_name: bool = True) -> TrackRequest:
        """The request the parsed flags make; :class:`UsageError` for values that cannot work.

        ``check_name=False`` leaves the tracker name to the factory (tests inject their own).
        """
        if check_name and args.tracker is not None:
            try:
                name = parse_spec(args.tracker).name
            except SpecError as exc:
                raise UsageError(str(exc)) from None
            if name not in ALL_NAMES:
                raise UsageError(unknown_tracker_message(name))
        if args.max_frames is not None and args.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")
        if args.threads is not None and args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        if not args.timeout > 0:  # NaN too
            raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        try:
            prune = None if args.prune is None else _prune_option(args.tracker, args.prune)
        except (PruneCheckpointError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        checkpoints = args.meta is not None or prune is not None
        tracker = TrackerChoice(
            name=args.tracker or (META_TRACKER if checkpoints else DEFAULT_TRACKER),
            named=args.tracker is not None,
            backend=args.backend,
            export_dir=args.export_dir,
            precision=args.precision,
            meta=args.meta,
            prune=prune,
        )
        return cls(
            input=args.input,
            init=tuple(args.init or ()),
            tracker=tracker,
            data=args.data,
            boxes=args.boxes,
            output=args.output,
            max_frames=args.max_frames,
            threads=args.threads,
            show=args.show,
            quiet=args.quiet,
            live=args.live,
            timeout=args.timeout,
        )
