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
  That holds for every crop side ``S``: v2 gives ``ceil(S / 16)`` cells a side, v3 one fewer,
  both centred on the crop's centre (tested at 191 and 255).
- the head's ops are size-free but for one constant: the ``Reshape`` of the pixel-wise
  correlation back to a map is fixed to ``(1, -1, 16, 16)``. :func:`shaped_head` rewrites it in
  memory (the file on disk is not touched) for another map side, so v2 also scores the compact
  search crop (``NanoTrackConfig.compact_instance_size``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from runtime.backends.openvino_backend import Runner, graph_runner
from runtime.paths import data_root, require_file

V2_DIR = Path("peers") / "nanotrack_v2"
V2_BACKBONE = "nanotrack_backbone_sim.onnx"
V2_HEAD = "nanotrack_head_sim.onnx"
TEMPLATE_SIDE = 127
MIN_SEARCH_SIDE = TEMPLATE_SIDE  # the smallest crop the backbone is fed
SEARCH_SIDE = 255  # the search crop v2 was trained on; the largest it scores here
STRIDE = 16  # v2's feature stride: a crop of side S gives ceil(S / 16) cells a side
HEAD_MAP_SHAPE = [1, -1, 16, 16]  # the head's fixed Reshape constant (the correlation's map)


def v2_files(data_dir: Path | None = None) -> tuple[Path, Path]:
    """The backbone and head files, or FileNotFoundError naming the missing one."""
    folder = data_root(data_dir) / V2_DIR
    return (
        require_file(folder / V2_BACKBONE, "NanoTrack v2 backbone (the second network)"),
        require_file(folder / V2_HEAD, "NanoTrack v2 head (the second network)"),
    )


def v2_cells(side: int) -> int:
    """v2's map side for a search crop of ``side``: ``ceil(side / 16)`` cells."""
    return math.ceil(side / STRIDE)


def size_free_backbone(path: Path) -> bytes:
    """The backbone graph with its input and output sizes left open (batch and channels kept)."""
    graph = onnx.load(str(path))
    for value, names in ((graph.graph.input[0], ("H", "W")), (graph.graph.output[0], ("h", "w"))):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims[2:], names, strict=True):
            dim.dim_param = name
    del graph.graph.value_info[:]  # shapes inferred for 255 would contradict a 127 input
    return graph.SerializeToString()


def shaped_head(path: Path, cells: int) -> bytes:
    """The head graph for ``cells`` x ``cells`` search features: its one size-bound constant,
    the ``Reshape`` to :data:`HEAD_MAP_SHAPE`, rewritten, and the declared search-feature and
    output sizes left open. ValueError where the file holds no such constant."""
    graph = onnx.load(str(path))
    found = False
    for tensor in graph.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.ndim == 1 and value.tolist() == HEAD_MAP_SHAPE:
            new = np.array([*HEAD_MAP_SHAPE[:2], cells, cells], dtype=value.dtype)
            tensor.CopyFrom(numpy_helper.from_array(new, tensor.name))
            found = True
    if not found:
        raise ValueError(f"{path}: not the NanoTrack v2 head this code knows (its map reshape)")
    for value in (graph.graph.input[1], *graph.graph.output):  # input 0: the 8x8 template
        for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("h", "w"), strict=True):
            dim.dim_param = name
    del graph.graph.value_info[:]
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

    def __init__(
        self,
        data_dir: Path | None = None,
        threads: int = 1,
        engine: str = "onnxruntime",
        precision: str = "fp32",
        cache_dir: Path | None = None,
    ) -> None:
        backbone, self._head_file = v2_files(data_dir)
        self.engine, self.precision = engine, precision
        self._runner = partial(
            graph_runner, threads=threads, engine=engine, precision=precision, cache_dir=cache_dir
        )
        self._backbone = self._runner(size_free_backbone(backbone))
        self._heads: dict[int, Runner] = {}  # map side -> the head's runner, made on first use
        self._head(v2_cells(SEARCH_SIDE))  # the usual one now: a bad file fails here
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanotrack-v2")

    def prepare(self, sides: Sequence[int]) -> None:
        """On OpenVINO, compile for the template and these search sides now (each first frame
        of a new size costs ~0.2 s otherwise); nothing to do on ONNX Runtime."""
        if self.engine != "openvino":
            return
        template = np.zeros((1, 3, TEMPLATE_SIDE, TEMPLATE_SIDE), np.float32)
        feature = self.template(template)
        for side in sides:
            self.search(np.zeros((1, 3, side, side), np.float32), feature)

    def _head(self, cells: int) -> Runner:
        if cells not in self._heads:
            self._heads[cells] = self._runner(shaped_head(self._head_file, cells))
        return self._heads[cells]

    @staticmethod
    def _rgb(crop_bgr: np.ndarray) -> np.ndarray:
        """``(1, 3, S, S)`` BGR floats -> RGB, contiguous float32."""
        return np.ascontiguousarray(crop_bgr[:, ::-1], dtype=np.float32)

    def template(self, crop_bgr: np.ndarray) -> np.ndarray:
        """``(1, 3, 127, 127)`` BGR 0..255 -> the ``(1, 48, 8, 8)`` template feature."""
        return self._backbone({"input": self._rgb(crop_bgr)})[0]

    def _search(self, crop_bgr: np.ndarray, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        search_feature = self._backbone({"input": self._rgb(crop_bgr)})[0]
        n = search_feature.shape[-1]
        logits, boxes = self._head(n)({"input1": feature, "input2": search_feature})
        score = _target_probability(logits.reshape(2, n, n)[:, 1:, 1:].reshape(2, -1))
        delta = boxes.reshape(4, n, n)[:, 1:, 1:].reshape(4, -1).astype(np.float64)
        return score, delta

    @staticmethod
    def scores(side: int) -> bool:
        """Whether v2 scores a search crop of ``side``: the 255 it was trained on and smaller
        (the compact crop); not the widened crops of the lost state, which v3 searches alone."""
        return MIN_SEARCH_SIDE <= side <= SEARCH_SIDE

    def start_search(
        self, crop_bgr: np.ndarray, feature: np.ndarray
    ) -> Future[tuple[np.ndarray, np.ndarray]]:
        """The search of a ``(1, 3, S, S)`` crop, started on the worker thread: its future
        gives per-cell target probabilities ``(n*n,)`` and edge distances ``(4, n*n)`` on v3's
        ``n = ceil(S / 16) - 1`` cells a side."""
        if not self.scores(crop_bgr.shape[-1]):
            raise ValueError(
                f"NanoTrack v2 takes search crops of {MIN_SEARCH_SIDE} to {SEARCH_SIDE} pixels, "
                f"not {crop_bgr.shape}"
            )
        return self._worker.submit(self._search, crop_bgr, feature)

    def search(self, crop_bgr: np.ndarray, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.start_search(crop_bgr, feature).result()

    def __repr__(self) -> str:
        return f"SecondNetwork(NanoTrack v2 on {self.engine}, {self.precision})"
