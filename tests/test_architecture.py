"""The core never depends on a platform or on the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("discord", "slack_bolt", "slack_sdk", "adapters")
COMPOSITION_ROOTS = {"cli.py", "wiring.py"}  # they assemble the parts, so they may name them


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_platform_or_adapter() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "bot").rglob("*.py")
        if path.name not in COMPOSITION_ROOTS
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN or name.split(".")[0] == "retrieval"
    }
    assert not offenders


def test_config_imports_no_project_package() -> None:
    for path in (ROOT / "config").rglob("*.py"):
        assert not {n.split(".")[0] for n in imported_modules(path)} & {"bot", "adapters", "retrieval"}, path


def test_retrieval_never_imports_adapters() -> None:
    for path in (ROOT / "retrieval").rglob("*.py"):
        assert not {n.split(".")[0] for n in imported_modules(path)} & {"adapters", "discord", "slack_bolt"}, path
