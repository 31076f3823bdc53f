"""Admin alert routing and wording (the adapters' end-to-end posting is in test_slack/test_discord)."""

from __future__ import annotations

import pytest

from bot.ops.alerts import alert_channel, alert_text
from bot.models import Final, IncomingMessage, Notice


@pytest.mark.parametrize(
    ("setting", "platform", "expected"),
    [
        (None, "slack", None),
        ("C0123", "slack", "C0123"),
        ("C0123", "discord", "C0123"),
        ("slack:CALERTS, discord:42", "discord", "42"),
        ("slack:CALERTS", "discord", None),
        ("discord:42,C9", "slack", "C9"),
    ],
)
def test_the_alert_channel_per_platform(setting: str | None, platform: str, expected: str | None) -> None:
    assert alert_channel(setting, platform) == expected


def test_only_alert_notices_make_an_alert_and_it_never_quotes_the_message() -> None:
    message = IncomingMessage("slack", "T1", "C1", "1.2", "U7", "a secret personal story", 0.0)
    plain = Final("answer", (), "model", notices=(Notice("trimmed", "older turns left out"),))
    assert alert_text(plain, message, "#general") is None
    flagged = Final("answer", (), "model", notices=(Notice("alert", "moderation flagged the message: harassment"),), turn_id=9)
    text = alert_text(flagged, message, "#general")
    assert text is not None and "harassment" in text and "U7" in text and "turn 9" in text
    assert "secret" not in text
