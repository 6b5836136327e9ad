"""Import layers: ``runtime/`` imports none of the folders built on it, ``calib/`` not ``export/``.

Parsed, not imported: every import statement counts, function-level ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runtime.paths import PROJECT_ROOT


def imported_packages(path: Path) -> set[str]:
    """Top-level package of everything ``path`` imports (absolute imports; relative ones are
    the file's own package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PROJECT_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("runtime", {"train", "export", "calib", "bench"}),
        ("calib", {"export", "train", "bench"}),
    ],
)
def test_lower_folders_do_not_import_higher_ones(folder, forbidden):
    files = modules(folder)
    assert files, f"no modules under {folder}/"
    bad = {
        str(path.relative_to(PROJECT_ROOT)): sorted(imported_packages(path) & forbidden)
        for path in files
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_parser_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from export.onnx_export import x\n    import bench.y\n")
    assert imported_packages(source) == {"export", "bench"}
