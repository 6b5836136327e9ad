"""An HTML report of ``bench.ope`` runs: plots, tables, per-attribute bars, seeds merged.

    python -m bench.report RESULTS.json [MORE.json ...] --out DIR [--data DIR] [--data-root DIR]
        [--no-attributes] [--title TEXT]

    python -m bench.ope ... --json RESULTS.json --report DIR     # the same, right after a run

writes ``DIR/index.html``, one self-contained page (its PNGs embedded as data URIs, and also
written beside it: ``success.png``, ``precision.png``, ``norm_precision.png``, ``attributes.png``)
with every tracker of every file:

* the success, precision and normalized precision plots, every tracker on one axes
  (:mod:`bench.plots`);
* a table per tracker: AUC, precision at 20 px, normalized precision, success rate at IoU 0.5,
  median FPS and, after ``bench.ope --peer``, wins/losses/ties against the peer; a table of where
  each ran (CPU model, threads, backend, date: the JSON's ``environment``); a table of the AUC
  per tracker and sequence;
* bars and a table of the mean AUC per OTB attribute (IV, SV, OCC, DEF, MB, FM, IPR, OPR, OV, BC,
  LR; their OTB-2015 names on the page), read from the ``otb_attributes`` field of each
  sequence's ``meta.json`` in the sequence folder (``--data``, default
  ``<data root>/sequences``); sequences without it are left out of that section and the page
  says how many;
* several runs of one tracker, specs that differ only by ``seed=``, merged as mean ± std
  (:mod:`bench.report_stats`).

Where the curves come from. The JSON holds per-sequence scalars only (AUC, precision, normalized
precision, FPS), which is enough for the tables and the attribute bars but not for the plots or
the success rate at 0.5. Rather than widen the JSON's documented shape, the curves are recomputed
from the boxes that ``bench.ope`` always saves beside its JSON, in ``<json stem>.runs/`` (full
float64 boxes, written whenever ``--json`` is given; ``--results`` text files are optional and
rounded), against the sequences' ground truth, with the same metric code the run used; each
recomputed AUC must equal the JSON's (:mod:`bench.report_inputs`). A tracker without usable saved
runs keeps its table rows, gets ``–`` for the success rate, is left out of the plots, and the page
says why in one line.

Bad input (a missing file, a JSON that is not a ``bench.ope`` result, no trackers, no sequence
with OTB attributes unless ``--no-attributes``) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report_html import Image, Page, render
from bench.report_inputs import ReportError, load_runs, sequence_attributes
from bench.report_stats import TrackerGroup, attribute_counts, group_seeds, ranked, sequences_of
from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.paths import data_root

PAGE = "index.html"
CURVE_FILES = ("success.png", "precision.png", "norm_precision.png")
ATTRIBUTE_FILE = "attributes.png"


def _curve_notes(groups: list[TrackerGroup]) -> list[str]:
    """One line per reason a tracker has no curves, naming the trackers it keeps out."""
    by_reason: dict[str, list[str]] = {}
    for group in groups:
        if group.curves is None:
            run = next(r for r in group.runs.values() if r.mean_curves is None)
            why = f"{run.source.name}: {run.no_curves or 'no scored sequence'}"
            by_reason.setdefault(why, []).append(group.name)
    return [
        f"Not in the plots, no success rate ({why}): {', '.join(names)}."
        for why, names in by_reason.items()
    ]


def _images(
    groups: list[TrackerGroup],
    sequences: list[str],
    attributes: dict[str, tuple[str, ...]] | None,
    out: Path,
) -> tuple[list[Image], Image | None]:
    """Write the PNGs into ``out`` and return them for embedding."""
    # matplotlib only when a report is written: bench.ope imports this module for --report.
    from bench.plots import plot_all, plot_attributes

    curves = {g.label: g.curves for g in groups if g.curves is not None}
    curve_images = []
    if curves:
        written = plot_all(curves, out, suffix=f"{len(sequences)} sequences")
        alts = ("Success plot", "Precision plot", "Normalized precision plot")
        curve_images = [
            Image(p.name, p.read_bytes(), alt) for p, alt in zip(written, alts, strict=True)
        ]
    counts = attribute_counts(attributes or {})
    if attributes is None or not counts:
        return curve_images, None
    values = {}
    for group in groups:
        values[group.label] = {}
        for attribute in counts:
            stat = group.stat(lambda run, a=attribute: run.attribute_auc(a, attributes))
            if stat is not None:
                values[group.label][attribute] = (stat.mean, stat.std)
    path = plot_attributes(values, counts, out / ATTRIBUTE_FILE)
    return curve_images, Image(path.name, path.read_bytes(), "Mean AUC per OTB attribute")


def write_report(
    results: Sequence[Path],
    out: Path,
    *,
    data: Path,
    attributes: bool = True,
    attributes_required: bool = True,
    title: str = "",
) -> Path:
    """Write the report of the ``bench.ope --json`` files ``results`` into ``out``; its page.

    ``data`` is the sequence folder (ground truth for the curves, ``meta.json`` for the
    attributes). With ``attributes_required``, no sequence with OTB attributes is a ReportError
    (a wrong ``--data``, most likely); without it the page just says so (``bench.ope --report``:
    a finished run is never failed for it). ``attributes=False`` leaves the section out.
    """
    out = Path(out)
    results = [Path(path) for path in results]
    groups, notes = group_seeds(load_runs(results, data))
    groups = ranked(groups)
    sequences = sequences_of(groups)
    found = sequence_attributes(data, sequences) if attributes else None
    if found is not None and attributes_required and not any(found.values()):
        raise ReportError(
            f"no sequence of the results has otb_attributes in {data}/<sequence>/meta.json "
            "(is --data or --data-root right? --no-attributes leaves the section out)"
        )
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    for name in (*CURVE_FILES, ATTRIBUTE_FILE):  # an earlier report's, which may not be redone
        (out / name).unlink(missing_ok=True)
    curve_images, attribute_image = _images(groups, sequences, found, out)
    curve_notes = _curve_notes(groups)
    if not curve_images:
        curve_notes.insert(
            0,
            "No plots: no tracker has the saved runs to draw curves from (bench.ope keeps them "
            "in <json stem>.runs/ beside its --json file).",
        )
    page = Page(
        title=title or f"OPE report: {', '.join(path.stem for path in results)}",
        inputs=[str(path) for path in results],
        groups=groups,
        sequences=sequences,
        attributes=found,
        curve_images=curve_images,
        attribute_image=attribute_image,
        notes=notes,
        curve_notes=curve_notes,
    )
    path = out / PAGE
    write_atomic(path, render(page))
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.report"),
        description="One HTML page (plots, tables, per-attribute bars, seeds merged) from "
        "bench.ope --json results.",
    )
    # nargs="*" and a check of our own: an empty list is one line, not argparse's usage text.
    parser.add_argument("results", type=Path, nargs="*", help="bench.ope --json files")
    parser.add_argument("--out", type=Path, required=True, help="folder for index.html and PNGs")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of the OTB-layout sequences the results ran on (default: <data root>/"
        "sequences): ground truth for the curves, meta.json for the attributes",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="shared data folder (default: $TRACKER_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--no-attributes",
        action="store_true",
        help="leave out the per-attribute section (for sequences without OTB attributes)",
    )
    parser.add_argument("--title", default="", help="the page's title")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data = args.data if args.data is not None else data_root(args.data_root) / "sequences"
    try:
        page = write_report(
            args.results,
            args.out,
            data=data,
            attributes=not args.no_attributes,
            title=args.title,
        )
    except (ReportError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"bench.report: error: {message}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
