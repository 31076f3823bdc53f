"""The console's per-channel settings page, /admin/channels: every scope (a workspace or a channel)
with its persona, knowledge scope and rate limits, and a form to add, edit or delete one.

A refused value changes nothing and says why. Knowledge-scope paths obey the reindex rules
(`Admin.resolve`: inside ADVISOR_KNOWLEDGE_PATHS, existing). The engine sees an edit within
seconds (bot/state/channel_settings.py `ChannelView`); this process at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from adapters.admin_console import templates
from adapters.admin_console.handlers import FORM, Console, html, redirect
from adapters.admin_console.templates import csrf_input, e
from bot.ops.admin import AdminError
from bot.state.channel_settings import (
    MAX_PERSONA_CHARS,
    RATE_BOUNDS,
    ChannelSettings,
    ChannelSettingsError,
    check_scope,
    check_settings,
)

log = logging.getLogger(__name__)
FIELDS = ("scope", "persona", "knowledge_scope", "user_per_minute", "conversation_per_minute")


class ChannelsPage:
    def __init__(self, console: Console) -> None:
        self.console = console

    def add_routes(self, app: web.Application) -> None:
        guard = self.console.signed_in
        app.router.add_get("/admin/channels", guard(self.page))
        app.router.add_post("/admin/channels", guard(self.save))
        app.router.add_post("/admin/channels/delete", guard(self.delete))

    @property
    def view(self) -> Any:
        """The engine's `ChannelView` (its store and cache), or None when this engine has none."""
        return getattr(self.console.admin.engine, "channels", None)

    async def page(
        self,
        request: web.Request,
        flash: tuple[str, str] | None = None,
        status: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> web.Response:
        view = self.view
        scopes: dict[str, ChannelSettings] = {}
        if view is None:
            flash = flash or ("error", "Per-channel settings are not available in this process.")
        else:
            try:
                scopes = await view.store.all()
            except Exception as exc:  # noqa: BLE001 - the page still shows the form
                log.warning("console: the channel settings could not be read: %s", type(exc).__name__)
                flash = flash or ("error", "The channel settings could not be read (see the server log).")
        saved = request.query.get("saved")
        if flash is None and saved in scopes:
            flash = ("info", f"Saved the settings of {saved}.")
        if form is None:
            wanted = request.query.get("scope", "")
            form = as_form(wanted, scopes[wanted]) if wanted in scopes else {}
        return html(render(self.console.csrf(request), scopes, form, flash), status)

    async def save(self, request: web.Request) -> web.Response:
        form = {name: request[FORM].get(name, "") for name in FIELDS}
        view = self.view
        if view is None:
            return await self.page(request, ("error", "Per-channel settings are not available in this process."), 503, form)
        try:
            scope = check_scope(form["scope"])
            settings = check_settings(self.parse(form))
            await view.store.put(scope, settings)
        except (ChannelSettingsError, AdminError) as exc:
            return await self.page(request, ("error", f"Not saved: {exc}"), 400, form)
        except Exception as exc:  # noqa: BLE001 - a store outage: shown, logged, nothing claimed
            log.warning("console: channel settings not saved: %s", type(exc).__name__)
            return await self.page(request, ("error", "Not saved: the settings store failed (see the server log)."), 503, form)
        view.forget([scope])
        log.info("console: channel settings saved for a scope")
        return redirect(f"/admin/channels?saved={scope}")

    async def delete(self, request: web.Request) -> web.Response:
        view = self.view
        raw = request[FORM].get("scope", "")
        try:
            if view is None:
                raise ChannelSettingsError("Per-channel settings are not available in this process.")
            scope = check_scope(raw)
            if not await view.store.delete(scope):
                raise ChannelSettingsError(f"'{scope}' has no settings to delete.")
        except ChannelSettingsError as exc:
            return await self.page(request, ("error", f"Not deleted: {exc}"), 400)
        view.forget([scope])
        log.info("console: channel settings deleted for a scope")
        return redirect("/admin/channels")

    def parse(self, form: Mapping[str, str]) -> ChannelSettings:
        """The form's values: blank fields inherit; paths must lie inside the knowledge paths."""
        persona = form.get("persona", "").strip() or None
        lines = [line.strip() for line in form.get("knowledge_scope", "").splitlines() if line.strip()]
        prefixes = None
        if lines:
            resolved = []
            for line in lines:
                found = self.console.admin.resolve(line)  # the reindex rules: inside the knowledge paths, existing
                resolved.append(str(found[0]))
            prefixes = tuple(resolved)
        return ChannelSettings(persona, prefixes, rate(form, "user_per_minute"), rate(form, "conversation_per_minute"))


def rate(form: Mapping[str, str], name: str) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        label = "per-user" if name.startswith("user") else "per-conversation"
        raise ChannelSettingsError(f"The {label} rate limit must be a whole number, not '{value[:20]}'.") from None


def as_form(scope: str, settings: ChannelSettings) -> dict[str, str]:
    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return {
        "scope": scope,
        "persona": text(settings.persona),
        "knowledge_scope": "\n".join(settings.knowledge_scope or ()),
        "user_per_minute": text(settings.user_per_minute),
        "conversation_per_minute": text(settings.conversation_per_minute),
    }


def render(csrf: str, scopes: Mapping[str, ChannelSettings], form: Mapping[str, str], flash: tuple[str, str] | None) -> str:
    def inherit(value: Any) -> str:
        return '<span class="note">inherited</span>' if value is None else e(value)

    table = "".join(
        f'<tr data-scope="{e(scope)}"><td><code>{e(scope)}</code></td>'
        f"<td>{inherit(s.persona[:120] + ('…' if len(s.persona) > 120 else '') if s.persona else None)}</td>"
        f"<td>{'<br>'.join(f'<code>{e(p)}</code>' for p in s.knowledge_scope) if s.knowledge_scope else inherit(None)}</td>"
        f"<td>{inherit(s.user_per_minute)}</td><td>{inherit(s.conversation_per_minute)}</td>"
        f'<td><a href="/admin/channels?scope={e(scope)}">Edit</a> '
        f'<form method="post" action="/admin/channels/delete" style="display:inline">{csrf_input(csrf)}'
        f'<input type="hidden" name="scope" value="{e(scope)}"><button type="submit">Delete</button></form></td></tr>'
        for scope, s in scopes.items()
    ) or '<tr><td colspan=6 class="note">No channel or workspace has its own settings: all use the configuration.</td></tr>'
    low, high = RATE_BOUNDS
    value = {name: e(form.get(name, "")) for name in FIELDS}
    body = (
        '<section id="scopes"><h2>Scopes</h2><table><tr><th>Scope</th><th>Persona</th><th>Knowledge scope</th>'
        f"<th>Per user / min</th><th>Per conversation / min</th><th></th></tr>{table}</table>"
        '<p class="note">A channel\'s settings override its workspace\'s, which override the configuration. '
        "Running processes see an edit within a few seconds.</p></section>"
        '<section id="edit"><h2>Add or edit</h2><form method="post" action="/admin/channels" id="channel-form">'
        f"{csrf_input(csrf)}"
        f'<p><label>Scope <input type="text" name="scope" value="{value["scope"]}" required '
        'placeholder="slack:T0123 or slack:T0123:C0456 or discord:GUILD:CHANNEL"></label></p>'
        f'<p><label>Persona (blank: inherit; at most {MAX_PERSONA_CHARS:,} characters)<br>'
        f'<textarea name="persona" rows="5" cols="80" maxlength="{MAX_PERSONA_CHARS}">{value["persona"]}</textarea></label></p>'
        "<p><label>Knowledge scope: folders or files inside the knowledge paths, one a line (blank: everything)<br>"
        f'<textarea name="knowledge_scope" rows="3" cols="80">{value["knowledge_scope"]}</textarea></label></p>'
        f'<p><label>Messages per user per minute <input type="number" name="user_per_minute" min="{low}" max="{high}" '
        f'value="{value["user_per_minute"]}"></label> '
        f'<label>per conversation per minute <input type="number" name="conversation_per_minute" min="{low}" max="{high}" '
        f'value="{value["conversation_per_minute"]}"></label> <span class="note">blank: inherit</span></p>'
        '<button type="submit">Save</button></form></section>'
    )
    return templates.page("Channels", body, csrf, flash)
