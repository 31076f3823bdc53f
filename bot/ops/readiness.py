"""Readiness checks: can this process answer right now? Each check is an async callable that raises when not.

`check_all` runs them concurrently, each within a timeout, and reports "ok" or a short error (exception class and
message, redacted, never a secret) per check. With no model configured there is no model check: offline mode is ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.ops.logs import redact

Check = Callable[[], Awaitable[None]]
OPENAI_URL = "https://api.openai.com/v1"
MAX_ERROR = 200


class NotReady(Exception):
    """A check's own failure: reported as its message alone (already short and safe to show)."""


def describe(exc: BaseException, extra_secrets: tuple[str | None, ...] = ()) -> str:
    """`ClassName: message`, redacted and cut to a short line."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = " ".join(str(exc).split())
    if isinstance(exc, NotReady):
        text = message or "not ready"
    else:
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    text = redact(text, extra_secrets)
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


async def _run(check: Check, timeout: float) -> str:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await check()
    except TimeoutError as exc:  # ours, or the check's own (e.g. an HTTP client's shorter timeout)
        return f"timed out after {timeout:g}s" if deadline.expired() else describe(exc)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready, reported not raised
        return describe(exc)
    return "ok"


async def check_all(checks: Mapping[str, Check], timeout: float = 2.0) -> tuple[bool, dict[str, str]]:
    """Run every check concurrently; (all ok, {name: "ok" or a short error})."""
    names = list(checks)
    results = await asyncio.gather(*(_run(checks[name], timeout) for name in names))
    report = dict(zip(names, results, strict=True))
    return all(result == "ok" for result in results), report


# -- concrete checks ----------------------------------------------------------


def store_check(store: Any) -> Check:
    """The vector store answers `count()`."""

    async def check() -> None:
        await store.count()

    return check


def redis_check(client: Any) -> Check:
    """Redis answers PING (a `redis.asyncio` client)."""

    async def check() -> None:
        if not await client.ping():
            raise NotReady("PING was not answered")

    return check


async def _error_code(response: aiohttp.ClientResponse) -> str | None:
    """The `error.code` of an OpenAI-shaped error body, if it is one."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


async def _has_model(session: aiohttp.ClientSession, url: str, model: str, headers: dict[str, str]) -> bool:
    """False only when GET {url}/{model} is OpenAI's 404 `model_not_found` (a server without that
    route, such as llama.cpp's, is given the benefit of the doubt)."""
    async with session.get(f"{url}/{quote(model, safe='')}", headers=headers, allow_redirects=False) as response:
        return response.status != 404 or await _error_code(response) != "model_not_found"


def model_check(base_url: str | None, api_key: str | None, timeout: float = 2.0, model: str | None = None) -> Check:
    """GET {base_url}/models with the key: only a 2xx is ready (a 401 means the key is wrong); with
    `model`, also GET /models/{model}: not ready when the server says it has no such model."""
    url = (base_url or OPENAI_URL).rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def check() -> None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if not 200 <= response.status < 300:
                        raise NotReady(f"the model server answered HTTP {response.status}")
                if model is not None and not await _has_model(session, url, model, headers):
                    raise NotReady(f"the model server has no model {model!r} (HTTP 404 model_not_found)")
        except aiohttp.ClientError as exc:
            raise NotReady(describe(exc, (api_key,))) from None

    return check


def standard_checks(
    store: Any = None,
    redis: Any = None,
    model_base_url: str | None = None,
    model_api_key: str | None = None,
    model_name: str | None = None,
) -> dict[str, Check]:
    """The checks for what is configured: a model check (of `model_name` too, when given) only when
    a key or base URL is set."""
    checks: dict[str, Check] = {}
    if store is not None:
        checks["store"] = store_check(store)
    if redis is not None:
        checks["redis"] = redis_check(redis)
    if model_base_url or model_api_key:
        checks["model"] = model_check(model_base_url, model_api_key, model=model_name)
    return checks


__all__ = ["Check", "NotReady", "check_all", "describe", "model_check", "redis_check", "standard_checks", "store_check"]
