"""A fake OpenAI REST API for tests: an aiohttp app that the official `openai` client can talk to.

It plays chat completions (plain and SSE streaming), embeddings, moderations, models, files and
fine-tuning jobs, shaped after OpenAI's OpenAPI spec (see tests/test_fake_openai_contract.py), with
scripted answers and injectable faults. Everything lives in memory; nothing is read at import time.

    async with FakeOpenAI() as server:
        server.script_chat("Hello!")
        client = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)

By default any bearer key and any model name is accepted (like a llama.cpp server). As strict as
OpenAI itself: `FakeOpenAI(api_keys={"sk-..."}, models={"gpt-4o-mini"})` answers another key with
401 `invalid_api_key` and another model with 404 `model_not_found`, in OpenAI's words.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiohttp import web

from tests.harness.loopback import LoopbackServer

Json = dict[str, Any]
FaultKind = Literal[
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "slow",
    "context_length",
    "midstream_error",
    "stream_error",
    "stream_cut",
    "no_done",
]
JobOutcome = Literal["succeeded", "failed"]

MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Categories whose score can also come from images (the spec's category_applied_input_types enums).
_IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)
FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "omni-moderation-latest")
# The keyword options each fault kind takes.
_FAULT_OPTIONS: dict[str, frozenset[str]] = {kind: frozenset() for kind in get_args(FaultKind)} | {
    "rate_limit": frozenset({"retry_after"}),
    "slow": frozenset({"seconds"}),
    "midstream_error": frozenset({"after_chunks"}),
    "stream_error": frozenset({"after_chunks"}),
    "stream_cut": frozenset({"after_chunks"}),
}
# Faults that wait for a streaming chat request and act on its stream.
_STREAM_FAULTS = frozenset({"midstream_error", "stream_error", "stream_cut", "no_done"})
# What OpenAI sends inside a stream that fails after it began (the body of ErrorResponse).
STREAM_ERROR: Json = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": None,
}
_TRAINING_STEPS = 3
_DEFAULT_EPOCHS = 3
_BEARER = re.compile(r"Bearer \S+")


class ApiError(Exception):
    """An error the fake answers in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}

    def response(self) -> web.Response:
        """The HTTP response for this error."""
        return _json(self.body, status=self.status, headers=self.headers)


@dataclass
class _Fault:
    path_suffix: str
    kind: str
    times: int
    options: dict[str, Any]


@dataclass
class _Incoming:
    """What the middleware learnt about the request being handled."""

    body: Any = None  # parsed JSON, or None
    bad_json: bool = False
    stream_fault: _Fault | None = None  # a fault in _STREAM_FAULTS, for the chat handler's stream


_INCOMING: ContextVar[_Incoming] = ContextVar("fake_openai_incoming")


@dataclass
class _Job:
    data: Json
    outcome: JobOutcome
    suffix: str
    events: list[Json] = field(default_factory=list)  # oldest first
    checkpoints: list[Json] = field(default_factory=list)  # oldest first


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _now() -> int:
    return int(time.time())


def _json(data: Json, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={"x-request-id": _new_id("req_"), **(headers or {})})


def masked_key(key: str) -> str:
    """The key as OpenAI's 401 message shows it: its first 8 and last 4 characters, or whole when short."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _rate_limit_headers(reset: float) -> dict[str, str]:
    """The x-ratelimit-* headers OpenAI sends with a 429 (requests used up, tokens to spare)."""
    return {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{reset:g}s",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199950",
        "x-ratelimit-reset-tokens": "15ms",
    }


def _sse(data: Json) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _words(text: str) -> int:
    return len(text.split())


def _check_template(messages: list[Any]) -> None:
    """llama.cpp's answer to a strict chat template (its jinja raise_exception, HTTP 400)."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if not roles or roles != expected or roles[-1] != "user":
        raise ApiError(400, "Conversation roles must alternate user/assistant/user/assistant/...", type="invalid_request_error")


def _message_words(message: Any) -> int:
    """Rough token count of one chat message: whitespace words of its text content."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return _words(content)
    if isinstance(content, list):
        return sum(_words(part.get("text", "")) for part in content if isinstance(part, dict))
    return 0


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """The fake's embedding of `text`: a unit vector from a SHA-256 stream, rounded to float32.

    A shorter vector is the renormalised prefix of a longer one, like OpenAI's `dimensions`.
    """
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend(value / 2**31 - 1 for value in struct.unpack("<8I", digest))
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in raw))))


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(hash key, token count) per input: a string, strings, one token array or token arrays."""
    invalid = ApiError(400, "'$.input' is invalid. Please check the API reference.", param="input")
    if isinstance(value, str):
        if not value:
            raise invalid
        return [(value, _words(value))]
    if not isinstance(value, list) or not value or len(value) > 2048:
        raise invalid
    if all(isinstance(item, str) and item for item in value):
        return [(item, _words(item)) for item in value]
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [("tokens:" + ",".join(map(str, value)), len(value))]
    if all(isinstance(item, list) and item and all(isinstance(t, int) for t in item) for item in value):
        return [("tokens:" + ",".join(map(str, item)), len(item)) for item in value]
    raise invalid


def _page(items: list[Json], after: str | None, limit: int) -> tuple[list[Json], bool]:
    """Cursor pagination over `items` (already in answer order): the `limit` items after id `after`."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    return items[start : start + limit], start + limit < len(items)


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"Invalid 'limit': {raw!r}. Expected a positive integer.", param="limit")
    return int(raw)


class FakeOpenAI(LoopbackServer):
    """Async context manager serving the fake OpenAI API on 127.0.0.1 (a free port)."""

    def __init__(self, *, api_keys: Iterable[str] | None = None, models: Iterable[str] | None = None) -> None:
        self.base_url = ""
        self.api_keys = None if api_keys is None else set(api_keys)  # the keys accepted (None: any bearer key)
        # the models served, fine-tuned ones added as jobs succeed (None: any name; GET /models lists MODEL_IDS)
        self.models = None if models is None else set(models)
        self.requests: list[Json] = []
        self.default_answer = "This is a fake answer."
        self.chunk_chars = 8
        self.chunk_delay = 0.0
        self.embedding_dim = 8
        # like llama.cpp with a strict chat template (Gemma, Mistral): 400 unless the roles are one
        # optional system message, then user/assistant alternating, starting and ending with user
        self.strict_template = False
        self.endless = False  # the stream never stops on its own: the answer repeats until max_tokens
        self.finish_reason: str | None = None  # the next answer's finish_reason instead of "stop" (once)
        self._answers: deque[str] = deque()
        self._moderations: deque[Json] = deque()
        self._faults: list[_Fault] = []
        self._files: dict[str, Json] = {}
        self._contents: dict[str, bytes] = {}
        self._jobs: dict[str, _Job] = {}
        self._next_outcome: JobOutcome = "succeeded"

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        routes = app.router
        routes.add_get("/v1/models", self._models)
        routes.add_get("/v1/models/{model:.+}", self._model)
        routes.add_post("/v1/chat/completions", self._chat)
        routes.add_post("/v1/embeddings", self._embeddings)
        routes.add_post("/v1/moderations", self._moderation)
        routes.add_post("/v1/files", self._create_file)
        routes.add_get("/v1/files", self._list_files)
        routes.add_get("/v1/files/{file_id}", self._retrieve_file)
        routes.add_delete("/v1/files/{file_id}", self._delete_file)
        routes.add_get("/v1/files/{file_id}/content", self._file_content)
        routes.add_post("/v1/fine_tuning/jobs", self._create_job)
        routes.add_get("/v1/fine_tuning/jobs", self._list_jobs)
        routes.add_get("/v1/fine_tuning/jobs/{job_id}", self._retrieve_job)
        routes.add_post("/v1/fine_tuning/jobs/{job_id}/cancel", self._cancel_job)
        routes.add_get("/v1/fine_tuning/jobs/{job_id}/events", self._job_events)
        routes.add_get("/v1/fine_tuning/jobs/{job_id}/checkpoints", self._job_checkpoints)
        port = await self._serve(app)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    # ----- scripting -------------------------------------------------------------------------------

    def script_chat(self, *answers: str) -> None:
        """Queue answers for the next chat completions (FIFO); once empty, `default_answer` is used."""
        self._answers.extend(answers)

    def script_moderation(self, *results: Json) -> None:
        """Queue moderation results, one per moderated input (FIFO); by default nothing is flagged.

        Each is {"flagged", "categories", "category_scores"}, all optional: missing categories are
        False, missing scores 0.0 (0.99 for a category set True), "flagged" defaults to any category.
        """
        for result in results:
            unknown = set(result) - {"flagged", "categories", "category_scores"}
            unknown |= set(result.get("categories", {})) - set(MODERATION_CATEGORIES)
            unknown |= set(result.get("category_scores", {})) - set(MODERATION_CATEGORIES)
            if unknown:
                raise ValueError(f"unknown moderation keys: {sorted(unknown)}")
        self._moderations.extend(results)

    def fail_next(self, path_suffix: str, kind: FaultKind, times: int = 1, **kw: Any) -> None:
        """Fault the next `times` requests whose path ends with `path_suffix`.

        kind: "rate_limit" (429 with x-ratelimit-* headers; kw retry_after, default 1 s, or None
        for no Retry-After header), "insufficient_quota" (429), "server_error" (500), "slow" (kw
        seconds, then a normal answer), "context_length" (400).
        Streaming chat only (they wait for a streaming request), after kw after_chunks content
        chunks (default 1): "midstream_error" drops the connection; "stream_error" sends OpenAI's
        `data: {"error": ...}` event and ends the stream; "stream_cut" ends the stream cleanly
        with no finish chunk and no [DONE]. "no_done": the stream ends cleanly right after the
        finish chunk, without the usage chunk and [DONE].
        """
        if kind not in _FAULT_OPTIONS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(_FAULT_OPTIONS)}")
        if set(kw) - _FAULT_OPTIONS[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(_FAULT_OPTIONS[kind])}, not {sorted(set(kw))}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if kind == "slow" and "seconds" not in kw:
            raise ValueError("kind 'slow' needs seconds=...")
        self._faults.append(_Fault(path_suffix, kind, times, kw))

    def set_job_outcome(self, outcome: JobOutcome) -> None:
        """How the next created fine-tuning job ends (later jobs succeed again)."""
        if outcome not in ("succeeded", "failed"):
            raise ValueError(f"outcome must be 'succeeded' or 'failed', not {outcome!r}")
        self._next_outcome = outcome

    # ----- plumbing --------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Record the request, then authorise, route, inject faults and answer errors in OpenAI's shape."""
        incoming = _Incoming()
        if request.content_type == "application/json":
            try:
                incoming.body = json.loads(await request.read() or b"null")
            except ValueError:
                incoming.bad_json = True
        _INCOMING.set(incoming)
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {key.lower(): value for key, value in request.headers.items()},
                "json": incoming.body,
            }
        )
        try:
            self._authorise(request.headers.get("Authorization", ""))
            if request.match_info.http_exception is not None:
                raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
            fault = self._take_fault(request.path, incoming.body)
            if fault is not None:
                await self._apply_fault(fault, incoming)
            return await handler(request)
        except ApiError as error:
            return error.response()

    def _authorise(self, header: str) -> None:
        """401 in OpenAI's words without a bearer key, or with one that is not in `api_keys`."""
        if not _BEARER.fullmatch(header):
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        key = header.removeprefix("Bearer ")
        if self.api_keys is not None and key not in self.api_keys:
            raise ApiError(
                401,
                f"Incorrect API key provided: {masked_key(key)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _check_model(self, model: str) -> None:
        """404 `model_not_found` for a model the server does not serve (when `models` is set)."""
        if self.models is not None and model not in self.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise ApiError(404, message, code="model_not_found")

    def _take_fault(self, path: str, body: Any) -> _Fault | None:
        streaming_chat = path.endswith("/chat/completions") and isinstance(body, dict) and body.get("stream") is True
        for fault in self._faults:
            if path.endswith(fault.path_suffix) and (fault.kind not in _STREAM_FAULTS or streaming_chat):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _apply_fault(self, fault: _Fault, incoming: _Incoming) -> None:
        """Raise the fault's error, sleep for "slow", or mark the request for a stream fault."""
        if fault.kind == "rate_limit":
            retry_after = fault.options.get("retry_after", 1)
            reset = 1.0 if retry_after is None else float(retry_after)
            headers = _rate_limit_headers(reset)
            if retry_after is not None:
                headers |= {"Retry-After": str(math.ceil(reset)), "retry-after-ms": str(round(reset * 1000))}
            raise ApiError(
                429,
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
                f"Please try again in {reset:g}s.",
                type="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if fault.kind == "insufficient_quota":
            raise ApiError(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        if fault.kind == "server_error":
            raise ApiError(
                500, "The server had an error while processing your request. Sorry about that!", type="server_error"
            )
        if fault.kind == "context_length":
            raise ApiError(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "131072 tokens. Please reduce the length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        if fault.kind == "slow":
            await asyncio.sleep(float(fault.options["seconds"]))
        else:  # a stream fault: the chat handler's stream acts on it
            incoming.stream_fault = fault

    @staticmethod
    def _body() -> Json:
        incoming = _INCOMING.get()
        body = incoming.body
        if incoming.bad_json or not isinstance(body, dict):
            raise ApiError(400, "We could not parse the JSON body of your request. Please send a JSON object.")
        return body

    @staticmethod
    def _required_str(body: Json, name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"you must provide a {name} parameter", param=name)
        return value

    # ----- chat ------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = self._body()
        model = self._required_str(body, "model")
        self._check_model(model)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, f"{messages!r} is too short - 'messages'", param="messages")
        stream = body.get("stream") is True
        if body.get("stream_options") is not None and not stream:
            raise ApiError(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        if self.strict_template:
            _check_template(messages)
        answer = self._answers.popleft() if self._answers else self.default_answer
        finish, self.finish_reason = self.finish_reason or "stop", None
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise ApiError(400, f"Invalid 'max_tokens': {max_tokens!r}. Expected an integer >= 1.", param="max_tokens")
        if stream and self.endless:
            return await self._stream_chat(request, {"id": _new_id("chatcmpl-"), "created": _now(), "model": model},
                                           answer, None, finish, endless_until=max_tokens)
        if max_tokens is not None and _words(answer) > max_tokens:  # a "token" is a word here
            answer, finish = " ".join(answer.split()[:max_tokens]), "length"
        prompt_tokens = sum(_message_words(message) for message in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _words(answer),
            "total_tokens": prompt_tokens + _words(answer),
        }
        head = {"id": _new_id("chatcmpl-"), "created": _now(), "model": model}
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream_chat(request, head, answer, usage if include_usage else None, finish)
        message = {"role": "assistant", "content": answer, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return _json({**head, "object": "chat.completion", "choices": [choice], "usage": usage})

    async def _stream_chat(
        self,
        request: web.Request,
        head: Json,
        answer: str,
        usage: Json | None,
        finish: str = "stop",
        endless_until: int | None = None,
    ) -> web.StreamResponse:
        """SSE: a role delta, content deltas of `chunk_chars`, a `finish` chunk, [usage chunk], [DONE].
        `endless`: the answer's words again and again, until `endless_until` words ("length") or the
        client goes away."""

        def chunk(delta: Json, finish_reason: str | None = None) -> Json:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            extra = {"usage": None} if usage is not None else {}
            return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

        if self.endless:
            return await self._stream_endless(request, chunk, answer, endless_until)
        size = max(1, self.chunk_chars)
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": answer[i : i + size]}) for i in range(0, len(answer), size)]
        events.append(chunk({}, finish))
        finished = len(events)  # the events up to and including the finish chunk
        if usage is not None:
            events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        fault = _INCOMING.get().stream_fault
        stop_at = None
        if fault is not None:
            stop_at = finished if fault.kind == "no_done" else 1 + int(fault.options.get("after_chunks", 1))

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": _new_id("req_"),
            }
        )
        await response.prepare(request)
        for number, event in enumerate(events):
            if number == stop_at and fault is not None:
                return await self._end_stream_early(request, response, fault.kind)
            if number > 0 and self.chunk_delay > 0:
                await asyncio.sleep(self.chunk_delay)
            await response.write(_sse(event))
        if stop_at == len(events) and fault is not None:  # "no_done" without a usage chunk
            return await self._end_stream_early(request, response, fault.kind)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    async def _end_stream_early(request: web.Request, response: web.StreamResponse, kind: str) -> web.StreamResponse:
        """"midstream_error" drops the connection; the others end the stream cleanly, without [DONE]
        ("stream_error" after OpenAI's error event)."""
        if kind == "midstream_error":
            if request.transport is not None:
                request.transport.abort()
            return response
        if kind == "stream_error":
            await response.write(_sse({"error": STREAM_ERROR}))
        await response.write_eof()
        return response

    async def _stream_endless(
        self, request: web.Request, chunk: Any, answer: str, until: int | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        words = answer.split() or ["more"]
        sent = 0
        try:
            while until is None or sent < until:
                await response.write(_sse(chunk({"content": words[sent % len(words)] + " "})))
                sent += 1
                await asyncio.sleep(max(self.chunk_delay, 0.001))
            await response.write(_sse(chunk({}, "length")))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client stopped reading
        return response

    # ----- embeddings and moderations --------------------------------------------------------------

    @staticmethod
    def _model_object(name: str) -> Json:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}

    async def _models(self, request: web.Request) -> web.Response:
        names = MODEL_IDS if self.models is None else sorted(self.models)
        return _json({"object": "list", "data": [self._model_object(name) for name in names]})

    async def _model(self, request: web.Request) -> web.Response:
        """GET /models/{model}: the model, or OpenAI's 404 for one it does not serve."""
        name = request.match_info["model"]
        if self.models is not None and name not in self.models:
            raise ApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
        return _json(self._model_object(name))

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = self._body()
        model = self._required_str(body, "model")
        self._check_model(model)
        inputs = _embedding_inputs(body.get("input"))
        dimensions = body.get("dimensions", self.embedding_dim)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise ApiError(400, f"Invalid 'dimensions': {dimensions!r}. Expected an integer >= 1.", param="dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"Invalid 'encoding_format': {encoding!r}.", param="encoding_format")
        data = []
        for index, (key, _tokens) in enumerate(inputs):
            vector: list[float] | str = embedding_vector(key, dimensions)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count for _key, count in inputs)
        return _json(
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    async def _moderation(self, request: web.Request) -> web.Response:
        body = self._body()
        value = body.get("input")
        if isinstance(value, str):
            count, input_types = 1, {"text"}
        elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            count, input_types = len(value), {"text"}
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            count = 1  # one multi-modal input: one result
            input_types = {"image" if item.get("type") == "image_url" else "text" for item in value}
        else:
            raise ApiError(400, "'$.input' is invalid. Please check the API reference.", param="input")
        model = body.get("model") or "omni-moderation-latest"
        if not isinstance(model, str):
            raise ApiError(400, f"Invalid 'model': {model!r}.", param="model")
        self._check_model(model)
        results = [self._moderation_result(input_types) for _ in range(count)]
        return _json({"id": _new_id("modr-"), "model": model, "results": results})

    def _moderation_result(self, input_types: set[str]) -> Json:
        scripted = self._moderations.popleft() if self._moderations else {}
        given, given_scores = scripted.get("categories", {}), scripted.get("category_scores", {})
        categories = {name: bool(given.get(name, False)) for name in MODERATION_CATEGORIES}
        scores = {
            name: float(given_scores.get(name, 0.99 if categories[name] else 0.0)) for name in MODERATION_CATEGORIES
        }
        applied = {
            name: sorted(t for t in input_types if t == "text" or name in _IMAGE_CATEGORIES)
            for name in MODERATION_CATEGORIES
        }
        return {
            "flagged": bool(scripted.get("flagged", any(categories.values()))),
            "categories": categories,
            "category_scores": scores,
            "category_applied_input_types": applied,
        }

    # ----- files -----------------------------------------------------------------------------------

    def _store_file(self, filename: str, purpose: str, content: bytes, expires_in: int | None = None) -> Json:
        created = _now()
        record = {
            "id": _new_id("file-"),
            "object": "file",
            "bytes": len(content),
            "created_at": created,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        if expires_in is not None:
            record["expires_at"] = created + expires_in
        self._files[record["id"]] = record
        self._contents[record["id"]] = content
        return record

    def _file(self, request: web.Request) -> Json:
        file_id = request.match_info["file_id"]
        if file_id not in self._files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self._files[file_id]

    async def _create_file(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            raise ApiError(400, "Expected a multipart/form-data body with 'file' and 'purpose'.")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        purpose = form.get("purpose")
        if purpose not in FILE_PURPOSES:
            expected = ", ".join(sorted(FILE_PURPOSES))
            raise ApiError(400, f"Invalid 'purpose': {purpose!r}; expected one of {expected}.", param="purpose")
        expires_in = None
        if "expires_after[seconds]" in form:
            seconds = str(form["expires_after[seconds]"])
            if not seconds.isdigit() or not 3600 <= int(seconds) <= 2592000:
                raise ApiError(400, f"Invalid 'expires_after.seconds': {seconds!r}.", param="expires_after.seconds")
            expires_in = int(seconds)
        return _json(self._store_file(upload.filename, str(purpose), upload.file.read(), expires_in))

    async def _list_files(self, request: web.Request) -> web.Response:
        files = [f for f in self._files.values() if request.query.get("purpose") in (None, f["purpose"])]
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError(400, f"Invalid 'order': {order!r}; expected 'asc' or 'desc'.", param="order")
        if order == "desc":
            files.reverse()
        page, has_more = _page(files, request.query.get("after"), _limit(request, 10000))
        # The spec requires first_id/last_id as (non-null) strings, even for an empty page.
        first_id, last_id = (page[0]["id"], page[-1]["id"]) if page else ("", "")
        return _json({"object": "list", "data": page, "first_id": first_id, "last_id": last_id, "has_more": has_more})

    async def _retrieve_file(self, request: web.Request) -> web.Response:
        return _json(self._file(request))

    async def _file_content(self, request: web.Request) -> web.Response:
        record = self._file(request)
        return web.Response(body=self._contents[record["id"]], content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        record = self._file(request)
        del self._files[record["id"]], self._contents[record["id"]]
        return _json({"id": record["id"], "object": "file", "deleted": True})

    # ----- fine-tuning -----------------------------------------------------------------------------

    def _check_training_file(self, file_id: str, param: str) -> None:
        if file_id not in self._files:
            raise ApiError(400, f"invalid {param}: {file_id}", param=param)
        if self._files[file_id]["purpose"] != "fine-tune":
            raise ApiError(400, f"File {file_id} does not have purpose 'fine-tune'.", param=param)

    def _job(self, request: web.Request) -> _Job:
        job_id = request.match_info["job_id"]
        if job_id not in self._jobs:
            raise ApiError(404, f"Could not find fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return self._jobs[job_id]

    @staticmethod
    def _add_event(job: _Job, message: str, *, level: str = "info", metrics: Json | None = None) -> None:
        event = {
            "object": "fine_tuning.job.event",
            "id": _new_id("ftevent-"),
            "created_at": _now(),
            "level": level,
            "message": message,
            "type": "metrics" if metrics is not None else "message",
        }
        if metrics is not None:
            event["data"] = metrics
        job.events.append(event)

    async def _create_job(self, request: web.Request) -> web.Response:
        body = self._body()
        model = self._required_str(body, "model")
        training_file = self._required_str(body, "training_file")
        self._check_training_file(training_file, "training_file")
        validation_file = body.get("validation_file")
        if validation_file is not None:
            self._check_training_file(str(validation_file), "validation_file")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 64):
            raise ApiError(400, f"Invalid 'suffix': {suffix!r}; expected 1 to 64 characters.", param="suffix")
        job_id = _new_id("ftjob-")
        seed = body.get("seed")
        if seed is None:
            seed = int(job_id[-8:], 16) % 2**31
        elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2147483647:
            raise ApiError(400, f"Invalid 'seed': {seed!r}.", param="seed")
        method = body.get("method")
        if method is not None and not (isinstance(method, dict) and isinstance(method.get("type"), str)):
            raise ApiError(400, "Invalid 'method': expected an object with a 'type'.", param="method")
        section = method.get(method["type"]) if method else None
        chosen = body.get("hyperparameters") or (section if isinstance(section, dict) else {}).get("hyperparameters")
        chosen = chosen or {}
        if not isinstance(chosen, dict):
            raise ApiError(400, "Invalid 'hyperparameters': expected an object.", param="hyperparameters")
        hyperparameters = {
            name: chosen.get(name, "auto") for name in ("batch_size", "learning_rate_multiplier", "n_epochs")
        }
        data = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": model,
            "created_at": _now(),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-fake",
            "result_files": [],
            "status": "validating_files",
            "training_file": training_file,
            "validation_file": validation_file,
            "hyperparameters": hyperparameters,
            "trained_tokens": None,
            "error": None,
            "seed": seed,
            "integrations": body.get("integrations"),
            "estimated_finish": None,
            "method": method or {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            "metadata": body.get("metadata"),
        }
        job = _Job(data=data, outcome=self._next_outcome, suffix=suffix or "advisor")
        self._next_outcome = "succeeded"
        self._jobs[job_id] = job
        self._add_event(job, f"Created fine-tuning job: {job_id}")
        self._add_event(job, f"Validating training file: {training_file}")
        return _json(data)

    def _advance(self, job: _Job) -> None:
        """One step of validating_files -> queued -> running -> succeeded | failed."""
        data = job.data
        if data["status"] == "validating_files":
            data["status"] = "queued"
            self._add_event(job, "Files validated, moving job to queued state")
        elif data["status"] == "queued":
            data["status"] = "running"
            self._add_event(job, "Fine-tuning job started")
            for step in range(1, _TRAINING_STEPS + 1):
                metrics = self._step_metrics(step)
                self._add_event(
                    job,
                    f"Step {step}/{_TRAINING_STEPS}: training loss={metrics['train_loss']:.4f}",
                    metrics={**metrics, "total_steps": _TRAINING_STEPS},
                )
        elif data["status"] == "running" and job.outcome == "failed":
            data.update(
                status="failed",
                finished_at=_now(),
                error={
                    "code": "invalid_training_file",
                    "message": f"The job failed due to an invalid training file: {data['training_file']}.",
                    "param": "training_file",
                },
            )
            self._add_event(job, "The job failed due to an invalid training file.", level="error")
        elif data["status"] == "running":
            self._succeed(job)

    @staticmethod
    def _step_metrics(step: int) -> Json:
        """Made-up training metrics: the loss falls and the accuracy rises with the step."""
        return {"step": step, "train_loss": round(2.0 / step, 4), "train_mean_token_accuracy": 0.5 + step / 10}

    def _succeed(self, job: _Job) -> None:
        data = job.data
        model = f"ft:{data['model']}:{job.suffix}:{data['id'].removeprefix('ftjob-')[:8]}"
        epochs = data["hyperparameters"]["n_epochs"]
        epochs = epochs if isinstance(epochs, int) else _DEFAULT_EPOCHS
        rows = ["step,train_loss,train_mean_token_accuracy"]
        for step in range(1, _TRAINING_STEPS + 1):
            metrics = self._step_metrics(step)
            rows.append(f"{step},{metrics['train_loss']},{metrics['train_mean_token_accuracy']}")
            job.checkpoints.append(
                {
                    "object": "fine_tuning.job.checkpoint",
                    "id": _new_id("ftckpt_"),
                    "created_at": _now(),
                    "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{step}",
                    "step_number": step,
                    "metrics": metrics,
                    "fine_tuning_job_id": data["id"],
                }
            )
        results = self._store_file("step_metrics.csv", "fine-tune-results", "\n".join(rows).encode() + b"\n")
        data.update(
            status="succeeded",
            finished_at=_now(),
            fine_tuned_model=model,
            trained_tokens=_words(self._contents.get(data["training_file"], b"").decode(errors="replace")) * epochs,
            result_files=[results["id"]],
        )
        if self.models is not None:
            self.models.add(model)
        self._add_event(job, f"New fine-tuned model created: {model}")
        self._add_event(job, "The job has successfully completed")

    async def _list_jobs(self, request: web.Request) -> web.Response:
        jobs = [job.data for job in reversed(self._jobs.values())]
        page, has_more = _page(jobs, request.query.get("after"), _limit(request, 20))
        return _json({"object": "list", "data": page, "has_more": has_more})

    async def _retrieve_job(self, request: web.Request) -> web.Response:
        job = self._job(request)
        self._advance(job)
        return _json(job.data)

    async def _cancel_job(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.data["status"] in ("succeeded", "failed", "cancelled"):
            raise ApiError(400, f"Job {job.data['id']} has already {job.data['status']} and cannot be cancelled.")
        job.data["status"] = "cancelled"
        self._add_event(job, "Fine-tuning job cancelled")
        return _json(job.data)

    async def _job_events(self, request: web.Request) -> web.Response:
        job = self._job(request)
        page, has_more = _page(job.events[::-1], request.query.get("after"), _limit(request, 20))
        return _json({"object": "list", "data": page, "has_more": has_more})

    async def _job_checkpoints(self, request: web.Request) -> web.Response:
        job = self._job(request)
        page, has_more = _page(job.checkpoints[::-1], request.query.get("after"), _limit(request, 10))
        first_id, last_id = (page[0]["id"], page[-1]["id"]) if page else (None, None)
        return _json({"object": "list", "data": page, "first_id": first_id, "last_id": last_id, "has_more": has_more})
