"""Who may see a page: API keys, browser sessions, single-use login tokens, the login form.

A browser cannot send an ``Authorization`` header by itself, so the REST API's key rules are
adapted to it:

- A page request carrying ``Authorization: <key>`` is served for that key (scripts, curl).
- Otherwise a session cookie (``comet_agent_session_<port>``: HttpOnly, SameSite=Strict,
  Path=/) names a server-side session bound to the key's id. Sessions live in memory (a restart
  logs everyone out) and never contain the key.
- A session starts either from the login form (``POST /local/login`` with the key, shown on a
  401 page; refused with a 403 when the browser says it comes from another origin, by
  ``Sec-Fetch-Site``, else ``Origin``, else ``Referer``: no other site can log a visitor in) or
  from a single-use login token: ``POST /local/page-login`` with
  ``Authorization: <key>`` answers ``{"token", "expiresInMs"}`` (valid 120 s, once), and any page
  URL with ``?login=<token>`` sets the cookie and redirects to the same URL without the token.
  ``comet_agent.api.page_login.page_url()`` does this for ``comet-agent show --open`` and
  ``APIExperiment.display()``; the key itself never appears in a URL, a browser history or a log.
- A key sees only its own workspaces; any other workspace, project or experiment is a 404 page.
- Where a login goes next (``next``, and the page a token login returns to) is always a path on
  this server: anything a browser could read as another host (``//host``, ``/\\host``, ``/<tab>/host``)
  becomes ``/``, and control characters are percent-encoded, so no header is ever split.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse

from aiohttp import web

from comet_agent.server.pages.render import html_response, layout, login_page, redirect
from comet_agent.server.rest.common import ApiError, authenticate, json_response, read_body
from comet_agent.server.state import state_of
from comet_agent.server.store import key_id_of

LOGIN_TOKEN_TTL_MS = 120_000
#: Browser sessions one key may hold; its oldest is dropped beyond it. Per key, so that logins
#: with one key (another user's, or a script logging in in a loop) never log out another key.
MAX_SESSIONS_PER_KEY = 100
#: Unredeemed login tokens one key may hold (oldest dropped beyond it), per key for the same reason.
MAX_PENDING_LOGIN_TOKENS_PER_KEY = 32
#: First path segments that are never a workspace page: Comet's own REST namespaces (an unknown
#: path there must stay the REST API's JSON 404) and the icon browsers ask for by themselves.
#: ``local`` is not among them: it is the first key's user name, so the workspace an embedded run
#: writes to; the server's own ``/local/...`` paths are told apart from its pages by method and
#: shape instead (see ``pages/routes.py``).
RESERVED_SEGMENTS = frozenset({"api", "clientlib", "favicon.ico"})
#: The login form's body is read before anyone is known: a key and a path fit in far less.
MAX_LOGIN_FORM_BYTES = 16 * 1024
#: Characters kept as they are in a ``next`` path; everything else (controls, spaces, backslashes,
#: non-ASCII) is percent-encoded.
_PATH_SAFE_CHARS = "/-._~!$&'()*+,;=:@%?"


class PageSessions:
    """In-memory browser sessions and single-use login tokens (owned by the server's loop thread).

    Both are bounded per key (``MAX_SESSIONS_PER_KEY``, ``MAX_PENDING_LOGIN_TOKENS_PER_KEY``):
    a key that logs in again and again only pushes out its own oldest sessions.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # session id -> key id
        self.login_tokens: dict[str, tuple[str, float]] = {}  # token -> (key id, expiry, monotonic s)
        # key id -> its session ids / tokens, oldest first (dicts keep insertion order)
        self._sessions_of: dict[str, dict[str, None]] = {}
        self._tokens_of: dict[str, dict[str, None]] = {}

    def new_login_token(self, key_id: str) -> str:
        """A fresh single-use token for ``key_id``, valid ``LOGIN_TOKEN_TTL_MS``."""
        now = time.monotonic()
        for token, (_owner, expiry) in list(self.login_tokens.items()):
            if expiry <= now:
                self._drop_token(token)
        mine = self._tokens_of.setdefault(key_id, {})
        while len(mine) >= MAX_PENDING_LOGIN_TOKENS_PER_KEY:
            self._drop_token(next(iter(mine)))
        token = secrets.token_urlsafe(32)
        self.login_tokens[token] = (key_id, now + LOGIN_TOKEN_TTL_MS / 1000)
        mine[token] = None
        return token

    def redeem(self, token: str) -> str | None:
        """The key id of a valid token (consumed), or None."""
        entry = self.login_tokens.get(token)
        if entry is None:
            return None
        self._drop_token(token)
        return entry[0] if entry[1] >= time.monotonic() else None

    def new_session(self, key_id: str) -> str:
        """A new session id for ``key_id`` (its own oldest is dropped beyond ``MAX_SESSIONS_PER_KEY``)."""
        mine = self._sessions_of.setdefault(key_id, {})
        while len(mine) >= MAX_SESSIONS_PER_KEY:
            oldest = next(iter(mine))
            del mine[oldest]
            self.sessions.pop(oldest, None)
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = key_id
        mine[session_id] = None
        return session_id

    def _drop_token(self, token: str) -> None:
        entry = self.login_tokens.pop(token, None)
        if entry is not None:
            self._tokens_of.get(entry[0], {}).pop(token, None)


SESSIONS_KEY = web.AppKey("page_sessions", PageSessions)


def _cookie_name(request: web.Request) -> str:
    # Cookies are scoped by host, not port: two local servers on one host must not clash.
    port = request.url.port or 0
    return f"comet_agent_session_{port}"


def _page_key_id(request: web.Request) -> str | None:
    state = state_of(request)
    header = request.headers.get("Authorization", "").strip()
    if header:
        key_id = key_id_of(header)
        return key_id if key_id in state.key_ids else None
    session_id = request.cookies.get(_cookie_name(request))
    if session_id:
        session_key_id = request.app[SESSIONS_KEY].sessions.get(session_id)
        if session_key_id is not None and session_key_id in state.key_ids:
            return session_key_id
    return None


def _set_session_cookie(request: web.Request, response: web.StreamResponse, key_id: str) -> None:
    session_id = request.app[SESSIONS_KEY].new_session(key_id)
    response.set_cookie(
        _cookie_name(request), session_id, httponly=True, samesite="Strict", path="/", secure=request.secure
    )


async def create_login_token(request: web.Request) -> web.Response:
    """``POST /local/page-login`` (``Authorization: <key>``): a single-use page login token."""
    key_id = authenticate(request)
    token = request.app[SESSIONS_KEY].new_login_token(key_id)
    return json_response({"token": token, "expiresInMs": LOGIN_TOKEN_TTL_MS})


async def login_form_submit(request: web.Request) -> web.Response:
    """``POST /local/login`` (form: ``key``, ``next``): start a session and go to ``next``.

    Refused (403, no session) when the browser says the form was posted from another origin.
    """
    if not same_origin(request):
        body = (
            "<h1>Login refused</h1><p>This login form was sent from another site. Open this server's "
            "own page and log in there.</p>"
        )
        return html_response(layout("Login refused", body, [("home", "/")]), 403)
    try:
        raw = await read_body(request, MAX_LOGIN_FORM_BYTES)
    except ApiError:
        return login_page("/", "The login form was too large.")
    form = urllib.parse.parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=8)
    key = (form.get("key") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    state = state_of(request)
    if not key or key_id_of(key) not in state.key_ids:
        return login_page(target, "That API key is not accepted by this server.")
    response = redirect(target)
    _set_session_cookie(request, response, key_id_of(key))
    return response


def same_origin(request: web.Request) -> bool:
    """Whether a browser says this request comes from this server's own pages.

    ``Sec-Fetch-Site`` decides when present (only ``same-origin``, or ``none`` for a request the
    user made); else ``Origin`` must be this server's origin (``null`` is not); else ``Referer``
    must be on it. With none of them it is not a browser following another site's form (curl, a
    script holding the key), and it may proceed.
    """
    ours = f"{request.scheme}://{request.host}".lower()
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.strip().lower() == ours
    referer = request.headers.get("Referer")
    if referer is not None:
        parts = urllib.parse.urlsplit(referer.strip())
        return f"{parts.scheme}://{parts.netloc}".lower() == ours
    return True


def safe_next(target: str) -> str:
    """``target`` as a path on this server, else ``/``.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so ``/<tab>/evil.com``
    or ``/\\evil.com`` would leave for ``evil.com``: every character outside a URL path's own is
    percent-encoded first (which also keeps control characters out of the Location header), then
    anything that still starts like ``//host`` is refused.

    >>> safe_next("/\\t/evil.com"), safe_next("//evil.com"), safe_next("/ws/p?x=1")
    ('/%09/evil.com', '/', '/ws/p?x=1')
    """
    if not isinstance(target, str) or not target.startswith("/"):
        return "/"
    quoted = urllib.parse.quote(target, safe=_PATH_SAFE_CHARS)
    if quoted.startswith("//"):
        return "/"
    return quoted


def _login_redirect(request: web.Request) -> web.StreamResponse | None:
    token = request.query.get("login")
    if token is None:
        return None
    sessions = request.app[SESSIONS_KEY]
    key_id = sessions.redeem(token)
    clean_query = [(k, v) for k, v in request.query.items() if k != "login"]
    clean = request.raw_path.split("?", 1)[0]  # still percent-encoded, as the browser sent it
    if clean_query:
        clean += "?" + urllib.parse.urlencode(clean_query)
    response = redirect(safe_next(clean))
    if key_id is not None:
        _set_session_cookie(request, response, key_id)
    return response


async def authorize_page(request: web.Request) -> str | web.StreamResponse:
    """The key id of an authenticated page request, else the response to send instead."""
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPNotFound()  # not a page: the REST API's JSON 404, as before pages existed
    login = _login_redirect(request)
    if login is not None:
        return login
    key_id = _page_key_id(request)
    if key_id is None:
        return login_page(safe_next(request.raw_path))
    return key_id


def owns_workspace(state, key_id: str, workspace: str) -> bool:
    """True when ``workspace`` exists and belongs to ``key_id``."""
    return state.store.workspace_owner(workspace) == key_id
