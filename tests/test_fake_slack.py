"""The fake Slack (tests/harness/slack_api.py, slack_payloads.py) against the real slack_sdk / slack_bolt clients."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.harness import slack_payloads as sp
from tests.harness.slack_api import FakeSlack

BOT_TOKEN = "xoxb-1-fake"
APP_TOKEN = "xapp-1-fake"


def web(slack: FakeSlack, token: str | None = BOT_TOKEN, **kw: object) -> AsyncWebClient:
    kw.setdefault("retry_handlers", [])
    return AsyncWebClient(token=token, base_url=slack.base_url, **kw)  # type: ignore[arg-type]


def ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ts.split("."))


async def error_of(call: object) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call  # type: ignore[misc]
    return info.value


# ----- Web API -------------------------------------------------------------------------------------


async def test_auth_test_names_the_bot_and_records_the_call(slack: FakeSlack) -> None:
    assert slack.base_url.endswith("/api/")
    response = await web(slack).auth_test()
    assert response["ok"] is True
    assert (response["user_id"], response["bot_id"], response["team_id"]) == ("UBOT", "BBOT", "T1")
    assert response["url"].startswith("https://")
    [call] = slack.calls_to("auth.test")
    assert call["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"
    assert isinstance(call["at"], float) and call["at"] <= time.monotonic()


async def test_post_update_ephemeral_and_delete(slack: FakeSlack) -> None:
    client = web(slack)
    first = await client.chat_postMessage(channel="C1", text="Thinking…")
    second = await client.chat_postMessage(channel="C1", text="again")
    assert ts_key(first["ts"]) < ts_key(second["ts"])
    assert first["channel"] == "C1"
    message = first["message"]
    assert (message["text"], message["user"], message["bot_id"], message["type"]) == (
        "Thinking…",
        "UBOT",
        "BBOT",
        "message",
    )
    # chat.postMessage goes out as JSON, and the fake read it.
    [call, _] = slack.calls_to("chat.postMessage")
    assert call["headers"]["content-type"].startswith("application/json")
    assert call["args"]["text"] == "Thinking…"

    updated = await client.chat_update(channel="C1", ts=first["ts"], text="Here is the answer")
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C1", first["ts"], "Here is the answer")
    assert updated["message"]["edited"]["user"] == "UBOT"

    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert ephemeral["ok"] is True and ephemeral["message_ts"] not in (first["ts"], second["ts"])

    deleted = await client.chat_delete(channel="C1", ts=second["ts"])
    assert (deleted["channel"], deleted["ts"]) == ("C1", second["ts"])
    assert (await error_of(client.chat_delete(channel="C1", ts=second["ts"]))).response["error"] == "message_not_found"
    assert (await error_of(client.chat_update(channel="C1", ts="1.000001", text="x"))).response["error"] == (
        "message_not_found"
    )


async def test_replies_return_the_thread_including_the_bots_answers(slack: FakeSlack) -> None:
    mention = sp.app_mention("what is an ISA?", user="U7")
    parent_ts = mention["event"]["ts"]
    slack.add_message("C1", mention["event"])
    client = web(slack)
    await client.chat_postMessage(channel="C1", text="Elsewhere")  # not in the thread
    reply = await client.chat_postMessage(channel="C1", text="An ISA is…", thread_ts=parent_ts)
    assert reply["message"]["thread_ts"] == parent_ts and reply["message"]["parent_user_id"] == "U7"
    await client.chat_postMessage(channel="C2", text="other channel", thread_ts=parent_ts)

    replies = await client.conversations_replies(channel="C1", ts=parent_ts)
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["<@UBOT> what is an ISA?", "An ISA is…"]
    head, answer = replies["messages"]
    assert (head["reply_count"], head["reply_users"], head["latest_reply"]) == (1, ["UBOT"], reply["ts"])
    assert answer["bot_id"] == "BBOT" and answer["parent_user_id"] == "U7"
    assert replies["has_more"] is False
    # conversations.replies is a GET with query arguments.
    [call] = slack.calls_to("conversations.replies")
    assert call["args"] == {"channel": "C1", "ts": parent_ts}

    missing = await error_of(client.conversations_replies(channel="C1", ts="1600000000.000001"))
    assert missing.response["error"] == "thread_not_found"


async def test_replies_paginate_with_cursors(slack: FakeSlack) -> None:
    client = web(slack)
    parent = await client.chat_postMessage(channel="C1", text="root")
    for n in range(3):
        await client.chat_postMessage(channel="C1", text=f"r{n}", thread_ts=parent["ts"])
    seen, cursor = [], None
    while True:
        page = await client.conversations_replies(channel="C1", ts=parent["ts"], limit=2, cursor=cursor)
        seen += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not page["has_more"]:
            assert cursor == ""
            break
    assert seen == ["root", "r0", "r1", "r2"]


async def test_users_info_reports_admins(slack: FakeSlack) -> None:
    slack.admins.add("U2")
    slack.owners.add("U3")
    client = web(slack)
    assert (await client.users_info(user="U2"))["user"]["is_admin"] is True
    plain = (await client.users_info(user="U1"))["user"]
    assert (plain["id"], plain["is_admin"], plain["is_owner"], plain["is_bot"]) == ("U1", False, False, False)
    owner = (await client.users_info(user="U3"))["user"]
    assert owner["is_admin"] is True and owner["is_owner"] is True
    assert (await client.users_info(user="UBOT"))["user"]["is_bot"] is True
    assert (await error_of(client.users_info(user="nobody"))).response["error"] == "user_not_found"


async def test_reactions_add_marks_a_known_message_once(slack: FakeSlack) -> None:
    client = web(slack)
    posted = await client.chat_postMessage(channel="C1", text="hi")
    assert (await client.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes"))["ok"] is True
    again = await error_of(client.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes"))
    assert again.response["error"] == "already_reacted"
    [message] = slack.thread("C1", posted["ts"])
    assert message["reactions"] == [{"name": "eyes", "users": ["UBOT"], "count": 1}]


async def test_form_encoded_bodies_are_read_too(slack: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    response = await web(slack).api_call(
        "chat.postMessage", data={"channel": "C9", "text": "hi", "blocks": json.dumps(blocks)}
    )
    assert response["message"]["blocks"] == blocks
    [call] = slack.calls_to("chat.postMessage")
    assert call["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    assert call["args"]["channel"] == "C9"


async def test_tokens_are_checked_like_slack(slack: FakeSlack) -> None:
    async def error(client: AsyncWebClient, method: str, **kw: object) -> str:
        return (await error_of(client.api_call(method, json=kw or None))).response["error"]

    assert await error(web(slack, token=None), "auth.test") == "not_authed"
    assert await error(web(slack, token="nonsense"), "auth.test") == "invalid_auth"
    assert await error(web(slack, token=APP_TOKEN), "chat.postMessage", channel="C1", text="x") == (
        "not_allowed_token_type"
    )
    assert await error(web(slack), "apps.connections.open") == "not_allowed_token_type"
    assert await error(web(slack), "chat.fly") == "unknown_method"
    opened = await web(slack).apps_connections_open(app_token=APP_TOKEN)
    assert opened["url"].startswith(slack.ws_url + "?ticket=")
    assert slack.calls_to("apps.connections.open")[-1]["headers"]["authorization"] == f"Bearer {APP_TOKEN}"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_message_limits_are_enforced(slack: FakeSlack) -> None:
    client = web(slack)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    cases = [
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": ""}, "no_text"),
        ({"text": "x", "blocks": [section] * 51}, "invalid_blocks"),
        ({"text": "x", "blocks": [long_section]}, "invalid_blocks"),
    ]
    for kwargs, code in cases:
        assert (await error_of(client.chat_postMessage(channel="C1", **kwargs))).response["error"] == code
    ok = await client.chat_postMessage(channel="C1", text="x" * 40_000, blocks=[section] * 50)
    assert ok["ok"] is True


# ----- faults --------------------------------------------------------------------------------------


async def test_rate_limit_is_retried_after_retry_after(slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", "rate_limited", retry_after=1)
    client = web(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    response = await client.chat_postMessage(channel="C1", text="hello")
    assert response["ok"] is True
    first, second = slack.calls_to("chat.postMessage")
    assert second["at"] - first["at"] >= 1.0  # slack_sdk sleeps Retry-After (+ up to 1 s of jitter)


async def test_rate_limit_without_a_retry_handler_surfaces_429(slack: FakeSlack) -> None:
    slack.fail_next("chat.update", "rate_limited", retry_after=0.05)
    error = await error_of(web(slack).chat_update(channel="C1", ts="1.000001", text="x"))
    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    assert error.response.headers["Retry-After"] == "1"  # whole seconds: slack_sdk int()s the header


async def test_error_fault_raises_slack_api_error_then_clears(slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", "error", times=2, error="channel_not_found")
    client = web(slack)
    for _ in range(2):
        assert (await error_of(client.chat_postMessage(channel="C1", text="x"))).response["error"] == (
            "channel_not_found"
        )
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"] is True
    slack.fail_next("users.info", "server_error")
    error = await error_of(client.users_info(user="U1"))
    assert error.response.status_code == 500
    with pytest.raises(ValueError):
        slack.fail_next("auth.test", "error")  # needs error=...


async def test_response_url_posts_are_recorded(slack: FakeSlack) -> None:
    url = slack.response_url()
    assert url.startswith(slack.root + "/response/") and url != slack.response_url()
    hook = AsyncWebhookClient(url)
    first = await hook.send(text="Working on it", response_type="ephemeral")
    assert (first.status_code, first.body) == (200, "ok")
    [call] = slack.calls_to("response_url")
    assert call["url"] == url
    assert call["args"] == {"text": "Working on it", "response_type": "ephemeral"}
    for _ in range(4):
        assert (await hook.send(text="more", replace_original=True)).status_code == 200
    assert (await hook.send(text="sixth")).status_code == 404  # 5 uses per response_url
    assert (await AsyncWebhookClient(slack.root + "/response/nope").send(text="x")).status_code == 404
    assert len(slack.calls_to("response_url")) == 7


# ----- Socket Mode ---------------------------------------------------------------------------------


def socket_client(slack: FakeSlack) -> SocketModeClient:
    return SocketModeClient(app_token=APP_TOKEN, web_client=web(slack))


async def test_socket_mode_envelopes_are_delivered_and_acked(slack: FakeSlack) -> None:
    client = socket_client(slack)
    received: list[SocketModeRequest] = []

    async def listener(client_: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        payload = {"text": "on it"} if request.type == "slash_commands" else None
        await client_.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=payload))

    frames: list[dict] = []

    async def on_frame(client_: SocketModeClient, message: dict, raw: str | None) -> None:
        frames.append(message)

    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    client.message_listeners.append(on_frame)  # type: ignore[arg-type]
    try:
        await client.connect()
        await slack.wait_for_socket()
        envelope = sp.socket_envelope(sp.app_mention("hello there"))
        ack = await slack.send_socket_envelope(envelope)
        assert ack == {"envelope_id": envelope["envelope_id"]}
        hello = frames[0]  # the client saw the hello before the envelope
        assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == slack.app_id
        assert slack.socket_sent[0] == hello
        [opened] = slack.calls_to("apps.connections.open")
        assert opened["headers"]["authorization"] == f"Bearer {APP_TOKEN}"

        assert received[0].type == "events_api" and received[0].retry_attempt == 0
        assert received[0].payload["event"]["text"] == "<@UBOT> hello there"

        command = sp.socket_envelope(sp.slash_command("budget tips", response_url=slack.response_url()))
        ack = await slack.send_socket_envelope(command)
        assert ack == {"envelope_id": command["envelope_id"], "payload": {"text": "on it"}}
        assert received[1].payload["command"] == "/advisor" and received[1].accepts_response_payload is True
        assert slack.socket_acks == [{"envelope_id": envelope["envelope_id"]}, ack]
    finally:
        await client.close()


async def test_socket_mode_missing_ack_returns_none(slack: FakeSlack) -> None:
    client = socket_client(slack)
    try:
        await client.connect()
        started = time.monotonic()
        assert await slack.send_socket_envelope(sp.socket_envelope(sp.dm_message("hi")), timeout=0.3) is None
        assert 0.3 <= time.monotonic() - started < 2
    finally:
        await client.close()


async def test_socket_mode_client_reconnects_on_disconnect(slack: FakeSlack) -> None:
    client = socket_client(slack)
    acked = asyncio.Event()

    async def listener(client_: SocketModeClient, request: SocketModeRequest) -> None:
        await client_.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        acked.set()

    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    try:
        await client.connect()
        await slack.send_socket_message({"type": "disconnect", "reason": "refresh_requested"})
        for _ in range(100):
            if slack.socket_connections == 2:
                break
            await asyncio.sleep(0.02)
        assert slack.socket_connections == 2
        assert len(slack.calls_to("apps.connections.open")) == 2
        assert await slack.send_socket_envelope(sp.socket_envelope(sp.dm_message("still there?"))) is not None
    finally:
        await client.close()


async def test_send_without_a_client_fails_loudly(slack: FakeSlack) -> None:
    with pytest.raises(RuntimeError, match="no Socket Mode client"):
        await slack.send_socket_envelope({"type": "events_api", "payload": {}}, timeout=0.1)


# ----- payloads and signing ------------------------------------------------------------------------


def test_sign_matches_slack_sdk_verifier() -> None:
    body = sp.slash_command("hello")
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, sp.sign(body, "s3cret"))
    assert not verifier.is_valid_request(body, sp.sign(body, "wrong"))
    assert not verifier.is_valid_request(body + b"x", sp.sign(body, "s3cret"))
    assert not verifier.is_valid_request(body, sp.sign(body, "s3cret", timestamp=int(time.time()) - 600))
    fixed = sp.sign(b"{}", "s3cret", timestamp=1531420618)
    assert fixed["X-Slack-Request-Timestamp"] == "1531420618"
    assert fixed["X-Slack-Signature"] == verifier.generate_signature(timestamp="1531420618", body="{}")


def test_event_payloads_have_slacks_shape() -> None:
    mention = sp.app_mention("help", thread_ts="1700000000.000100")
    event = mention["event"]
    assert mention["type"] == "event_callback" and mention["event_id"].startswith("Ev")
    assert mention["authorizations"] == [
        {"enterprise_id": None, "team_id": "T1", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
    ]
    assert mention["is_ext_shared_channel"] is False and mention["event_context"]
    assert (event["type"], event["text"], event["thread_ts"]) == ("app_mention", "<@UBOT> help", "1700000000.000100")
    assert event["event_ts"] == event["ts"] and "channel_type" not in event
    assert event["blocks"][0]["elements"][0]["elements"][0] == {"type": "user", "user_id": "UBOT"}

    assert sp.dm_message("hi")["event"]["channel_type"] == "im"
    assert sp.channel_message("reply", thread_ts="1.000001")["event"]["thread_ts"] == "1.000001"
    bot = sp.bot_message("beep")["event"]
    assert (bot["subtype"], bot["bot_id"]) == ("bot_message", "B2")
    changed = sp.message_changed("new", "old", message_ts="1.000001")["event"]
    assert (changed["subtype"], changed["hidden"], changed["message"]["text"]) == ("message_changed", True, "new")
    assert changed["previous_message"]["text"] == "old"
    deleted = sp.message_deleted("1.000001")["event"]
    assert (deleted["subtype"], deleted["deleted_ts"]) == ("message_deleted", "1.000001")
    broadcast = sp.thread_broadcast("fyi", thread_ts="1.000001")["event"]
    assert broadcast["subtype"] == "thread_broadcast" and broadcast["root"]["ts"] == "1.000001"
    assert sp.url_verification("abc") == {
        "token": sp.VERIFICATION_TOKEN,
        "challenge": "abc",
        "type": "url_verification",
    }
    stamps = [sp.new_ts() for _ in range(50)]
    assert len(set(stamps)) == 50 and stamps == sorted(stamps, key=ts_key)


def test_form_payloads_parse_like_bolt_parses_them() -> None:
    command = sp.slash_command("how much to save?", user="U5", response_url="https://example.test/r")
    fields = {k: v[0] for k, v in parse_qs(command.decode()).items()}
    assert fields["command"] == "/advisor" and fields["text"] == "how much to save?"
    assert parse_body(command.decode(), sp.FORM_CONTENT_TYPE)["user_id"] == "U5"

    click = sp.block_action(
        "feedback_up", "good", message_ts="1700000000.000200", response_url="https://example.test/a"
    )
    payload = parse_body(click.decode(), sp.FORM_CONTENT_TYPE)
    assert payload["type"] == "block_actions"
    [action] = payload["actions"]
    assert (action["action_id"], action["value"], action["type"]) == ("feedback_up", "good", "button")
    assert payload["container"]["message_ts"] == payload["message"]["ts"] == "1700000000.000200"
    assert payload["response_url"] == "https://example.test/a" and payload["user"]["id"] == "U1"
    assert sp.socket_envelope(click)["type"] == "interactive"
    assert sp.socket_envelope(command)["type"] == "slash_commands"


async def test_bolt_app_handles_signed_payloads_against_the_fake(slack: FakeSlack) -> None:
    """End to end: Bolt verifies sign(), parses the builders' bodies and answers through the fake."""
    # process_before_response: listeners finish before async_dispatch returns.
    app = AsyncApp(client=web(slack), signing_secret="s3cret", process_before_response=True)

    @app.event("app_mention")
    async def on_mention(event: dict, say) -> None:  # type: ignore[no-untyped-def]
        await say(text="answer", thread_ts=event["ts"])

    @app.command("/advisor")
    async def on_command(ack, respond) -> None:  # type: ignore[no-untyped-def]
        await ack()
        await respond(text="private answer")

    mention = sp.app_mention("a question")
    slack.add_message("C1", mention["event"])
    body = json.dumps(mention)
    response = await app.async_dispatch(
        AsyncBoltRequest(body=body, headers={"content-type": "application/json", **sp.sign(body, "s3cret")})
    )
    assert response.status == 200
    assert slack.calls_to("auth.test"), "Bolt authorises the bot token with auth.test"
    assert [m["text"] for m in slack.thread("C1", mention["event"]["ts"])] == ["<@UBOT> a question", "answer"]

    command = sp.slash_command("q", response_url=slack.response_url()).decode()
    headers = {"content-type": sp.FORM_CONTENT_TYPE, **sp.sign(command, "s3cret")}
    assert (await app.async_dispatch(AsyncBoltRequest(body=command, headers=headers))).status == 200
    [posted] = slack.calls_to("response_url")
    assert posted["args"]["text"] == "private answer"

    bad = {"content-type": sp.FORM_CONTENT_TYPE, **sp.sign(command, "wrong")}
    assert (await app.async_dispatch(AsyncBoltRequest(body=command, headers=bad))).status == 401
