"""The advice console: a small web app for admins under /admin of the `web` process
(docs/console.md). Mounted only when ADVISOR_ADMIN_TOKEN is set. It reads and reviews the engine's
conversation memory through the `Memory` interface only (bot.state), whichever store backs it.

Modules: `auth` (token check, signed session cookies, sign-in limit), `csrf`, `handlers` (routes),
`jobs` (a reindex followed from the page), `channels` (per-channel settings), `finetune` (the fine-tuning loop), `status` (error counts), `templates` (HTML), `static/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from adapters.admin_console.channels import ChannelsPage
from adapters.admin_console.finetune import FinetunePage
from adapters.admin_console.handlers import Console
from bot.ops.readiness import Check
from bot.state import Memory
from config.settings import Settings


def mount(
    app: web.Application,
    settings: Settings,
    admin: Any,
    retriever: Any,
    checks: Mapping[str, Check],
    memory: Memory | None = None,
) -> Console | None:
    """Add the console's routes to `app` when a token is configured; None (nothing mounted) otherwise.
    `memory` is the engine's conversation memory, for the conversations page."""
    if settings.console.token is None or not settings.console.token.get_secret_value():
        return None
    secret = settings.console.secret.get_secret_value() if settings.console.secret else None
    console = Console(
        settings.console.token.get_secret_value(),
        secret or None,
        settings.console.session_hours,
        admin,
        retriever,
        checks,
        settings.core.knowledge_paths,
        memory=memory,
        show_messages=settings.console.show_messages,
    )
    console.add_routes(app)
    ChannelsPage(console).add_routes(app)  # /admin/channels: per-channel settings
    FinetunePage(console, settings).add_routes(app)  # /admin/finetune: the fine-tuning loop
    return console


__all__ = ["Console", "mount"]
