"""The one small interface between the tracker and whatever runs the fixed part of the network."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class FeatureBackend(Protocol):
    """Backbone + RoIAlign behind two calls (plus ``keep_channels`` for pruning); nothing else.

    Built from a :class:`runtime.backends.spec.FeatureBackendSpec` (:func:`create_backend`).

    Both calls return torch tensors on the device of their input, so the FC head (torch, adapted
    online) reads them directly, whatever ran them.
    """

    name: str
    # Output channels a pruned copy must keep exactly (an engine built at that width), or None.
    channel_budget: int | None
    # Whether ``feature_map`` takes a batch of crops ``(B, 3, H, W)``, B > 1, in one call (the
    # torch modules); the exported graphs take one crop per call.
    takes_batches: bool

    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` float32 BGR 0..255 crop -> ``(1, C, h, w)`` feature map.

        ``(B, 3, H, W)`` -> ``(B, C, h, w)`` where ``takes_batches``.
        """
        ...

    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        """``(N, 4)`` RoIs (x1, y1, x2, y2 crop pixels), ``(N,)`` int64 -> ``(N, C*roi*roi)``."""
        ...

    def keep_channels(self, keep: torch.Tensor) -> FeatureBackend:
        """A backend whose backbone computes only output channels ``keep`` (channel pruning).

        Called once per video at its first frame, when the masks are known; the returned backend
        is a physically smaller network (the last conv's other filters are gone).
        """
        ...
