"""NanoTrack v2 (the network OpenCV's ``TrackerNano`` runs) as a second network on our crops.

The default ``nanotrack`` averages two pretrained networks' per-cell outputs on the same search
crop: NanoTrack v3 (ours, ported; ``weights/nanotrack_v3``) and NanoTrack v2, read from the two
ONNX files of ``<data>/peers/nanotrack_v2`` (HonglinChu/SiamTrackers, Apache-2.0; the files
``cv2.TrackerNano`` takes). Measured on the 44 shared sequences (docs/nanotrack.md, "Why two
networks"): v2 is the better network on ground-level videos, v3 on aerial ones, and the average
of the two beats either.

What this module knows about v2, each checked against OpenCV's ``tracker_nano.cpp``:

- the backbone takes RGB (OpenCV's ``swapRB = true``) 0..255 floats; our crops are BGR, so the
  channels are reversed here and nowhere else;
- the backbone file declares a fixed 255x255 input, but its ops (convolutions, pooling, a
  ``Reshape`` of pooled vectors) are size-free: OpenCV feeds it the 127 template crop too. The
  declared sizes are freed in memory (the file on disk is not touched) so ONNX Runtime does too;
- the head maps an 8x8 template feature and a 16x16 search feature to 16x16 cells (2 logits,
  4 edge distances in crop pixels). Its cells sit at ``(i - 8) * 16`` crop pixels from the crop's
  centre, v3's 15x15 at ``(i - 7) * 16``: v2's cells 1..15 are v3's cells 0..14, so
  :meth:`SecondNetwork.search` drops v2's first row and column and the maps line up exactly.
  The head's reshapes are fixed to 16x16, so v2 sees only the 255 search crop (not the widened
  crops of the lost state).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx

from runtime.backends.onnxruntime_backend import session_options, start_session
from runtime.paths import data_root, require_file

V2_DIR = Path("peers") / "nanotrack_v2"
V2_BACKBONE = "nanotrack_backbone_sim.onnx"
V2_HEAD = "nanotrack_head_sim.onnx"
SEARCH_SIDE = 255  # the only search crop v2's head takes
V2_CELLS = 16  # v2's map side; v3's is 15 (see the module docstring)


def v2_files(data_dir: Path | None = None) -> tuple[Path, Path]:
    """The backbone and head files, or FileNotFoundError naming the missing one."""
    folder = data_root(data_dir) / V2_DIR
    return (
        require_file(folder / V2_BACKBONE, "NanoTrack v2 backbone (the second network)"),
        require_file(folder / V2_HEAD, "NanoTrack v2 head (the second network)"),
    )


def size_free_backbone(path: Path) -> bytes:
    """The backbone graph with its input and output sizes left open (batch and channels kept)."""
    graph = onnx.load(str(path))
    for value, names in ((graph.graph.input[0], ("H", "W")), (graph.graph.output[0], ("h", "w"))):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims[2:], names, strict=True):
            dim.dim_param = name
    del graph.graph.value_info[:]  # shapes inferred for 255 would contradict a 127 input
    return graph.SerializeToString()


def _target_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax over (background, target) -> the target's probability, per cell."""
    background, target = logits[0].astype(np.float64), logits[1].astype(np.float64)
    return 1.0 / (1.0 + np.exp(background - target))


class SecondNetwork:
    """NanoTrack v2 on ONNX Runtime (CPU): a template feature once, then one search per frame.

    :meth:`start_search` runs the search on a worker thread (ONNX Runtime releases the GIL), so
    the caller's own network runs meanwhile on the other core: always, also when the tracker
    was given one thread. With the other core free that is 1.7x faster than running v2 after v3
    (215 against 125 FPS on pysot_bag, 2-core AMD EPYC); with it busy the two are equal (146 /
    134 against 140 / 150 FPS, two rounds), and the thread count the CLI picks from a stale load
    average often says busy when it is not. :meth:`search` is the same, waited.
    """

    name = "nanotrack_v2"

    def __init__(self, data_dir: Path | None = None, threads: int = 1) -> None:
        backbone, head = v2_files(data_dir)
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self._backbone = start_session(size_free_backbone(backbone), options, providers)
        self._head = start_session(str(head), options, providers)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanotrack-v2")

    @staticmethod
    def _rgb(crop_bgr: np.ndarray) -> np.ndarray:
        """``(1, 3, S, S)`` BGR floats -> RGB, contiguous float32."""
        return np.ascontiguousarray(crop_bgr[:, ::-1], dtype=np.float32)

    def template(self, crop_bgr: np.ndarray) -> np.ndarray:
        """``(1, 3, 127, 127)`` BGR 0..255 -> the ``(1, 48, 8, 8)`` template feature."""
        return self._backbone.run(None, {"input": self._rgb(crop_bgr)})[0]

    def _search(self, crop_bgr: np.ndarray, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        search_feature = self._backbone.run(None, {"input": self._rgb(crop_bgr)})[0]
        logits, boxes = self._head.run(None, {"input1": feature, "input2": search_feature})
        n = V2_CELLS
        score = _target_probability(logits.reshape(2, n, n)[:, 1:, 1:].reshape(2, -1))
        delta = boxes.reshape(4, n, n)[:, 1:, 1:].reshape(4, -1).astype(np.float64)
        return score, delta

    def start_search(
        self, crop_bgr: np.ndarray, feature: np.ndarray
    ) -> Future[tuple[np.ndarray, np.ndarray]]:
        """The search of a ``(1, 3, 255, 255)`` crop, started on the worker thread: its future
        gives per-cell target probabilities ``(225,)`` and edge distances ``(4, 225)`` on v3's
        15x15 cells."""
        if crop_bgr.shape[-1] != SEARCH_SIDE:
            raise ValueError(f"NanoTrack v2 takes {SEARCH_SIDE} search crops, not {crop_bgr.shape}")
        return self._worker.submit(self._search, crop_bgr, feature)

    def search(self, crop_bgr: np.ndarray, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.start_search(crop_bgr, feature).result()

    def __repr__(self) -> str:
        return "SecondNetwork(NanoTrack v2 on onnxruntime)"
