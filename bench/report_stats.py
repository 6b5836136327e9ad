"""The numbers of a report (:mod:`bench.report`): runs grouped over seeds, figures as mean ± std.

Specs that differ only by ``seed=`` (:func:`bench.seeds.without_seed`; no seed is seed 0) are one
group. Every figure of a group is the mean over its runs of that run's figure, with the sample
standard deviation (ddof 1, as :mod:`bench.seeds`) when there are two runs or more; a group's
curves are the mean of its runs' mean curves. A spec and seed given in two files is taken from the
later file, as :mod:`bench.seeds` does, and the page says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.report_inputs import OTB_ATTRIBUTES, TrackerRun
from bench.seeds import without_seed
from runtime.evaluation.metrics import MeanCurves


@dataclass(frozen=True)
class Stat:
    """One figure of a group: the mean over its runs and, over two runs or more, the std."""

    mean: float
    std: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        array = np.asarray(values, dtype=np.float64)
        return cls(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None)


@dataclass(frozen=True)
class TrackerGroup:
    """The runs of one spec over seeds (one run for a tracker run once)."""

    name: str  # the spec without its seed
    runs: dict[int, TrackerRun]  # by seed

    @property
    def label(self) -> str:
        """The name as the plots' legends show it: merged groups say over how many seeds."""
        return self.name if len(self.runs) == 1 else f"{self.name} ({len(self.runs)} seeds)"

    @property
    def auc(self) -> Stat:
        return Stat.of([run.auc for run in self.runs.values()])

    def stat(self, figure: Callable[[TrackerRun], float | None]) -> Stat | None:
        """``figure`` over the runs; None when a run lacks it."""
        values = [figure(run) for run in self.runs.values()]
        known = [value for value in values if value is not None]
        return Stat.of(known) if len(known) == len(values) else None

    @property
    def curves(self) -> MeanCurves | None:
        """The mean of the runs' mean curves; None when a run has none."""
        each = [run.mean_curves for run in self.runs.values()]
        known = [curves for curves in each if curves is not None]
        if len(known) < len(each):
            return None
        return MeanCurves(
            success=np.mean([c.success for c in known], axis=0),
            precision=np.mean([c.precision for c in known], axis=0),
            norm_precision=np.mean([c.norm_precision for c in known], axis=0),
        )


def group_seeds(runs: Iterable[TrackerRun]) -> tuple[list[TrackerGroup], list[str]]:
    """Groups in order of first appearance, and a note for each spec and seed given twice."""
    by_name: dict[str, dict[int, TrackerRun]] = {}
    notes = []
    for run in runs:
        name, seed = without_seed(run.spec)
        earlier = by_name.setdefault(name, {}).get(seed)
        if earlier is not None:
            notes.append(
                f"{run.spec} is in both {earlier.source} and {run.source}; the later is used."
            )
        by_name[name][seed] = run
    groups = [TrackerGroup(name, dict(sorted(runs.items()))) for name, runs in by_name.items()]
    return groups, notes


def ranked(groups: Iterable[TrackerGroup]) -> list[TrackerGroup]:
    """Best mean AUC first, as benchmark tables and legends order trackers."""
    return sorted(groups, key=lambda g: (math.isnan(g.auc.mean), -g.auc.mean))


def sequences_of(groups: Iterable[TrackerGroup]) -> list[str]:
    """Every sequence any run covers, in order of first appearance."""
    names = (s for g in groups for run in g.runs.values() for s in run.per_sequence)
    return list(dict.fromkeys(names))


def attribute_counts(attributes: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """OTB attribute -> number of sequences that have it (attributes no sequence has left out)."""
    counts = {a: sum(a in found for found in attributes.values()) for a in OTB_ATTRIBUTES}
    return {a: n for a, n in counts.items() if n}
