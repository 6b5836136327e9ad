"""Every console command in ``pyproject.toml`` names a ``main(argv=None)`` that takes its argv,
and the training scripts run as plain files, without ``sys.path`` edits, from any folder."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runtime.cli.program as program

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_tool_is_a_console_command():
    targets = set(SCRIPTS.values())
    for module in ("runtime.track", "export.build_engine", "calib.build", "bench.ope"):
        assert f"{module}:main" in targets
    for tool in ("meta_training", "prune_training"):
        assert f"train.rtmdnet.{tool}:main" in targets
    assert "train.mlt.training:main" in targets


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_console_command_target_takes_argv(command, capsys):
    module, _, name = SCRIPTS[command].partition(":")
    main = getattr(importlib.import_module(module), name)
    assert callable(main)
    first = next(iter(inspect.signature(main).parameters.values()))
    assert first.name == "argv" and first.default is None, f"{command}: main(argv=None, ...)"
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("script", ["train/meta.py", "train/prune.py", "train/mlt.py"])
@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_training_script_runs_as_a_file(script, where, tmp_path):
    # The checkout on PYTHONPATH stands for the installed project (pip install -e .): the
    # script itself adds nothing to sys.path, so it must not matter where it is started from.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        cwd=ROOT if where == "root" else tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"usage: python {script}" in done.stdout
    assert "sys.path" not in (ROOT / script).read_text()


def _usage(command: str, argv0: str, monkeypatch, capsys) -> str:
    module, _, name = SCRIPTS[command].partition(":")
    main = getattr(importlib.import_module(module), name)
    monkeypatch.setattr(sys, "argv", [argv0])
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_usage_names_the_command_as_it_was_started(command, monkeypatch, capsys):
    # One rule for every tool (issue 28.5): started as a console command, usage names that
    # command; started any other way, the python form the docs give (python -m MODULE, or
    # python DIR/SCRIPT.py for the thin scripts), never the file name argparse would guess.
    monkeypatch.setattr(program, "console_commands", lambda: frozenset(SCRIPTS))
    assert _usage(command, f"/venv/bin/{command}", monkeypatch, capsys).startswith(
        f"usage: {command} "
    )
    module = SCRIPTS[command].partition(":")[0]
    usage = _usage(command, "/somewhere/else.py", monkeypatch, capsys)
    documented = usage.removeprefix("usage: ").split(" [")[0].split(" --")[0]
    if documented.startswith("python -m "):
        target = documented.removeprefix("python -m ")
        assert importlib.util.find_spec(target) is not None, usage
        assert target == module, f"{command}: python -m {target} is not {module}"
    else:
        script = ROOT / documented.removeprefix("python ")
        assert script.is_file(), usage
        own_file = script == ROOT / f"{module.replace('.', '/')}.py"
        assert own_file or f"from {module} import main" in script.read_text(), usage


def test_console_commands_are_read_from_the_installed_project():
    found = program.console_commands()
    if not found:
        pytest.skip("the project is not installed here (PYTHONPATH use): no console commands")
    assert set(SCRIPTS) <= found
