"""Contract tests for tests/harness/openai_server.py.

The fake's raw JSON is validated against OpenAI's OpenAPI spec (a derived subset, JSON Schema 2020-12),
and the official `openai.AsyncOpenAI` client is run against it, faults included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
import yaml
from jsonschema import Draft202012Validator
from openai import AsyncOpenAI
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.harness.openai_server import MODERATION_CATEGORIES, FakeOpenAI, embedding_vector

SPEC_PATH = (
    Path(__file__).resolve().parents[2]
    / "shared/datasets/openai/openapi_subset_chat_embeddings_moderations_files_finetuning.yaml"
)
SPEC_URI = "urn:openai:openapi-subset"
RESPONSE_SCHEMAS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "CreateModerationResponse",
    "OpenAIFile",
    "ListFilesResponse",
    "DeleteFileResponse",
    "FineTuningJob",
    "ListPaginatedFineTuningJobsResponse",
    "ListFineTuningJobEventsResponse",
    "ListFineTuningJobCheckpointsResponse",
    "ErrorResponse",
)
USER = [{"role": "user", "content": "one two three"}]

Json = dict[str, Any]


def to_json_schema(node: Any) -> Any:
    """Fix OpenAPI 3.0 leftovers in the 3.1 spec, and close every object schema that lists properties.

    `nullable: true` becomes anyOf [..., null]; boolean `exclusiveMinimum/Maximum` take the number of
    `minimum/maximum`; `unevaluatedProperties: false` makes a field the spec doesn't name an error.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool):
            if schema.pop(exclusive):
                schema[exclusive] = schema.pop(bound)
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        schema["unevaluatedProperties"] = False
    return {"anyOf": [schema, {"type": "null"}]} if node.get("nullable") is True else schema


class Spec:
    """Validates instances against the spec's component schemas."""

    def __init__(self, document: Json) -> None:
        self.schemas: Json = document["components"]["schemas"]
        resource = Resource(contents=to_json_schema(document), specification=DRAFT202012)
        self._registry: Registry = Registry().with_resource(SPEC_URI, resource)

    def errors(self, name: str, instance: Any) -> list[str]:
        """Every violation of component schema `name`, as 'path: message'."""
        assert name in self.schemas, f"no schema {name!r} in the spec"
        validator = Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=self._registry)
        return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(instance)]

    def check(self, name: str, instance: Any) -> None:
        """Assert that `instance` is a valid `name`."""
        errors = self.errors(name, instance)
        assert not errors, f"{name} violations:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def spec() -> Spec:
    """The spec subset from ../shared (CI has it beside the clone)."""
    if not SPEC_PATH.exists():
        pytest.fail(f"OpenAPI spec subset not found at {SPEC_PATH}")
    return Spec(yaml.safe_load(SPEC_PATH.read_text()))


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    """A running fake, fresh for each test."""
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def client(server: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """The official client pointed at the fake, without retries."""
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as api:
        yield api


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP session with a bearer token, to see the fake's raw JSON."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test"}) as session:
        yield session


async def call(http: aiohttp.ClientSession, server: FakeOpenAI, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """One raw request to the fake: (status, parsed JSON body)."""
    async with http.request(method, server.base_url + path, **kw) as response:
        return response.status, await response.json()


async def upload(http: aiohttp.ClientSession, server: FakeOpenAI, content: bytes, purpose: str = "fine-tune") -> Json:
    """Upload `content` as train.jsonl through the multipart API; the OpenAIFile."""
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    form.add_field("file", content, filename="train.jsonl", content_type="application/jsonl")
    status, body = await call(http, server, "POST", "/files", data=form)
    assert status == 200, body
    return body


TRAINING = b'{"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}\n'


# ----- the validator itself ----------------------------------------------------------------------


def test_spec_has_the_schemas_and_the_validator_rejects_off_spec_payloads(spec: Spec) -> None:
    assert set(RESPONSE_SCHEMAS) <= set(spec.schemas)
    good = {"error": {"message": "m", "type": "t", "param": None, "code": None}}
    spec.check("ErrorResponse", good)
    assert spec.errors("ErrorResponse", {"error": {"message": "m", "type": "t", "param": None}})  # code required
    assert spec.errors("ErrorResponse", {"error": {**good["error"], "codee": "x"}})  # undeclared field
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "usage": None, "choices": [
        {"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}]}
    spec.check("CreateChatCompletionStreamResponse", chunk)  # `nullable: true` fields accept null
    assert spec.errors("CreateChatCompletionStreamResponse", {**chunk, "object": "chat.completion"})
    hyper = {"learning_rate_multiplier": 0.5, "n_epochs": 3, "batch_size": None}
    assert not any("hyperparameters" in e for e in spec.errors("FineTuningJob", {"hyperparameters": hyper}))
    assert any("hyperparameters" in e for e in spec.errors("FineTuningJob", {"hyperparameters": {"n_epochs": 0}}))


def test_scripting_rejects_typos() -> None:
    fake = FakeOpenAI()
    with pytest.raises(ValueError, match="violense"):
        fake.script_moderation({"categories": {"violense": True}})
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake.fail_next("/chat/completions", "timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secs"):
        fake.fail_next("/chat/completions", "slow", secs=1)
    with pytest.raises(ValueError, match="outcome"):
        fake.set_job_outcome("done")  # type: ignore[arg-type]


# ----- raw JSON against the spec -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_completion_json_matches_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    server.script_chat("Hello there, friend.")
    status, body = await call(http, server, "POST", "/chat/completions", json={"model": "gpt-x", "messages": USER})
    assert status == 200
    spec.check("CreateChatCompletionResponse", body)
    assert body["id"].startswith("chatcmpl-") and body["model"] == "gpt-x"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there, friend.", "refusal": None}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


@pytest.mark.asyncio
async def test_chat_stream_chunks_match_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    server.script_chat("Streaming works fine.")
    server.chunk_chars = 5
    request = {"model": "gpt-x", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(server.base_url + "/chat/completions", json=request) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        raw = await response.text()
    frames = raw.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: ") for frame in frames[:-1])
    chunks = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    for chunk in chunks:
        spec.check("CreateChatCompletionStreamResponse", chunk)
    assert len({chunk["id"] for chunk in chunks}) == 1
    *deltas, usage_chunk = chunks
    assert deltas[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in deltas]
    assert "".join(pieces) == "Streaming works fine." and max(map(len, pieces)) == 5
    assert [c["choices"][0]["finish_reason"] for c in deltas][-2:] == [None, "stop"]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 3


@pytest.mark.asyncio
async def test_embeddings_json_matches_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    request = {"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]}
    status, floats = await call(http, server, "POST", "/embeddings", json=request)
    assert status == 200
    spec.check("CreateEmbeddingResponse", floats)
    vectors = [item["embedding"] for item in floats["data"]]
    assert [len(v) for v in vectors] == [8, 8] and vectors[0] != vectors[1]
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    status, packed = await call(http, server, "POST", "/embeddings", json={**request, "encoding_format": "base64"})
    assert status == 200
    decoded = [list(struct.unpack("<8f", base64.b64decode(item["embedding"]))) for item in packed["data"]]
    assert decoded == vectors
    # The spec only models float arrays; with the strings decoded the body is a valid response.
    for item, vector in zip(packed["data"], decoded, strict=True):
        item["embedding"] = vector
    spec.check("CreateEmbeddingResponse", packed)

    token_arrays = {**request, "input": [[1, 2], [3]], "dimensions": 3}
    status, tokens = await call(http, server, "POST", "/embeddings", json=token_arrays)
    spec.check("CreateEmbeddingResponse", tokens)
    assert [len(item["embedding"]) for item in tokens["data"]] == [3, 3] and tokens["usage"]["prompt_tokens"] == 3


@pytest.mark.asyncio
async def test_moderation_json_matches_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    server.script_moderation({"categories": {"violence": True}})
    status, body = await call(http, server, "POST", "/moderations", json={"input": ["hit it", "hug it"]})
    assert status == 200
    spec.check("CreateModerationResponse", body)
    flagged, calm = body["results"]
    assert flagged["flagged"] and flagged["categories"]["violence"] and flagged["category_scores"]["violence"] > 0.5
    assert not calm["flagged"] and not any(calm["categories"].values())
    assert set(calm["categories"]) == set(MODERATION_CATEGORIES)
    assert body["id"].startswith("modr-") and body["model"] == "omni-moderation-latest"

    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]
    status, body = await call(http, server, "POST", "/moderations", json={"input": parts, "model": "omni-x"})
    spec.check("CreateModerationResponse", body)
    (result,) = body["results"]
    applied = result["category_applied_input_types"]
    assert applied["violence"] == ["image", "text"] and applied["hate"] == ["text"] and body["model"] == "omni-x"


@pytest.mark.asyncio
async def test_files_json_match_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    status, empty = await call(http, server, "GET", "/files")
    spec.check("ListFilesResponse", empty)
    assert empty["data"] == [] and not empty["has_more"]

    first, second = await upload(http, server, TRAINING), await upload(http, server, b"x", purpose="assistants")
    for record in (first, second):
        spec.check("OpenAIFile", record)
    assert first["id"].startswith("file-") and first["bytes"] == len(TRAINING) and first["filename"] == "train.jsonl"

    status, listing = await call(http, server, "GET", "/files")
    spec.check("ListFilesResponse", listing)
    assert [f["id"] for f in listing["data"]] == [second["id"], first["id"]]  # newest first by default
    status, page = await call(http, server, "GET", "/files", params={"order": "asc", "limit": "1"})
    spec.check("ListFilesResponse", page)
    assert (page["first_id"], page["last_id"], page["has_more"]) == (first["id"], first["id"], True)
    status, tuned = await call(http, server, "GET", "/files", params={"purpose": "fine-tune"})
    assert [f["id"] for f in tuned["data"]] == [first["id"]]

    status, retrieved = await call(http, server, "GET", f"/files/{first['id']}")
    spec.check("OpenAIFile", retrieved)
    assert retrieved == first
    async with http.get(f"{server.base_url}/files/{first['id']}/content") as response:
        assert await response.read() == TRAINING

    status, deleted = await call(http, server, "DELETE", f"/files/{first['id']}")
    spec.check("DeleteFileResponse", deleted)
    assert deleted == {"id": first["id"], "object": "file", "deleted": True}
    status, missing = await call(http, server, "GET", f"/files/{first['id']}")
    spec.check("ErrorResponse", missing)
    assert status == 404 and missing["error"]["param"] == "id"


@pytest.mark.asyncio
async def test_fine_tuning_json_matches_spec(spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    training = await upload(http, server, TRAINING)
    request = {"model": "gpt-4o-mini", "training_file": training["id"], "suffix": "adv"}
    request["hyperparameters"] = {"n_epochs": 2}
    status, job = await call(http, server, "POST", "/fine_tuning/jobs", json=request)
    assert status == 200
    spec.check("FineTuningJob", job)
    assert job["status"] == "validating_files" and job["id"].startswith("ftjob-")

    statuses = []
    for _ in range(3):
        status, job = await call(http, server, "GET", f"/fine_tuning/jobs/{job['id']}")
        spec.check("FineTuningJob", job)
        statuses.append(job["status"])
    assert statuses == ["queued", "running", "succeeded"]
    assert job["fine_tuned_model"] == f"ft:gpt-4o-mini:adv:{job['id'].removeprefix('ftjob-')[:8]}"
    assert job["trained_tokens"] == 2 * len(TRAINING.split()) and len(job["result_files"]) == 1

    status, events = await call(http, server, "GET", f"/fine_tuning/jobs/{job['id']}/events")
    spec.check("ListFineTuningJobEventsResponse", events)
    metrics = [e["data"] for e in events["data"] if e.get("type") == "metrics"]
    assert len(metrics) == 3 and all({"step", "train_loss"} <= set(m) for m in metrics)
    status, checkpoints = await call(http, server, "GET", f"/fine_tuning/jobs/{job['id']}/checkpoints")
    spec.check("ListFineTuningJobCheckpointsResponse", checkpoints)
    assert [c["step_number"] for c in checkpoints["data"]] == [3, 2, 1]

    server.set_job_outcome("failed")
    status, failing = await call(http, server, "POST", "/fine_tuning/jobs", json=request)
    for _ in range(3):
        status, failing = await call(http, server, "GET", f"/fine_tuning/jobs/{failing['id']}")
    spec.check("FineTuningJob", failing)
    assert failing["status"] == "failed" and failing["error"]["param"] == "training_file"

    status, cancelled = await call(http, server, "POST", "/fine_tuning/jobs", json=request)
    status, cancelled = await call(http, server, "POST", f"/fine_tuning/jobs/{cancelled['id']}/cancel")
    spec.check("FineTuningJob", cancelled)
    assert cancelled["status"] == "cancelled"

    status, listing = await call(http, server, "GET", "/fine_tuning/jobs", params={"limit": "2"})
    spec.check("ListPaginatedFineTuningJobsResponse", listing)
    assert [j["id"] for j in listing["data"]] == [cancelled["id"], failing["id"]] and listing["has_more"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "status", "error_type", "code"),
    [
        ("rate_limit", 429, "requests", "rate_limit_exceeded"),
        ("insufficient_quota", 429, "insufficient_quota", "insufficient_quota"),
        ("server_error", 500, "server_error", None),
        ("context_length", 400, "invalid_request_error", "context_length_exceeded"),
    ],
)
async def test_fault_error_bodies_match_spec(
    spec: Spec,
    server: FakeOpenAI,
    http: aiohttp.ClientSession,
    kind: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    server.fail_next("/chat/completions", kind)  # type: ignore[arg-type]
    got, body = await call(http, server, "POST", "/chat/completions", json={"model": "m", "messages": USER})
    spec.check("ErrorResponse", body)
    assert (got, body["error"]["type"], body["error"]["code"]) == (status, error_type, code)
    got, body = await call(http, server, "POST", "/chat/completions", json={"model": "m", "messages": USER})
    assert got == 200, "a fault fires only `times` times"


@pytest.mark.asyncio
async def test_request_errors_match_spec(spec: Spec, server: FakeOpenAI) -> None:
    auth = {"Authorization": "Bearer t"}
    cases = [  # (headers, method, path, JSON body, status, error code, error param)
        ({}, "POST", "/chat/completions", {"model": "m", "messages": USER}, 401, "invalid_api_key", None),
        (auth, "POST", "/nope", {}, 404, None, None),
        (auth, "POST", "/chat/completions", {"model": "m", "messages": []}, 400, None, "messages"),
        (auth, "POST", "/chat/completions", {"messages": USER}, 400, None, "model"),
        (auth, "POST", "/fine_tuning/jobs", {"model": "m", "training_file": "file-x"}, 400, None, "training_file"),
        (auth, "GET", "/fine_tuning/jobs/ftjob-x", None, 404, None, "fine_tuning_job_id"),
    ]
    async with aiohttp.ClientSession() as session:
        for headers, method, path, payload, status, code, param in cases:
            async with session.request(method, server.base_url + path, json=payload, headers=headers) as response:
                body = await response.json()
            spec.check("ErrorResponse", body)
            assert (response.status, body["error"]["code"], body["error"]["param"]) == (status, code, param), path
    assert len(server.requests) == len(cases) and "authorization" not in server.requests[0]["headers"]


# ----- the official client against the fake -----------------------------------------------------


@pytest.mark.asyncio
async def test_client_chat_completions(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.script_chat("First.", "Second one.")
    answers = []
    for _ in range(3):
        completion = await client.chat.completions.create(model="gpt-x", messages=USER)  # type: ignore[arg-type]
        answers.append(completion.choices[0].message.content)
    assert answers == ["First.", "Second one.", "This is a fake answer."]
    assert completion.usage is not None and completion.usage.total_tokens == 3 + 5
    recorded = server.requests[0]
    assert (recorded["method"], recorded["path"]) == ("POST", "/v1/chat/completions")
    assert recorded["headers"]["authorization"] == "Bearer test" and recorded["json"]["messages"] == USER


@pytest.mark.asyncio
async def test_client_chat_streaming_with_usage(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.default_answer = "A streamed answer, in pieces."
    server.chunk_chars, server.chunk_delay = 4, 0.01
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="gpt-x", messages=USER, stream=True, stream_options={"include_usage": True}  # type: ignore[arg-type]
    )
    chunks = [chunk async for chunk in stream]
    assert time.monotonic() - started >= 0.01 * 7
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A streamed answer, in pieces."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


@pytest.mark.asyncio
async def test_client_embeddings_float_and_default_base64(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.embedding_dim = 16
    default = await client.embeddings.create(model="text-embedding-3-small", input=["same text", "other"])
    assert server.requests[-1]["json"]["encoding_format"] == "base64"  # what the client asks for by default
    floats = await client.embeddings.create(model="m", input="same text", encoding_format="float")
    assert default.data[0].embedding == floats.data[0].embedding == embedding_vector("same text", 16)
    assert default.data[1].embedding != default.data[0].embedding and len(default.data[1].embedding) == 16
    short = await client.embeddings.create(model="m", input="same text", dimensions=4, encoding_format="float")
    full = floats.data[0].embedding[:4]
    norm = math.sqrt(math.fsum(x * x for x in full))
    assert short.data[0].embedding == pytest.approx([x / norm for x in full], abs=1e-6)


@pytest.mark.asyncio
async def test_client_moderations(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.script_moderation(
        {"flagged": True, "categories": {"harassment": True}, "category_scores": {"harassment": 0.7}}
    )
    flagged = await client.moderations.create(input="you are awful")
    calm = await client.moderations.create(input="have a nice day")
    result = flagged.results[0]
    assert result.flagged and result.categories.harassment and result.category_scores.harassment == 0.7
    assert not result.categories.violence and result.category_scores.violence == 0.0
    assert not calm.results[0].flagged


@pytest.mark.asyncio
async def test_client_files(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    created = await client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    assert created.id.startswith("file-") and created.bytes == len(TRAINING) and created.status == "processed"
    expiring = await client.files.create(
        file=("batch.jsonl", b"{}"), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert expiring.expires_at == expiring.created_at + 3600
    assert (await client.files.retrieve(created.id)).filename == "train.jsonl"
    assert {f.id async for f in client.files.list()} == {created.id, expiring.id}
    assert (await client.files.content(created.id)).content == TRAINING
    assert (await client.files.delete(created.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)


@pytest.mark.asyncio
async def test_client_fine_tuning_lifecycle(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    training = await client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    job = await client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id, seed=7)
    assert job.status == "validating_files" and job.seed == 7
    for _ in range(10):
        job = await client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
    assert job.status == "succeeded" and job.fine_tuned_model is not None
    assert job.fine_tuned_model.startswith("ft:gpt-4o-mini:advisor:") and job.trained_tokens
    results = await client.files.content(job.result_files[0])
    assert results.content.decode().startswith("step,train_loss")

    events = [event async for event in client.fine_tuning.jobs.list_events(job.id, limit=2)]
    assert events[0].message == "The job has successfully completed"  # newest first, across pages
    assert [e.data["step"] for e in events if e.type == "metrics"] == [3, 2, 1]
    checkpoints = [c async for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-3"

    supervised = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}
    other = await client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id, method=supervised)
    assert other.hyperparameters.n_epochs == 1 and other.method is not None and other.method.type == "supervised"
    assert (await client.fine_tuning.jobs.cancel(other.id)).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        await client.fine_tuning.jobs.cancel(other.id)
    assert [j.id async for j in client.fine_tuning.jobs.list(limit=1)] == [other.id, job.id]

    with pytest.raises(openai.BadRequestError) as missing:
        await client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-nope")
    assert missing.value.param == "training_file"


@pytest.mark.asyncio
async def test_client_failed_job(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    training = await client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    server.set_job_outcome("failed")
    job = await client.fine_tuning.jobs.create(model="m", training_file=training.id)
    for _ in range(3):
        job = await client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None and job.error.code == "invalid_training_file"
    assert job.fine_tuned_model is None
    nxt = await client.fine_tuning.jobs.create(model="m", training_file=training.id)
    for _ in range(3):
        nxt = await client.fine_tuning.jobs.retrieve(nxt.id)
    assert nxt.status == "succeeded", "the outcome applies to the next job only"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("rate_limit", openai.RateLimitError, "rate_limit_exceeded"),
        ("insufficient_quota", openai.RateLimitError, "insufficient_quota"),
        ("server_error", openai.InternalServerError, None),
        ("context_length", openai.BadRequestError, "context_length_exceeded"),
    ],
)
async def test_client_status_faults(
    server: FakeOpenAI, client: AsyncOpenAI, kind: str, error: type[openai.APIStatusError], code: str | None
) -> None:
    options = {"retry_after": 2} if kind == "rate_limit" else {}
    server.fail_next("/chat/completions", kind, **options)  # type: ignore[arg-type]
    with pytest.raises(error) as raised:
        await client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert type(raised.value) is error and raised.value.code == code
    if kind == "rate_limit":
        assert raised.value.response.headers["retry-after"] == "2"
        assert raised.value.response.headers["retry-after-ms"] == "2000"
    ok = await client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert ok.choices[0].message.content == server.default_answer


@pytest.mark.asyncio
async def test_client_retries_honour_retry_after(server: FakeOpenAI) -> None:
    """The retry goes out no sooner than the 429's Retry-After (1 s): the client's own backoff, were the
    header ignored, would be at most 0.5 s. Measured between the attempts as they were sent."""
    sent: list[float] = []

    async def stamp(request: Any) -> None:
        sent.append(time.monotonic())

    server.fail_next("/embeddings", "rate_limit", retry_after=1)
    http = openai.DefaultAsyncHttpx2Client(event_hooks={"request": [stamp]})
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=1, http_client=http) as retrying:
        result = await retrying.embeddings.create(model="m", input="x", encoding_format="float")
    assert len(result.data[0].embedding) == 8
    assert len(server.requests) == len(sent) == 2 and server.requests[0]["json"] == server.requests[1]["json"]
    assert sent[1] - sent[0] >= 1.0


@pytest.mark.asyncio
async def test_client_timeout_on_slow(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.script_chat("Kept for the next request.")
    server.fail_next("/chat/completions", "slow", seconds=0.4)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=USER, timeout=0.2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.4
    await asyncio.sleep(0.4)  # the abandoned request's handler was cancelled: it took no answer
    server.fail_next("/chat/completions", "slow", seconds=0.1)
    done = await client.chat.completions.create(model="m", messages=USER, timeout=2)  # type: ignore[arg-type]
    assert done.choices[0].message.content == "Kept for the next request."


@pytest.mark.asyncio
async def test_client_midstream_error(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.fail_next("/chat/completions", "midstream_error", after_chunks=2)
    plain = await client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == server.default_answer, "waits for a streaming request"
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "This is ", "a fake a"]


async def test_models_list_as_the_official_client_reads_it(client: AsyncOpenAI) -> None:
    """GET /v1/models (the readiness check's probe), typed by the openai client's Model."""
    page = await client.models.list()
    ids = [model.id for model in page.data]
    assert "gpt-4o-mini" in ids and all(model.object == "model" and model.owned_by for model in page.data)


# ----- strict like OpenAI: keys, models, stream endings, 429 headers -------------------------------

GOOD_KEY = "sk-proj-good0123456789abcdef"


async def raw_stream(http: aiohttp.ClientSession, server: FakeOpenAI, **extra: Any) -> list[str]:
    """A streaming chat request's SSE frames, as sent (the empty tail after the last frame dropped)."""
    request = {"model": "gpt-x", "messages": USER, "stream": True, **extra}
    async with http.post(server.base_url + "/chat/completions", json=request) as response:
        assert response.status == 200
        raw = await response.text()
    frames = raw.split("\n\n")
    assert frames[-1] == "", "every frame ends with a blank line"
    return frames[:-1]


def frame_json(frame: str) -> Json:
    assert frame.startswith("data: ") and frame != "data: [DONE]", frame
    return json.loads(frame.removeprefix("data: "))


@pytest.mark.asyncio
async def test_a_key_outside_the_configured_set_is_refused_in_openais_words(spec: Spec) -> None:
    async with FakeOpenAI(api_keys={GOOD_KEY}) as server, aiohttp.ClientSession() as session:
        answers = []
        for key in (GOOD_KEY, "sk-proj-wrong0123456789wxyz", "short-key"):
            headers = {"Authorization": f"Bearer {key}"}
            request = {"model": "gpt-x", "messages": USER}
            async with session.post(server.base_url + "/chat/completions", json=request, headers=headers) as response:
                answers.append((response.status, await response.json()))
    assert answers[0][0] == 200
    for status, body in answers[1:]:
        spec.check("ErrorResponse", body)
        assert status == 401 and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["param"] is None
    assert answers[1][1]["error"]["message"] == (
        "Incorrect API key provided: sk-proj-***************wxyz. "
        "You can find your API key at https://platform.openai.com/account/api-keys."
    )
    assert answers[2][1]["error"]["message"].startswith("Incorrect API key provided: short-key. ")  # a short key whole


@pytest.mark.asyncio
async def test_the_client_reads_a_refused_key_as_authentication_error() -> None:
    async with FakeOpenAI(api_keys={GOOD_KEY}) as server:
        async with AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError) as raised:
                await wrong.chat.completions.create(model="gpt-x", messages=USER)  # type: ignore[arg-type]
        async with AsyncOpenAI(base_url=server.base_url, api_key=GOOD_KEY, max_retries=0) as right:
            ok = await right.chat.completions.create(model="gpt-x", messages=USER)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_api_key" and raised.value.status_code == 401
    assert ok.choices[0].message.content == server.default_answer


@pytest.mark.asyncio
async def test_a_model_the_server_does_not_serve_is_404_model_not_found(spec: Spec) -> None:
    async with (
        FakeOpenAI(models={"gpt-4o-mini", "text-embedding-3-small"}) as server,
        aiohttp.ClientSession(headers={"Authorization": "Bearer test"}) as http,
    ):
        chat = await call(http, server, "POST", "/chat/completions", json={"model": "gpt-x", "messages": USER})
        embed = await call(http, server, "POST", "/embeddings", json={"model": "gpt-x", "input": "a"})
        served = await call(http, server, "POST", "/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
        listed = await call(http, server, "GET", "/models")
        one = await call(http, server, "GET", "/models/gpt-4o-mini")
        missing = await call(http, server, "GET", "/models/gpt-x")
    for status, body in (chat, embed):
        spec.check("ErrorResponse", body)
        assert status == 404 and body["error"] == {
            "message": "The model `gpt-x` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    assert served[0] == 200
    assert [model["id"] for model in listed[1]["data"]] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert one == (200, {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "fake"})
    spec.check("ErrorResponse", missing[1])
    status, body = missing
    assert status == 404 and (body["error"]["code"], body["error"]["param"]) == ("model_not_found", "model")


@pytest.mark.asyncio
async def test_the_client_reads_an_unknown_model_as_not_found_and_a_fine_tuned_model_is_served() -> None:
    async with FakeOpenAI(models={"gpt-4o-mini"}) as server, AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0
    ) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.chat.completions.create(model="gpt-x", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError) as retrieved:
            await api.models.retrieve("gpt-x")
        uploaded = await api.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
        job = await api.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
        while job.status not in ("succeeded", "failed"):
            job = await api.fine_tuning.jobs.retrieve(job.id)
        assert job.fine_tuned_model is not None
        tuned = await api.chat.completions.create(model=job.fine_tuned_model, messages=USER)  # type: ignore[arg-type]
    assert raised.value.code == "model_not_found" and retrieved.value.code == "model_not_found"
    assert tuned.choices[0].message.content == server.default_answer


@pytest.mark.asyncio
async def test_stream_error_event_is_openais_error_body_and_ends_the_stream(
    spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    server.fail_next("/chat/completions", "stream_error", after_chunks=2)
    frames = await raw_stream(http, server)
    *chunks, error = frames
    assert len(chunks) == 3  # the role chunk and two content chunks, then the error event, no [DONE]
    for frame in chunks:
        spec.check("CreateChatCompletionStreamResponse", frame_json(frame))
    spec.check("ErrorResponse", frame_json(error))
    assert frame_json(error)["error"]["type"] == "server_error"
    assert (await raw_stream(http, server))[-1] == "data: [DONE]", "a fault fires only `times` times"


@pytest.mark.asyncio
async def test_the_client_raises_a_bare_api_error_for_a_stream_error_event(
    server: FakeOpenAI, client: AsyncOpenAI
) -> None:
    server.fail_next("/chat/completions", "stream_error", after_chunks=1)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
    received = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert type(raised.value) is openai.APIError and raised.value.type == "server_error"
    assert raised.value.message == "The server had an error while processing your request. Sorry about that!"
    assert received == ["", "This is "]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "options", "finish_reasons"),
    [
        ("stream_cut", {"after_chunks": 2}, [None, None, None]),  # the role chunk and two pieces: no finish chunk
        ("no_done", {}, [None, None, None, None, "stop"]),  # the whole answer and its finish chunk, then nothing
    ],
)
async def test_streams_that_end_cleanly_without_done(
    spec: Spec,
    server: FakeOpenAI,
    http: aiohttp.ClientSession,
    kind: str,
    options: Json,
    finish_reasons: list[str | None],
) -> None:
    server.default_answer = "Twenty-three characters"  # three chunks of 8
    server.fail_next("/chat/completions", kind, **options)  # type: ignore[arg-type]
    frames = await raw_stream(http, server, stream_options={"include_usage": True})
    chunks = [frame_json(frame) for frame in frames]  # fails on a [DONE] frame
    for chunk in chunks:
        spec.check("CreateChatCompletionStreamResponse", chunk)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == finish_reasons  # and no usage chunk (no choices)


@pytest.mark.asyncio
async def test_the_client_ends_a_stream_without_done_quietly(server: FakeOpenAI, client: AsyncOpenAI) -> None:
    server.fail_next("/chat/completions", "stream_cut", after_chunks=1)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
    pieces = [chunk.choices[0].delta.content async for chunk in stream]
    assert pieces == ["", "This is "]  # no exception: only the missing finish_reason tells


@pytest.mark.asyncio
@pytest.mark.parametrize("retry_after", [None, 2])
async def test_429s_carry_openais_rate_limit_headers_and_retry_after_only_when_asked(
    spec: Spec, server: FakeOpenAI, http: aiohttp.ClientSession, retry_after: float | None
) -> None:
    server.fail_next("/chat/completions", "rate_limit", retry_after=retry_after)
    async with http.post(server.base_url + "/chat/completions", json={"model": "m", "messages": USER}) as response:
        status, headers, body = response.status, response.headers, await response.json()
    spec.check("ErrorResponse", body)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-reset-requests"].endswith("s") and "x-ratelimit-reset-tokens" in headers
    if retry_after is None:
        assert "retry-after" not in headers and "retry-after-ms" not in headers
    else:
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("2", "2000")


def test_stream_faults_reject_options_they_do_not_take() -> None:
    fake = FakeOpenAI()
    with pytest.raises(ValueError, match="after_chunks"):
        fake.fail_next("/chat/completions", "no_done", after_chunks=1)
    with pytest.raises(ValueError, match="seconds"):
        fake.fail_next("/chat/completions", "stream_cut", seconds=1)
