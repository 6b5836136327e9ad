"""bench.procedures (network against procedure) and bench.scenes (ground-level or aerial)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from bench.procedures import VARIANTS, Networks, ProcedureTracker, integer_crop, main
from bench.scenes import AERIAL, GROUND, scene_of
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.sequences import load_sequence
from tests.support import CROSSING, needs_data


@needs_data
def test_the_default_variant_is_the_product_tracker():
    """The study's baseline must be what ships, or its costs are of something else (the
    procedure on the full crop in fp32: the compact search and bf16 are measured on their
    own, docs/speed.md)."""
    seq = load_sequence(CROSSING)
    frames = [cv2.imread(str(p)) for p in seq.frame_paths[:15]]
    study = ProcedureTracker(VARIANTS["both (the default)"], Networks(None))
    product = NanoTracker(NanoTrackConfig(threads=1, compact_instance_size=0, precision="fp32"))
    for tracker in (study, product):
        tracker.init(frames[0], seq.ground_truth[0])
    for frame in frames[1:]:
        np.testing.assert_allclose(study.update(frame)[0], product.update(frame)[0], atol=1e-3)


def test_integer_crop_cuts_whole_pixels_and_pads_with_the_fill():
    frame = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    inside = integer_crop(frame, np.array([15.4, 10.6]), 5, 5, (0, 0, 0), opencv=True)
    np.testing.assert_array_equal(inside, frame[7:12, 12:17])  # int(10.6) - 3, int(15.4) - 3
    rounded = integer_crop(frame, np.array([15.4, 10.6]), 5, 5, (0, 0, 0), opencv=False)
    np.testing.assert_array_equal(rounded, frame[8:13, 12:17])  # floor(x - 3 + 0.5)
    corner = integer_crop(frame, np.array([0.0, 0.0]), 4, 4, (7, 7, 7), opencv=True)
    assert (corner[:2, :2] == 7).all() and (corner[2:, 2:] == frame[:2, :2]).all()


def test_scenes_from_meta(tmp_path: Path):
    uav, otb, bare = (tmp_path / n for n in ("uav_x", "otb_y", "Crossing"))
    for folder, dataset in ((uav, "UAV123@10fps"), (otb, "OTB-100")):
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({"dataset": dataset}))
    bare.mkdir()
    assert [scene_of(f) for f in (uav, otb, bare)] == [AERIAL, GROUND, GROUND]


def test_variant_names_can_be_listed_in_variants():
    assert not [name for name in VARIANTS if "," in name]  # --variants splits at commas


def test_cli_lists_and_refuses_in_one_line(capsys, tmp_path: Path):
    assert main(["--list"]) == 0
    assert "both (the default)" in capsys.readouterr().out
    assert main(["--json", str(tmp_path / "x.json"), "--variants", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown variant(s) nope") and "\n" not in err
