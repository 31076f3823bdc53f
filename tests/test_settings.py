"""Settings: prefixes, well-known names, .env, clear errors, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from config.settings import SettingsError, all_variables, load_settings


def test_defaults_need_nothing(tmp_path: Path) -> None:
    settings = load_settings(None)
    assert settings.data_dir == tmp_path / "data"
    assert settings.qdrant.url is None and settings.qdrant.embedded_engine == "edge"
    assert settings.embeddings.provider == "onnx"
    assert not settings.openai.configured


def test_well_known_names_unprefixed_and_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.setenv("ADVISOR_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("ADVISOR_ADMINS_SLACK_USER_IDS", "U1, U2,")
    settings = load_settings(None)
    assert settings.openai.api_key is not None and settings.openai.api_key.get_secret_value() == "sk-test-123"
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.admins.slack_user_ids == ["U1", "U2"]


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text("ADVISOR_RETRIEVAL_TOP_K=9\nSLACK_BOT_TOKEN=xoxb-1\n")
    settings = load_settings(env)
    assert settings.retrieval.top_k == 9
    assert settings.slack.bot_token is not None


def test_every_invalid_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_LOG_LEVEL", "loud")
    monkeypatch.setenv("ADVISOR_RETRIEVAL_TOP_K", "many")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-wrong-kind")
    monkeypatch.setenv("QDRANT_URL", "localhost:6333")
    with pytest.raises(SettingsError) as caught:
        load_settings(None)
    text = str(caught.value)
    assert "ADVISOR_LOG_LEVEL: expected 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in text
    assert "ADVISOR_RETRIEVAL_TOP_K: Input should be a valid integer" in text
    assert "SLACK_APP_TOKEN or ADVISOR_SLACK_APP_TOKEN: expected an app-level token starting with xapp-" in text
    assert "QDRANT_URL or ADVISOR_QDRANT_URL: expected an http:// or https:// URL" in text
    assert "xoxb-wrong-kind" not in text


def test_cross_field_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_EMBEDDINGS_PROVIDER", "openai")
    monkeypatch.setenv("ADVISOR_RETRIEVAL_CHUNK_OVERLAP", "500")
    problems = {p.variable: p.message for p in load_settings(None).problems()}
    assert "OPENAI_API_KEY" in problems
    assert "smaller than ADVISOR_RETRIEVAL_CHUNK_TOKENS" in problems["ADVISOR_RETRIEVAL_CHUNK_OVERLAP"]


def test_config_check_masks_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh-signing")
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-secret@cache.internal:6379/0")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "OPENAI_API_KEY = ******** (set)" in out
    assert "REDIS_URL = redis://:********@cache.internal:6379/0" in out
    assert "QDRANT_API_KEY = (not set)" in out
    assert "slack: not configured (needs SLACK_BOT_TOKEN" in out
    assert "discord: ready" in out
    for secret in ("sk-very-secret", "shh-signing", "discord-secret", "redis-secret"):
        assert secret not in out


def test_config_check_reports_bad_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADVISOR_EMBEDDINGS_BATCH_SIZE", "0")
    assert main(["config", "check"]) == 2
    assert "ADVISOR_EMBEDDINGS_BATCH_SIZE: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_env_example_lists_every_variable() -> None:
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    listed = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    assert set(all_variables()) <= listed, set(all_variables()) - listed
