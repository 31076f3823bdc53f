"""The layering (docs/architecture.md): the core never depends on a platform or on the adapters,
the platform adapters never on each other, and state implementations are chosen in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = {"discord", "slack_bolt", "slack_sdk"}
COMPOSITION_ROOTS = {"bot/cli.py", "bot/wiring.py"}  # they assemble the parts, so they may name them
STATE_INTERFACES = {"bot.state", "bot.state.memory", "bot.state.limits", "bot.state.dedupe", "bot.state.journal", "bot.state.locks",
                    "bot.state.channel_settings"}


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, absolute (a relative import is resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from bot.state import memory_redis`
    return names


def rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def offenders(folder: str, forbidden: set[str], exempt: frozenset[str] | set[str] = frozenset(), root: Path = ROOT) -> set[str]:
    """`file: module` for each import under `folder` of a module in (or below) `forbidden`."""
    found = set()
    for path in sorted((root / folder).rglob("*.py")):
        if rel(path, root) in exempt:
            continue
        for name in imported_modules(path, root):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                found.add(f"{rel(path, root)}: {name}")
    return found


def test_the_layout_is_by_concern() -> None:
    for package in ("bot/engine", "bot/state", "bot/ops", "bot/llm", "bot/safety", "bot/finetune",
                    "adapters/slack", "adapters/discord", "adapters/simulate", "adapters/admin_console"):
        assert (ROOT / package / "__init__.py").is_file(), package
    assert not list((ROOT / "bot").glob("redis_*.py")), "Redis state lives in bot/state/"


def test_core_imports_no_platform_adapter_or_retrieval() -> None:
    assert not offenders("bot", PLATFORMS | {"adapters", "retrieval"}, exempt=COMPOSITION_ROOTS)


def test_the_engine_knows_no_storage_engine() -> None:
    assert not offenders("bot/engine", {"redis", "sqlite3", "qdrant_client", "qdrant_edge", "openai"})


def test_config_imports_no_project_package() -> None:
    assert not offenders("config", {"bot", "adapters", "retrieval"})


def test_retrieval_never_imports_adapters_or_platforms() -> None:
    assert not offenders("retrieval", PLATFORMS | {"adapters"})


@pytest.mark.parametrize(("adapter", "other"), [("slack", "discord"), ("discord", "slack")])
def test_platform_adapters_never_import_each_other(adapter: str, other: str) -> None:
    assert not offenders(f"adapters/{adapter}", {f"adapters.{other}", *({"discord"} if other == "discord" else {"slack_bolt", "slack_sdk"})})


def test_shared_adapter_modules_import_no_platform_adapter() -> None:
    shared = {rel(p) for p in (ROOT / "adapters").glob("*.py")} - {"adapters/serve.py"}  # serve starts the processes
    found = offenders("adapters", {"adapters.slack", "adapters.discord"})
    assert not {line for line in found if line.split(":")[0] in shared}


def test_state_implementations_are_used_only_through_their_interface() -> None:
    implementations = {
        f"bot.state.{p.stem}" for p in (ROOT / "bot" / "state").glob("*.py") if p.stem != "__init__"
    } - STATE_INTERFACES
    assert {"bot.state.memory_sqlite", "bot.state.memory_redis", "bot.state.limits_local",
            "bot.state.limits_redis", "bot.state.dedupe_redis", "bot.state.journal_redis"} <= implementations
    for folder in ("bot", "adapters", "retrieval"):
        found = offenders(folder, implementations, exempt=COMPOSITION_ROOTS)
        assert not {line for line in found if not line.startswith("bot/state/")}, found


def test_the_checker_sees_what_it_forbids(tmp_path: Path) -> None:
    """The rules above would catch a violation: an import of each kind is seen, relative ones too."""
    probe = tmp_path / "bot" / "engine" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import redis\nfrom bot.state import memory_redis\nfrom ..state.limits_redis import X\n"
                     "from adapters.slack.app import SlackAdapter\n")
    assert offenders("bot/engine", {"redis"}, root=tmp_path) == {"bot/engine/probe.py: redis"}
    state = offenders("bot", {"bot.state.memory_redis", "bot.state.limits_redis"}, root=tmp_path)
    assert state == {"bot/engine/probe.py: bot.state.memory_redis", "bot/engine/probe.py: bot.state.limits_redis",
                     "bot/engine/probe.py: bot.state.limits_redis.X"}
    assert "bot/engine/probe.py: adapters.slack.app" in offenders("bot", {"adapters"}, root=tmp_path)
