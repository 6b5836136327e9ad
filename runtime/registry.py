"""Every tracker by name, so the CLI, the Python API and the benchmarks never special-case anyone.

``create_tracker(spec)`` returns an object implementing :class:`runtime.tracker_api.Tracker`. Six
names are ours, each with a role a user can act on (README, "Which tracker"); every other
variant is a spec over one of them, ``NAME[KEY=VALUE;...]`` (:mod:`runtime.specs`), and the ones
worth naming are listed with their purpose in :mod:`runtime.presets`. OpenCV's trackers
(``cv2-*``, :mod:`runtime.opencv_peers`) are in the registry too, as peers: baselines to compare
against, labelled as such, in the family ``"opencv"``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime.mlt import MLTConfig, MLTTracker
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.adaptive import AdaptiveNanoTrackConfig, AdaptiveNanoTracker
from runtime.nanotrack.mlt_nano import MLTNanoConfig, MLTNanoTracker
from runtime.opencv_peers import PEER_NAMES, make_peer
from runtime.presets import FORMER_NAMES, PRESETS
from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT
from runtime.rtmdnet.prune import prune_setting
from runtime.specs import TrackerSpec, parse_spec
from runtime.threads import ensure_threads
from runtime.tracker_api import Tracker

# Options the CLI sets (python -m runtime.track), by config field: their flags, and whose they
# are where only some trackers take them.
CLI_FLAGS = {
    "meta": "--meta",
    "prune": "--prune",
    "precision": "--precision",
    "backend": "--backend",
    "export_dir": "--export-dir",
}
OWNERS = {
    "meta": "MetaRTT's: --tracker metartt",
    "prune": "MetaRTT's: --tracker metartt, or on the NanoTrack base --tracker metartt-nano",
}


class UnknownOptions(ValueError):
    """Options a tracker's config does not have; :func:`create_tracker` names the tracker."""

    def __init__(self, names: list[str], known: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names, self.known = names, known


def _config(cls: type, values: dict[str, object]) -> Any:
    """``cls(**values)``, or :class:`UnknownOptions` for the keys ``cls`` has no field for."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in known]
    if unknown:
        raise UnknownOptions(unknown, known)
    return cls(**values)


def unknown_options_message(name: str, names: list[str], known: list[str]) -> str:
    """``"mlt does not take --meta (it is MetaRTT's: --tracker metartt)"`` and the like."""
    if not known:  # an OpenCV peer: OpenCV's own settings, none of ours
        given = ", ".join(CLI_FLAGS.get(option, repr(option)) for option in names)
        return f"{name} is an OpenCV peer and takes no options (got {given})"
    parts = []
    for option in names:
        if option in CLI_FLAGS:
            owner = f" (it is {OWNERS[option]})" if option in OWNERS else ""
            parts.append(f"{name} does not take {CLI_FLAGS[option]}{owner}")
        else:
            parts.append(f"{name} has no setting {option!r} (its settings: {', '.join(known)})")
    return "; ".join(parts)


def _rtmdnet(preset: dict[str, object]) -> Callable[..., Tracker]:
    def factory(data_dir: Path | None, **options: object) -> Tracker:
        values = {**preset, **options}
        if isinstance(values.get("prune"), str):  # "shipped", "static", "fit" or a path
            values["prune"] = prune_setting(str(values["prune"]))
        config = _config(RTMDNetConfig, values)
        return RTMDNetTracker(config, data_dir=data_dir)

    return factory


def _metartt(preset: dict[str, object]) -> Callable[..., Tracker]:
    def factory(data_dir: Path | None, **options: object) -> Tracker:
        return _rtmdnet({"meta": str(SHIPPED_CHECKPOINT), **preset})(data_dir, **options)

    return factory


def _mlt(preset: dict[str, object]) -> Callable[..., Tracker]:
    def factory(data_dir: Path | None, **options: object) -> Tracker:
        config = _config(MLTConfig, {**preset, **options})  # not --meta, --prune
        return MLTTracker(config, data_dir=data_dir)

    return factory


def _nanotrack(preset: dict[str, object]) -> Callable[..., Tracker]:
    def factory(data_dir: Path | None, **options: object) -> Tracker:
        config = _config(NanoTrackConfig, {**preset, **options})  # not --meta, --prune
        return NanoTracker(config, data_dir=data_dir)

    return factory


def _target_layer(
    name: str, cls: type[AdaptiveNanoTracker] | type[MLTNanoTracker], preset: dict[str, object]
) -> Callable[..., Tracker]:
    """A tracker with a target layer on the NanoTrack base (MetaRTT's or MLT's), named ``name``."""
    config_cls = AdaptiveNanoTrackConfig if cls is AdaptiveNanoTracker else MLTNanoConfig

    def factory(data_dir: Path | None, **options: object) -> Tracker:
        tracker = cls(_config(config_cls, {**preset, **options}), data_dir=data_dir)
        tracker.name = name
        return tracker

    return factory


Family = Literal["nanotrack", "rtmdnet", "mlt", "opencv"]
"""What a tracker is built on, which decides what its options mean (``--prune``: the head's
pruning network on the NanoTrack base, MetaRTT's channel pruning on RT-MDNet); ``"opencv"``: an
OpenCV peer, not ours."""

ExportKind = Literal["siamese", "rtmdnet"]
"""The manifest ``kind`` of the export folders a tracker runs from: the Siamese template/search
graphs (``build_engine.py --tracker nanotrack``) or the RT-MDNet backbone + RoI pooling."""


@dataclass(frozen=True)
class TrackerEntry:
    """One name in the registry. Family and export kind are declared here, never guessed from the
    name: ``rtmdnet-nanotrack`` holds "nano" but is RT-MDNet on NanoTrack's backbone."""

    factory: Callable[..., Tracker]
    family: Family
    export_kind: ExportKind | None  # None: runs from no export folder of ours (OpenCV peers)


def _on_nanotrack(factory: Callable[..., Tracker]) -> TrackerEntry:
    """The NanoTrack v3 Siamese network, or a target layer on it: its template/search graphs."""
    return TrackerEntry(factory, family="nanotrack", export_kind="siamese")


def _on_rtmdnet(factory: Callable[..., Tracker]) -> TrackerEntry:
    """The RT-MDNet head on some backbone: backbone + RoI pooling graphs."""
    return TrackerEntry(factory, family="rtmdnet", export_kind="rtmdnet")


def _on_mlt(factory: Callable[..., Tracker]) -> TrackerEntry:
    """MLT: its trunk exports and runs like RT-MDNet's backbone."""
    return TrackerEntry(factory, family="mlt", export_kind="rtmdnet")


def _opencv_peer(name: str) -> TrackerEntry:
    """OpenCV's tracker ``name``: OpenCV's settings, none of our config fields."""

    def factory(data_dir: Path | None, **options: object) -> Tracker:
        if options:
            raise UnknownOptions(sorted(options), [])
        return make_peer(name, data_dir)

    return TrackerEntry(factory, family="opencv", export_kind=None)


_ENTRIES: dict[str, TrackerEntry] = {
    # The default: the full pretrained NanoTrack v3 network (backbone, BAN head) with its
    # published tracking values, averaged per cell with NanoTrack v2 (docs/nanotrack.md); ONNX
    # Runtime from the graph cache by default.
    "nanotrack": _on_nanotrack(_nanotrack({})),
    # MetaRTT (the paper's tracker): the RT-MDNet procedure with the shipped meta checkpoint
    # (5 + 5 learned steps); its one-shot channel pruning is the preset metartt[prune=shipped].
    "metartt": _on_rtmdnet(_metartt({})),
    # MLT (ICCV 2019) with the shipped checkpoint: meta-learned kernels every 30 frames.
    "mlt": _on_mlt(_mlt({})),
    # MetaRTT's method on the NanoTrack base (docs/nanotrack.md, "Seeds"): a target layer on the
    # classification features, adapted by 5 + 5 steps with the shipped meta-learned rule; the
    # base weights frozen.
    "metartt-nano": _on_nanotrack(_target_layer("metartt-nano", AdaptiveNanoTracker, {})),
    # MLT's method on the NanoTrack base: the same layer's kernel and channel attention generated
    # by the shipped meta-learner from the loss gradient over 8 context images every 30 frames.
    "mlt-nano": _on_nanotrack(_target_layer("mlt-nano", MLTNanoTracker, {})),
    # RT-MDNet, the foundation MetaRTT builds on: the FC head learned per video, no meta
    # checkpoint (MetaRTT's baseline).
    "rtmdnet": _on_rtmdnet(_rtmdnet({})),
}
# Every other variant is a preset (runtime/presets.py): a spec such as metartt[prune=shipped].

TRACKER_NAMES: tuple[str, ...] = tuple(_ENTRIES)  # ours
_ENTRIES.update({name: _opencv_peer(name) for name in PEER_NAMES})
ALL_NAMES: tuple[str, ...] = (*TRACKER_NAMES, *PEER_NAMES)  # ours, then OpenCV's peers


def is_opencv_peer(name: str) -> bool:
    return name in PEER_NAMES


def unknown_tracker_message(name: str) -> str:
    """``"unknown tracker 'nanotrak'; did you mean 'nanotrack'? ours: ...; OpenCV peers: ..."``;
    for a name that became a preset, the spec to write instead."""
    if name in FORMER_NAMES:
        return (
            f"{name!r} is no longer a tracker name: write {FORMER_NAMES[name]!r} "
            f"(the presets and their purpose: runtime/presets.py, docs/model_zoo.md)"
        )
    close = difflib.get_close_matches(name, ALL_NAMES, n=1, cutoff=0.6)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown tracker {name!r}{guess} (ours: {', '.join(TRACKER_NAMES)}, each also as "
        f"NAME[KEY=VALUE;...]; OpenCV peers: {', '.join(PEER_NAMES)})"
    )


def preset_specs() -> tuple[str, ...]:
    """The presets' specs (:mod:`runtime.presets`), in their listed order."""
    return tuple(preset.spec for preset in PRESETS)


def _entry(spec: str | TrackerSpec) -> TrackerEntry:
    name = spec.name if isinstance(spec, TrackerSpec) else parse_spec(spec).name
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(unknown_tracker_message(name)) from None


def tracker_family(spec: str) -> Family:
    """What ``spec``'s tracker is built on (its registry entry says; ValueError for an unknown
    name)."""
    return _entry(spec).family


def export_kind(spec: str) -> ExportKind | None:
    """``"siamese"`` or ``"rtmdnet"``: the manifest kind of the export folders ``spec``'s tracker
    uses (``None`` for an OpenCV peer, which uses none)."""
    return _entry(spec).export_kind


def create_tracker(
    spec: str, data_dir: Path | None = None, *, threads: int | None = None, **options: object
) -> Tracker:
    """Build a tracker from its name or spec (ours, ``NAME[KEY=VALUE;...]``, or an OpenCV peer
    ``cv2-*``), with the CPU threads set as the CLI sets them; the spec's values and ``options``
    override fields of its config dataclass (OpenCV's peers take none).

    ``threads``: torch's and OpenCV's thread count, which are **process-wide** settings
    (:func:`runtime.threads.set_threads`): given, it is applied; ``None`` keeps the count this
    process already chose (the CLI's ``--threads``, an earlier ``threads=``,
    ``runtime.threads.set_threads``), or the first time picks the cores not already busy, as the
    CLI does (:func:`runtime.threads.default_threads`). Without this, torch runs one thread per
    core, and on a machine where another process keeps a core busy every frame waits for it.
    :func:`build_tracker` builds without touching the threads.

    ValueError for an unknown name (with the closest known one, or the spec a former name became),
    a malformed spec, a thread count below 1, an option the tracker does not take (worded for the
    CLI: ``"mlt does not take --meta (it is MetaRTT's: --tracker metartt)"``), or an option given
    both in the spec and in ``options`` with different values.
    """
    ensure_threads(threads)
    return build_tracker(spec, data_dir, **options)


def build_tracker(spec: str, data_dir: Path | None = None, **options: object) -> Tracker:
    """:func:`create_tracker` leaving the process's thread settings alone (the benchmarks and
    training set them once for the whole run); ``options`` are config fields only (``threads``
    here is a config's own, e.g. NanoTrack's ONNX Runtime threads)."""
    parsed = parse_spec(spec)
    clash = [k for k, v in parsed.overrides.items() if k in options and options[k] != v]
    if clash:
        raise ValueError(
            f"{spec}: {', '.join(clash)} given both in the spec and as an option, with "
            f"different values"
        )
    factory = _entry(parsed).factory
    try:
        return factory(data_dir, **{**options, **parsed.overrides})
    except UnknownOptions as exc:
        raise ValueError(unknown_options_message(parsed.name, exc.names, exc.known)) from None
