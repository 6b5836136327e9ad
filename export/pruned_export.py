"""Graphs at fixed kept widths for per-video channel pruning (``build_engine.py --prune``).

MetaRTT predicts its masks per video, at the first frame. ONNX Runtime slices the full graphs in
memory then (:mod:`runtime.backends.onnx_slicing`); a TensorRT engine takes minutes to build, so
it is built once at a fixed number of output channels ``k`` with the REFIT flag, and at each
video's first frame the tracker keeps the top-k channels by mask
(:meth:`ChannelSelection.from_masks` with widths) and the backend refits the output conv's
filters of those channels into the engine.

``k`` is measured, not guessed: the largest number of conv channels the pruning network keeps on
the first frames of the ``train`` split (never ``val``), unless ``--keep-conv`` sets it. Videos
that keep fewer channels are exact at width ``k`` (the extra channels' columns are folded to zero
by their zero masks); a video keeping more loses its weakest channels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import onnx
import torch

from calib.graph_checks import ExportError, check_graph
from export.onnx_export import relative_error
from runtime.backends.manifest import (
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    FEATURES,
    ROI_FEATURES,
    ROIS,
)
from runtime.backends.onnx_slicing import slice_backbone, slice_roi_pool
from runtime.hashing import sha256_file
from runtime.paths import data_root
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.tracker import RTMDNetTracker
from runtime.sequences import load_sequence, sequence_names

PRUNED_BACKBONE_ONNX = "backbone.pruned.onnx"
PRUNED_ROI_POOL_ONNX = "roi_pool.pruned.onnx"
PARITY_TOLERANCE = 1e-4  # sliced vs full graph on the kept channels (as export.onnx_export's)


def measure_kept_channels(
    config: RTMDNetConfig,
    data_dir: str | os.PathLike[str] | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the pruning tracker's first frame on every ``train`` sequence; its conv masks."""
    root = data_root(data_dir) / "sequences"
    names = [n for n in sequence_names(root, "train") if (root / n).is_dir()]
    if not names:
        raise ExportError(f"no train-split sequences under {root} to measure the kept widths on")
    # The masks come from the torch head on torch features (whatever the folder's precision).
    probe = dataclasses.replace(config, backend="torch", export_dir=None, precision="fp32")
    tracker = RTMDNetTracker(probe, data_dir=data_dir)
    kept, masks = {}, []
    for name in names:
        sequence = load_sequence(root / name)
        frame = cv2.imread(str(sequence.frame_paths[0]))
        if frame is None:
            raise ExportError(f"cannot read {sequence.frame_paths[0]}")
        tracker.init(frame, sequence.init_box)
        assert tracker.selection is not None
        kept[name] = tracker.selection.kept()
        masks.append(tracker.selection.masks["conv"])
        log(f"[prune] {name}: kept {kept[name]}")
    return {"kept_per_video": kept, "mean_conv_mask": torch.stack(masks).mean(0)}


def export_pruned(
    out_dir: Path,
    graphs: dict[str, str],
    channels: int,
    config: RTMDNetConfig,
    samples: list,
    data_dir: str | os.PathLike[str] | None,
    keep_conv: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the fixed-width graphs next to the full ones; returns the manifest's ``pruned``.

    ``graphs`` names the folder's full ``backbone``/``roi_pool`` files (an int8 backbone is
    sliced the same way: its per-channel weights, scales and zero points).
    """
    measured = measure_kept_channels(config, data_dir, log)
    widest = max(k["conv"] for k in measured["kept_per_video"].values())
    width = int(keep_conv) if keep_conv is not None else widest
    if not 1 <= width <= channels:
        raise ExportError(f"--keep-conv {width}: the output conv has {channels} channels")
    # Reference filters for the graph as written (the runtime refits them per video): the
    # channels kept most strongly on average.
    order = torch.argsort(measured["mean_conv_mask"], descending=True, stable=True)
    keep = torch.sort(order[:width]).values

    full = {key: onnx.load(str(out_dir / name)) for key, name in graphs.items()}
    sliced = slice_backbone(full["backbone"], FEATURES, keep.tolist())
    pooled = slice_roi_pool(full["roi_pool"], FEATURE_MAP, ROI_FEATURES, width, config.roi_size**2)
    onnx.save(sliced, str(out_dir / PRUNED_BACKBONE_ONNX))
    onnx.save(pooled, str(out_dir / PRUNED_ROI_POOL_ONNX))
    for name in (PRUNED_BACKBONE_ONNX, PRUNED_ROI_POOL_ONNX):
        check_graph(out_dir / name)  # onnx.checker and TensorRT 10's operators, as the full ones
    worst = sliced_parity(out_dir, graphs, keep, config.roi_size**2, samples)
    for key, value in worst.items():
        if not value <= PARITY_TOLERANCE:
            raise ExportError(
                f"pruned graphs disagree with the full graphs on the kept channels: {key} "
                f"relative error {value:.2e} > {PARITY_TOLERANCE:.0e}"
            )
    conv = next(n for n in sliced.graph.node if FEATURES in n.output)
    log(f"[prune] fixed conv width {width} of {channels} (widest on train: {widest}); {worst}")
    return {
        "conv_width": width,
        "conv_channels": channels,
        "widest_on_train": widest,
        "kept_per_video": measured["kept_per_video"],
        "reference_keep": keep.tolist(),
        "graphs": {"backbone": PRUNED_BACKBONE_ONNX, "roi_pool": PRUNED_ROI_POOL_ONNX},
        # Checked by the runtime at load (runtime.backends.manifest.check_graphs).
        "sha256": {
            "backbone": sha256_file(out_dir / PRUNED_BACKBONE_ONNX),
            "roi_pool": sha256_file(out_dir / PRUNED_ROI_POOL_ONNX),
        },
        # TensorRT names the refittable weights of an ONNX-parsed network by initializer name
        # (an int8 graph's are the quantized weight and bias under their DequantizeLinear).
        "refit_weights": [w for name in conv.input[1:] for w in refit_sources(sliced.graph, name)],
        "parity": {"tolerance": PARITY_TOLERANCE, "max_relative_error": worst},
        "config": {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(config)
            if f.name.startswith("prune")
        },
    }


def refit_sources(graph: onnx.GraphProto, tensor: str) -> list[str]:
    """The per-channel initializers behind ``tensor``: itself, or (int8) the quantized values and
    per-channel scales of the DequantizeLinear making it (zero points are 0: nothing to refit)."""
    producers = [n for n in graph.node if tensor in n.output]
    if producers and producers[0].op_type == "DequantizeLinear":
        return list(producers[0].input[:2])
    return [tensor]


def sliced_parity(
    out_dir: Path, graphs: dict[str, str], keep: torch.Tensor, cells: int, samples: list
) -> dict[str, float]:
    """Sliced graphs against the full ones on the kept channels, in ONNX Runtime, real crops."""
    import onnxruntime as ort

    def session(name: str):
        return ort.InferenceSession(str(out_dir / name), providers=["CPUExecutionProvider"])

    full = [session(graphs["backbone"]), session(graphs["roi_pool"])]
    small = [session(PRUNED_BACKBONE_ONNX), session(PRUNED_ROI_POOL_ONNX)]
    columns = (keep[:, None] * cells + torch.arange(cells)).flatten().numpy()

    def run(pair, sample):
        (fmap,) = pair[0].run(None, {CROP: sample.crop.numpy()})
        feeds = {
            FEATURE_MAP: fmap,
            ROIS: sample.rois.numpy(),
            BATCH_INDICES: sample.batch_indices.numpy(),
        }
        (feats,) = pair[1].run(None, feeds)
        return fmap, feats

    worst = {"backbone": 0.0, "end_to_end": 0.0}
    for sample in samples:
        fmap, feats = run(full, sample)
        small_fmap, small_feats = run(small, sample)
        worst["backbone"] = max(
            worst["backbone"], relative_error(small_fmap, fmap[:, keep.numpy()])
        )
        worst["end_to_end"] = max(
            worst["end_to_end"], relative_error(small_feats, feats[:, columns])
        )
    return worst


def profile_at_width(profile: dict[str, Any], width: int) -> dict[str, Any]:
    """The shape profile with the feature map's channel dimension set to ``width``."""
    out = {name: {k: list(v) for k, v in shapes.items()} for name, shapes in profile.items()}
    for shape in out[FEATURE_MAP].values():
        shape[1] = width
    return out
