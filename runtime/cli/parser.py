"""The flags of ``python -m runtime.track`` (:func:`build_parser`) and the first stage of a run:
argv -> a checked :class:`~runtime.cli.request.TrackRequest` (:func:`parse_request`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from runtime.backends.choice import BACKEND_NAMES, PRECISIONS
from runtime.cli.inputs import DEFAULT_VIDEO
from runtime.cli.program import program_name
from runtime.cli.request import DEFAULT_TRACKER, FALLBACK_TRACKER, TrackRequest, UsageError
from runtime.io.capture import DEFAULT_TIMEOUT
from runtime.opencv_peers import PEER_NAMES
from runtime.registry import TRACKER_NAMES


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits by itself; raise instead so main owns the one-line format.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """Every flag, with its help; a bad one raises :class:`UsageError` (argparse would exit)."""
    parser = _Parser(
        prog=program_name("python -m runtime.track"),
        description=(
            "Track one or more objects through a video, image folder or camera, starting from "
            "their boxes in the first frame. Writes a boxes file per target (1-based x,y,w,h per "
            "frame) and an annotated video."
        ),
    )
    parser.add_argument(
        "input",
        nargs="?",
        help=(
            "video file, image folder (or OTB sequence folder with img/), camera index such as 0, "
            "or stream URL (rtsp://, http(s)://, udp://, rtmp://, srt://...; default: "
            f"<data>/videos/{DEFAULT_VIDEO}, or a synthesized demo clip if absent)"
        ),
    )
    parser.add_argument(
        "--init",
        metavar="X,Y,W,H",
        action="append",
        default=[],
        help=(
            "first-frame box, 1-based pixels (OTB convention, as in videos.json); needed unless "
            "the input is listed in videos.json or is an OTB folder with groundtruth_rect.txt, "
            "or --show lets you draw it. Repeat it to track several targets at once (one "
            "boxes file each: <boxes stem>_t1.txt, _t2.txt, ...). Write --init=-5,10,40,40 "
            "when x is negative."
        ),
    )
    parser.add_argument(
        "--tracker",
        default=None,
        help=(
            f"one of ours: {', '.join(TRACKER_NAMES)} (default: {DEFAULT_TRACKER}; without the "
            f"shared pretrained weights, {FALLBACK_TRACKER}), or one with settings changed, "
            "NAME[KEY=VALUE;...], e.g. the preset metartt[prune=shipped] (runtime/presets.py); "
            f"or, to compare against, OpenCV peers (baselines, not ours): {', '.join(PEER_NAMES)}"
        ),
    )
    parser.add_argument(
        "--meta",
        type=Path,
        metavar="CKPT",
        help="MetaRTT checkpoint written by train/meta.py (OUT/metartt.pt); default for "
        "metartt: the one the project ships (runtime/checkpoints/metartt.pt)",
    )
    parser.add_argument(
        "--prune",
        nargs="?",
        const="shipped",
        metavar="CKPT|static|fit",
        help="MetaRTT one-shot channel pruning: masks predicted at the first frame by a pruning "
        "network (train/prune.py's OUT/prune.pt; without a value, the shipped one for the "
        "shipped meta checkpoint), 'static' (the shipped one-mask ablation) or 'fit' (masks "
        "fitted on the first frame alone); with "
        "--tracker metartt-nano, the head's pruning network (train/metartt_nano_prune.py's "
        "OUT/metartt_nano_prune.pt; without a value, the shipped one)",
    )
    parser.add_argument(
        "--boxes",
        type=Path,
        help="write 1-based x,y,w,h boxes here, one row per frame including the first",
    )
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument(
        "--show",
        action="store_true",
        help="show the tracked frames in a window, with FPS, score and lost state; without "
        "--init (a camera, say) draw the first box(es) with the mouse first; keys: r re-draws "
        "the boxes and starts over from that frame, q or Esc stops",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="track the newest frame, dropping the ones the tracker cannot keep up with, so "
        "the boxes stay current (the summary counts the frames dropped and the latency); "
        "always so for cameras and rtsp/rtmp/udp/rtp/srt/tcp streams; for an http(s) URL "
        "(an IP camera's MJPEG) or a file (played at its frame rate, as a camera would)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a stream may take to open, or to send its next frame, before the run "
        f"gives up on it (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="shared data folder (default: $TRACKER_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch and OpenCV (default: the cores not already busy, from the "
        "load average; more threads than free cores makes every frame wait, many times slower)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=None,
        help="where the fixed network runs (default: auto; nanotrack: TensorRT if usable and "
        "exported, else ONNX Runtime from --export-dir, else from graphs it exports on first "
        "use, on OpenVINO in bf16 where the CPU has bfloat16 units, else ONNX Runtime; the "
        "others: TensorRT if usable and exported, else ONNX Runtime if --export-dir is given, "
        "else torch)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="folder written by export/build_engine.py (needed by onnxruntime/tensorrt)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="backbone arithmetic: auto (nanotrack's default: bf16 where auto takes OpenVINO, "
        "else fp32); fp32 (the others' default); bf16 on OpenVINO only; fp16 on a GPU only; "
        "int8 with an export folder made by build_engine.py --precision int8",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary")
    parser.epilog = (
        "With neither --boxes nor --output, both are written to outputs/<input>_boxes.txt and "
        "outputs/<input>_tracked.mp4; with either one given, only what was asked for is written. "
        "Output paths are checked before tracking starts. The boxes file and its _scores.csv "
        "side file grow by one row per frame as it is tracked, so a stopped or killed run "
        "leaves them valid for the frames tracked; Ctrl-C and SIGTERM also finalise the video. "
        "An image of a folder that cannot be read, or whose size differs from the first "
        "frame's, stops the run there (frames are not skipped: row N stays frame N), keeping "
        "the outputs for the frames before it. A video that ends before the frame count it "
        "declares is tracked to its end, with a warning. Exit codes: 0 done; 2 bad arguments "
        "or input, nothing tracked; 3 stopped at a bad image, outputs cover the frames before "
        "it; 130 interrupted (Ctrl-C, SIGINT, SIGTERM), outputs cover the frames tracked."
    )
    return parser


def parse_request(argv: Sequence[str] | None, *, check_name: bool = True) -> TrackRequest:
    """The request ``argv`` (``None``: the process's arguments) makes, or :class:`UsageError`.

    ``check_name=False`` leaves the tracker name to an injected factory (tests).
    """
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    return TrackRequest.from_args(args, check_name=check_name)
