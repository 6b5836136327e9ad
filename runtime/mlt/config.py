"""MLT's tracking parameters; defaults are the paper's values (Choi et al., ICCV 2019, Sec. 4).

A config is saved next to every artifact (``dataclasses.asdict``). With the NanoTrack trunk the
trunk runs through :mod:`runtime.backends` (:meth:`MLTConfig.backend_spec`), so an export folder
of it (``export/build_engine.py --backbone nanotrack``, MetaRTT's) serves MLT too; MLT pools no
RoIs, so the folder's RoIAlign settings are not checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from runtime.backends.spec import FeatureBackendSpec
from runtime.paths import data_root


@dataclass
class MLTConfig:
    # --- model -----------------------------------------------------------------------------
    # "nanotrack": NanoTrack v3's pretrained trunk (fixed, stride 16, 96 ch) + a trained 3x3
    # conv to 256 ch standing in for the paper's conv4, under the paper's conv5 (the default,
    # chosen by a measured comparison: docs/mlt.md). "paper": the paper's conv1-conv4 (stride 8),
    # trained here from scratch.
    backbone: str = "nanotrack"
    checkpoint: str | None = None  # None: the shipped runtime/checkpoints/mlt.pt
    use_meta: bool = True  # False: MLT-mt (the matching network alone)
    finetune: bool = False  # MLT-mt+ft: fine-tune conv5 on the memory every ft_interval frames

    # --- crops (SiamFC geometry) ------------------------------------------------------------
    exemplar_size: int = 127
    search_size: int = 255
    context: float = 0.5  # exemplar side = sqrt((w + p)(h + p)), p = context * (w + h)

    # --- localisation --------------------------------------------------------------------
    num_scales: int = 3
    scale_step: float = 1.035  # scales 1/1.035, 1, 1.035
    scale_penalty: float = 0.97
    scale_lr: float = 0.59  # damping of the size update
    # Ours (issue 19: the box grew to most of the frame on a long video): the size update's
    # rate times the peak probability, as SiamRPN/NanoTrack weight theirs by the score, so
    # an unsure frame barely resizes. Off: SiamFC's/MLT's unweighted update.
    scale_by_score: bool = False
    # Ours (issue 19): the scale penalty multiplies each scale's peak *probability*. On the
    # logits (False, as before) a negative peak, an unsure frame, is raised by the penalty,
    # so the changed scales won exactly when the target was not found: on a 10,000-frame
    # video the box grew to most of the frame (last-loop IoU 0.11; now 0.55, val AUC
    # 0.573 -> 0.579; docs/mlt.md, "Scale penalty").
    penalty_on_probability: bool = True
    window_influence: float = 0.25  # cosine window weight
    response_up: int = 16  # bicubic upsampling of the response map (SiamFC)
    min_side: float = 4.0  # frame pixels; the box never shrinks below

    # --- memory and kernel generation --------------------------------------------------------
    memory_threshold: float = 0.5  # a frame joins the memory if its peak probability is above
    memory_size: int = 100  # context images kept (oldest dropped)
    update_interval: int = 30  # T: new kernels every T frames
    m_context: int = 8  # M: minimum-entropy context images for the gradient

    # --- MLT-mt+ft ----------------------------------------------------------------------------
    ft_interval: int = 50
    ft_steps: int = 30
    ft_lr: float = 1e-3

    # --- run / backends ------------------------------------------------------------------------
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"  # the trunk: auto | torch | onnxruntime | tensorrt (runtime.backends)
    export_dir: str | None = None  # a folder from export/build_engine.py --backbone nanotrack
    precision: str = "fp32"  # of the trunk, as MetaRTT's (fp16 / int8 need a matching export)

    def backend_spec(
        self, data_dir: str | os.PathLike[str] | None = None, **changes: Any
    ) -> FeatureBackendSpec:
        """What the NanoTrack trunk asks of its feature backend (:mod:`runtime.backends`): the
        feature map only (no RoI pooling), with ``changes`` to the spec's fields.

        ValueError for the paper trunk: it is trained inside the matching network and runs there.
        """
        if self.backbone != "nanotrack":
            raise ValueError(
                f"MLT's {self.backbone!r} trunk runs inside the matching network (torch): it "
                f"takes no feature backend; only backbone='nanotrack' does"
            )
        spec = FeatureBackendSpec(
            backbone=self.backbone,
            weights_dir=data_root(data_dir) / "weights",
            roi_size=None,
            roi_sampling_ratio=None,
            backend=self.backend,
            precision=self.precision,
            device=self.device,
            export_dir=self.export_dir,
        )
        return spec.replace(**changes) if changes else spec
