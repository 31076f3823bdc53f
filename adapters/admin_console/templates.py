"""The console's HTML: small functions over html.escape (every value passes through `e`), one per page."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from adapters.admin_console.csrf import FIELD
from bot.state.memory import MAX_CORRECTION_CHARS

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header form{margin-left:auto}
main{max-width:980px;margin:1.2rem auto;padding:0 1.2rem}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.8rem 1.1rem;margin-bottom:1rem}
table{border-collapse:collapse;width:100%} td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eef0f3;vertical-align:top}
.ok{color:#137333}.bad{color:#b3261e}.note{color:#5f6673;font-size:.9em}
.flash{padding:.6rem 1rem;border-radius:6px;margin-bottom:1rem}.flash.error{background:#fde7e7}.flash.info{background:#e6f4ea}
input[type=text],input[type=password],input[type=search]{padding:.35rem;min-width:18rem}
button{padding:.35rem .9rem;cursor:pointer} progress{width:18rem}
blockquote{margin:.3rem 0;padding:.3rem .6rem;background:#fff8e1;border-left:3px solid #f2b600;white-space:pre-wrap}
article.turn{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.6rem 1.1rem;margin-bottom:.8rem}
article.turn h3{font-size:1em;margin:.2rem 0 .4rem} .badge{padding:0 .4rem;border-radius:4px;background:#eef0f3}
.badge.bad{background:#fde7e7}.badge.ok{background:#e6f4ea} blockquote.answer{background:#eef4ff;border-color:#5b8def}
blockquote.correction{background:#e6f4ea;border-color:#137333} textarea{width:100%;min-height:5rem;font:inherit}
.pager{display:flex;gap:1rem} #filters label{margin-right:1rem}
"""


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def csrf_input(token: str) -> str:
    return f'<input type="hidden" name="{FIELD}" value="{e(token)}">'


def when(stamp: float | None) -> str:
    if stamp is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def page(title: str, body: str, csrf: str | None = None, flash: tuple[str, str] | None = None) -> str:
    """The layout; with `csrf` (a signed-in page) the navigation and the sign-out form."""
    nav = ""
    if csrf is not None:
        nav = (
            '<a href="/admin">Status</a><a href="/admin/knowledge">Knowledge base</a>'
            '<a href="/admin/conversations">Conversations</a><a href="/admin/channels">Channels</a>'
            '<a href="/admin/finetune">Fine-tuning</a>'
            f'<form method="post" action="/admin/logout">{csrf_input(csrf)}<button type="submit">Sign out</button></form>'
        )
    message = f'<div class="flash {e(flash[0])}" role="status">{e(flash[1])}</div>' if flash else ""
    script = '<script src="/admin/static/console.js" defer></script>' if csrf is not None else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · advisor console</title><style>{STYLE}</style>{script}</head>"
        f"<body><header><strong>advisor console</strong>{nav}</header><main>{message}<h1>{e(title)}</h1>{body}</main></body></html>"
    )


def login(csrf: str, error: str | None = None) -> str:
    body = (
        '<section><form method="post" action="/admin/login" id="login">'
        f'{csrf_input(csrf)}<label>Admin token <input type="password" name="token" autocomplete="current-password" autofocus required></label> '
        '<button type="submit">Sign in</button></form>'
        '<p class="note">The token is ADVISOR_ADMIN_TOKEN of this server.</p></section>'
    )
    return page("Sign in", body, flash=("error", error) if error else None)


def rows(pairs: Iterable[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in pairs)


def status(
    csrf: str,
    info: Mapping[str, Any],
    sources: Sequence[str],
    readiness: Mapping[str, str],
    errors: Mapping[str, float],
) -> str:
    labels = {"version": "Version", "mode": "Mode", "model": "Model", "indexed_passages": "Index size (passages)",
              "reindexing": "Reindex running", "uptime": "Uptime"}
    summary = rows((labels.get(k, k), v) for k, v in info.items())
    ready = "".join(
        f'<tr><th>{e(name)}</th><td class="{"ok" if result == "ok" else "bad"}">{e(result)}</td></tr>'
        for name, result in readiness.items()
    ) or '<tr><td colspan=2 class="note">no checks configured</td></tr>'
    paths = "".join(f"<li><code>{e(p)}</code></li>" for p in sources) or "<li class=note>none (set ADVISOR_KNOWLEDGE_PATHS)</li>"
    counted = "".join(
        f'<tr><th>{e(name)}</th><td class="{"bad" if value else "ok"}">{value:g}</td></tr>' for name, value in errors.items()
    )
    body = (
        f'<section id="summary"><h2>Engine</h2><table>{summary}</table></section>'
        f'<section id="readiness"><h2>Readiness</h2><table>{ready}</table></section>'
        f'<section id="sources"><h2>Knowledge paths</h2><ul>{paths}</ul></section>'
        f'<section id="errors"><h2>Errors since this process started</h2><table>{counted}</table>'
        '<p class="note">From the Prometheus registry (GET /metrics); with several workers, this worker\'s view.</p></section>'
    )
    return page("Status", body, csrf)


def progress_block(job: Mapping[str, Any] | None) -> str:
    if job is None:
        return '<div id="reindex-progress" data-state="idle" class="note">No reindex has run from the console.</div>'
    state = str(job["state"])
    detail = f"{job['files']} files, {job['chunks']} chunks"
    text = {"running": f"Reindexing… {detail}", "done": f"Done: {detail}", "failed": f"Failed: {job.get('error', '')}"}
    summary = f"<pre>{e(job['summary'])}</pre>" if job.get("summary") else ""
    bar = "<progress></progress> " if state == "running" else ""
    return (
        f'<div id="reindex-progress" data-state="{e(state)}" data-url="/admin/knowledge/reindex/status">'
        f'{bar}<span class="text">{e(text.get(state, state))}</span>{summary}</div>'
    )


def knowledge(
    csrf: str,
    summaries: Sequence[Any],
    job: Mapping[str, Any] | None,
    query: str = "",
    hits: Sequence[Any] | None = None,
    flash: tuple[str, str] | None = None,
) -> str:
    table = "".join(
        f"<tr><td><code>{e(s.source)}</code></td><td>{s.chunks}</td><td>{e(when(s.indexed_at))}</td>"
        f"<td>{len(s.suspicious)}</td></tr>"
        for s in summaries
    ) or '<tr><td colspan=4 class="note">Nothing is indexed.</td></tr>'
    flagged = "".join(
        f"<li><code>{e(s.source)}</code> ({e(c.location or c.title)}, chars {c.start}-{c.end}): "
        f"<strong>{e(', '.join(map(str, c.extra.get('suspicious', []))))}</strong><blockquote>{e(c.text[:600])}</blockquote></li>"
        for s in summaries
        for c in s.suspicious
    ) or "<li class=note>No passage is flagged.</li>"
    results = ""
    if hits is not None:
        items = "".join(
            f"<li><strong>[{hit.score:.4f}]</strong> {e(hit.chunk.title)}"
            f"{' &gt; ' + e(hit.chunk.location) if hit.chunk.location else ''}"
            f"{' <strong class=bad>[suspicious: ' + e(', '.join(hit.chunk.extra['suspicious'])) + ']</strong>' if hit.chunk.extra.get('suspicious') else ''}"
            f"<br><code>{e(hit.chunk.source)}</code> (chars {hit.chunk.start}-{hit.chunk.end})"
            f"<br><span class=note>{e(' '.join(hit.chunk.text.split())[:300])}</span></li>"
            for hit in hits
        ) or "<li class=note>No matching passages.</li>"
        results = f'<ol id="hits">{items}</ol>'
    body = (
        f'<section id="search"><h2>Search</h2><form method="get" action="/admin/knowledge">'
        f'<input type="search" name="q" value="{e(query)}" placeholder="a question"> <button type="submit">Search</button></form>{results}</section>'
        f'<section id="reindex"><h2>Reindex</h2><form method="post" action="/admin/knowledge/reindex" id="reindex-form">'
        f'{csrf_input(csrf)}<input type="text" name="path" placeholder="all knowledge paths, or one inside them"> '
        f'<button type="submit">Reindex</button></form>{progress_block(job)}</section>'
        f'<section id="sources"><h2>Sources</h2><table><tr><th>Source</th><th>Chunks</th><th>Last indexed</th><th>Suspicious</th></tr>{table}</table></section>'
        f'<section id="suspicious"><h2>Suspicious passages</h2><p class="note">Flagged by retrieval/injection.py; '
        f"they are still answered from, as data, never as instructions. Review the source files.</p><ul>{flagged}</ul></section>"
    )
    return page("Knowledge base", body, csrf, flash)


FEEDBACK = {1: ("👍 up", "ok"), -1: ("👎 down", "bad")}


def text_or_length(kind: str, text: str | None, show: bool) -> str:
    """A message's text when the operator opted in (ADVISOR_ADMIN_SHOW_MESSAGES), else its length only."""
    if text is None:
        return f'<p class="note {kind}">No question stored before this answer.</p>' if kind == "question" else ""
    if show:
        return f'<blockquote class="{kind}">{e(text)}</blockquote>'
    return f'<p class="{kind} length">{e(kind)}: {len(text):,} characters</p>'


def sources_list(meta: Mapping[str, Any]) -> str:
    items = []
    for source in meta.get("sources") or []:
        if not isinstance(source, Mapping):
            continue
        place = f", {source['location']}" if source.get("location") else ""
        score = source.get("score")
        shown = f" ({score:.3f})" if isinstance(score, (int, float)) else ""
        items.append(f"<li>[{e(source.get('number', '?'))}] {e(source.get('title', ''))}{e(place)} "
                     f"<code>{e(source.get('source', ''))}</code>{shown}</li>")
    return f'<ol class="sources">{"".join(items)}</ol>' if items else '<span class="note">none</span>'


def turn_facts(item: Any) -> str:
    """What the engine kept with the answer (bot/engine/remember.py): mode, latency, tokens, cost, flags."""
    answer = item.answer
    meta = answer.meta
    usage = meta.get("usage") if isinstance(meta.get("usage"), Mapping) else None
    facts: list[tuple[str, str]] = [("mode", str(meta.get("mode", "unknown")))]
    if meta.get("latency_ms") is not None:
        facts.append(("latency", f"{meta['latency_ms']} ms"))
    if meta.get("tone_pass_draft_ms") is not None:
        facts.append(("tone pass draft", f"{meta['tone_pass_draft_ms']} ms"))
    if usage is not None:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        facts.append(("model tokens", f"{prompt} prompt + {completion} completion"))
    facts.append(("answer tokens (estimate)", str(answer.tokens)))
    cost = meta.get("cost_usd")
    facts.append(("cost", f"${cost:.4f}" if isinstance(cost, (int, float)) else "none"))
    for key, label in (("reasons", "crisis signs"), ("categories", "moderation categories"), ("fallback", "fallback"),
                       ("truncated", "cut short"), ("flagged", "flagged")):
        value = meta.get(key)
        if value:
            facts.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)


def review_block(csrf: str, item: Any, back: str, show: bool) -> str:
    review = item.review
    turn_id = item.answer.id
    state = ""
    if review is not None:
        state = (f'<p class="review-state"><span class="badge ok">{e(review.status)}</span> '
                 f'<span class="note">{e(when(review.reviewed_at))}</span></p>')
        if review.correction is not None:
            state += text_or_length("correction", review.correction, show)
    action = f"/admin/conversations/{turn_id}/review"
    draft = review.correction if show and review is not None and review.correction else ""  # to edit, when shown
    hidden = f'{csrf_input(csrf)}<input type="hidden" name="back" value="{e(back)}">'
    return (
        f'<div class="review">{state}'
        f'<form method="post" action="{action}" class="mark-good">{hidden}'
        '<button type="submit" name="action" value="good">Mark good</button></form>'
        f'<form method="post" action="{action}" class="correct">{hidden}'
        f'<label>Corrected answer (at most {MAX_CORRECTION_CHARS:,} characters)'
        f'<textarea name="correction" maxlength="{MAX_CORRECTION_CHARS}">{e(draft)}</textarea></label>'
        '<button type="submit" name="action" value="correct">Save correction</button></form></div>'
    )


def conversations(
    csrf: str,
    listing: Any,
    items: Sequence[Any],
    more: bool,
    show: bool,
    flash: tuple[str, str] | None = None,
) -> str:
    filters = listing.filters
    checked = {True: " checked", False: ""}
    form = (
        '<section id="filters"><form method="get" action="/admin/conversations">'
        f'<label><input type="checkbox" name="disliked" value="1"{checked[filters.disliked]}> 👎 (thumbs down) only</label> '
        f'<label><input type="checkbox" name="flagged" value="1"{checked[filters.flagged]}> crisis / moderation</label> '
        f'<label>Channel <input type="text" name="prefix" value="{e(filters.prefix)}" '
        'placeholder="conversation key prefix, e.g. slack:T1:C1"></label> '
        '<button type="submit">Filter</button> <a href="/admin/conversations">clear</a></form></section>'
    )
    privacy = "" if show else (
        '<p class="note" id="privacy">Message text is hidden: questions, answers and corrections show as lengths, '
        "with their metadata. To show the text, set <code>ADVISOR_ADMIN_SHOW_MESSAGES=true</code> and restart the web "
        "process.</p>"
    )
    back = listing.query()
    turns = []
    for item in items:
        answer = item.answer
        mode = str(answer.meta.get("mode", "unknown"))
        thumb, tone = FEEDBACK.get(answer.feedback, ("no feedback", ""))
        review = item.review.status if item.review is not None else "unreviewed"
        question = item.question.content if item.question is not None else None
        turns.append(
            f'<article class="turn" id="turn-{answer.id}" data-mode="{e(mode)}" data-feedback="{e(answer.feedback or 0)}" '
            f'data-review="{e(review)}"><h3>#{answer.id} · {e(when(answer.created_at))} · <code>{e(answer.conversation)}</code> '
            f'· <span class="badge {tone}">{thumb}</span> · <span class="badge">{e(mode)}</span></h3>'
            f"{text_or_length('question', question, show)}{text_or_length('answer', answer.content, show)}"
            f"<table><tr><th>sources</th><td>{sources_list(answer.meta)}</td></tr>{turn_facts(item)}</table>"
            f"{review_block(csrf, item, back, show)}</article>"
        )
    listed = "".join(turns) or '<p class="note" id="none">No answered turn matches.</p>'
    pager = []
    if listing.page > 1:
        pager.append(f'<a id="newer" href="/admin/conversations?{e(listing.query(page=listing.page - 1))}">← newer</a>')
    pager.append(f'<span class="note">page {listing.page}</span>')
    if more:
        pager.append(f'<a id="older" href="/admin/conversations?{e(listing.query(page=listing.page + 1))}">older →</a>')
    body = f'{form}{privacy}<div id="turns">{listed}</div><nav class="pager">{"".join(pager)}</nav>'
    return page("Conversations", body, csrf, flash)


def refused(message: str) -> str:
    return page("Refused", f'<section><p class="bad" id="refused">{e(message)}</p>'
                '<p><a href="/admin">Back to the console</a></p></section>')
