"""The tracker registry: every entry declares what it is; nothing is guessed from a name."""

from __future__ import annotations

import pytest

from runtime.registry import TRACKER_NAMES, export_kind, tracker_family


@pytest.mark.parametrize(
    ("name", "family", "kind"),
    [
        ("nanotrack", "nanotrack", "siamese"),
        ("metartt-nano-prune", "nanotrack", "siamese"),
        ("mlt-nano", "nanotrack", "siamese"),
        ("rtmdnet-nanotrack", "rtmdnet", "rtmdnet"),  # "nano" in the name, RT-MDNet inside
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
