"""RT-MDNet's tracking parameters (Jung et al., ECCV 2018, and its public ``options.py``).

Defaults are the paper's values; the few that differ say why next to them. A config is saved next
to every artifact (``dataclasses.asdict``), so results can always be traced to their settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from runtime.backends.spec import FeatureBackendSpec
from runtime.paths import data_root


@dataclass
class RTMDNetConfig:
    # --- model -----------------------------------------------------------------------------
    backbone: str = "nanotrack"  # chosen by validation AUC (docs/results.md); or mobilenet_v2, vggm
    roi_size: int = 3  # RoIAlign output, 3x3 as RT-MDNet
    roi_sampling_ratio: int = 2
    roi_padding: float = 1.2  # RoIs are the sample boxes enlarged 1.2x (RT-MDNet 'padding')
    fc_width: int = 512
    dropout: float = 0.5

    # --- search crop -------------------------------------------------------------------------
    target_px: float = 107.0  # the target's size in the crop (RT-MDNet 'img_size')
    max_crop_side: int = 640  # larger windows are cut at a smaller scale

    # --- candidates ----------------------------------------------------------------------
    n_samples: int = 256
    trans_f: float = 0.6
    scale_f: float = 1.05
    trans_f_expand: float = 1.4  # after a failure the search widens
    top_k: int = 5  # the target is the mean of the 5 best candidates
    success_thr: float = 0.0
    # Long videos (issue 19; docs/metartt.md, "Long videos"). The target's sides never go below
    # this fraction of the first box's (aspect kept). Measured on a 52x57 px box played forward
    # and back for 5,000 frames: once the target is lost, every frame scores below zero, the mean
    # of the top 5 candidates shrinks the box ~0.2 % a frame down to MDNet's 5 px sample floor,
    # where the search (a multiple of the box side) covers nothing, and the box wanders 120-230 px
    # off; with the floor it stays at 13x14 px and within ~20 px. The smallest ground-truth
    # scale in the shared sequences is 0.41 of the first box (vot2015_bag): 0.25 never binds
    # while the target is tracked.
    min_scale: float = 0.25
    # Opt-in: on a frame scoring <= success_thr the target's centre still moves to the top
    # candidates' mean (RT-MDNet), but its size stays. It also stops the shrink while lost, but
    # changes every failed frame of a short video too (val AUC 0.500 -> 0.451 in one run).
    keep_size_on_failure: bool = False

    # --- first-frame training ------------------------------------------------------------
    n_pos_init: int = 500
    n_neg_init: int = 5000
    overlap_pos_init: tuple[float, float] = (0.7, 1.0)
    overlap_neg_init: tuple[float, float] = (0.0, 0.5)
    # RT-MDNet: 1e-4 with fc4/fc5 pretrained offline; here fc4/fc5 start untrained (or from the
    # meta-learned init), and 5e-4 measured clearly better on val (docs/results.md).
    lr_init: float = 0.0005
    maxiter_init: int = 50
    # Extra first-frame crops at shifted/rescaled windows (RT-MDNet 'jitter'): scale factors.
    init_jitter_scales: tuple[float, ...] = (1.0, 1.1**-1, 1.1, 1.1**-2, 1.1**2)

    # --- bounding-box regression (first frame) -------------------------------------------
    n_bbreg: int = 1000
    overlap_bbreg: tuple[float, float] = (0.6, 1.0)
    scale_bbreg: tuple[float, float] = (1.0, 2.0)
    bbreg_alpha: float = 1000.0

    # --- online updates ------------------------------------------------------------------
    lr_update: float = 0.001  # RT-MDNet: 3e-4; raised with lr_init (docs/results.md)
    maxiter_update: int = 15
    n_pos_update: int = 50
    n_neg_update: int = 200
    overlap_pos_update: tuple[float, float] = (0.7, 1.0)
    overlap_neg_update: tuple[float, float] = (0.0, 0.3)
    # Update negatives drawn uniformly within this many target sides (RT-MDNet: 1.5). The
    # per-frame crop covers them, so this sets the backbone's input size (docs/speed.md).
    neg_update_reach: float = 1.5
    n_frames_short: int = 20
    n_frames_long: int = 100
    long_interval: int = 10

    # --- optimiser (SGD as MDNet) -----------------------------------------------------------
    batch_pos: int = 32
    batch_neg: int = 96
    batch_neg_cand: int = 1024  # hard negative mining: the 96 highest-scoring of 1024
    batch_test: int = 1024  # RT-MDNet: 256 (a GPU memory bound); one call is faster on a CPU
    mining_precision: str = "auto"  # "auto": bfloat16 ranking where native, else "float32"
    # MetaRTT's online steps (forward + backward of each step; the weights stay float32):
    # "float32", "bfloat16", or "auto" (bfloat16 where native). Chosen on val (docs/speed.md).
    update_precision: str = "float32"
    momentum: float = 0.9
    weight_decay: float = 0.0005
    grad_clip: float = 10.0
    lr_mult_fc6: float = 10.0

    # --- MetaRTT ---------------------------------------------------------------------------
    # A meta checkpoint (train/meta.py): the head starts from its theta_init^0 and adapts with its
    # learned per-step rates (K_init steps at the first frame, K_on steps per online update,
    # always from theta_init^K) instead of maxiter_init / maxiter_update SGD steps. A checkpoint
    # without online rates (Meta-Tracker style) keeps RT-MDNet's online updates.
    meta: str | None = None

    # --- MetaRTT channel pruning -------------------------------------------------------------
    # A pruning checkpoint (train/prune.py; made for the meta checkpoint above) predicts channel
    # masks once, at the first frame, from theta_init^K; the pruned channels are then cut out of
    # the last conv layer and the FC layers for the rest of the video (runtime.rtmdnet.prune).
    # "fit": masks minimizing Eq. 9-10 on the first frame's samples alone (no meta-learning).
    prune: str | None = None
    # Pruning guard: when the pruned head's first-frame loss exceeds the unpruned head's by more
    # than this fraction, the video keeps the whole network (None: never; docs/speed.md).
    prune_guard: float | None = None
    # L1 weight of the "fit" variant: ~half the channels go (0.05: 49% on 6 train first frames)
    prune_fit_sparsity: float = 0.05
    prune_fit_steps: int = 100  # Adam steps on the mask logits, at the first frame
    prune_fit_lr: float = 0.05
    prune_fit_samples: int = 512  # first-frame samples (a random subset) the fit reconstructs

    # --- run -----------------------------------------------------------------------------
    seed: int = 0
    device: str = "cpu"
    # Where backbone + RoIAlign run (runtime.backends): auto = every tracker's rule
    # (runtime.backends.choice): TensorRT if usable and exported, else ONNX Runtime if
    # export_dir is given, else torch.
    backend: str = "auto"
    export_dir: str | None = None  # a folder written by export/build_engine.py
    # Arithmetic of backbone + RoIAlign: "fp32"; "fp16" (CUDA torch or a TensorRT fp16 engine,
    # refused on a CPU backend); "int8" (an export made with --precision int8: ONNX Runtime or
    # TensorRT). The FC head and its adaptation stay fp32 in torch.
    precision: str = "fp32"

    def backend_spec(
        self, data_dir: str | os.PathLike[str] | None = None, **changes: Any
    ) -> FeatureBackendSpec:
        """What this tracker asks of its feature backend (:mod:`runtime.backends`), with
        ``changes`` to the spec's fields; ``data_dir``: the data folder (``weights/`` in it)."""
        spec = FeatureBackendSpec(
            backbone=self.backbone,
            weights_dir=data_root(data_dir) / "weights",
            roi_size=self.roi_size,
            roi_sampling_ratio=self.roi_sampling_ratio,
            backend=self.backend,
            precision=self.precision,
            device=self.device,
            export_dir=self.export_dir,
            meta_checkpoint=self.meta,
            prune_checkpoint=self.prune,
        )
        return spec.replace(**changes) if changes else spec
