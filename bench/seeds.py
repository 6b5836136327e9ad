"""Accuracy over tracker seeds: mean and spread of several ``bench.ope`` runs, paired differences.

    python -m bench.seeds RUN.json [RUN.json ...] [--baseline SUBSTRING] [--json OUT]

MetaRTT draws its samples and dropout from a seeded RNG (``seed=`` in a tracker spec), and on the
7 ``val`` sequences one lost or kept target moves the mean AUC by several points, so a single
run cannot resolve differences of a point or two (INT8 against FP32, for instance). Run the same
specs with ``seed=0;...``, ``seed=1``, ... (one or more ``bench.ope --json`` files), then this
groups the entries by spec with the seed taken out and reports, per group, the mean AUC and
precision over seeds with their standard deviation, and against the ``--baseline`` group of the
same tracker (the first group whose spec contains SUBSTRING) the mean of the per-seed AUC
differences with its standard deviation, over the seeds both have.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli.program import program_name

SEED = re.compile(r";?seed=(\d+)")


def without_seed(spec: str) -> tuple[str, int]:
    """``"metartt[backend=x;seed=2]"`` -> ``("metartt[backend=x]", 2)`` (no seed: seed 0)."""
    match = SEED.search(spec)
    if match is None:
        return spec, 0
    rest = spec[: match.start()] + spec[match.end() :]
    return rest.replace("[;", "[").replace("[]", ""), int(match.group(1))


def group_runs(runs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """spec without seed -> seed -> that run's summary (later files win on a repeated seed)."""
    groups: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        for spec, result in run.items():
            name, seed = without_seed(spec)
            groups.setdefault(name, {})[seed] = result
    return groups


def summarize(groups, baseline: str | None) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, by_seed in groups.items():
        auc = np.array([r["mean_auc"] for r in by_seed.values()])
        precision = np.array([r["mean_precision"] for r in by_seed.values()])
        entry: dict[str, Any] = {
            "seeds": sorted(by_seed),
            "auc_mean": float(auc.mean()),
            "auc_std": float(auc.std(ddof=1)) if len(auc) > 1 else None,
            "precision_mean": float(precision.mean()),
            "precision_std": float(precision.std(ddof=1)) if len(precision) > 1 else None,
        }
        tracker = name.partition("[")[0]
        reference = next(
            (g for g in groups if baseline and baseline in g and g.partition("[")[0] == tracker),
            None,
        )
        if reference is not None and reference != name:
            common = sorted(set(by_seed) & set(groups[reference]))
            diffs = np.array(
                [by_seed[s]["mean_auc"] - groups[reference][s]["mean_auc"] for s in common]
            )
            entry["vs"] = reference
            entry["auc_diff_mean"] = float(diffs.mean()) if len(diffs) else None
            entry["auc_diff_std"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else None
            entry["auc_diffs"] = [float(d) for d in diffs]
        table[name] = entry
    return table


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.seeds"), description=__doc__
    )
    parser.add_argument("runs", type=Path, nargs="+", help="bench.ope --json files")
    parser.add_argument("--baseline", default=None, help="substring naming the reference spec")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.runs if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    table = summarize(group_runs([json.loads(p.read_text()) for p in args.runs]), args.baseline)
    print("| tracker | seeds | mean AUC ± std | mean precision ± std | AUC - baseline ± std |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, e in table.items():
        diff = _pm(e.get("auc_diff_mean"), e.get("auc_diff_std")) if "vs" in e else "-"
        print(
            f"| {name} | {len(e['seeds'])} | {_pm(e['auc_mean'], e['auc_std'])} | "
            f"{_pm(e['precision_mean'], e['precision_std'])} | {diff} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
