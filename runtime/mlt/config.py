"""MLT's tracking parameters; defaults are the paper's values (Choi et al., ICCV 2019, Sec. 4).

A config is saved next to every artifact (``dataclasses.asdict``). The fields ``backbone``,
``roi_size`` and ``roi_sampling_ratio`` exist so an export folder of the NanoTrack trunk
(``export/build_engine.py --backbone nanotrack``) can be checked against this config by
:mod:`runtime.backends` exactly as for MetaRTT (RoIAlign is not used by MLT).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    roi_size: int = 3  # only for matching MetaRTT's export manifests (see module docstring)
    roi_sampling_ratio: int = 2
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"  # the trunk: auto | torch | onnxruntime | tensorrt (runtime.backends)
    export_dir: str | None = None  # a folder from export/build_engine.py --backbone nanotrack
    precision: str = "fp32"  # of the trunk, as MetaRTT's (fp16 / int8 need a matching export)
