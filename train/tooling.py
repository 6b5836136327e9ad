"""What every training tool here shares: settings, resumable state, the CSV log and its plot.

``train/meta.py`` and ``train/prune.py`` follow the same habits: dataclass defaults overridden by
``--config JSON`` and ``--set KEY=VALUE`` (dotted keys reach nested settings), an atomic
``last.pt`` that ``--resume`` continues from only with the same settings, a ``log.csv`` rewritten
atomically at each checkpoint, and a ``training.png`` of it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from runtime.atomic import write_atomic

Config = TypeVar("Config")


def apply_overrides(config: Config, overrides: dict[str, object]) -> Config:
    """``{"meta.gamma": 0.0, "steps": 10}`` -> the same config, changed (dotted keys nest)."""
    for key, value in overrides.items():
        target: object = config
        *path, last = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or last not in {
            f.name for f in dataclasses.fields(target)
        }:
            raise ValueError(f"unknown setting {key!r}")
        current = getattr(target, last)
        if isinstance(current, bool):
            value = value if isinstance(value, bool) else str(value).lower() in ("1", "true")
        elif isinstance(current, (int, float)) and not isinstance(value, bool):
            value = type(current)(value)  # type: ignore[call-arg]
        setattr(target, last, value)
    return config


def config_from_dict(cls: type[Config], data: dict) -> Config:
    """A ``cls()`` with the (nested) values of ``data``; settings it lacks keep their defaults."""

    def flat(prefix: str, d: dict) -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(f"{prefix}{k}.", v))
            else:
                out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
        return out

    return apply_overrides(cls(), flat("", data))


def parse_assignments(items: Iterable[str]) -> dict[str, object]:
    """``--set`` values ``["a.b=1", ...]`` -> ``{"a.b": "1"}`` (typed by apply_overrides)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set needs KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------------------------------
# Resumable state
# ------------------------------------------------------------------------------------------
def save_state(path: Path, step: int, config: object, **state: object) -> None:
    """``last.pt``: the step, the settings and ``state`` (state dicts), written atomically."""
    buffer = io.BytesIO()
    payload = {"step": step, "config": json.dumps(asdict(config), sort_keys=True), **state}
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def load_state(path: Path, config: object, free: Sequence[str] = ()) -> dict:
    """``last.pt``'s contents, if it was written with ``config``'s settings (``free`` aside).

    Compared through the dataclasses, so settings added since the run started take their
    defaults; a resumed run may change ``free`` ones (how far it goes, how often it writes).
    """
    if not path.is_file():
        raise SystemExit(f"error: --resume: no {path} (start without --resume)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved_config = config_from_dict(type(config), json.loads(state["config"]))
    saved = json.loads(json.dumps(asdict(saved_config)))
    mine = json.loads(json.dumps(asdict(config)))
    for key in free:
        saved.pop(key, None), mine.pop(key, None)
    if saved != mine:
        changed = sorted(k for k in mine if saved.get(k) != mine.get(k))
        raise SystemExit(f"error: --resume with different settings ({', '.join(changed)})")
    return state


# ------------------------------------------------------------------------------------------
# The log
# ------------------------------------------------------------------------------------------
def read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]


def write_log(path: Path, rows: list[dict[str, object]], fields: Sequence[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def plot_log(
    rows: list[dict[str, object]],
    path: Path,
    curves: Sequence[str],
    side: str,
    side_label: str,
    empty_side: str = "",
) -> None:
    """Left: ``curves`` per step (running means); right: ``side`` where logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([int(r["step"]) for r in rows])
    fig = Figure(figsize=(10, 3.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_side = fig.subplots(1, 2)
    for key in curves:
        values = np.array([float(r[key]) for r in rows])
        if np.isfinite(values).any():
            window = max(1, min(25, len(values) // 5))
            smooth = np.convolve(np.nan_to_num(values), np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1 :], smooth, label=f"{key} (mean of {window})")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    points = [(int(r["step"]), float(r[side])) for r in rows if str(r.get(side, ""))]
    if points:
        ax_side.plot(*zip(*points, strict=True), marker="o" if len(points) < 50 else None)
    else:
        ax_side.text(0.5, 0.5, empty_side, ha="center")
    ax_side.set_xlabel("step")
    ax_side.set_ylabel(side_label)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    write_atomic(path, buffer.getvalue())
