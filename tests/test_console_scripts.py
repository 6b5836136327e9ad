"""Every console command in ``pyproject.toml`` names a ``main(argv=None)`` that takes its argv,
and the training scripts run as plain files, without ``sys.path`` edits, from any folder."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
