"""Following a fine-tuning job until it ends: status changes, events and training metrics as they come."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import Any, TextIO, TypeVar

import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from tqdm import tqdm

from bot.finetune.jobs import TERMINAL, when

T = TypeVar("T")


def format_event(event: FineTuningJobEvent) -> str:
    """One line per event; a metrics event shows its step and every metric it carries."""
    data: Any = event.data
    if event.type == "metrics" and isinstance(data, dict) and "step" in data:
        total = f"/{data['total_steps']}" if "total_steps" in data else ""
        metrics = ", ".join(
            f"{name}={value:.4f}"
            for name, value in data.items()
            if name not in {"step", "total_steps"} and isinstance(value, int | float)
        )
        return f"{when(event.created_at)}  step {data['step']}{total}: {metrics}"
    level = "" if event.level == "info" else f"[{event.level}] "
    return f"{when(event.created_at)}  {level}{event.message}"


class Progress:
    """A step bar on a terminal (stderr), fed by metrics events; nothing when output is not a terminal."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None

    def update(self, event: FineTuningJobEvent) -> None:
        data: Any = event.data
        if event.type != "metrics" or not isinstance(data, dict) or "total_steps" not in data:
            return
        if self._bar is None:
            self._bar = tqdm(total=data["total_steps"], unit="step", file=sys.stderr, disable=None, dynamic_ncols=True)
        self._bar.update(max(0, int(data.get("step", 0)) - self._bar.n))
        if isinstance(data.get("train_loss"), int | float):
            self._bar.set_postfix_str(f"loss {data['train_loss']:.4f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def new_events(client: openai.AsyncOpenAI, job_id: str, seen: set[str]) -> list[FineTuningJobEvent]:
    """Events not yet seen, oldest first (the API lists newest first, so stop at the first seen one)."""
    fresh: list[FineTuningJobEvent] = []
    async for event in client.fine_tuning.jobs.list_events(job_id, limit=50):
        if event.id in seen:
            break
        fresh.append(event)
    seen.update(event.id for event in fresh)
    return fresh[::-1]


async def follow(client: openai.AsyncOpenAI, job_id: str, interval: float, out: TextIO | None = None) -> FineTuningJob:
    """Poll every `interval` seconds, printing what is new, until the job succeeds, fails or is cancelled."""
    out = out or sys.stdout
    seen: set[str] = set()
    status = None
    progress = Progress()
    try:
        while True:
            job = await client.fine_tuning.jobs.retrieve(job_id)
            if job.status != status:
                status = job.status
                tqdm.write(f"status: {status}", file=out)
            for event in await new_events(client, job_id, seen):
                tqdm.write(format_event(event), file=out)
                progress.update(event)
            if job.status in TERMINAL:
                return job
            await asyncio.sleep(interval)
    finally:
        progress.close()


async def until_interrupted(work: Awaitable[T]) -> T:
    """Await `work`; a Ctrl-C cancels it at once (CancelledError), whenever it lands.

    asyncio.run's own SIGINT handler is a plain signal.signal handler: it only runs once the main
    thread runs Python again, and nothing wakes a loop blocked in select(). A Ctrl-C that lands just
    before select() blocks, or on another thread (a terminal's Ctrl-C goes to the whole process), waited
    for the next poll, up to --interval later. loop.add_signal_handler sets a wakeup fd, so the loop
    wakes as the signal arrives.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError):  # no signal handlers on this loop or thread: asyncio.run's own
        return await task
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGINT)  # which installs the default handler
        if previous is not None:  # None: one not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)  # asyncio.run's own, for the rest of the run
