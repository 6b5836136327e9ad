"""bench.report: the HTML page of bench.ope runs, from a real run of bench.ope's functions on tiny
synthetic sequences (test doubles as trackers, one of them run over three seeds)."""

from __future__ import annotations

import base64
import html
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.ope import run_ope
from bench.report import main, write_report
from bench.report_inputs import load_runs, otb_attributes
from runtime.evaluation.metrics import overlaps
from runtime.paths import PROJECT_ROOT
from runtime.sequences import load_sequence
from tests.synthetic import OracleTracker, StaticTracker, write_sequence

# Brackets, semicolons, slashes as real specs have, and what must never reach the page raw.
ODD = 'oracle[dir=a/b;note=</td><b>"x"&y]'
SEEDS = ("static[seed=0]", "static[seed=1]", "static[seed=2]")
ATTRIBUTES = {"A": "SV DEF", "B": 'MB FM (as OTB "Jumping")', "C": None}
PNG = b"\x89PNG\r\n\x1a\n"


class ShiftedTracker(StaticTracker):
    """Stays near the initial box, off by ``seed`` px: the seeds score differently."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        return self._box + np.array([self.seed, 0.0, 0.0, 0.0]), 0.5


def _data(root: Path, attributes: dict[str, str | None]) -> Path:
    for name, field in attributes.items():
        folder = write_sequence(root, name)
        if field is not None:
            (folder / "meta.json").write_text(json.dumps({"name": name, "otb_attributes": field}))
    return root


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return _data(tmp_path / "sequences", ATTRIBUTES)


@pytest.fixture()
def result(tmp_path: Path, data: Path) -> Path:
    """A bench.ope JSON (and its saved runs) of an oracle, ODD (also an oracle) and 3 seeds."""
    sequences = [load_sequence(data / name) for name in ATTRIBUTES]
    truth = sequences[0].ground_truth  # every synthetic sequence has the same motion

    def build(spec: str) -> StaticTracker | OracleTracker:
        if spec.startswith("static"):
            return ShiftedTracker(SEEDS.index(spec))
        return OracleTracker(truth)

    path = tmp_path / "runs" / "ope.json"
    run_ope(["oracle", ODD, *SEEDS], sequences, factory=build, json_path=path, progress=False)
    return path


class _Page(HTMLParser):
    """Checks that every element is closed in order and collects the tables' cell texts."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: set[str] = set()
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"] or "")
        if tag not in self.VOID:
            self.open.append(tag)
        if tag == "table":
            self._table = attributes["id"]
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag in ("td", "th"):
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> dict[str, list[str]]:
        """First cell -> the others, header row included (its first cell is "tracker")."""
        return {row[0]: row[1:] for row in self.tables[table]}


def _report(result: Path, data: Path, out: Path) -> tuple[str, _Page]:
    page = write_report([result], out, data=data).read_text()
    return page, _Page(page)


def test_the_page_has_every_tracker_every_table_and_the_attributes(result, data, tmp_path):
    page, parsed = _report(result, data, tmp_path / "report")
    assert set(parsed.tables) == {"trackers", "environment", "sequences", "attributes"}
    for table in parsed.tables:
        assert set(parsed.rows(table)) == {"tracker", "oracle", ODD, "static"}
    trackers = parsed.rows("trackers")
    assert trackers["tracker"][:6] == [
        "runs",
        "AUC",
        "precision (20 px)",
        "normalized precision",
        "success rate (IoU > 0.5)",
        "median FPS",
    ]
    assert trackers["oracle"][:5] == ["1", f"{20 / 21:.3f}", "1.000", "1.000", "1.000"]
    assert parsed.rows("sequences")["tracker"] == ["A", "B", "C"]
    # Only the attributes some sequence has, with their counts; C has none, B's note is no word.
    assert parsed.rows("attributes")["tracker"] == ["SV (1)", "DEF (1)", "MB (1)", "FM (1)"]
    assert "1 of 3 sequences have no OTB attributes in their meta.json" in page
    assert "C." in "".join(parsed.text)
    for name in ("success.png", "precision.png", "norm_precision.png", "attributes.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG
    assert len(parsed.images) == 4
    for src in parsed.images:
        head, _, data64 = src.partition(",")
        assert head == "data:image/png;base64" and base64.b64decode(data64)[:8] == PNG


def test_seeds_are_merged_as_mean_and_std(result, data, tmp_path):
    _, parsed = _report(result, data, tmp_path / "report")
    static = parsed.rows("trackers")["static"]
    assert static[0] == "3 (seeds 0, 1, 2)"
    aucs = [json.loads(result.read_text())[spec]["mean_auc"] for spec in SEEDS]
    assert static[1] == f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}"
    assert np.std(aucs) > 0  # the seeds really differ
    assert all("±" in cell for cell in parsed.rows("sequences")["static"])
    assert all("±" in cell for cell in parsed.rows("attributes")["static"])
    assert "±" not in "".join(parsed.rows("trackers")["oracle"])


def test_curves_come_from_the_saved_runs(result, data):
    runs = {run.spec: run for run in load_runs([result], data)}
    for run in runs.values():
        assert run.curves is not None and run.no_curves == ""
        for name, scores in run.per_sequence.items():
            assert run.curves[name].auc == scores["auc"]
    truth = load_sequence(data / "A").ground_truth
    shifted = np.tile(truth[0], (len(truth), 1)) + np.array([2.0, 0, 0, 0])
    shifted[0] = truth[0]
    expected = np.mean(overlaps(shifted, truth) > 0.5)
    assert runs["static[seed=2]"].success_rate == pytest.approx(expected)


def test_tracker_names_are_escaped(result, data, tmp_path):
    page, parsed = _report(result, data, tmp_path / "report")
    assert ODD not in page and "<b>" not in page
    assert html.escape(ODD, quote=True) in page
    assert "b" not in parsed.tags  # the name's <b> never became an element


def test_the_page_is_well_formed_html(result, data, tmp_path):
    page, parsed = _report(result, data, tmp_path / "report")
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.tags >= {"html", "head", "meta", "title", "body", "table", "img"}


def _chromium() -> str | None:
    names = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.mark.skipif(
    _chromium() is None,
    reason="no headless Chromium on this machine (apt-get install chromium-headless-shell); "
    "the page's HTML is still checked by test_the_page_is_well_formed_html",
)
def test_the_page_renders_in_headless_chromium(result, data, tmp_path):
    page = write_report([result], tmp_path / "report", data=data)
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for table in ("trackers", "sequences", "attributes"):
        assert f'<table id="{table}">' in dom
    assert dom.count('src="data:image/png;base64,') == 4
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser, "--window-size=1280,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2400, 1280)
    assert image.std() > 10  # text, tables and plots, not a blank page


def test_without_saved_runs_the_page_says_so_and_keeps_the_tables(result, data, tmp_path, capsys):
    out = tmp_path / "report"
    _report(result, data, out)  # an earlier report with plots, in the same folder
    shutil.rmtree(result.with_name("ope.runs"))
    assert main([str(result), "--out", str(out), "--data", str(data)]) == 0
    page = (out / "index.html").read_text()
    parsed = _Page(page)
    assert page.count("No plots:") == 1
    assert not (out / "success.png").exists()  # the earlier report's plot is not left behind
    assert set(parsed.tables) == {"trackers", "environment", "sequences", "attributes"}
    assert parsed.rows("trackers")["oracle"][4] == "–"
    assert len(parsed.images) == 1  # the attribute bars need no curves
    assert capsys.readouterr().out.strip() == str(out / "index.html")


def _bad(case: str, tmp_path: Path, data: Path, result: Path) -> list[str]:
    if case == "missing file":
        return [str(tmp_path / "absent.json")]
    if case == "no files":
        return []
    path = tmp_path / f"{case}.json"
    contents = {
        "not json": "{",
        "a list": "[1, 2]",
        "bench.seeds output": json.dumps({"m": {"seeds": [0], "auc_mean": 0.5}}),
        "no trackers": "{}",
    }
    if case == "no attributes":
        bare = _data(tmp_path / "bare", {"A": None, "B": None, "C": None})
        return [str(result), "--data", str(bare)]
    path.write_text(contents[case])
    return [str(path)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", "no such file"),
        ("no files", "no results given"),
        ("not json", "not a JSON file"),
        ("a list", "not a bench.ope --json result"),
        ("bench.seeds output", "not a bench.ope --json result"),
        ("no trackers", "holds no trackers"),
        ("no attributes", "no sequence of the results has otb_attributes"),
    ],
)
def test_bad_input_is_one_line(case, message, tmp_path, data, result, capsys):
    args = _bad(case, tmp_path, data, result)
    if "--data" not in args:
        args += ["--data", str(data)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench.report: error: "), err
    assert message in err[0]
    assert not (tmp_path / "out" / "index.html").exists()


def test_no_attributes_flag_leaves_the_section_out(result, tmp_path):
    bare = _data(tmp_path / "bare", {"A": None, "B": None, "C": None})
    out = tmp_path / "out"
    assert main([str(result), "--data", str(bare), "--out", str(out), "--no-attributes"]) == 0
    parsed = _Page((out / "index.html").read_text())
    assert "attributes" not in parsed.tables
    # The ground truth is the same as the run's, so the curves still come from the saved runs.
    assert (out / "success.png").is_file() and not (out / "attributes.png").exists()


def test_the_attribute_field_is_read_word_by_word(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"otb_attributes": 'MB fm (as OTB "Jumping")'}))
    assert otb_attributes(tmp_path) == ("MB", "FM")
    (tmp_path / "meta.json").write_text(json.dumps({"otb_attributes": ["BC", "SV", "XX"]}))
    assert otb_attributes(tmp_path) == ("SV", "BC")  # in OTB's order, unknown words dropped
    (tmp_path / "meta.json").write_text("{")
    assert otb_attributes(tmp_path) == ()
    assert otb_attributes(tmp_path / "absent") == ()


def test_ope_writes_the_report_after_its_run(data, tmp_path):
    out, report = tmp_path / "ope.json", tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench.ope", "--data", str(data), "--trackers", "cv2-kcf",
            "--json", str(out), "--report", str(report), "--quiet", "--threads", "1",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    parsed = _Page((report / "index.html").read_text())
    assert set(parsed.rows("trackers")) == {"tracker", "cv2-kcf"}
    assert (report / "success.png").read_bytes()[:8] == PNG


def test_the_page_says_where_each_tracker_ran(result, data, tmp_path):
    # Machine, threads, backend and date beside the figures (issue 28.5).
    _, parsed = _report(result, data, tmp_path / "report")
    rows = parsed.rows("environment")
    assert rows["tracker"] == ["CPU", "threads", "backend", "date"]
    recorded = json.loads(result.read_text())["oracle"]["environment"]
    assert rows["oracle"] == [
        recorded["cpu"],
        str(recorded["threads"]),
        recorded["backend"],
        recorded["date"],
    ]
    assert rows["static"] == rows["oracle"], "seeds run alike: one value, not three"


def test_a_result_from_before_the_environment_was_recorded_says_so(result, data, tmp_path):
    old = json.loads(result.read_text())
    for entry in old.values():
        del entry["environment"]
    result.write_text(json.dumps(old))
    page, parsed = _report(result, data, tmp_path / "report")
    assert parsed.rows("environment")["oracle"] == ["–"] * 4
    assert "not recorded" in page


def test_attribute_codes_are_spelt_out(result, data, tmp_path):
    page, parsed = _report(result, data, tmp_path / "report")
    text = " ".join("".join(parsed.text).split())
    for code, name in [("SV", "scale variation"), ("DEF", "deformation"),
                       ("MB", "motion blur"), ("FM", "fast motion")]:  # fmt: skip
        assert f"{code}: {name}" in text
        assert f'<abbr title="{name[0].upper() + name[1:]}">{code}</abbr>' in page
    assert "illumination variation" not in text, "only the attributes the sequences have"


def test_wins_against_a_peer_reach_the_page(data, tmp_path):
    sequences = [load_sequence(data / name) for name in ATTRIBUTES]
    truth = sequences[0].ground_truth
    path = tmp_path / "runs" / "ope.json"
    run_ope(["oracle", "static"], sequences, factory=lambda spec: OracleTracker(truth)
            if spec == "oracle" else StaticTracker(), json_path=path, progress=False,
            peer="static")  # fmt: skip
    _, parsed = _report(path, data, tmp_path / "report")
    trackers = parsed.rows("trackers")
    assert trackers["tracker"][-1] == "W/L/T vs static"
    assert trackers["oracle"][-1] == "3/0/0" and trackers["static"][-1] == "–"
