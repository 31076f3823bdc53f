"""Per-channel settings in Redis, seen by every process: one hash `{prefix}channels`, scope -> JSON."""

from __future__ import annotations

import json

import redis.asyncio

from bot.state.channel_settings import ChannelSettings, check_scope, check_settings
from bot.state.redis_client import DEFAULT_PREFIX, guarded, text


class RedisChannelSettings:
    def __init__(self, client: redis.asyncio.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.key = f"{prefix}channels"

    @guarded
    async def get(self, scope: str) -> ChannelSettings | None:
        body = await self.client.hget(self.key, check_scope(scope))
        return ChannelSettings.from_dict(json.loads(text(body))) if body is not None else None

    @guarded
    async def put(self, scope: str, settings: ChannelSettings) -> ChannelSettings:
        scope, checked = check_scope(scope), check_settings(settings)
        await self.client.hset(self.key, scope, json.dumps(checked.to_dict()))
        return checked

    @guarded
    async def delete(self, scope: str) -> bool:
        return bool(await self.client.hdel(self.key, check_scope(scope)))

    @guarded
    async def all(self) -> dict[str, ChannelSettings]:
        found = await self.client.hgetall(self.key)
        decoded = {text(scope): ChannelSettings.from_dict(json.loads(text(body))) for scope, body in found.items()}
        return dict(sorted(decoded.items()))

    async def close(self) -> None:
        """The client belongs to the shared state, which closes it."""
