"""The chosen chat model (`advisor finetune use/rollback`, the console's switch): in model.json, or a
Redis hash shared by every process when REDIS_URL is set; read by the engine at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.finetune.active import FileModelChoice, RedisModelChoice
from bot.finetune.errors import InputError
from config.settings import load_settings

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures
MODEL = "ft:gpt-4o-mini-2024-07-18:org:advisor:abc123"


async def test_two_processes_share_the_choice_in_redis(redis_clients: Any) -> None:
    one, other = RedisModelChoice(redis_clients()), RedisModelChoice(redis_clients())
    assert await one.current() is None
    await one.use(MODEL, "gpt-4o-mini")
    assert await other.current() == MODEL and (await other.load())["previous"] == "gpt-4o-mini"
    with pytest.raises(InputError, match="already the model in use"):
        await other.use(MODEL, "gpt-4o-mini")
    await other.rollback()
    assert await one.current() == "gpt-4o-mini" and (await one.load())["previous"] == MODEL
    assert (await other.clear())["current"] == "gpt-4o-mini"
    assert await one.current() is None and await one.load() == {}
    with pytest.raises(InputError, match="already in use"):
        await one.clear()


async def test_the_cli_and_the_engine_use_redis_when_it_is_set(
    redis_server: Any, redis_clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import build_parser
    from bot.finetune.cli import run_finetune
    from bot.wiring import build_engine, build_retrieval, build_shared

    redis_server.flush()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = load_settings(None)
    assert await run_finetune(build_parser().parse_args(["finetune", "use", MODEL]), settings) == 0
    assert not (settings.data_dir / "model.json").exists()
    assert await RedisModelChoice(redis_clients()).current() == MODEL
    shared = await build_shared(settings)
    stack = await build_retrieval(settings)
    try:
        engine = await build_engine(settings, stack, shared=shared)
        assert engine.model.name == MODEL
    finally:
        await stack.close()
        await shared.close()


async def test_a_damaged_choice_leaves_the_configured_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.wiring import build_engine, build_retrieval

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = load_settings(None)
    path = settings.data_dir / "model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = await build_retrieval(settings)
    try:
        for damaged in ("{not json", '{"current": "evil model; rm"}'):
            path.write_text(damaged)
            with pytest.raises(InputError):
                await FileModelChoice(path).current()
            engine = await build_engine(settings, stack)
            assert engine.model.name == settings.openai.chat_model
    finally:
        await stack.close()
