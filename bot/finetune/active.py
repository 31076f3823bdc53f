"""Which chat model the advisor answers with: a fine-tuned candidate switched in (`advisor finetune use`,
the console's fine-tuning page) and the model before it, to roll back to.

Kept in the data directory (`model.json`) or, with REDIS_URL, in a Redis hash, so a restart keeps the
choice (bot/wiring.py reads it at start-up). The running engine takes a switch at once: the OpenAI
chat model reads its model name on every call (`apply`).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from bot.finetune.errors import InputError

# OpenAI model ids, fine-tuned ones too: ft:gpt-4o-mini-2024-07-18:org:suffix:id (and :ckpt-step-N)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")
REDIS_KEY = "advisor:model-choice"  # under bot.state.redis_client's default prefix, "advisor:"


def check_model_name(name: str) -> str:
    """`name` trimmed, or InputError when it is not a plausible model id (odd characters, too long)."""
    cleaned = (name or "").strip()
    if not MODEL_NAME.fullmatch(cleaned):
        shown = cleaned[:60] + ("…" if len(cleaned) > 60 else "")
        raise InputError(
            f"{shown!r} is not a model name: use letters, digits and . _ : / - only (at most 200 characters)"
        )
    return cleaned


class ModelChoice:
    """The chosen model and the previous one; subclasses store the record {"current", "previous", "changed_at"}."""

    async def load(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _save(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    async def clear(self) -> dict[str, Any]:
        """Forget the choice, so ADVISOR_OPENAI_CHAT_MODEL answers again; the record that was forgotten."""
        record = await self.load()
        if not record.get("current"):
            raise InputError("no model was chosen: the configured model is already in use")
        await self._forget()
        return record

    async def _forget(self) -> None:
        raise NotImplementedError

    async def current(self) -> str | None:
        """The chosen model, None when none is; InputError when the stored one is not a model name."""
        chosen = (await self.load()).get("current")
        return check_model_name(str(chosen)) if chosen else None

    async def use(self, model: str, running: str) -> dict[str, Any]:
        """Switch to `model`; the model answering now (`running`) becomes the one to roll back to."""
        model = check_model_name(model)
        record = await self.load()
        now = record.get("current") or running
        if model == now:
            raise InputError(f"{model} is already the model in use")
        record = {"current": model, "previous": now, "changed_at": time.time()}
        await self._save(record)
        return record

    async def rollback(self) -> dict[str, Any]:
        """Back to the previous model (the one rolled back from becomes the previous, to switch again)."""
        record = await self.load()
        if not record.get("previous"):
            raise InputError("there is no previous model to roll back to")
        record = {"current": record["previous"], "previous": record.get("current"), "changed_at": time.time()}
        await self._save(record)
        return record


class FileModelChoice(ModelChoice):
    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the model choice ({exc})", self.path) from exc
        return data if isinstance(data, dict) else {}

    async def _save(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)  # a reader never sees half a file

    async def _forget(self) -> None:
        self.path.unlink(missing_ok=True)


class RedisModelChoice(ModelChoice):
    """The same record in a Redis hash, shared by every process of the workspace (a decoding client)."""

    def __init__(self, client: Any, key: str = REDIS_KEY) -> None:
        self.client = client
        self.key = key

    async def load(self) -> dict[str, Any]:
        data = await self.client.hgetall(self.key)
        record: dict[str, Any] = dict(data or {})
        if "changed_at" in record:
            record["changed_at"] = float(record["changed_at"])
        return record

    async def _save(self, record: dict[str, Any]) -> None:
        mapping = {k: str(v) for k, v in record.items() if v is not None}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.hset(self.key, mapping=mapping)
            await pipe.execute()

    async def _forget(self) -> None:
        await self.client.delete(self.key)


def running_model(engine: Any) -> str | None:
    """The model name the engine's chat model calls now (None: no model, or not one with a name)."""
    model = getattr(engine, "model", None)
    name = getattr(model, "name", None)
    return name if isinstance(name, str) else None


def apply(engine: Any, model: str) -> bool:
    """Make the engine's chat model answer with `model` from its next call; False when it cannot."""
    return switch(getattr(engine, "model", None), model)


def switch(chat: Any, model: str) -> bool:
    """Point an OpenAI chat model (`OpenAIChatModel`, which reads `name` on every call) at `model`."""
    if chat is None or hasattr(chat, "inner") or not isinstance(getattr(chat, "name", None), str):
        return False  # no model, or advisor's own local model (its server serves one model)
    chat.name = check_model_name(model)
    return True
