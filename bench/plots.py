"""Success, precision and normalized precision plots (OTB / LaSOT style), and per-attribute bars,
PNG via matplotlib Agg.

The figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot, so
no GUI backend is touched and nothing global is changed (safe in tests and headless servers).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runtime.atomic import write_atomic
from runtime.evaluation.metrics import (
    CENTER_THRESHOLDS,
    IOU_THRESHOLDS,
    NORM_THRESHOLDS,
    PRECISION_AT_PX,
    MeanCurves,
)


def legend_name(name: str) -> str:
    """A tracker spec as a legend shows it: folders by their last component only
    (``nanotrack[export_dir=outputs/export/nanotrack-int8;...]`` -> ``...=nanotrack-int8;...``)."""
    return re.sub(r"([a-z_]*dir=)[^;\]]*/([^;\]/]+)", r"\1\2", name)


def _save_curves(
    path: Path,
    x: np.ndarray,
    curves: Mapping[str, np.ndarray],
    scores: Mapping[str, float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend_loc: str,
    mark_x: float | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Best first in the legend, as benchmark papers order them.
    for name in sorted(curves, key=lambda n: -scores[n]):
        label = f"{legend_name(name)} [{scores[name]:.3f}]"
        ax.plot(x, curves[name], linewidth=2, label=label)
    if mark_x is not None:  # the threshold the legend's number is read at
        ax.axvline(mark_x, color="0.5", linestyle="--", linewidth=1)
    ax.set_xlim(float(x[0]), float(x[-1]))
    ax.set_ylim(0.0, 1.01)  # a hair above 1 so curves at 1.0 are not hidden by the frame
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc=legend_loc, fontsize="small")
    fig.tight_layout()
    return _write_png(fig, path)


def _write_png(fig: Figure, path: Path, **savefig: object) -> Path:
    image = io.BytesIO()
    fig.savefig(image, format="png", **savefig)
    write_atomic(path, image.getvalue())
    return path


def plot_success(curves: Mapping[str, MeanCurves], path: Path, title: str = "") -> Path:
    """Success plot, legend shows AUC (the mean of the curve; a perfect tracker gets 0.952)."""
    return _save_curves(
        path,
        IOU_THRESHOLDS,
        {n: c.success for n, c in curves.items()},
        {n: c.auc for n, c in curves.items()},
        title=title or "Success plots of OPE",
        xlabel="Overlap threshold (IoU >)",
        ylabel="Success rate",
        legend_loc="lower left",
    )


def plot_precision(curves: Mapping[str, MeanCurves], path: Path, title: str = "") -> Path:
    """Precision plot, legend shows precision at 20 px."""
    return _save_curves(
        path,
        CENTER_THRESHOLDS,
        {n: c.precision for n, c in curves.items()},
        {n: c.precision_at_20 for n, c in curves.items()},
        title=title or f"Precision plots of OPE (legend: at {PRECISION_AT_PX:g} px)",
        xlabel="Location error threshold (px, <=)",
        ylabel="Precision",
        legend_loc="lower right",
        mark_x=PRECISION_AT_PX,
    )


def plot_norm_precision(curves: Mapping[str, MeanCurves], path: Path, title: str = "") -> Path:
    """Normalized precision plot (LaSOT), legend shows the area under the curve on [0, 0.5]."""
    return _save_curves(
        path,
        NORM_THRESHOLDS,
        {n: c.norm_precision for n, c in curves.items()},
        {n: c.norm_precision_auc for n, c in curves.items()},
        title=title or "Normalized precision plots of OPE (legend: AUC)",
        xlabel="Normalized location error threshold (<=)",
        ylabel="Normalized precision",
        legend_loc="lower right",
    )


def plot_all(curves: Mapping[str, MeanCurves], folder: Path, suffix: str = "") -> list[Path]:
    """Write success.png, precision.png and norm_precision.png into ``folder``."""
    folder = Path(folder)
    title_tail = f" ({suffix})" if suffix else ""
    return [
        plot_success(curves, folder / "success.png", "Success plots of OPE" + title_tail),
        plot_precision(
            curves, folder / "precision.png", "Precision plots of OPE (at 20 px)" + title_tail
        ),
        plot_norm_precision(
            curves, folder / "norm_precision.png", "Normalized precision of OPE (AUC)" + title_tail
        ),
    ]


def plot_attributes(
    values: Mapping[str, Mapping[str, tuple[float, float | None]]],
    counts: Mapping[str, int],
    path: Path,
    title: str = "",
) -> Path:
    """Grouped bars of the mean AUC per attribute: ``values[tracker][attribute] = (mean, std)``.

    One group per attribute of ``counts`` (its number of sequences under the label), one bar per
    tracker in ``values``' order; a std that is not None (spread over seeds) is an error bar.
    """
    attributes = list(counts)
    x = np.arange(len(attributes), dtype=np.float64)
    width = 0.8 / max(len(values), 1)
    fig = Figure(figsize=(max(6.4, 0.9 * len(attributes) + 2.0), 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Past 10 trackers the default cycle repeats its colours; tab20 keeps the bars apart.
    colors = colormaps["tab20" if len(values) > 10 else "tab10"].colors
    for i, (name, by_attribute) in enumerate(values.items()):
        stats = [by_attribute.get(a, (np.nan, None)) for a in attributes]
        errors = [std if std is not None else 0.0 for _, std in stats]
        ax.bar(
            x + (i - (len(values) - 1) / 2) * width,
            [mean for mean, _ in stats],
            width,
            yerr=errors if any(errors) else None,
            capsize=2,
            color=colors[i % len(colors)],
            label=legend_name(name),
        )
    ax.set_xticks(x, [f"{a}\n({counts[a]})" for a in attributes])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("AUC (success)")
    ax.set_title(title or "Success AUC per attribute (sequences)")
    ax.grid(True, axis="y", alpha=0.3)
    # Below the axes: specs can be long, and inside they would hide the bars.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize="x-small")
    return _write_png(fig, Path(path), bbox_inches="tight")
