"""Fine-tuning jobs through the official `openai` async client: upload, create, show, list, cancel.

The client's own retries (2, with backoff that honours Retry-After) cover a 429 or 5xx on
any call; what still fails is reported by `describe`, which never includes the API key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
from openai.types.fine_tuning import FineTuningJob

from bot.finetune.errors import InputError
from config.settings import Settings

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def build_client(settings: Settings, max_retries: int = 2) -> openai.AsyncOpenAI:
    if not settings.openai.configured:
        raise InputError("this needs the OpenAI API: set OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)")
    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else "not-needed"
    return openai.AsyncOpenAI(
        api_key=key, base_url=settings.openai.base_url, timeout=settings.openai.timeout_seconds, max_retries=max_retries
    )


def describe(exc: openai.APIError) -> str:
    """A one-line account of an API failure: what was refused and the server's own message."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        return f"the API answered {exc.status_code}: {message}"
    if isinstance(exc, openai.APITimeoutError):
        return "the API did not answer in time"
    return f"could not reach the API ({exc.message})"


async def upload(client: openai.AsyncOpenAI, path: Path) -> str:
    """Upload a JSONL file for fine-tuning; the file id."""
    uploaded = await client.files.create(file=path, purpose="fine-tune")
    return uploaded.id


async def create_job(
    client: openai.AsyncOpenAI,
    model: str,
    training_file: str,
    validation_file: str | None,
    suffix: str | None,
    epochs: int | None,
) -> FineTuningJob:
    options: dict[str, Any] = {}
    if validation_file:
        options["validation_file"] = validation_file
    if suffix:
        options["suffix"] = suffix
    if epochs:
        options["method"] = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}}
    return await client.fine_tuning.jobs.create(model=model, training_file=training_file, **options)


def when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def job_summary(job: FineTuningJob) -> list[str]:
    """The facts of one job, one per line."""
    lines = [
        f"job:              {job.id}",
        f"status:           {job.status}",
        f"base model:       {job.model}",
        f"fine-tuned model: {job.fine_tuned_model or '-'}",
        f"created:          {when(job.created_at)}",
        f"finished:         {when(job.finished_at)}",
        f"training file:    {job.training_file}",
        f"validation file:  {job.validation_file or '-'}",
    ]
    if job.trained_tokens:
        lines.append(f"trained tokens:   {job.trained_tokens:,}")
    if job.error and job.error.message:
        lines.append(f"error:            {job.error.message} ({job.error.code})")
    return lines


async def show_job(client: openai.AsyncOpenAI, job_id: str, events: int = 5) -> tuple[FineTuningJob, list[str]]:
    """The job, and lines describing it with its latest events and its checkpoints."""
    job = await client.fine_tuning.jobs.retrieve(job_id)
    lines = job_summary(job)
    page = await client.fine_tuning.jobs.list_events(job_id, limit=events)
    if page.data:
        lines.append("latest events:")
        lines += [f"  {when(event.created_at)}  {event.message}" for event in reversed(page.data)]
    checkpoints = await client.fine_tuning.jobs.checkpoints.list(job_id)
    if checkpoints.data:
        lines.append("checkpoints:")
        for checkpoint in sorted(checkpoints.data, key=lambda c: c.step_number):
            loss = checkpoint.metrics.train_loss
            shown = f", train loss {loss:.4f}" if loss is not None else ""
            lines.append(f"  step {checkpoint.step_number}: {checkpoint.fine_tuned_model_checkpoint}{shown}")
    return job, lines


async def list_jobs(client: openai.AsyncOpenAI, limit: int) -> list[FineTuningJob]:
    page = await client.fine_tuning.jobs.list(limit=limit)
    return list(page.data)


def jobs_table(jobs: list[FineTuningJob]) -> str:
    if not jobs:
        return "No fine-tuning jobs."
    rows = [("job", "status", "base model", "fine-tuned model", "created")]
    rows += [(j.id, j.status, j.model, j.fine_tuned_model or "-", when(j.created_at)) for j in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
