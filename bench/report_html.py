"""The report page of :mod:`bench.report`: one self-contained HTML5 document, no script.

Every text that comes from the inputs goes through :func:`html.escape` with quotes: tracker specs
hold brackets, semicolons and slashes and may hold ``<``, ``&`` or quotes, and they land both in
elements and in attributes. The images are PNG bytes embedded as base64 data URIs, so the page is
one file that can be mailed or attached; each also links the PNG file written beside the page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.report_inputs import OTB_ATTRIBUTE_NAMES, TrackerRun
from bench.report_stats import Stat, TrackerGroup, attribute_counts

NO_VALUE = "–"  # a figure a run cannot give (no curves, not run on that sequence)
EXCLUDED_MARK = "†"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th[scope=row] { text-align: left; font-weight: normal; min-width: 14em; max-width: 36em;
                overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
thead th { background: #f3f3f3; }
figure { display: inline-block; margin: 0 1em 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.note { color: #8a4b00; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG of the page: embedded, and linked as the file beside it."""

    file: str  # its name in the report folder
    png: bytes
    alt: str


@dataclass(frozen=True)
class Page:
    """Everything the page shows, already computed."""

    title: str
    inputs: list[str]  # the result files, as given
    groups: list[TrackerGroup]  # in the order of the tables (best AUC first)
    sequences: list[str]
    attributes: dict[str, tuple[str, ...]] | None  # sequence -> attributes; None: section off
    curve_images: list[Image] = field(default_factory=list)
    attribute_image: Image | None = None
    notes: list[str] = field(default_factory=list)  # about the inputs (repeated specs, ...)
    curve_notes: list[str] = field(default_factory=list)  # trackers the plots leave out, and why


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _stat(stat: Stat | None, digits: int = 3) -> str:
    if stat is None:
        return NO_VALUE
    text = f"{stat.mean:.{digits}f}"
    return text if stat.std is None else f"{text} ± {stat.std:.{digits}f}"


def _table(table_id: str, caption: str, header: list[str], rows: list[list[str]]) -> str:
    """A table whose first column names the row; ``header`` and the cells are escaped already."""
    head = "".join(f'<th scope="col">{h}</th>' for h in header)
    body = "\n".join(
        f'<tr><th scope="row">{row[0]}</th>{"".join(f"<td>{c}</td>" for c in row[1:])}</tr>'
        for row in rows
    )
    # In a scrolling box: with many sequences or attributes a table is wider than the page.
    return (
        f'<div class="scroll"><table id="{table_id}">\n<caption>{_e(caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _runs_cell(group: TrackerGroup) -> str:
    if len(group.runs) == 1:
        return "1"
    return f"{len(group.runs)} (seeds {', '.join(map(str, group.runs))})"


def _sources(group: TrackerGroup) -> str:
    return ", ".join(dict.fromkeys(_e(run.source.name) for run in group.runs.values()))


def _per_run(group: TrackerGroup, value: Callable[[TrackerRun], object]) -> str:
    """``value`` of the group's runs, once when they agree, else each (seed order); ``–`` for
    runs that do not have it."""
    values = [value(run) for run in group.runs.values()]
    shown = [NO_VALUE if v is None else _e(v) for v in values]
    return ", ".join(dict.fromkeys(shown))


def _peers(groups: list[TrackerGroup]) -> list[str]:
    """The ``--peer`` names the runs were compared against (normally one)."""
    found = (run.summary.get("versus") for g in groups for run in g.runs.values())
    return list(dict.fromkeys(v["peer"] for v in found if isinstance(v, dict)))


def trackers_table(groups: list[TrackerGroup]) -> str:
    figures: list[tuple[str, Callable[[TrackerRun], float | None], int]] = [
        ("AUC", lambda run: run.auc, 3),
        ("precision (20 px)", lambda run: run.precision, 3),
        ("normalized precision", lambda run: run.norm_precision, 3),
        ("success rate (IoU &gt; 0.5)", lambda run: run.success_rate, 3),
        ("median FPS", lambda run: run.median_fps, 1),
    ]
    rows = [
        [_e(g.name), _runs_cell(g), *(_stat(g.stat(f), d) for _, f, d in figures), _sources(g)]
        for g in groups
    ]
    header = ["tracker", "runs", *(name for name, _, _ in figures), "from"]
    peers = _peers(groups)
    if peers:  # bench.ope --peer: sequences won, lost, tied (one value per seed)
        header.append(f"W/L/T vs {_e(', '.join(peers))}")
        for row, group in zip(rows, groups, strict=True):
            row.append(_per_run(group, TrackerRun.wins_losses_ties))
    return _table(
        "trackers",
        "Per tracker: means over sequences (FPS: median); over seeds, mean ± std",
        header,
        rows,
    )


# (column, key of the JSON's "environment")
ENVIRONMENT_KEYS = (
    ("CPU", "cpu"),
    ("threads", "threads"),
    ("backend", "backend"),
    ("date", "date"),
)


def environment_table(groups: list[TrackerGroup]) -> str:
    """Where each tracker ran, as ``bench.ope`` recorded it (runs over seeds: each value once)."""

    def field(key: str) -> Callable[[TrackerRun], object]:
        return lambda run: None if run.environment is None else run.environment.get(key)

    rows = [[_e(g.name), *(_per_run(g, field(key)) for _, key in ENVIRONMENT_KEYS)] for g in groups]
    table = _table(
        "environment",
        "Where each ran: CPU model, CPU threads, backend of the fixed network, date",
        ["tracker", *(name for name, _ in ENVIRONMENT_KEYS)],
        rows,
    )
    if any(run.environment is None for g in groups for run in g.runs.values()):
        table += (
            f"\n<p>{NO_VALUE}: not recorded (a result written before bench.ope recorded "
            "where it ran).</p>"
        )
    return table


def _excluded(groups: list[TrackerGroup]) -> set[str]:
    runs = (run for g in groups for run in g.runs.values())
    return {s for run in runs for s in run.per_sequence if s not in run.scored}


def sequences_table(groups: list[TrackerGroup], sequences: list[str]) -> str:
    excluded = _excluded(groups)
    header = ["tracker", *(_e(s) + (EXCLUDED_MARK if s in excluded else "") for s in sequences)]
    rows = [
        [
            _e(g.name),
            *(_stat(g.stat(lambda run, s=s: run.sequence_auc(s))) for s in sequences),
        ]
        for g in groups
    ]
    table = _table("sequences", "AUC per sequence", header, rows)
    if excluded:
        table += (
            f"\n<p>{EXCLUDED_MARK} no ground truth after the first frame: "
            "shown, but left out of every mean.</p>"
        )
    return table


def attributes_section(page: Page) -> str:
    parts = ['<h2 id="attributes-section">Per attribute (OTB)</h2>']
    if page.attributes is None:
        return "\n".join([*parts, "<p>Left out (--no-attributes).</p>"])
    attributes = page.attributes
    without = [s for s in page.sequences if not attributes.get(s)]
    counts = attribute_counts(attributes)
    if without:
        parts.append(
            f'<p class="note">{len(without)} of {len(page.sequences)} sequences have no OTB '
            f"attributes in their meta.json and are left out of this section: "
            f"{_e(', '.join(without))}.</p>"
        )
    else:
        parts.append(f"<p>All {len(page.sequences)} sequences have OTB attributes.</p>")
    if not counts:
        return "\n".join([*parts, "<p>No sequence has an OTB attribute: nothing to show.</p>"])
    parts.append(
        "<p>Mean AUC over the sequences with the attribute (their number in brackets); "
        "over seeds, mean ± std.</p>"
    )
    if page.attribute_image is not None:
        parts.append(_figure(page.attribute_image))
    rows = [
        [
            _e(g.name),
            *(_stat(g.stat(lambda run, a=a: run.attribute_auc(a, attributes))) for a in counts),
        ]
        for g in page.groups
    ]
    header = ["tracker", *(f"{_abbr(a)} ({n})" for a, n in counts.items())]
    parts.append(_table("attributes", "AUC per OTB attribute", header, rows))
    legend = "; ".join(f"{a}: {OTB_ATTRIBUTE_NAMES[a].lower()}" for a in counts)
    parts.append(f"<p>Attributes (OTB-2015, as in each sequence's meta.json): {_e(legend)}.</p>")
    return "\n".join(parts)


def _abbr(attribute: str) -> str:
    """An attribute code whose long name shows on hover."""
    return f'<abbr title="{_e(OTB_ATTRIBUTE_NAMES[attribute])}">{_e(attribute)}</abbr>'


def _figure(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(image.alt)}">'
        f'<figcaption><a href="{_e(image.file)}">{_e(image.file)}</a></figcaption></figure>'
    )


def plots_section(page: Page) -> str:
    parts = ['<h2 id="plots">Success, precision and normalized precision</h2>']
    parts += [f'<p class="note">{_e(note)}</p>' for note in page.curve_notes]
    parts += [_figure(image) for image in page.curve_images]
    return "\n".join(parts)


DEFINITIONS = (
    "<p>OTB one-pass evaluation (<code>bench.ope</code>). AUC: the mean of the success curve, "
    "the fraction of frames with IoU &gt; t over t = 0, 0.05, …, 1 (a perfect tracker scores "
    "20/21 = 0.952). Precision: the fraction of frames with centre error ≤ 20 px. Normalized "
    "precision (LaSOT): the area under the curve of the centre error divided by the "
    "ground-truth size, over 0 to 0.5. Success rate: the fraction of frames with IoU &gt; 0.5. "
    "Each sequence weighs the same; FPS counts tracking calls only, median over sequences. "
    "Runs whose specs differ only by <code>seed=</code> are merged: mean ± sample std over "
    "seeds.</p>"
)


def render(page: Page) -> str:
    """The whole page."""
    inputs = "".join(f"<li><code>{_e(path)}</code></li>" for path in page.inputs)
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in page.notes)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(page.title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{_e(page.title)}</h1>",
            f"<p>{len(page.groups)} trackers on {len(page.sequences)} sequences, from:</p>",
            f"<ul>{inputs}</ul>",
            notes,
            DEFINITIONS,
            '<h2 id="summary">Per tracker</h2>',
            trackers_table(page.groups),
            environment_table(page.groups),
            plots_section(page),
            '<h2 id="per-sequence">Per sequence</h2>',
            sequences_table(page.groups, page.sequences),
            attributes_section(page),
            "</body>",
            "</html>",
            "",
        ]
    )
