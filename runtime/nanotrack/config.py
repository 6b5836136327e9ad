"""The ``nanotrack`` tracker's parameters.

Tracking values are NanoTrack v3's published ones: ``NanoTrack/models/config/configv3.yaml`` in
the public HonglinChu/SiamTrackers repository (``TRACK:`` and ``POINT:`` sections), tuned there by
its authors' hyper-parameter search (``bin/hp_search.py``). The lost-target fields are ours and
say what they were chosen on.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKBONE = "nanotrack"  # the only trunk the network was trained with


@dataclass
class NanoTrackConfig:
    # --- crops (configv3.yaml TRACK) -------------------------------------------------------
    exemplar_size: int = 127  # TRACK.EXEMPLAR_SIZE
    instance_size: int = 255  # TRACK.INSTANCE_SIZE: the search crop while the target is seen
    context_amount: float = 0.5  # TRACK.CONTEXT_AMOUNT: side = sqrt((w + p)(h + p)), p = 0.5(w+h)
    stride: int = 16  # POINT.STRIDE

    # --- localisation (configv3.yaml TRACK) ------------------------------------------------
    window_influence: float = 0.455  # TRACK.WINDOW_INFLUENCE: cosine window weight
    penalty_k: float = 0.138  # TRACK.PENALTY_K: scale / aspect-ratio change penalty
    lr: float = 0.348  # TRACK.LR: size smoothing, scaled by the chosen box's penalised score
    min_side: float = 10.0  # the reference's _bbox_clip keeps w, h >= 10 frame pixels

    # --- lost target and recovery (ours) ------------------------------------------------------
    # The target is reported lost after `lost_patience` consecutive frames whose best score is
    # below `lost_threshold`, and found again at the first frame scoring `recover_threshold`.
    # Measured with both networks on the 44 shared sequences (docs/nanotrack.md, "Lost"): of
    # the frames with IoU > 0.5, 0.75 % are reported lost; of those with IoU = 0, 46 % are; on
    # train + train_extra 0.9 / 3 is within 0.04 F1 of the best of a 40-point grid (0.92 / 3).
    # With `recovery`, while lost the search crop grows by `search_growth` pixels (two feature
    # cells) per frame up to `max_instance_size` at the same scale, v3 alone searches it, and
    # the box size is frozen; the crop returns to 255 when found. Off by default: with both
    # networks it cost 0.1 AUC points over the 44 sequences and 0.9 on val (MotorRolling -6,
    # Skating2 +4; the re-found pedestrian of tld_pedestrian3 is re-found without it); with the
    # compact search and bf16 it costs 0.5 (DragonBaby -19, MotorRolling -8: docs/model_zoo.md).
    lost_threshold: float = 0.9
    lost_patience: int = 3
    recover_threshold: float = 0.95
    search_growth: int = 32
    max_instance_size: int = 383
    recovery: bool = False  # False: the reference procedure (lost is still reported)

    # --- a search region no larger than needed (ours: docs/speed.md, "Compact search") -------
    # Once the chosen cell has scored at least `compact_min_score` (its probability) for
    # `compact_patience` frames in a row, and while it moves the centre at most
    # `compact_max_motion` crop pixels a frame and the box keeps `compact_edge_margin` of its
    # own widths (heights) from every frame edge, the next search crop is
    # `compact_instance_size` instead of `instance_size`, at the same scale: the map shrinks
    # from 15x15 cells to 11x11 around the last centre and both networks do ~40 % less work.
    # Any other frame searches the full 255. 0: always the full crop (the reference).
    # Chosen on the 44 shared sequences (the networks are frozen, nothing trained; docs/speed.md
    # lists every setting tried): with bf16 0.699 AUC against 0.699 for the full crop in fp32.
    # The edge margin and the patience came from tld_pedestrian3, whose pedestrian leaves the
    # frame and comes back: where the tracker waits then decides 0.75 or 0.44 AUC, a coin flip
    # that any change of arithmetic can turn (over the other 43 every setting is within 0.1).
    compact_instance_size: int = 191
    compact_min_score: float = 0.95
    compact_max_motion: float = 8.0
    compact_edge_margin: float = 0.5
    compact_patience: int = 3
    # The score update() returns: P(IoU > 0 | the chosen cell's probability), the logistic fit
    # of runtime/checkpoints/confidence.json's "nanotrack" entry (train split + train_extra,
    # python -m bench.confidence --fit), like the other trackers' scores. False: the probability
    # as it is (also `raw_score`). The lost thresholds above are on that probability.
    calibrate: bool = True

    # --- the second network (ours: docs/nanotrack.md, "Why two networks") -------------------
    # NanoTrack v2's share of every cell's target probability and edge distances, averaged with
    # v3's on the same 255 search crop (runtime.nanotrack.second_network; v2 runs beside v3 on
    # the other core). 0: NanoTrack v3 alone, the published network.
    fusion_weight: float = 0.5

    # --- run / backends -------------------------------------------------------------------------
    device: str = "cpu"
    # auto: every tracker's rule (runtime.backends.choice); on a CPU with no export folder, ONNX
    # Runtime from the graph cache (exported on first use, runtime.nanotrack.deploy). Or torch |
    # onnxruntime | tensorrt.
    backend: str = "auto"
    export_dir: str | None = None  # a folder from build_engine.py --tracker nanotrack (or cache)
    # auto: bf16 where `auto` takes OpenVINO (a CPU with bfloat16 units: docs/speed.md), else
    # fp32. Or fp32 | bf16 (OpenVINO) | fp16 (GPU only) | int8 (an int8 export).
    precision: str = "auto"
    threads: int | None = None  # ONNX Runtime intra-op threads (None: torch's thread count)
    seed: int = 0  # the tracker is deterministic; kept so bench.seeds treats every tracker alike
