"""Finished (tracker, sequence) runs kept on disk, so that a stopped ``bench.ope`` can ``--resume``.

One ``<tracker slug>/<sequence>.npz`` per run in ``<json stem>.runs/`` beside the ``--json`` file,
plus ``manifest.json`` naming the trackers, sequences, frame limit and config the runs belong to;
a resume with other ones is refused in one line. What a run's arrays are is a :class:`RunFormat`:
``bench.ope``'s one-pass runs (:data:`ONE_PASS`) and its restart runs (:func:`restart_format`).
Every saved run is rebuilt and scored again from its arrays on load, never trusted as a summary.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from runtime.atomic import write_atomic
from runtime.evaluation.metrics import evaluate_sequence
from runtime.evaluation.one_pass import OPEError, TrackedSequence
from runtime.evaluation.restarts import (
    RestartRun,
    RestartSequence,
    RestartSettings,
    score_restarts,
)
from runtime.sequences import Sequence


class NamedRun(Protocol):
    tracker: str
    sequence: str


R = TypeVar("R", bound=NamedRun)


@dataclass(frozen=True)
class RunFormat(Generic[R]):
    """How one kind of run is kept in an ``.npz``: its arrays, and the run rebuilt from them
    for (tracker, sequence); ``rebuild`` raises KeyError or ValueError when they do not fit."""

    arrays: Callable[[R], dict[str, np.ndarray]]
    rebuild: Callable[[Mapping[str, np.ndarray], str, Sequence], R]


def _fits(length: int, sequence: Sequence, *arrays: np.ndarray) -> None:
    if length != len(sequence) or any(len(a) != length for a in arrays):
        raise ValueError(f"saved run of {length} frames does not fit {sequence.name}")


def _one_pass_arrays(tracked: TrackedSequence) -> dict[str, np.ndarray]:
    if tracked.frame_seconds is None:
        raise ValueError(f"{tracked.tracker} / {tracked.sequence}: no per-frame times to save")
    return {
        "boxes": tracked.boxes,
        "scores": tracked.scores,
        "seconds": np.float64(tracked.seconds),
        "frame_seconds": tracked.frame_seconds,
        "stats": np.array(json.dumps(tracked.stats)),
    }


def _one_pass_rebuild(
    data: Mapping[str, np.ndarray], tracker: str, sequence: Sequence
) -> TrackedSequence:
    boxes = np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(data["scores"], dtype=np.float64).reshape(-1)
    # A run saved before per-frame times were kept has none: KeyError, so it is run again.
    frame_seconds = np.asarray(data["frame_seconds"], dtype=np.float64).reshape(-1)
    _fits(len(boxes), sequence, scores, frame_seconds)
    result = evaluate_sequence(boxes, sequence.ground_truth, sequence.name)
    stats = json.loads(str(data["stats"]))
    seconds = float(data["seconds"])
    return TrackedSequence(
        tracker, sequence.name, boxes, scores, seconds, result, stats, frame_seconds
    )


ONE_PASS: RunFormat[TrackedSequence] = RunFormat(_one_pass_arrays, _one_pass_rebuild)


def restart_format(settings: RestartSettings) -> RunFormat[RestartSequence]:
    """Restart runs: boxes, frame states and per-frame times; scored with ``settings`` on load."""

    def arrays(done: RestartSequence) -> dict[str, np.ndarray]:
        run = done.run
        return {"boxes": run.boxes, "states": run.states, "frame_seconds": run.frame_seconds}

    def rebuild(
        data: Mapping[str, np.ndarray], tracker: str, sequence: Sequence
    ) -> RestartSequence:
        run = RestartRun(
            np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4),
            np.asarray(data["states"], dtype=np.int8).reshape(-1),
            np.asarray(data["frame_seconds"], dtype=np.float64).reshape(-1),
        )
        _fits(len(run.boxes), sequence, run.states, run.frame_seconds)
        scores = score_restarts(run, sequence.ground_truth, settings)
        return RestartSequence(tracker, sequence.name, run, scores)

    return RunFormat(arrays, rebuild)


def runs_dir_for(json_path: Path) -> Path:
    """Where a run writing ``json_path`` keeps its finished (tracker, sequence) runs."""
    json_path = Path(json_path)
    return json_path.with_name(f"{json_path.stem}.runs")


def _slug(spec: str) -> str:
    """A file-name-safe, collision-free folder name for a tracker spec (specs hold / [ ; =)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._")[:60] or "tracker"
    return f"{readable}-{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return json.dumps(value)


class RunStore(Generic[R]):
    """Finished runs on disk, one ``<tracker slug>/<sequence>.npz`` each, plus ``manifest.json``
    naming the trackers, sequences, frame limit and config the runs belong to."""

    MANIFEST = "manifest.json"
    VERSION = 2  # 2: one-pass runs keep per-frame times (a version-1 run is run again)

    def __init__(self, folder: Path, manifest: dict[str, object], run_format: RunFormat[R]) -> None:
        self.folder = Path(folder)
        self.manifest = {"version": self.VERSION, **manifest}
        self.format = run_format

    def _path(self, tracker: str, sequence: str) -> Path:
        return self.folder / _slug(tracker) / f"{sequence}.npz"

    def start(self) -> None:
        """A fresh run: forget the runs of an earlier one here, write this run's manifest."""
        if self.folder.is_dir():
            for old in self.folder.glob("*/*.npz"):
                old.unlink(missing_ok=True)
            for sub in self.folder.iterdir():
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
        write_atomic(self.folder / self.MANIFEST, json.dumps(self.manifest, indent=2) + "\n")

    def resume(
        self, sequences: list[Sequence], notify: Callable[[str], None]
    ) -> dict[tuple[str, str], R]:
        """The runs saved by an earlier, identical run: {(tracker, sequence): run}.

        Raises OPEError (one line) when the saved run had other trackers, sequences, frame limit
        or config. With nothing saved, starts afresh and says so.
        """
        manifest_path = self.folder / self.MANIFEST
        if not manifest_path.is_file():
            notify(f"--resume: no earlier run in {self.folder}; starting from the beginning")
            self.start()
            return {}
        try:
            saved = json.loads(manifest_path.read_text())
        except ValueError as error:
            raise OPEError(f"--resume: cannot read {manifest_path}: {error}") from None
        for key, what in (
            ("trackers", "--trackers"),
            ("sequences", "sequences"),
            ("max_frames", "--max-frames"),
            ("config", "--set/--prune/--restart"),
        ):
            old, new = saved.get(key), self.manifest.get(key)
            if isinstance(old, list) and isinstance(new, list):
                same = sorted(map(str, old)) == sorted(map(str, new))
            else:
                same = old == new
            if not same:
                raise OPEError(
                    f"--resume: {self.folder} holds a run with {what} {_shown(old)}, this one "
                    f"has {_shown(new)}; give the same, or leave out --resume to start again"
                )
        by_name = {s.name: s for s in sequences}
        done: dict[tuple[str, str], R] = {}
        for tracker in self.manifest["trackers"]:  # type: ignore[union-attr]
            for name, sequence in by_name.items():
                path = self._path(tracker, name)
                if path.is_file():
                    loaded = self._load(path, tracker, sequence)
                    if loaded is not None:
                        done[(tracker, name)] = loaded
        total = len(by_name) * len(self.manifest["trackers"])  # type: ignore[arg-type]
        notify(f"--resume: {len(done)} of {total} runs already done in {self.folder}")
        return done

    def save(self, run: R) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tracker=np.array(run.tracker),
            sequence=np.array(run.sequence),
            **self.format.arrays(run),
        )
        write_atomic(self._path(run.tracker, run.sequence), buffer.getvalue())

    def _load(self, path: Path, tracker: str, sequence: Sequence) -> R | None:
        """A saved run, or None (it is then run again) if it is unreadable or does not fit."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["tracker"]) != tracker or str(data["sequence"]) != sequence.name:
                    return None
                return self.format.rebuild(data, tracker, sequence)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
