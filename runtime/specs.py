"""Tracker specs and ``KEY=VALUE`` overrides, parsed here and nowhere else.

A spec is a tracker name with optional config overrides: ``nanotrack``, ``metartt[prune=shipped]``,
``rtmdnet[backbone=vggm;seed=1]``. The CLI's ``--tracker``, :func:`runtime.registry.create_tracker`
and every benchmark's ``--trackers`` take one; the benchmarks' ``--set KEY=VALUE`` and the
training scripts' ``--set`` are parsed by :func:`parse_overrides`. A value is a Python literal
where it reads as one (``0.5``, ``True``, ``None``, ``"a b"``), else the bare word (``vggm``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


class SpecError(ValueError):
    """A malformed spec or override; the message is one line for the user."""


@dataclass(frozen=True)
class TrackerSpec:
    """``name`` and its config overrides, as written in ``name[key=value;...]``."""

    name: str
    overrides: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_spec(self.name, self.overrides)


def parse_override(item: str) -> tuple[str, object]:
    """``"lr_init=0.001"`` -> ``("lr_init", 0.001)``; ``"backbone=vggm"`` -> the bare word."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"expected KEY=VALUE, got {item!r}")
    try:
        value: object = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = text.strip()  # a bare word such as a backbone name
    return key.strip(), value


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["lr_init=0.001", "backbone=vggm"]`` -> ``{"lr_init": 0.001, "backbone": "vggm"}``."""
    return dict(parse_override(item) for item in items)


def parse_spec(text: str) -> TrackerSpec:
    """``"rtmdnet[backend=onnxruntime;seed=1]"`` -> ``TrackerSpec("rtmdnet", {...})``."""
    name, bracket, rest = text.strip().partition("[")
    if not name:
        raise SpecError(f"tracker spec {text!r}: no tracker name")
    if not bracket:
        return TrackerSpec(name)
    if not rest.endswith("]"):
        raise SpecError(f"tracker spec {text!r}: expected NAME[KEY=VALUE;...]")
    items = [item for item in rest[:-1].split(";") if item.strip()]
    try:
        return TrackerSpec(name, parse_overrides(items))
    except SpecError as exc:
        raise SpecError(f"tracker spec {text!r}: {exc}") from None


def format_spec(name: str, overrides: dict[str, object]) -> str:
    """The inverse of :func:`parse_spec`: ``format_spec("mlt", {"use_meta": False})`` ->
    ``"mlt[use_meta=False]"``."""
    if not overrides:
        return name
    items = ";".join(f"{key}={value}" for key, value in overrides.items())
    return f"{name}[{items}]"
