"""The tracker registry: every entry declares what it is; nothing is guessed from a name."""

from __future__ import annotations

import pytest

from runtime.registry import TRACKER_NAMES, export_kind, tracker_family
from tests.support import needs_weights


@pytest.mark.parametrize(
    ("name", "family", "kind"),
    [
        ("nanotrack", "nanotrack", "siamese"),
        ("metartt-nano[prune=shipped]", "nanotrack", "siamese"),
        ("mlt-nano", "nanotrack", "siamese"),
        ("rtmdnet[backbone=nanotrack]", "rtmdnet", "rtmdnet"),  # "nano" in it, RT-MDNet inside
        ("metartt", "rtmdnet", "rtmdnet"),
        ("mlt", "mlt", "rtmdnet"),
    ],
)
def test_family_and_export_kind_are_declared(name: str, family: str, kind: str) -> None:
    assert tracker_family(name) == family
    assert export_kind(name) == kind


def test_every_tracker_has_a_family_and_unknown_names_are_refused() -> None:
    assert {tracker_family(name) for name in TRACKER_NAMES} == {"nanotrack", "rtmdnet", "mlt"}
    with pytest.raises(ValueError, match="unknown tracker 'nope'"):
        tracker_family("nope")


def test_six_trackers_of_ours_and_every_former_name_says_its_spec() -> None:
    from runtime.presets import FORMER_NAMES
    from runtime.registry import unknown_tracker_message

    assert len(TRACKER_NAMES) <= 6
    for former, spec in FORMER_NAMES.items():
        assert former not in TRACKER_NAMES
        assert f"write {spec!r}" in unknown_tracker_message(former)
        with pytest.raises(ValueError, match="no longer a tracker name"):
            tracker_family(former)


def test_specs_parse_and_print_back() -> None:
    from runtime.specs import SpecError, TrackerSpec, parse_override, parse_spec

    spec = parse_spec("mlt[use_meta=False;finetune=True]")
    assert spec == TrackerSpec("mlt", {"use_meta": False, "finetune": True})
    assert str(spec) == "mlt[use_meta=False;finetune=True]"
    assert parse_spec("rtmdnet[backbone=vggm; seed=2]").overrides == {"backbone": "vggm", "seed": 2}
    assert parse_override("prune=runs/p 1/prune.pt") == ("prune", "runs/p 1/prune.pt")
    for bad in ("rtmdnet[seed=2", "[seed=2]", "rtmdnet[seed]"):
        with pytest.raises(SpecError):
            parse_spec(bad)


@needs_weights
def test_every_preset_builds_with_its_settings() -> None:
    from runtime.presets import PRESETS
    from runtime.registry import build_tracker
    from runtime.specs import parse_spec

    for preset in PRESETS:
        tracker = build_tracker(preset.spec)
        config = tracker.config
        for key, value in parse_spec(preset.spec).overrides.items():
            if key != "prune" or tracker_family(preset.spec) == "nanotrack":
                assert getattr(config, key) == value, preset.spec
    shipped = build_tracker("metartt[prune=shipped]").config.prune
    assert shipped is not None and shipped.endswith("metartt_prune.pt")


@needs_weights
def test_a_spec_and_an_option_that_disagree_are_refused() -> None:
    from runtime.registry import build_tracker

    assert build_tracker("nanotrack[recovery=True]", recovery=True).config.recovery
    with pytest.raises(ValueError, match="recovery given both"):
        build_tracker("nanotrack[recovery=True]", recovery=False)
