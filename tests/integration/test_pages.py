"""Experiment and index pages served by the local server, read over HTTP (no browser needed):
sections, escaping, security headers, auth (keys, login tokens, cookies, other keys' 404s),
statuses and ordering, and that the REST API's answers for non-page paths did not change."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from comet_agent.api import API, APIExperiment
from comet_agent.api.page_login import page_url
from comet_agent.server.app import LocalServer
from comet_agent.server.pages.charts import MAX_POINTS_PER_SERIES
from tests.browser.pages_support import HOSTILE, fill_experiment, log_points

ESCAPED_SCRIPT = "&lt;script&gt;window.__pwned=1"


@pytest.fixture
def two_keys(tmp_path):
    """A server accepting two keys ("key-one", "key-two")."""
    with LocalServer(tmp_path / "two-keys", api_keys=["key-one", "key-two"]) as server:
        yield server


def _experiment(server, key, workspace="ws", project="proj", name="exp"):
    api = API(api_key=key, url_override=server.clientlib_url)
    return APIExperiment(api=api, workspace=workspace, project_name=project, experiment_name=name)


def _get(url, key=None, **kwargs):
    headers = {"Authorization": key} if key else {}
    return requests.get(url, headers=headers, timeout=30, **kwargs)


def _chart_data(page_html: str) -> dict:
    match = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page_html, re.S)
    assert match, "no chart data block"
    return json.loads(match.group(1))


def test_experiment_page_has_every_section_and_escapes_hostile_values(local_server):
    experiment = _experiment(local_server, local_server.api_key, name=f"n{HOSTILE}")
    fill_experiment(experiment, hostile=True, real_static=False)
    response = _get(experiment.url, local_server.api_key)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    for section in ("overview", "tags", "metrics", "system", "gpus", "packages", "git", "output"):
        assert f'data-section="{section}"' in page, section
    assert "<script>window" not in page and "<img" not in page and 'onerror="' not in page
    assert page.count(ESCAPED_SCRIPT) >= 8  # name, tags, packages, command, GPU, output, git, info
    # The chart data block cannot close its <script> element early.
    block = re.search(r'id="chart-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in block and "acc\\u003cscript\\u003e" in block
    assert f"acc{HOSTILE}" in {s["name"] for c in _chart_data(page)["charts"] for s in c["series"]}
    # stdout and stderr are told apart; the patch is highlighted line by line.
    assert re.search(r'<span class="stdout" data-stream="stdout">epoch 1 loss', page)
    assert re.search(r'<span class="stderr" data-stream="stderr">warning: something on stderr', page)
    assert '<span class="d-add">+lr = 0.01 # &lt;script&gt;' in page
    assert '<span class="d-del">-lr = 0.1</span>' in page
    # Packages are collapsed (closed <details>) and filterable.
    assert re.search(r'<details class="packages" id="installed-packages"[^>]*>', page)
    assert '<details class="packages" id="installed-packages" open' not in page
    assert 'data-filter-target="installed-packages-list"' in page


def test_pages_send_a_strict_content_security_policy(local_server):
    experiment = _experiment(local_server, local_server.api_key)
    for url in (
        experiment.url,
        local_server.url + "/",
        local_server.url + "/ws",
        local_server.url + "/ws/proj",
        local_server.url + "/local/static/pages.js",
    ):
        response = _get(url, local_server.api_key)
        assert response.status_code == 200, url
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "http" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = _get(experiment.url, local_server.api_key).text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert all(s.startswith("/") for s in sources), sources  # nothing from another origin
    assert re.findall(r"<script(?![^>]*(?:src=\"/local/static/pages.js\"|type=\"application/json\"))", page) == []
    assert "style=" not in page


def test_static_files_are_shipped_and_nothing_else_is_served(local_server):
    js = _get(local_server.url + "/local/static/pages.js")
    css = _get(local_server.url + "/local/static/pages.css")
    assert js.status_code == 200 and "application/javascript" in js.headers["Content-Type"]
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
    assert "http://" not in js.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in js.text
    assert "@import" not in css.text and "url(" not in css.text
    assert _get(local_server.url + "/local/static/..%2Fpages.py").status_code == 404
    assert _get(local_server.url + "/local/static/store.py").status_code == 404


def test_other_keys_pages_are_404_and_index_lists_own_workspaces(two_keys):
    mine = _experiment(two_keys, "key-one", workspace="alpha", project="p1")
    theirs = _experiment(two_keys, "key-two", workspace="beta", project="p2")
    assert _get(mine.url, "key-one").status_code == 200
    for url in (
        theirs.url,
        two_keys.url + "/beta",
        two_keys.url + "/beta/p2",
        f"{two_keys.url}/alpha/p1/{theirs.id}",
        f"{two_keys.url}/beta/p2/{mine.id}",
    ):
        response = _get(url, "key-one")
        assert response.status_code == 404, url
        assert "does not exist or is not yours" in response.text
        assert 'data-section="overview"' not in response.text
    # Existence does not leak: another key's experiment reads exactly like a missing one.
    missing = "f" * 32
    assert _get(theirs.url, "key-one").text.replace(theirs.id, "K") == _get(
        theirs.url.replace(theirs.id, missing), "key-one"
    ).text.replace(missing, "K")
    index = _get(two_keys.url + "/", "key-one").text
    assert 'data-workspace="alpha"' in index and "beta" not in index
    assert _get(two_keys.url + "/alpha/p1/" + "0" * 32, "key-one").status_code == 404
    assert _get(mine.url, "wrong-key").status_code == 401


def test_login_token_sets_a_cookie_once_and_the_form_logs_in(local_server):
    experiment = _experiment(local_server, local_server.api_key)
    anonymous = _get(experiment.url)
    assert anonymous.status_code == 401 and 'action="/local/login"' in anonymous.text
    assert local_server.api_key not in anonymous.text

    url = page_url(local_server.url, local_server.api_key, experiment.url)
    assert local_server.api_key not in url
    browser = requests.Session()
    first = browser.get(url, allow_redirects=False, timeout=30)
    assert first.status_code == 303 and first.headers["Location"] == experiment.url.split(local_server.url)[1]
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and local_server.api_key not in cookie
    assert browser.get(experiment.url, timeout=30).status_code == 200
    # The token is single-use: a second browser gets no session from it.
    stranger = requests.Session()
    assert stranger.get(url, timeout=30).status_code == 401

    form = requests.Session()
    refused = form.post(local_server.url + "/local/login", data={"key": "nope", "next": "/ws"}, timeout=30)
    assert refused.status_code == 401
    accepted = form.post(
        local_server.url + "/local/login",
        data={"key": local_server.api_key, "next": "//evil.example/x"},
        allow_redirects=False,
        timeout=30,
    )
    assert accepted.status_code == 303 and accepted.headers["Location"] == "/"
    assert form.get(experiment.url, timeout=30).status_code == 200
    with pytest.raises(ValueError):
        page_url(local_server.url, "not-a-key", "/")


def test_non_page_paths_answer_like_the_rest_api(local_server):
    experiment = _experiment(local_server, local_server.api_key)
    # "/local" is no longer among them: it is the first key's own workspace (see the next test).
    for method, path in (
        ("GET", "/api/rest/v2/nope"),
        ("GET", "/clientlib/nope"),
        ("GET", "/clientlib/a/b"),
        ("POST", experiment.url.split(local_server.url)[1]),
        ("POST", "/ws"),
        ("GET", "/api"),
    ):
        response = requests.request(
            method, local_server.url + path, headers={"Authorization": local_server.api_key}, timeout=30
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == 404
    assert _get(local_server.url + "/clientlib/isAlive/ver").status_code == 200


#: Projects named like the second segment of the server's own ``/local/...`` paths.
SERVER_PATH_NAMES = ("page-login", "login", "static", "admin")


def test_the_workspace_named_local_has_working_pages(local_server):
    """The first key's user name, hence its default workspace, is ``local``: the workspace an
    embedded run writes to. Its pages open like any other workspace's, even for projects named
    like the server's own ``/local/...`` paths, and those paths keep working beside them."""
    key = local_server.api_key
    api = API(api_key=key, url_override=local_server.clientlib_url)
    workspace = api.get_default_workspace()  # what an embedded run writes to
    assert workspace == "local"
    default = APIExperiment(api=api, workspace=workspace, experiment_name="default")
    assert default.url == f"{local_server.url}/local/general/{default.id}"
    named = {
        project: APIExperiment(api=api, workspace="local", project_name=project, experiment_name=project)
        for project in SERVER_PATH_NAMES
    }
    archived = requests.get(
        local_server.url + "/api/rest/v2/write/experiment/archive",
        headers={"Authorization": key},
        params={"experimentKey": named["static"].id},
        timeout=30,
    )
    assert archived.status_code == 200
    archived_url = f"{local_server.url}/local/static/archive/{named['static'].id}"

    workspace_page = _get(local_server.url + "/local", key)
    assert workspace_page.status_code == 200 and "text/html" in workspace_page.headers["Content-Type"]
    for project in ("general", *SERVER_PATH_NAMES):
        assert f'data-project="{project}"' in workspace_page.text
    project_page = _get(local_server.url + "/local/general", key)
    assert project_page.status_code == 200 and f'data-experiment-key="{default.id}"' in project_page.text
    for project, experiment in named.items():
        listing = _get(f"{local_server.url}/local/{project}", key)
        assert listing.status_code == 200, project
        assert f'data-experiment-key="{experiment.id}"' in listing.text, project
    for experiment, url in [
        (default, default.url),
        *((e, e.url) for p, e in named.items() if p != "static"),
        (named["static"], archived_url),
    ]:
        page = _get(url, key)
        assert page.status_code == 200, url
        assert 'data-section="overview"' in page.text and experiment.id in page.text, url
    # A browser without a session gets the login page there, not the REST API's JSON 404.
    anonymous = _get(default.url)
    assert anonymous.status_code == 401 and 'action="/local/login"' in anonymous.text
    # The server's own paths under /local/ still answer as before.
    assert _get(local_server.url + "/local/static/pages.js").status_code == 200
    assert _get(local_server.url + "/local/static/pages.css").status_code == 200
    assert _get(local_server.url + "/local/admin/intervals", key).json() == local_server.intervals
    browser = requests.Session()
    assert browser.get(page_url(local_server.url, key, default.url), timeout=30).status_code == 200
    form = requests.Session()
    logged_in = form.post(
        local_server.url + "/local/login", data={"key": key, "next": "/local"}, allow_redirects=False, timeout=30
    )
    assert logged_in.status_code == 303 and logged_in.headers["Location"] == "/local"
    assert 'data-project="general"' in form.get(local_server.url + "/local", timeout=30).text


def test_no_server_route_can_take_a_page_path(tmp_path):
    """Pages serve every workspace name except ``api``, ``clientlib`` and ``favicon.ico`` (Comet's
    own namespaces and the browser's icon). So no other route of the server may answer a GET on
    a path a page can have: ``/{w}``, ``/{w}/{p}``, ``/{w}/{p}/{key}``, ``/{w}/{p}/archive/{key}``,
    with a key of 32 to 50 letters and digits. For each route, the page paths nearest to it are
    resolved by the real router and must reach a page."""
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from comet_agent.server.app import build_application
    from comet_agent.server.pages.access import RESERVED_SEGMENTS
    from comet_agent.server.pages.experiment import experiment_page
    from comet_agent.server.pages.indexes import index_page, project_page, workspace_page
    from comet_agent.server.state import ServerState
    from comet_agent.server.store import Store

    assert RESERVED_SEGMENTS == {"api", "clientlib", "favicon.ico"}
    pages = {index_page, workspace_page, project_page, experiment_page}
    store = Store(tmp_path / "store")
    app = build_application(ServerState(store, ["key"], {}, 2**20))
    key = "0123456789abcdef" * 2

    def page_paths_beside(canonical: str) -> list[str]:
        segments = ["x" if s.startswith("{") else s for s in canonical.strip("/").split("/")]
        if segments[0] in RESERVED_SEGMENTS or len(segments) > 4:
            return []
        if len(segments) <= 2:
            return ["/" + "/".join(segments)]
        paths = ["/" + "/".join(segments[:2] + [key])]
        if len(segments) == 4:
            paths.append("/" + "/".join(segments[:2] + ["archive", key]))
        return paths

    async def handler_of(path: str):
        match = await app.router.resolve(make_mocked_request("GET", path, app=app))
        return match.handler

    async def check() -> list[str]:
        checked = []
        for route in app.router.routes():
            if route.handler in pages:
                continue
            for path in page_paths_beside(route.resource.canonical):
                assert await handler_of(path) in pages, f"{route.method} {route.resource.canonical} takes GET {path}"
                checked.append(path)
        return checked

    try:
        checked = asyncio.run(check())
    finally:
        store.close()
    assert "/local/static/" + key in checked and "/local/login" in checked  # the risky ones were tried


def test_index_orders_newest_first_with_status_host_and_duration(local_server):
    key = local_server.api_key
    finished = _experiment(local_server, key, name="first-finished")
    finished.update_system_details({"hostname": "host-a"})
    now_ms = int(time.time() * 1000)
    finished.set_start_time(now_ms - 3_723_000)
    finished.set_end_time(now_ms)
    time.sleep(0.01)  # creation times must differ for a stable order (a 10 ms wall-clock gap)
    lost = _experiment(local_server, key, name="second-lost")
    time.sleep(0.01)
    live = _experiment(local_server, key, name="third-live")
    local_server.set_intervals(heartbeat_ms=0)  # nobody is "recent": no end time means crashed
    page = _get(local_server.url + "/ws/proj", key).text
    order = [m for m in re.findall(r'data-experiment-key="([0-9a-f]+)"', page)]
    assert order == [live.id, lost.id, finished.id]
    rows = dict(re.findall(r'data-experiment-key="([0-9a-f]+)">(.*?)</tr>', page, re.S))
    assert 'data-status="finished"' in rows[finished.id] and "host-a" in rows[finished.id]
    assert "1h 02m 03s" in rows[finished.id]
    assert 'data-status="crashed"' in rows[lost.id]
    local_server.set_intervals(heartbeat_ms=60_000)
    assert 'data-status="running"' in _get(live.url, key).text
    workspace = _get(local_server.url + "/ws", key).text
    assert 'data-project="proj"' in workspace and workspace.index(live.id) < workspace.index(finished.id)


def test_charts_are_downsampled_and_keep_spikes(local_server):
    experiment = _experiment(local_server, local_server.api_key)
    start = 1_700_000_000_000
    points = [
        {"metricName": "sys.cpu.percent.avg", "metricValue": 10.0 + (i % 7), "timestamp": start + i * 100}
        for i in range(5000)
    ]
    points[1234]["metricValue"] = 99.5
    points[4321]["metricValue"] = 0.25
    log_points(experiment, points)
    charts = _chart_data(_get(experiment.url, local_server.api_key).text)["charts"]
    (cpu,) = [c for c in charts if c["id"] == "cpu"]
    (series,) = cpu["series"]
    assert series["count"] == 5000
    assert len(series["points"]) <= MAX_POINTS_PER_SERIES
    values = [p[1] for p in series["points"]]
    assert max(values) == 99.5 and min(values) == 0.25
    xs = [p[0] for p in series["points"]]
    assert xs == sorted(xs) and xs[0] == start and xs[-1] == start + 4999 * 100


def test_display_opens_the_page_logged_in(local_server, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0, autoraise=True: opened.append(url) or True)
    experiment = _experiment(local_server, local_server.api_key)
    experiment.display()
    (url,) = opened
    assert url.startswith(experiment.url + "?login=") and local_server.api_key not in url
    browser = requests.Session()
    page = browser.get(url, timeout=30)
    assert page.status_code == 200 and page.url == experiment.url
    assert 'data-section="overview"' in page.text


def test_chart_assets_are_served_with_the_pages_policy(local_server):
    """The experiment page's chart script and the vendored uPlot come from this server, under the
    same strict Content-Security-Policy; other vendor files (its licence, its README) are not served."""
    for name, kind in (
        ("charts.js", "application/javascript"),
        ("uPlot.iife.min.js", "application/javascript"),
        ("uPlot.min.css", "text/css"),
    ):
        response = _get(local_server.url + "/local/static/" + name)
        assert response.status_code == 200 and kind in response.headers["Content-Type"], name
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert _get(local_server.url + "/local/static/LICENSE.txt").status_code == 404
    assert _get(local_server.url + "/local/static/vendor%2Fuplot%2FREADME.md").status_code == 404
