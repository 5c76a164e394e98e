"""HTML pages of the local server: an experiment page and workspace / project indexes.

Paths are the ones ``APIExperiment.url`` builds: ``/{workspace}/{project}/{experiment key}``
(``/{workspace}/{project}/archive/{experiment key}`` for an archived one), plus the indexes
``/`` (the key's workspaces), ``/{workspace}`` and ``/{workspace}/{project}``.

Offline by construction: the only script and stylesheet are ``static/pages.js`` and
``static/pages.css`` shipped in this package (a small SVG chart renderer written for it; no
third-party front-end code). Every page sends ``Content-Security-Policy: default-src 'none';
script-src 'self'; style-src 'self'; ...``: no inline script or style runs and nothing outside
the server can be fetched. Chart data travels inside the page as a non-executable
``<script type="application/json">`` block whose ``<``, ``>`` and ``&`` are escaped as JSON
``\\u003c``-style sequences; every other experiment value is HTML-escaped where it is written.

Series are downsampled on the server (``store.metric_series_downsampled``: at most
``MAX_POINTS_PER_SERIES`` min/max-preserving points per series), so a page stays small and fast
whatever the number of stored points.

Authentication (the REST API's key rules, adapted to a browser, which cannot send an
``Authorization`` header by itself):

- A page request carrying ``Authorization: <key>`` is served for that key (scripts, curl).
- Otherwise a session cookie (``comet_agent_session_<port>``: HttpOnly, SameSite=Strict,
  Path=/) names a server-side session bound to the key's id. Sessions live in memory (a restart
  logs everyone out) and never contain the key.
- A session starts either from the login form (``POST /local/login`` with the key, shown on a
  401 page) or from a single-use login token: ``POST /local/page-login`` with
  ``Authorization: <key>`` answers ``{"token", "expiresInMs"}`` (valid 120 s, once), and any page
  URL with ``?login=<token>`` sets the cookie and redirects to the same URL without the token.
  ``comet_agent.api.page_login.page_url()`` does this for ``comet-agent show --open`` and
  ``APIExperiment.display()``; the key itself never appears in a URL, a browser history or a log.
- A key sees only its own workspaces; any other workspace, project or experiment is a 404 page.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import re
import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterable

from aiohttp import web

from comet_agent.server import routes
from comet_agent.server.store import (
    DEFAULT_MAX_POINTS_PER_SERIES,
    downsample_min_max,
    experiments_for_index,
    key_id_of,
    metric_series_downsampled,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_POINTS_PER_SERIES = DEFAULT_MAX_POINTS_PER_SERIES
#: Points one chart may draw in all; a chart of many series (64 CPU cores) gets fewer per series
#: (never under ``MIN_POINTS_PER_SERIES``), so a page stays light for the browser too.
MAX_POINTS_PER_CHART = 6000
MIN_POINTS_PER_SERIES = 150
LOGIN_TOKEN_TTL_MS = 120_000
MAX_SESSIONS = 10_000
MAX_PENDING_LOGIN_TOKENS = 1_000
MAX_OUTPUT_CHARS = 2_000_000
MAX_PATCH_CHARS = 5_000_000
#: First path segments that belong to the REST API and the server's own endpoints, never pages.
RESERVED_SEGMENTS = frozenset({"api", "clientlib", "local", "static", "favicon.ico"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'")
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
}


# ----------------------------------------------------------------------------- auth


class PageSessions:
    """In-memory browser sessions and single-use login tokens (owned by the server's loop thread)."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # session id -> key id
        self.login_tokens: dict[str, tuple[str, float]] = {}  # token -> (key id, expiry, monotonic s)

    def new_login_token(self, key_id: str) -> str:
        """A fresh single-use token for ``key_id``, valid ``LOGIN_TOKEN_TTL_MS``."""
        now = time.monotonic()
        self.login_tokens = {t: v for t, v in self.login_tokens.items() if v[1] > now}
        while len(self.login_tokens) >= MAX_PENDING_LOGIN_TOKENS:
            self.login_tokens.pop(next(iter(self.login_tokens)))
        token = secrets.token_urlsafe(32)
        self.login_tokens[token] = (key_id, now + LOGIN_TOKEN_TTL_MS / 1000)
        return token

    def redeem(self, token: str) -> str | None:
        """The key id of a valid token (consumed), or None."""
        entry = self.login_tokens.pop(token, None)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def new_session(self, key_id: str) -> str:
        """A new session id for ``key_id`` (the oldest session is dropped beyond ``MAX_SESSIONS``)."""
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = key_id
        return session_id


SESSIONS_KEY = web.AppKey("page_sessions", PageSessions)


def _cookie_name(request: web.Request) -> str:
    # Cookies are scoped by host, not port: two local servers on one host must not clash.
    port = request.url.port or 0
    return f"comet_agent_session_{port}"


def _page_key_id(request: web.Request) -> str | None:
    state = request.app[routes.STATE_KEY]
    header = request.headers.get("Authorization", "").strip()
    if header:
        key_id = key_id_of(header)
        return key_id if key_id in state.key_ids else None
    session_id = request.cookies.get(_cookie_name(request))
    if session_id:
        key_id = request.app[SESSIONS_KEY].sessions.get(session_id)
        if key_id in state.key_ids:
            return key_id
    return None


def _set_session_cookie(request: web.Request, response: web.StreamResponse, key_id: str) -> None:
    session_id = request.app[SESSIONS_KEY].new_session(key_id)
    response.set_cookie(_cookie_name(request), session_id, httponly=True, samesite="Strict",
                        path="/", secure=request.secure)


async def create_login_token(request: web.Request) -> web.Response:
    """``POST /local/page-login`` (``Authorization: <key>``): a single-use page login token."""
    key_id = routes.authenticate(request)
    token = request.app[SESSIONS_KEY].new_login_token(key_id)
    return routes.json_response({"token": token, "expiresInMs": LOGIN_TOKEN_TTL_MS})


async def login_form_submit(request: web.Request) -> web.Response:
    """``POST /local/login`` (form: ``key``, ``next``): start a session and go to ``next``."""
    form = await request.post()
    key = str(form.get("key", "")).strip()
    target = _safe_next(str(form.get("next", "/")))
    state = request.app[routes.STATE_KEY]
    if not key or key_id_of(key) not in state.key_ids:
        return _login_page(target, "That API key is not accepted by this server.")
    response = _redirect(target)
    _set_session_cookie(request, response, key_id_of(key))
    return response


def _safe_next(target: str) -> str:
    # Only a path on this server: no scheme, no host, no protocol-relative "//host".
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# ------------------------------------------------------------------------ rendering


def esc(value: Any) -> str:
    """HTML-escape any value (None -> empty string); quotes too, so it is safe in attributes."""
    return "" if value is None else html.escape(str(value), quote=True)


def json_for_html(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` are \\u-escaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _layout(title: str, body: str, breadcrumbs: Iterable[tuple[str, str | None]] = ()) -> str:
    crumbs = " / ".join(f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)
                        for text, href in breadcrumbs)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)} - comet-agent</title>"
            "<link rel=\"stylesheet\" href=\"/local/static/pages.css\">"
            "<script src=\"/local/static/pages.js\" defer></script></head>"
            f"<body><header class=\"top\"><a class=\"brand\" href=\"/\">comet-agent</a>"
            f"<nav class=\"crumbs\">{crumbs}</nav></header><main>{body}</main></body></html>")


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=_SECURITY_HEADERS)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={**_SECURITY_HEADERS, "Location": location})


def _not_found(what: str) -> web.Response:
    body = f"<h1>Not found</h1><p class=\"muted\">{esc(what)} does not exist or is not yours.</p>"
    return _html(_layout("Not found", body, [("home", "/")]), 404)


def _login_page(next_path: str, error: str | None = None) -> web.Response:
    message = f'<p class="error">{esc(error)}</p>' if error else ""
    body = (f"<h1>API key required</h1>{message}<p>This server serves pages to the owner of an "
            "API key. Paste the key once; the browser keeps a session cookie for this server "
            "(<code>comet-agent show KEY --open</code> logs in for you).</p>"
            "<form method=\"post\" action=\"/local/login\" class=\"login\">"
            f"<input type=\"hidden\" name=\"next\" value=\"{esc(next_path)}\">"
            "<label>API key <input type=\"password\" name=\"key\" autocomplete=\"off\" required>"
            "</label> <button type=\"submit\">Open</button></form>")
    return _html(_layout("Log in", body), 401)


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


def _status_badge(status: str) -> str:
    return f'<span class="status status-{esc(status)}" data-status="{esc(status)}">{esc(status)}</span>'


def _dl(rows: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v) if v not in (None, '', []) else '<span class=muted>-</span>'}</dd>"
                    for k, v in rows)
    return f"<dl class=\"kv\">{items}</dl>"


def _section(section_id: str, title: str, content: str, extra_class: str = "") -> str:
    return (f"<section id=\"{section_id}\" class=\"card {extra_class}\" data-section=\"{section_id}\">"
            f"<h2>{esc(title)}</h2>{content}</section>")


# ------------------------------------------------------------------ metric charts

_UNIT_RULES = (
    (re.compile(r"(^|[._])percent([._]|$)|utilization|fan_speed"), "%"),
    (re.compile(r"_bps$"), "B/s"),
    (re.compile(r"(memory|rss|\.used|\.total|\.available|\.free|used_memory)$"), "bytes"),
    (re.compile(r"temperature$"), "°C"),
    (re.compile(r"power_(usage|limit)$"), "mW"),
    (re.compile(r"clock_(sm|mem)$"), "MHz"),
)


def metric_unit(name: str) -> str:
    """The unit a system metric's name implies (``%``, ``B/s``, ``bytes``, ``°C``, ``mW``, ...)."""
    for pattern, unit in _UNIT_RULES:
        if pattern.search(name):
            return unit
    return ""


_GPU_NAME = re.compile(r"^sys\.gpu\.(\d+)\.(.+)$")
_GPU_FIELD_CHARTS = {
    "gpu_utilization": ("gpu-utilization", "GPU utilisation"),
    "memory_utilization": ("gpu-utilization", "GPU utilisation"),
    "used_memory": ("gpu-memory", "GPU memory"),
    "total_memory": ("gpu-memory", "GPU memory"),
    "free_memory": ("gpu-memory", "GPU memory"),
    "percent.used_memory": ("gpu-memory-percent", "GPU memory used"),
    "temperature": ("gpu-temperature", "GPU temperature"),
    "power_usage": ("gpu-power", "GPU power"),
    "power_limit": ("gpu-power", "GPU power"),
    "clock_sm": ("gpu-clocks", "GPU clocks"),
    "clock_mem": ("gpu-clocks", "GPU clocks"),
    "fan_speed": ("gpu-fan", "GPU fan speed"),
}
#: (name pattern, chart id, title) in order; the first match wins. Unmatched sys.* metrics get a
#: chart per name prefix and unit; anything else is a user metric with a chart of its own.
_CHART_RULES = (
    (re.compile(r"^sys\.cpu\.(cgroup\.)?percent\."), "cpu", "CPU per core and average"),
    (re.compile(r"^sys\.(ram|swap)\.percent\."), "memory-percent", "RAM and swap used"),
    (re.compile(r"^sys\.ram\."), "ram", "RAM"),
    (re.compile(r"^sys\.swap\."), "swap", "Swap"),
    (re.compile(r"^sys\.load\."), "load", "Load average"),
    (re.compile(r"^sys\.disk\.(read|write)_bps$"), "disk-io", "Disk I/O rate"),
    (re.compile(r"^sys\.disk\.[^.]+\.percent\.used$"), "disk-usage-percent", "Disk usage"),
    (re.compile(r"^sys\.disk\.[^.]+\.used$"), "disk-usage", "Disk used"),
    (re.compile(r"^sys\.network\."), "network", "Network rate"),
    (re.compile(r"^sys\.proc\.cpu\."), "proc-cpu", "Job process tree: CPU"),
    (re.compile(r"^sys\.proc\.(rss|gpu\.\d+\.used_memory)$"), "proc-memory", "Job process tree: memory"),
    (re.compile(r"^sys\.proc\.(count|threads|open_files)$"), "proc-counts",
     "Job process tree: processes, threads, open files"),
    (re.compile(r"^sys\.agent\.cpu\."), "agent-cpu", "Agent: CPU"),
    (re.compile(r"^sys\.agent\."), "agent-memory", "Agent: memory"),
)


def chart_for_metric(name: str) -> tuple[str, str, str]:
    """``(chart id, title, unit)`` of the chart that shows metric ``name``.

    System metrics (``sys.``) are grouped (CPU cores together, one chart per GPU field with a
    series per GPU, disk and network rates, the job's process tree, ...); any other name is a
    user metric with its own chart (id ``user-<n>`` assigned by the caller; here ``user:<name>``).
    """
    unit = metric_unit(name)
    match = _GPU_NAME.match(name)
    if match:
        chart_id, title = _GPU_FIELD_CHARTS.get(match.group(2), (f"gpu-{match.group(2)}",
                                                                   f"GPU {match.group(2)}"))
        return chart_id, title, unit
    for pattern, chart_id, title in _CHART_RULES:
        if pattern.search(name):
            return chart_id, title, unit
    if name.startswith("sys."):
        prefix = name.rsplit(".", 1)[0]
        return f"sys:{prefix}:{unit}", prefix, unit
    return f"user:{name}", name, ""


_CHART_ORDER = ["cpu", "memory-percent", "ram", "swap", "load", "gpu-utilization", "gpu-memory",
                "gpu-memory-percent", "gpu-temperature", "gpu-power", "gpu-clocks", "gpu-fan",
                "disk-io", "disk-usage-percent", "disk-usage", "network", "proc-cpu", "proc-memory",
                "proc-counts", "agent-cpu", "agent-memory"]


def build_charts(series: dict[str, dict]) -> list[dict]:
    """Group downsampled series (``metric_series_downsampled``) into charts, in display order.

    Returns:
        ``[{"id", "title", "unit", "kind": "system" | "user", "x": "timestamp" | "step",
        "series": [{"name", "count", "points"}]}]``; a chart's unit splits it when its metrics
        disagree (``RAM (bytes)`` and ``RAM (%)`` are two charts).
    """
    charts: dict[str, dict] = {}
    for name, data in series.items():
        chart_id, title, unit = chart_for_metric(name)
        key = f"{chart_id}|{unit}"
        chart = charts.get(key)
        if chart is None:
            chart = charts[key] = {"id": chart_id, "title": title, "unit": unit,
                                   "kind": "system" if name.startswith("sys.") else "user",
                                   "x": data["x"], "series": []}
        chart["series"].append({"name": name, "count": data["count"], "points": data["points"]})

    def order(item: tuple[str, dict]) -> tuple:
        chart = item[1]
        if chart["kind"] == "user":
            return (2, chart["title"])
        if chart["id"] in _CHART_ORDER:
            return (0, _CHART_ORDER.index(chart["id"]), chart["unit"])
        return (1, chart["id"])

    result = []
    for index, (_, chart) in enumerate(sorted(charts.items(), key=order)):
        chart["domId"] = f"chart-{index}"
        chart["series"].sort(key=lambda s: _natural_key(s["name"]))
        per_series = max(MAX_POINTS_PER_CHART // len(chart["series"]), MIN_POINTS_PER_SERIES)
        for item in chart["series"]:
            points = item["points"]
            if len(points) > per_series:
                points = downsample_min_max([tuple(p) for p in points], per_series)
            # Six significant digits are more than a 640-pixel chart can show; they keep the page small.
            item["points"] = [[x, float(f"{y:.6g}")] for x, y in points]
        result.append(chart)
    return result


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# --------------------------------------------------------------- page sections


def _header_section(meta: dict, tags: list[str], status: str, details: dict) -> str:
    tag_html = "".join(f'<span class="tag">{esc(t)}</span>' for t in tags) or '<span class="muted">none</span>'
    rows = _dl([("Experiment key", meta["experimentKey"]), ("Workspace", meta["workspaceName"]),
                ("Project", meta["projectName"]), ("Start", format_ms(meta.get("startTimeMillis"))),
                ("End", format_ms(meta.get("endTimeMillis"))),
                ("Duration", format_duration(meta.get("durationMillis"))),
                ("Last heartbeat", format_ms(meta.get("lastHeartbeatMillis"))),
                ("Host", details.get("hostname"))])
    name = meta.get("experimentName") or meta["experimentKey"]
    return (f"<section id=\"overview\" class=\"card\" data-section=\"overview\">"
            f"<h1><span class=\"exp-name\">{esc(name)}</span> {_status_badge(status)}</h1>"
            f"<div class=\"tags\" data-section=\"tags\">{tag_html}</div>{rows}</section>")


def _system_section(details: dict) -> str:
    command = details.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    ips = details.get("networkInterfaceIps") or []
    rows = [("Host", details.get("hostname")), ("User", details.get("user")),
            ("OS", details.get("os")), ("OS type", details.get("osType")),
            ("OS release", details.get("osRelease")), ("Machine", details.get("machine")),
            ("Processor", details.get("processor")), ("Python", details.get("pythonVersion")),
            ("Python (verbose)", details.get("pythonVersionVerbose")),
            ("Executable", details.get("executable")), ("PID", details.get("pid")),
            ("IP", details.get("ip")), ("Interface IPs", ", ".join(str(i) for i in ips)),
            ("Total RAM (bytes)", details.get("totalRam"))]
    extra = details.get("logAdditionalSystemInfoList") or []
    rows += [(str(item.get("key")), item.get("value")) for item in extra if isinstance(item, dict)]
    command_html = f'<pre class="command">{esc(command)}</pre>' if command else '<p class="muted">no command recorded</p>'
    return _section("system", "System", f"<h3>Command</h3>{command_html}{_dl(rows)}")


def _gpu_section(details: dict) -> str:
    gpus = details.get("gpuStaticInfoList") or []
    if not gpus:
        return _section("gpus", "GPUs", '<p class="muted">no GPU recorded</p>')
    columns: list[str] = []
    for gpu in gpus:
        for key in gpu:
            if key not in columns:
                columns.append(key)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(g.get(c))}</td>" for c in columns) + "</tr>" for g in gpus)
    return _section("gpus", "GPUs", f"<table class=\"grid\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _packages_block(block_id: str, title: str, packages: list) -> str:
    items = "".join(f"<li>{esc(p)}</li>" for p in packages)
    return (f"<details class=\"packages\" id=\"{block_id}\" data-count=\"{len(packages)}\">"
            f"<summary>{esc(title)} ({len(packages)})</summary>"
            f"<input type=\"search\" class=\"filter\" placeholder=\"filter\" aria-label=\"filter {esc(title)}\" "
            f"data-filter-target=\"{block_id}-list\">"
            f"<ul class=\"pkg-list\" id=\"{block_id}-list\">{items}</ul></details>")


def _packages_section(details: dict) -> str:
    return _section("packages", "Packages",
                    _packages_block("installed-packages", "Installed Python packages",
                                    details.get("installedPackages") or [])
                    + _packages_block("os-packages", "OS packages", details.get("osPackages") or []))


def _diff_html(patch: str) -> str:
    lines = []
    for line in patch.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            css = "d-meta"
        elif line.startswith("@@"):
            css = "d-hunk"
        elif line.startswith("+"):
            css = "d-add"
        elif line.startswith("-"):
            css = "d-del"
        else:
            css = "d-ctx"
        lines.append(f'<span class="{css}">{esc(line)}</span>')
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _git_section(row: dict) -> str:
    metadata = json.loads(row["git_metadata"]) if row.get("git_metadata") else {}
    rows = _dl([("Branch", metadata.get("branch")), ("Commit", metadata.get("parent")),
                ("Origin", metadata.get("origin")), ("Root", metadata.get("root")),
                ("User", metadata.get("user"))])
    patch_path = row.get("git_patch_path")
    patch_html = '<p class="muted">no patch</p>'
    if patch_path and Path(patch_path).exists():
        raw = Path(patch_path).read_bytes()
        note = ""
        if raw[:2] == b"PK":  # the SDK uploads the patch zipped
            raw = _unzip_first(raw)
        text = raw.decode("utf-8", errors="replace")
        if len(text) > MAX_PATCH_CHARS:
            text, note = text[:MAX_PATCH_CHARS], f"<p class=\"muted\">patch truncated to {MAX_PATCH_CHARS} characters</p>"
        patch_html = f"<details open class=\"patch\"><summary>Patch</summary>{note}{_diff_html(text)}</details>" \
            if text.strip() else '<p class="muted">empty patch</p>'
    return _section("git", "Git", rows + patch_html)


def _unzip_first(raw: bytes) -> bytes:
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
            return archive.read(names[0]) if names else b""
    except (zipfile.BadZipFile, KeyError, OSError):
        return raw


def _output_section(store, experiment_key: str) -> str:
    rows = store.connection.execute(
        "SELECT line, is_stderr FROM output_lines WHERE experiment_key=? ORDER BY id", (experiment_key,))
    parts, total, truncated, count = [], 0, False, 0
    for line, is_stderr in rows:
        if total + len(line) > MAX_OUTPUT_CHARS:
            truncated = True
            break
        total += len(line)
        count += 1
        stream = "stderr" if is_stderr else "stdout"
        parts.append(f'<span class="{stream}" data-stream="{stream}">{esc(line)}</span>')
    if not parts:
        return _section("output", "Output", '<p class="muted">no output captured</p>')
    note = f'<p class="muted">output truncated after {count} lines</p>' if truncated else ""
    legend = '<p class="legend"><span class="stdout">stdout</span> <span class="stderr">stderr</span></p>'
    return _section("output", "Output", f"{legend}{note}<pre class=\"output\">{''.join(parts)}</pre>")


def _charts_section(charts: list[dict]) -> str:
    if not charts:
        return _section("metrics", "Metrics", '<p class="muted">no metrics logged</p>')
    blocks = []
    for chart in charts:
        unit = f" ({chart['unit']})" if chart["unit"] else ""
        total = sum(s["count"] for s in chart["series"])
        blocks.append(
            f"<figure class=\"chart\" id=\"{chart['domId']}\" data-chart-id=\"{esc(chart['id'])}\" "
            f"data-kind=\"{chart['kind']}\" data-series=\"{len(chart['series'])}\" data-stored-points=\"{total}\">"
            f"<figcaption>{esc(chart['title'])}{esc(unit)}</figcaption>"
            "<div class=\"plot\"></div><div class=\"chart-legend\"></div></figure>")
    system = "".join(b for b, c in zip(blocks, charts) if c["kind"] == "system")
    user = "".join(b for b, c in zip(blocks, charts) if c["kind"] == "user")
    content = (f"<h3>System metrics</h3><div class=\"charts\">{system or '<p class=muted>none</p>'}</div>"
               f"<h3>User metrics</h3><div class=\"charts\">{user or '<p class=muted>none</p>'}</div>")
    data = json_for_html({"charts": charts})
    return (_section("metrics", "Metrics", content)
            + f'<script type="application/json" id="chart-data">{data}</script>')


def render_experiment_page(state, experiment_key: str) -> str:
    """The experiment page's HTML (the experiment must exist and be readable by the caller)."""
    store = state.store
    meta = store.experiment_metadata(experiment_key, state.intervals.get("isAliveBeatDurationMillis"))
    row = store.experiment_row(experiment_key)
    # The stored record, not store.system_details(): that read also lists every distinct system
    # metric name, a second pass over all points that the page does not need.
    details = store.system_details_raw(experiment_key)
    tags = store.tags(experiment_key)
    status = experiment_status(meta)
    series = metric_series_downsampled(store, experiment_key, MAX_POINTS_PER_SERIES)
    ram_total = series.get("sys.ram.total")
    if ram_total and ram_total["x"] == "timestamp" and ram_total["points"]:
        details["totalRam"] = int(ram_total["points"][-1][1])
    charts = build_charts(series)
    body = (_header_section(meta, tags, status, details) + _charts_section(charts)
            + _system_section(details) + _gpu_section(details) + _packages_section(details)
            + _git_section(row) + _output_section(store, experiment_key))
    workspace, project = meta["workspaceName"], meta["projectName"]
    crumbs = [(workspace, "/" + urllib.parse.quote(workspace, safe="")),
              (project, f"/{urllib.parse.quote(workspace, safe='')}/{urllib.parse.quote(project, safe='')}"),
              (meta.get("experimentName") or experiment_key, None)]
    return _layout(meta.get("experimentName") or experiment_key, body, crumbs)


def _experiment_table(state, experiments: list[dict], show_project: bool) -> str:
    if not experiments:
        return '<p class="muted">no experiments</p>'
    heartbeat = state.intervals.get("isAliveBeatDurationMillis")
    rows = []
    for item in experiments:
        meta = state.store.experiment_metadata(item["experimentKey"], heartbeat)
        status = experiment_status(meta)
        href = "/{}/{}/{}{}".format(urllib.parse.quote(meta["workspaceName"], safe=""),
                                    urllib.parse.quote(meta["projectName"], safe=""),
                                    "archive/" if meta["archived"] else "", item["experimentKey"])
        project_cell = f"<td>{esc(item['projectName'])}</td>" if show_project else ""
        rows.append(f"<tr data-experiment-key=\"{esc(item['experimentKey'])}\">"
                    f"<td><a href=\"{esc(href)}\">{esc(item['name'] or item['experimentKey'])}</a></td>"
                    f"{project_cell}<td>{_status_badge(status)}</td><td>{esc(item['hostname'])}</td>"
                    f"<td>{esc(format_ms(item['startMs']))}</td>"
                    f"<td>{esc(format_duration(meta.get('durationMillis')))}</td></tr>")
    project_head = "<th>Project</th>" if show_project else ""
    return (f"<table class=\"grid experiments\"><thead><tr><th>Experiment</th>{project_head}<th>Status</th>"
            f"<th>Host</th><th>Start</th><th>Duration</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


# ---------------------------------------------------------------------- handlers


def _login_redirect(request: web.Request) -> web.StreamResponse | None:
    token = request.query.get("login")
    if token is None:
        return None
    sessions = request.app[SESSIONS_KEY]
    key_id = sessions.redeem(token)
    clean_query = [(k, v) for k, v in request.query.items() if k != "login"]
    clean = request.path_qs.split("?", 1)[0]
    if clean_query:
        clean += "?" + urllib.parse.urlencode(clean_query)
    response = _redirect(clean)
    if key_id is not None:
        _set_session_cookie(request, response, key_id)
    return response


async def _guard(request: web.Request) -> tuple[str | None, web.StreamResponse | None]:
    """(key id, None) for an authenticated page request, else (None, response to send)."""
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPNotFound()  # not a page: the REST API's JSON 404, as before pages existed
    redirect = _login_redirect(request)
    if redirect is not None:
        return None, redirect
    key_id = _page_key_id(request)
    if key_id is None:
        return None, _login_page(request.path_qs)
    return key_id, None


def _owned(state, key_id: str, workspace: str) -> bool:
    return state.store.workspace_owner(workspace) == key_id


async def index_page(request: web.Request) -> web.StreamResponse:
    """``GET /``: the workspaces of the key."""
    key_id, early = await _guard(request)
    if early is not None:
        return early
    state = request.app[routes.STATE_KEY]
    items = []
    for workspace in state.store.workspaces_of(key_id):
        count = len(experiments_for_index(state.store, workspace))
        items.append(f"<li data-workspace=\"{esc(workspace)}\"><a href=\"/{esc(urllib.parse.quote(workspace, safe=''))}\">"
                     f"{esc(workspace)}</a> <span class=\"muted\">{count} experiments</span></li>")
    listing = f"<ul class=\"index\">{''.join(items)}</ul>" if items else '<p class="muted">no workspaces yet</p>'
    body = _section("workspaces", "Workspaces", listing)
    return _html(_layout("Workspaces", body, [("workspaces", None)]))


async def workspace_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}``: its projects and every experiment, newest first."""
    workspace = request.match_info["workspace"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    key_id, early = await _guard(request)
    if early is not None:
        return early
    state = request.app[routes.STATE_KEY]
    if not _owned(state, key_id, workspace):
        return _not_found(f"workspace {workspace}")
    projects = state.store.projects(workspace)
    project_items = "".join(
        f"<li data-project=\"{esc(p['projectName'])}\"><a href=\"/{esc(urllib.parse.quote(workspace, safe=''))}/"
        f"{esc(urllib.parse.quote(p['projectName'], safe=''))}\">{esc(p['projectName'])}</a> "
        f"<span class=\"muted\">{p['numberOfExperiments']} experiments</span></li>" for p in projects)
    body = (_section("projects", "Projects", f"<ul class=\"index\">{project_items}</ul>")
            + _section("experiments", "Experiments",
                       _experiment_table(state, experiments_for_index(state.store, workspace), True)))
    return _html(_layout(workspace, body, [(workspace, None)]))


async def project_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}/{project}``: the project's experiments, newest first."""
    workspace, project = request.match_info["workspace"], request.match_info["project"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    key_id, early = await _guard(request)
    if early is not None:
        return early
    state = request.app[routes.STATE_KEY]
    if not _owned(state, key_id, workspace) or state.store.project(workspace, project) is None:
        return _not_found(f"project {workspace}/{project}")
    body = _section("experiments", "Experiments",
                    _experiment_table(state, experiments_for_index(state.store, workspace, project), False))
    return _html(_layout(f"{workspace}/{project}", body,
                         [(workspace, "/" + urllib.parse.quote(workspace, safe="")), (project, None)]))


async def experiment_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}/{project}/{experiment key}`` (and ``.../archive/{key}``): the experiment page."""
    workspace = request.match_info["workspace"]
    project = request.match_info["project"]
    experiment_key = request.match_info["experiment_key"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    key_id, early = await _guard(request)
    if early is not None:
        return early
    state = request.app[routes.STATE_KEY]
    meta = None
    if experiment_key.isalnum() and len(experiment_key) <= routes.MAX_EXPERIMENT_KEY_LENGTH \
            and _owned(state, key_id, workspace):
        meta = state.store.experiment_metadata(experiment_key, None)
    # The project segment may be a project the experiment is symlinked into: accept any
    # project of the same workspace that exists.
    if meta is None or meta["workspaceName"] != workspace or state.store.project(workspace, project) is None:
        return _not_found(f"experiment {experiment_key}")
    return _html(render_experiment_page(state, experiment_key))


async def static_file(request: web.Request) -> web.StreamResponse:
    """``GET /local/static/{name}``: the pages' own JS and CSS (no directory listing, no other files)."""
    name = request.match_info["name"]
    types = {"pages.js": "application/javascript", "pages.css": "text/css"}
    if name not in types:
        raise web.HTTPNotFound()
    try:
        data = (STATIC_DIR / name).read_bytes()
    except FileNotFoundError:  # an install without the package data (see pyproject package-data)
        logger.warning("the page asset %s is missing from the installed package", name)
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type=types[name], charset="utf-8",
                        headers={**_SECURITY_HEADERS, "Cache-Control": "max-age=300"})


def add_page_routes(app: web.Application) -> None:
    """Mount the pages; call after the REST routes (their fixed paths must win)."""
    app[SESSIONS_KEY] = PageSessions()
    app.router.add_route("POST", "/local/page-login", create_login_token)
    app.router.add_route("POST", "/local/login", login_form_submit)
    app.router.add_route("GET", "/local/static/{name}", static_file)
    app.router.add_route("*", "/", index_page)
    # "*": a non-GET on these paths is answered like any unknown REST path (JSON 404), as before.
    app.router.add_route("*", "/{workspace}", workspace_page)
    app.router.add_route("*", "/{workspace}/{project}", project_page)
    app.router.add_route("*", "/{workspace}/{project}/{experiment_key}", experiment_page)
    app.router.add_route("*", "/{workspace}/{project}/archive/{experiment_key}", experiment_page)
