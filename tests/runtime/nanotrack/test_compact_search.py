"""A search region no larger than needed (``NanoTrackConfig.compact_instance_size``): when the
tracker takes the compact crop, and that it tracks with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from runtime.boxes import iou
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.tracker import TrackState
from tests.support import needs_data

COMPACT = NanoTrackConfig()  # the default: 191 while sure (0.95), slow (8 px), inside


def _side(
    config: NanoTrackConfig,
    *,
    score: float,
    motion: float,
    center=(160.0, 120.0),
    size=(20.0, 20.0),
    lost: bool = False,
    now: int = 255,
    sure_before: int = 2,
) -> int:
    """The next search side of a tracker in this state on a 320 x 240 frame, after
    ``sure_before`` sure frames in a row (with this one, the default patience of 3)."""
    tracker = NanoTracker.__new__(NanoTracker)  # the rule reads only the config and frame size
    tracker.config, tracker.frame_hw = config, (240, 320)
    state = TrackState(np.array(center), np.array(size), now, lost=lost, raw_score=score)
    state.sure_streak = sure_before
    return tracker._next_search_side(state, motion)


def test_compact_only_while_sure_slow_and_away_from_the_edges() -> None:
    assert _side(COMPACT, score=0.99, motion=4.0) == 191
    assert _side(COMPACT, score=0.90, motion=4.0) == 255  # unsure
    assert _side(COMPACT, score=0.99, motion=4.0, sure_before=1) == 255  # not sure for long
    assert _side(COMPACT, score=0.99, motion=12.0) == 255  # fast
    assert _side(COMPACT, score=0.99, motion=4.0, center=(15.0, 120.0)) == 255  # at the edge
    assert _side(COMPACT, score=0.99, motion=4.0, center=(160.0, 225.0)) == 255
    assert (
        _side(
            replace(COMPACT, compact_edge_margin=0.0), score=0.99, motion=4.0, center=(25.0, 120.0)
        )
        == 191
    )
    assert _side(replace(COMPACT, compact_instance_size=0), score=0.99, motion=0.0) == 255


def test_recovery_still_widens_while_lost() -> None:
    widened = replace(COMPACT, recovery=True)
    assert _side(widened, score=0.1, motion=0.0, lost=True, now=255) == 287
    assert _side(widened, score=0.99, motion=0.0, lost=False, now=287) == 191


@pytest.mark.parametrize("bad", [200, 127, 287])
def test_a_compact_side_the_maps_cannot_centre_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="compact_instance_size"):
        NanoTracker(replace(COMPACT, compact_instance_size=bad), backend=object())  # type: ignore[arg-type]


@needs_data
def test_the_compact_tracker_tracks_and_takes_both_sides(crossing_frames) -> None:
    frames, gt = crossing_frames(40)
    tracker = NanoTracker(COMPACT)
    tracker.init(frames[0], gt[0])
    sides, boxes = [], []
    for frame in frames[1:]:
        sides.append(tracker.state.instance_size)
        boxes.append(tracker.update(frame)[0])
    assert set(sides) == {191, 255}
    assert iou(np.stack(boxes), gt[1:]).mean() > 0.6
