"""The console's routes under /admin: sign-in and out, the status page, the knowledge base and the
conversations (answered turns to review).

Every handler but the sign-in page's needs an admin session (a GET without one is sent to the
sign-in page, a POST gets 401); every POST, sign-in included, needs the CSRF token of its session.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from adapters.admin_console import csrf, templates
from adapters.admin_console.auth import COOKIE, AttemptLimiter, Session, Sessions, TokenCheck
from adapters.admin_console.jobs import ReindexJob
from adapters.admin_console.status import error_counts
from bot.ops.admin import Admin, AdminError
from bot.ops.readiness import Check, check_all
from bot.state import Memory, TurnFilters
from bot.state.memory import MAX_CORRECTION_CHARS

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).with_name("static")
MAX_FORM_BYTES = 16 * 1024  # the console's forms are a token, a path or a question
MAX_QUERY_CHARS = 500
# a corrected answer is up to MAX_CORRECTION_CHARS characters, each up to 12 bytes url-encoded
MAX_REVIEW_FORM_BYTES = 128 * 1024
MAX_PREFIX_CHARS = 200
PAGE_SIZE = 50
SEARCH_MODES = ("hybrid", "dense", "sparse")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


SESSION = web.RequestKey("console_session", Session)
FORM = web.RequestKey("console_form", dict)


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs `location`."""
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


class Console:
    def __init__(
        self,
        token: str,
        secret: str | None,
        session_hours: float,
        admin: Admin,
        retriever: Any,
        checks: Mapping[str, Check],
        knowledge_paths: Sequence[str],
        limiter: AttemptLimiter | None = None,
        memory: Memory | None = None,
        show_messages: bool = False,
    ) -> None:
        self.tokens = TokenCheck(token)
        self.sessions = Sessions(secret, session_hours * 3600)
        self.admin = admin
        self.retriever = retriever
        self.checks = checks
        self.knowledge_paths = list(knowledge_paths)
        self.limiter = limiter or AttemptLimiter()
        self.job: ReindexJob | None = None
        self.memory = memory
        self.show_messages = show_messages

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/admin/login", self.login_page)
        app.router.add_post("/admin/login", self.login)
        app.router.add_post("/admin/logout", self.signed_in(self.logout))
        app.router.add_get("/admin", self.signed_in(self.status_page))
        app.router.add_get("/admin/", self.signed_in(self.status_page))
        app.router.add_get("/admin/knowledge", self.signed_in(self.knowledge_page))
        app.router.add_post("/admin/knowledge/reindex", self.signed_in(self.reindex))
        app.router.add_get("/admin/knowledge/reindex/status", self.signed_in(self.reindex_status))
        app.router.add_get("/admin/conversations", self.signed_in(self.conversations_page))
        app.router.add_post(
            "/admin/conversations/{turn}/review", self.signed_in(self.review, max_bytes=MAX_REVIEW_FORM_BYTES)
        )
        app.router.add_get("/admin/static/console.js", self.signed_in(self.script))

    # -- sessions and forms -------------------------------------------------------------------------

    def session(self, request: web.Request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE))

    def set_cookie(self, response: web.StreamResponse, request: web.Request, value: str, max_age: float) -> None:
        response.set_cookie(
            COOKIE, value, max_age=int(max_age), path="/admin", httponly=True, samesite="Strict", secure=request.secure
        )

    def signed_in(self, handler: Handler, max_bytes: int = MAX_FORM_BYTES) -> Handler:
        """`handler` for admin sessions only; POSTs (forms of at most `max_bytes`) also need the session's CSRF token."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.session(request)
            if session is None or not session.admin:
                if request.method == "GET":
                    return redirect("/admin/login")
                return html(templates.refused("Sign in first: this needs an admin session."), 401)
            request[SESSION] = session
            if request.method == "POST":
                form = await read_form(request, max_bytes)
                request[FORM] = form
                if not csrf.valid(self.sessions.key, session, form.get(csrf.FIELD) or request.headers.get(csrf.HEADER)):
                    return forged()
            return await handler(request)

        return guarded

    def csrf(self, request: web.Request) -> str:
        return csrf.token_for(self.sessions.key, request[SESSION])

    # -- sign-in ------------------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
        """The form, with an anonymous session whose CSRF token the form carries (so a sign-in
        cannot be forged either); a signed-in admin goes to the status page."""
        session = self.session(request)
        if session is not None and session.admin and error is None:
            return redirect("/admin")
        cookie = None
        if session is None or session.admin:
            session, cookie = self.sessions.new(admin=False)
        response = html(templates.login(csrf.token_for(self.sessions.key, session), error), status)
        if cookie is not None:
            self.set_cookie(response, request, cookie, session.expires - time.time())
        return response

    async def login(self, request: web.Request) -> web.Response:
        client = request.remote or "unknown"
        wait = self.limiter.retry_after(client)
        if wait:
            log.warning("console: too many sign-in attempts from one address")
            response = await self.login_page(request, f"Too many sign-in attempts; try again in {wait} s.", 429)
            response.headers["Retry-After"] = str(wait)
            return response
        form = await read_form(request)
        session = self.session(request)
        if not csrf.valid(self.sessions.key, session, form.get(csrf.FIELD)):
            return forged()
        if not self.tokens.matches(form.get("token", "")):
            log.warning("console: a sign-in with a wrong token")
            return await self.login_page(request, "That token is not right.", 401)
        fresh, cookie = self.sessions.new(admin=True)  # a new session id: nothing from before sign-in carries over
        log.info("console: an admin signed in")
        response = redirect("/admin")
        self.set_cookie(response, request, cookie, fresh.expires - time.time())
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request[SESSION])
        response = redirect("/admin/login")
        response.del_cookie(COOKIE, path="/admin")
        return response

    # -- pages --------------------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        info = await self.admin.status()
        _, readiness = await check_all(self.checks)
        return html(templates.status(self.csrf(request), info, self.knowledge_paths, readiness, error_counts()))

    async def knowledge_page(
        self, request: web.Request, flash: tuple[str, str] | None = None, status: int = 200
    ) -> web.Response:
        query = request.query.get("q", "").strip()[:MAX_QUERY_CHARS] if request.method == "GET" else ""
        mode = request.query.get("mode")
        hits = None
        if query:  # as `advisor search` does: the configured mode unless one is asked for
            hits = await self.retriever.search(query, mode=mode if mode in SEARCH_MODES else None)
        try:
            summaries = await self.admin.store.sources()
        except Exception as exc:  # noqa: BLE001 - the page still offers reindex and search
            log.warning("console: the store could not list its sources: %s", type(exc).__name__)
            summaries = []
            flash = flash or ("error", "The store could not list its sources (see the server log).")
        job = self.job.as_dict() if self.job is not None else None
        body = templates.knowledge(self.csrf(request), summaries, job, query, hits, flash)
        return html(body, status)

    async def reindex(self, request: web.Request) -> web.Response:
        path = request[FORM].get("path", "").strip() or None
        if (self.job is not None and self.job.running) or await self.admin.reindex_running():
            return await self.knowledge_page(request, ("error", "A reindex is already running; wait for it to finish."), 409)
        try:
            self.admin.resolve(path)  # the path rules before anything starts: nothing changes on a refusal
        except AdminError as exc:
            return await self.knowledge_page(request, ("error", str(exc)), 400)
        self.job = ReindexJob(self.admin, path)
        log.info("console: reindex started")
        return redirect("/admin/knowledge")

    async def reindex_status(self, request: web.Request) -> web.Response:
        body = self.job.as_dict() if self.job is not None else {"state": "idle", "files": 0, "chunks": 0}
        return web.json_response(body, headers=SECURITY_HEADERS, dumps=json.dumps)

    # -- conversations ------------------------------------------------------------------------------

    async def conversations_page(
        self,
        request: web.Request,
        flash: tuple[str, str] | None = None,
        status: int = 200,
        query: Mapping[str, str] | None = None,
    ) -> web.Response:
        """Answered turns, newest first, PAGE_SIZE a page, filtered by the query string (or `query`,
        the listing a review form came from)."""
        listing = Listing.read(request.query if query is None else query)
        if self.memory is None:
            return html(templates.conversations(self.csrf(request), listing, [], False, self.show_messages,
                                                ("error", "This console has no conversation memory to read.")), 503)
        try:
            found = await self.memory.answered_turns(listing.filters, PAGE_SIZE + 1, (listing.page - 1) * PAGE_SIZE)
        except Exception as exc:  # noqa: BLE001 - a page saying so beats a 500
            log.warning("console: the conversation memory could not be read: %s", type(exc).__name__)
            found, flash, status = [], ("error", "The conversation memory could not be read (see the server log)."), 503
        saved = request.query.get("saved", "") if query is None else ""
        if flash is None and saved.isdigit():
            flash = ("info", f"Review of answer #{saved} saved.")
        body = templates.conversations(
            self.csrf(request), listing, found[:PAGE_SIZE], len(found) > PAGE_SIZE, self.show_messages, flash
        )
        return html(body, status)

    async def review(self, request: web.Request) -> web.Response:
        """Mark an answer good, or store a corrected answer (trimmed, not empty, at most MAX_CORRECTION_CHARS)."""
        form = request[FORM]
        try:  # the listing the form came from, to go back to
            back = dict(parse_qsl(form.get("back", ""), max_num_fields=10))
        except ValueError:
            back = {}
        listing = Listing.read(back)

        async def refuse(message: str, status: int) -> web.Response:
            return await self.conversations_page(request, ("error", message + " Nothing was changed."), status, back)

        raw = request.match_info["turn"]
        if not raw.isdigit() or len(raw) > 18:
            return await refuse(f"There is no answered turn {raw[:40]!r}.", 404)
        turn_id = int(raw)
        action = form.get("action", "")
        correction: str | None = None
        if action == "good":
            status = "good"
        elif action == "correct":
            status = "corrected"
            correction = form.get("correction", "").strip()
            if not correction:
                return await refuse("A corrected answer cannot be empty: write the answer it should have been.", 400)
            if len(correction) > MAX_CORRECTION_CHARS:
                return await refuse(
                    f"A corrected answer is at most {MAX_CORRECTION_CHARS:,} characters; this one has {len(correction):,}.", 413
                )
        else:
            return await refuse("Choose “Mark good” or “Save correction”.", 400)
        if self.memory is None:
            return await refuse("This console has no conversation memory.", 503)
        if not await self.memory.set_review(turn_id, status, correction):
            return await refuse(f"There is no answered turn #{turn_id} (it may have been forgotten or deleted by retention).", 404)
        log.info("console: answer %d reviewed: %s", turn_id, status)
        return redirect(f"/admin/conversations?{listing.query(saved=turn_id)}#turn-{turn_id}")

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "console.js").read_bytes(), content_type="application/javascript", headers=SECURITY_HEADERS
        )


class Listing:
    """Which answered turns a conversations page shows: its filters and page (from a query string)."""

    def __init__(self, filters: TurnFilters, page: int) -> None:
        self.filters = filters
        self.page = page

    @classmethod
    def read(cls, query: Mapping[str, str]) -> Listing:
        page = query.get("page", "1")
        filters = TurnFilters(
            disliked=query.get("disliked") == "1",
            prefix=query.get("prefix", "").strip()[:MAX_PREFIX_CHARS],
            flagged=query.get("flagged") == "1",
        )
        return cls(filters, int(page) if page.isdigit() and 0 < len(page) < 7 and int(page) > 0 else 1)

    def query(self, page: int | None = None, **extra: Any) -> str:
        """This listing as a query string (on another `page`), with `extra` parameters."""
        params: dict[str, Any] = {}
        if self.filters.disliked:
            params["disliked"] = "1"
        if self.filters.prefix:
            params["prefix"] = self.filters.prefix
        if self.filters.flagged:
            params["flagged"] = "1"
        number = self.page if page is None else page
        if number > 1:
            params["page"] = number
        return urlencode({**params, **extra})


def forged() -> web.Response:
    log.warning("console: a POST without a valid CSRF token was refused")
    return html(templates.refused(
        "Refused: this form's security token is missing or does not belong to your session, so nothing was "
        "changed. Reload the page and try again."), 403)


async def read_form(request: web.Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The url-encoded form, at most `max_bytes` (413 beyond, chunked bodies too)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    chunks: list[bytes] = []
    size = 0
    while True:  # one read() returns what has arrived so far, not necessarily the whole body
        chunk = await request.content.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
    body = b"".join(chunks)
    if request.content_type not in ("application/x-www-form-urlencoded", ""):
        raise web.HTTPUnsupportedMediaType(text="the console takes url-encoded forms")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError) as exc:
        raise web.HTTPBadRequest(text="that form could not be read") from exc
