"""Track objects through a video: ``python -m runtime.track [INPUT] [--init x,y,w,h] ...``.

A run is a pipeline; each stage hands a typed result to the next (:func:`run` reads as it):

1. argv -> :class:`~runtime.cli.request.TrackRequest` (:mod:`runtime.cli.parser`)
2. request -> :class:`~runtime.cli.inputs.ResolvedInput`: what to open, the boxes given or known
3. the ``--show`` window (:mod:`runtime.cli.display`) and the source (:mod:`runtime.io.sources`)
4. first frame -> :class:`~runtime.cli.first_boxes.FirstBoxes`: 0-based, checked (or drawn)
5. -> :class:`~runtime.io.outputs.OutputPaths`: where the outputs go, checked writable
6. -> :class:`~runtime.cli.tracker_setup.BuiltTracker`: the tracker (or its fallback), grouped
7. the loop -> :class:`~runtime.cli.loop.RunResult`, the outputs written frame by frame
8. the outputs finalised (:mod:`runtime.cli.output_files`)
9. the summary and the exit code (:mod:`runtime.cli.summary`)

One target per ``--init`` (repeatable), each with its own tracker (:mod:`runtime.multi_target`;
one target is a group of one, so there is one loop); with ``--show`` the boxes may be drawn in a
window instead (:mod:`runtime.io.viewer`) and re-drawn mid-run.

Boundary conventions: ``--init`` and the ``--boxes`` file are **1-based** ``x, y, w, h`` (OTB, like
``videos.json``); ``--init`` is converted to the project's 0-based boxes in
:mod:`runtime.cli.first_boxes` and nowhere else, the boxes file written 1-based by
:class:`runtime.sequences.BoxesFileWriter`.

Mistakes in what the user gave (missing or unreadable input, a bad box, an unknown tracker, missing
weights, an output path that cannot be written) end with one line on stderr that starts with
``error: `` and exit code 2, no traceback; all of them are found before tracking starts.

Outputs are written as the run goes (:mod:`runtime.io.outputs`), so a stopped run leaves them
valid for the frames tracked. A bad image mid-folder stops the run there with exit code
:data:`EXIT_INCOMPLETE` (3): the outputs are valid but do not cover the input, which a script must
be able to tell from success; a video shorter than it declares only warns (exit 0), because a
container's frame count is a claim that can be off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from runtime.cli.console import notifier, warn
from runtime.cli.display import open_display
from runtime.cli.first_boxes import first_boxes
from runtime.cli.inputs import resolve_input
from runtime.cli.loop import RunResult, track_source
from runtime.cli.output_files import finish_outputs, opened_outputs, plan_outputs
from runtime.cli.parser import parse_request
from runtime.cli.request import TrackRequest, UsageError
from runtime.cli.signals import StopSignals
from runtime.cli.summary import report
from runtime.cli.tracker_setup import TrackerFactory, make_tracker
from runtime.io.capture import quiet_opencv_logs
from runtime.io.frames import InputError
from runtime.io.sources import open_source
from runtime.io.video_writer import OutputError
from runtime.io.viewer import Window
from runtime.registry import create_tracker
from runtime.threads import default_threads, set_threads

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments or input: nothing tracked
EXIT_INCOMPLETE = 3  # an image of a folder was unusable mid-way: outputs cover the frames before
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGINT or SIGTERM: the outputs cover the frames tracked


def exit_code(result: RunResult) -> int:
    """How a run that tracked at least one frame ends, for a script to tell."""
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.bad_frame is not None:
        return EXIT_INCOMPLETE
    return EXIT_OK


def run(
    request: TrackRequest,
    factory: TrackerFactory = create_tracker,
    stop: StopSignals | None = None,
    window: Window | None = None,
) -> int:
    """One CLI run, stage by stage; ``window`` replaces OpenCV's ``--show`` window (tests)."""
    started = time.perf_counter()
    stop = stop or StopSignals()
    notify = notifier(request.quiet)
    set_threads(request.threads if request.threads is not None else default_threads())
    resolved = resolve_input(request, notify)
    with (
        open_display(request.show, resolved.must_draw, warn, window) as display,
        open_source(resolved.spec, live=request.live or None, timeout=request.timeout) as source,
    ):
        targets = first_boxes(resolved, source, display)
        paths = plan_outputs(request, source.name, targets.count)
        built = make_tracker(request, factory, notify)
        with opened_outputs(paths, source, targets.count, notify, stop) as outputs:
            result = track_source(
                built.group,
                source,
                targets.boxes,
                max_frames=request.max_frames,
                outputs=outputs,
                display=display,
                quiet=request.quiet,
                stop=stop,
            )
        written = finish_outputs(outputs, result.frames, stop)
        if written is None:
            return EXIT_INTERRUPTED
        if stop.pending is not None:  # a signal came while the outputs were finalised
            result = replace(result, interrupted=True)
        wall = time.perf_counter() - started
        report(result, source.name, built, written, quiet=request.quiet, wall=wall)
        return exit_code(result)


def main(
    argv: Sequence[str] | None = None,
    tracker_factory: TrackerFactory | None = None,
    window: Window | None = None,
) -> int:
    """Run the CLI; returns the exit code. ``tracker_factory`` replaces the registry and
    ``window`` the ``--show`` window (tests)."""
    quiet_opencv_logs()
    # SIGTERM (timeout, kill, a job scheduler) stops the run like Ctrl-C: outputs finalised.
    with StopSignals() as stop:
        try:
            request = parse_request(argv, check_name=tracker_factory is None)
            return run(request, tracker_factory or create_tracker, stop, window)
        except (UsageError, InputError, OutputError, FileNotFoundError, PermissionError) as exc:
            # FileNotFoundError: missing weights or data; PermissionError: an unwritable output.
            # Anything else is a bug and keeps its traceback.
            warn(f"error: {exc}")
            return EXIT_USAGE
        except KeyboardInterrupt:
            warn("interrupted")
            return EXIT_INTERRUPTED
