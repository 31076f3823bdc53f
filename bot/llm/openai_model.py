"""The chat model over the official `openai` async client; any OpenAI-compatible base URL works.

Retries are ours, not the client's (it is built with `max_retries=0`): 429
`rate_limit_exceeded`, 5xx, timeouts, dropped connections and an error event at the start
of a stream are retried with backoff that honours Retry-After (exponential with jitter
when there is none), at most `max_attempts` times within a bounded total, and only before
the first token (a retry after that would repeat text the user already saw).
`insufficient_quota`, a refused key and an unknown model fail at once, logged as errors
that say what to fix (never with the key); `context_length_exceeded` is reported so the
engine can trim and try again. An error event after the answer began ends it as
`Finish("error")`: what arrived stands, cut short; a dropped connection is `interrupted`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import openai

from bot.llm.layout import Layout, laid_out
from bot.models import Finish, Usage
from bot.ports import ModelError

log = logging.getLogger(__name__)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def classify(exc: Exception) -> ModelError:
    """Map a client exception to the engine's error kinds (messages never carry secrets)."""
    if isinstance(exc, ModelError):
        return exc
    error = _classify(exc)
    error.status = getattr(exc, "status_code", None)
    return error


# OpenAI's error codes (or types) that say what went wrong whatever the status: (kind, message).
_BY_CODE: dict[str, tuple[str, str]] = {
    "insufficient_quota": ("quota", "the model provider's quota is used up (insufficient_quota)"),
    "invalid_api_key": ("auth", "the model provider refused the API key (invalid_api_key)"),
    "model_not_found": ("model_not_found", "the model server has no such model, or the key may not use it"),
    "context_length_exceeded": ("context_length", "the conversation is too long for the model"),
    "exceed_context_size_error": ("context_length", "the conversation is too long for the model"),  # llama.cpp's type
    "rate_limit_exceeded": ("rate_limited", "the model provider is rate limiting us"),
}
# What an admin must do about an error no retry can fix.
_FATAL = {
    "quota": "check the account's plan and billing",
    "auth": "set a valid OPENAI_API_KEY",
    "model_not_found": "check the model name and OPENAI_BASE_URL",
}


def _by_code(exc: Exception) -> ModelError | None:
    # llama.cpp puts the HTTP status in `code` and the name in `type`: {"code": 400, "type": "exceed_context_size_error"}
    code = next((c for c in (getattr(exc, "code", None), getattr(exc, "type", None)) if c in _BY_CODE), None)
    if code is None:
        return None
    kind, message = _BY_CODE[code]
    return ModelError(kind, message, _retry_after(exc) if kind == "rate_limited" else None)


def _is_stream_error_event(exc: Exception) -> bool:
    """The client raises a bare `APIError` for a `data: {"error": ...}` event inside a stream."""
    return type(exc) is openai.APIError


def _classify(exc: Exception) -> ModelError:
    known = _by_code(exc)
    if known is not None:
        return known
    if isinstance(exc, openai.RateLimitError):
        return ModelError("rate_limited", "the model provider is rate limiting us", _retry_after(exc))
    if isinstance(exc, openai.BadRequestError):
        return ModelError("bad_request", f"the model rejected the request ({exc.code or 'bad request'})")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelError("auth", "the model provider rejected our credentials")
    if isinstance(exc, openai.NotFoundError):  # Ollama's unknown model, or a base URL without the API
        return ModelError("model_not_found", "the model server answered 404: no such model, or the wrong base URL")
    if _is_stream_error_event(exc):
        return ModelError("unavailable", f"the model sent an error event in its stream ({exc.type or 'error'})")
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError):
        return ModelError("unavailable", "the model did not answer in time")
    if isinstance(exc, openai.InternalServerError | openai.APIConnectionError):
        return ModelError("unavailable", "the model provider is unavailable", _retry_after(exc))
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return ModelError("unavailable", "the model provider is unavailable", _retry_after(exc))
    return ModelError("unavailable", f"the model call failed ({type(exc).__name__})")


RETRYABLE = {"rate_limited", "unavailable"}


class OpenAIChatModel:
    """`ChatModel` port: streamed and one-shot chat completions with bounded retries."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        timeout: float = 30.0,
        retry_budget: float = 20.0,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        layout: Layout = "multi_system",
    ) -> None:
        self._client = client
        self.layout = layout
        self.name = model
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.max_attempts = max_attempts
        self.base_delay = base_delay

    async def _wait_before_retry(self, error: ModelError, attempt: int, deadline: float) -> bool:
        """Sleep before the next attempt; False when the error or the budget says stop."""
        if error.kind not in RETRYABLE or attempt >= self.max_attempts:
            return False
        delay = error.retry_after
        if delay is None:
            delay = self.base_delay * 2 ** (attempt - 1) * (0.5 + random.random())
        if time.monotonic() + delay > deadline:
            return False
        log.warning("model call failed (%s), retrying in %.1f s (attempt %d)", error.kind, delay, attempt + 1)
        await asyncio.sleep(delay)
        return True

    def _log_fatal(self, error: ModelError) -> None:
        fix = _FATAL.get(error.kind)
        if fix is not None:
            log.error("model %r unusable (HTTP %s): %s; an admin must %s", self.name, error.status or "-", error, fix)

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> AsyncIterator[str | Usage | Finish]:
        """Yield text pieces as they arrive, then the Usage (when the server reports it), then a
        `Finish` when the answer did not end with "stop": its finish_reason, "incomplete" (the
        stream ended without one) or "error" (an error event after the answer began)."""
        messages = laid_out(messages, self.layout)
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            emitted = False
            try:
                kwargs: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
                response = await self._client.chat.completions.create(
                    model=self.name,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=self.timeout,
                    **kwargs,
                )
                finish: str | None = None
                async for chunk in response:
                    if chunk.usage is not None:
                        yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            emitted = True
                            yield choice.delta.content
                        finish = choice.finish_reason or finish
                if finish != "stop" and (emitted or finish):
                    yield Finish(finish or "incomplete")
                return
            except Exception as exc:  # classified below; cancellation is not an Exception
                error = classify(exc)
                if emitted and _is_stream_error_event(exc):
                    log.warning("model %r: an error event ended the answer part-way: %s", self.name, error)
                    yield Finish("error")
                    return
                if emitted:
                    raise ModelError("interrupted", f"the model stopped in the middle of the answer: {error}") from exc
                if not await self._wait_before_retry(error, attempt, deadline):
                    self._log_fatal(error)
                    raise error from exc

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Usage]:
        """One non-streamed answer (query rewriting, summaries), with the same retries."""
        messages = laid_out(messages, self.layout)
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            try:
                kwargs: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
                response = await self._client.chat.completions.create(
                    model=self.name, messages=messages, timeout=self.timeout, **kwargs  # type: ignore[arg-type]
                )
                text = response.choices[0].message.content or "" if response.choices else ""
                usage = response.usage
                return text, Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage()
            except Exception as exc:
                error = classify(exc)
                if not await self._wait_before_retry(error, attempt, deadline):
                    self._log_fatal(error)
                    raise error from exc


def build_chat_model(
    api_key: str | None, base_url: str | None, model: str, timeout: float, layout: Layout = "strict"
) -> OpenAIChatModel:
    client = openai.AsyncOpenAI(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=0)
    return OpenAIChatModel(client, model, timeout=timeout, layout=layout)
