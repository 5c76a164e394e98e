"""How the pages are written: HTML escaping, the shared layout, responses, formats, status.

Every experiment value goes through ``esc`` where it is written, and data for scripts through
``json_for_html``; every page response carries ``SECURITY_HEADERS`` (a Content-Security-Policy
that runs only this server's own script and stylesheet, and fetches nothing elsewhere).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from typing import Any, Iterable

from aiohttp import web

from comet_agent.server.rest.common import json_safe

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with the
    # login form's POST, which the cross-origin check (access.py) must then refuse; other origins
    # still get no referrer.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
}


def esc(value: Any) -> str:
    """HTML-escape any value (None -> empty string); quotes too, so it is safe in attributes."""
    return "" if value is None else html.escape(str(value), quote=True)


def json_for_html(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` are \\u-escaped.

    Non-finite numbers (from a store written before they were refused) become Comet's strings.
    """
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):
        text = json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def layout(title: str, body: str, breadcrumbs: Iterable[tuple[str, str | None]] = ()) -> str:
    """A whole page: the shared head (our CSS and JS only), a breadcrumb bar, then ``body``."""
    crumbs = " / ".join(f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text) for text, href in breadcrumbs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} - comet-agent</title>"
        '<link rel="stylesheet" href="/local/static/pages.css">'
        '<script src="/local/static/pages.js" defer></script></head>'
        f'<body><header class="top"><a class="brand" href="/">comet-agent</a>'
        f'<nav class="crumbs">{crumbs}</nav></header><main>{body}</main></body></html>'
    )


def html_response(text: str, status: int = 200) -> web.Response:
    """An HTML response carrying the pages' security headers (CSP, nosniff, no-store, ...)."""
    # errors="replace": a lone surrogate that an older store holds shows as U+FFFD instead of
    # failing the page with a 500 every time it is opened.
    return web.Response(
        body=text.encode("utf-8", errors="replace"),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` (a path on this server) with the security headers."""
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


def not_found_page(what: str) -> web.Response:
    """The 404 page; says the same for what is missing and what is another key's."""
    body = f'<h1>Not found</h1><p class="muted">{esc(what)} does not exist or is not yours.</p>'
    return html_response(layout("Not found", body, [("home", "/")]), 404)


def login_page(next_path: str, error: str | None = None) -> web.Response:
    """The 401 page with the login form, which comes back to ``next_path`` once logged in."""
    message = f'<p class="error">{esc(error)}</p>' if error else ""
    body = (
        f"<h1>API key required</h1>{message}<p>This server serves pages to the owner of an "
        "API key. Paste the key once; the browser keeps a session cookie for this server "
        "(<code>comet-agent show KEY --open</code> logs in for you).</p>"
        '<form method="post" action="/local/login" class="login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>API key <input type="password" name="key" autocomplete="off" required>'
        '</label> <button type="submit">Open</button></form>'
    )
    return html_response(layout("Log in", body), 401)


def format_ms(epoch_ms: int | None) -> str:
    """An epoch-milliseconds time as ``YYYY-MM-DD HH:MM:SS UTC`` ('' for None)."""
    if epoch_ms is None:
        return ""
    moment = _dt.datetime.fromtimestamp(epoch_ms / 1000, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(duration_ms: int | None) -> str:
    """A duration in milliseconds as ``1h 02m 03s`` ('' for None)."""
    if duration_ms is None:
        return ""
    seconds = int(duration_ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s" if seconds else f"{int(duration_ms)} ms"


def experiment_status(metadata: dict) -> str:
    """``running``, ``finished`` or ``crashed`` from the experiment metadata.

    Running: no end time and a heartbeat (or creation) younger than three heartbeat intervals.
    Finished: an end time and no crash flag. Crashed: the crash flag, or no end time and no
    recent heartbeat (the job or its agent died without ending the experiment).
    """
    if metadata.get("hasCrashed"):
        return "crashed"
    if metadata.get("running"):
        return "running"
    if metadata.get("endTimeMillis") is not None:
        return "finished"
    return "crashed"


def status_badge(status: str) -> str:
    """A ``running`` / ``finished`` / ``crashed`` badge."""
    return f'<span class="status status-{esc(status)}" data-status="{esc(status)}">{esc(status)}</span>'


def definition_list(rows: Iterable[tuple[str, Any]]) -> str:
    """A ``<dl>`` of label/value rows; an empty value shows as a muted dash."""
    items = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v) if v not in (None, '', []) else '<span class=muted>-</span>'}</dd>"
        for k, v in rows
    )
    return f'<dl class="kv">{items}</dl>'


def section(section_id: str, title: str, content: str, extra_class: str = "") -> str:
    """A titled card carrying ``data-section`` (what tests and the page's JS look for)."""
    return (
        f'<section id="{section_id}" class="card {extra_class}" data-section="{section_id}">'
        f"<h2>{esc(title)}</h2>{content}</section>"
    )
