"""What already held before issue #17, re-checked cheaply so that it keeps holding.

Auth on every route, per-key isolation, keys looked up by digest only, no key in logs, files or
HTML, cookie flags and single-use page tokens, CSRF (no state change from a page method), CSP and
escaping, upload traversal, 413 and gzip-bomb limits, no errors under a flood of mixed requests,
and 0600/0700 modes under umask 000. Deeper versions live elsewhere (named in SECURITY.md); these
are the fast guards.
"""

from __future__ import annotations

import gzip
import logging
import os
import stat
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import requests

from comet_agent.api import API, APIExperiment
from comet_agent.api.page_login import page_url
from comet_agent.server.app import LocalServer
from comet_agent.server.discovery import PROOF_PATH
from comet_agent.server.rest.routes import OTHER_ROUTES, REST_PREFIXES, REST_ROUTES
from comet_agent.server.store import key_id_of
from tests.browser.pages_support import HOSTILE, fill_experiment
from tests.security.cli_support import cli_argv, cli_env
from tests.support.local_server_http import assert_comet_error, auth, create_experiment, rest

#: The only routes answered without a key: liveness, and the discovery proof asked before a key is sent.
OPEN_ROUTES = {"/clientlib/isAlive/ver", "/clientlib/health/ping", PROOF_PATH}
ONE, TWO = "holds-key-one-" + "1" * 16, "holds-key-two-" + "2" * 16


@pytest.fixture
def two_keys(tmp_path):
    with LocalServer(tmp_path / "holds", api_keys=[ONE, TWO]) as server:
        yield server


def _every_route():
    for method, path, _handler in REST_ROUTES:
        for prefix in REST_PREFIXES:
            yield method, prefix + path
    for method, path, _handler in OTHER_ROUTES:
        yield method, path


def test_every_route_but_liveness_needs_an_accepted_key(two_keys):
    """Pass: every REST, clientlib and admin route answers 401 with no key and with a wrong one."""
    experiment_key = create_experiment(two_keys, key=ONE)
    checked = 0
    for method, path in _every_route():
        if path in OPEN_ROUTES:
            continue
        for headers in ({}, {"Authorization": "wrong-key"}):
            response = requests.request(
                method,
                two_keys.url + path,
                headers=headers,
                timeout=30,
                params={"experimentKey": experiment_key},
                json={"experimentKey": experiment_key} if method == "POST" else None,
            )
            assert response.status_code == 401, (method, path, response.status_code)
        checked += 1
    assert checked > 60


def test_another_keys_experiment_reads_as_missing_everywhere(two_keys):
    """Pass: each experiment read with the other key is the same 404 as for a key that never existed."""
    theirs = create_experiment(two_keys, key=ONE)
    missing = uuid.uuid4().hex
    for method, path, _handler in REST_ROUTES:
        if method != "GET" or not path.startswith("experiment/"):
            continue
        other = requests.get(
            rest(two_keys, path), params={"experimentKey": theirs}, headers=auth(two_keys, TWO), timeout=30
        )
        absent = requests.get(
            rest(two_keys, path), params={"experimentKey": missing}, headers=auth(two_keys, TWO), timeout=30
        )
        assert other.status_code == absent.status_code == 404, path
        assert other.text.replace(theirs, "K") == absent.text.replace(missing, "K"), path


def test_keys_are_held_as_digests_and_never_reach_logs_files_or_pages(two_keys, caplog):
    """Pass: at DEBUG, after writes, a 401, a login and page views, neither key is in the server's
    log, in any file of its data directory, in any page or cookie; the store knows only SHA-256 ids
    (which is also what a key is looked up by: a dict of digests, no string comparison)."""
    caplog.set_level(logging.DEBUG)
    api = API(api_key=ONE, url_override=two_keys.clientlib_url)
    experiment = APIExperiment(api=api, workspace="ws", project_name="p")
    experiment.log_metric("loss", 0.5)
    requests.get(rest(two_keys, "workspaces"), headers={"Authorization": ONE[:-1] + "x"}, timeout=30)
    browser = requests.Session()
    first = browser.get(page_url(two_keys.url, ONE, experiment.url), allow_redirects=False, timeout=30)
    pages = [
        browser.get(two_keys.url + p, timeout=30).text
        for p in ("/", "/ws", "/ws/p", experiment.url[len(two_keys.url) :])
    ]
    seen = caplog.text + first.headers.get("Set-Cookie", "") + "".join(pages)
    for key in (ONE, TWO):
        assert key not in seen
        assert not [p for p in two_keys.data_dir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    owners = {row[0] for row in _store_rows(two_keys.data_dir, "SELECT owner_key_id FROM workspaces")}
    assert owners == {key_id_of(ONE)}


def _store_rows(data_dir: Path, query: str) -> list:
    import sqlite3

    connection = sqlite3.connect(f"{(data_dir / 'server.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def test_cookie_flags_single_use_tokens_and_no_state_change_from_pages(local_server):
    """Pass: the session cookie is HttpOnly, SameSite=Strict, Path=/; a login token works once; a
    page path answers no method but GET/HEAD (a cross-site form cannot change anything there), and a
    login token cannot be minted without the key in a header (no cookie-authenticated write exists)."""
    experiment = APIExperiment(
        api=API(api_key=local_server.api_key, url_override=local_server.clientlib_url), workspace="ws", project_name="p"
    )
    url = page_url(local_server.url, local_server.api_key, experiment.url)
    browser = requests.Session()
    cookie = browser.get(url, allow_redirects=False, timeout=30).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert requests.get(url, allow_redirects=True, timeout=30).status_code == 401  # spent
    for method in ("POST", "PUT", "DELETE"):
        assert browser.request(method, experiment.url, timeout=30).status_code == 404
    assert browser.post(local_server.url + "/local/page-login", timeout=30).status_code == 401


def test_pages_carry_the_csp_and_escape_hostile_values(local_server):
    """Pass: a page full of ``<script>`` and ``onerror=`` values shows them escaped under a CSP that
    runs only the server's own script."""
    experiment = APIExperiment(
        api=API(api_key=local_server.api_key, url_override=local_server.clientlib_url),
        workspace="ws",
        project_name="p",
        experiment_name=f"n{HOSTILE}",
    )
    fill_experiment(experiment, hostile=True, real_static=False)
    page = requests.get(experiment.url, headers=auth(local_server), timeout=30)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert "<script>window" not in page.text and 'onerror="' not in page.text and "&lt;script&gt;" in page.text


def test_an_upload_cannot_choose_where_it_is_written(local_server):
    """Pass: uploads named ``../../escape.txt`` or ``/etc/x`` land inside the experiment's files
    directory under a generated id, and read back unchanged."""
    experiment_key = create_experiment(local_server)
    for name in ("../../escape.txt", "/etc/comet-agent-x", "..\\..\\win.txt"):
        reply = requests.post(
            rest(local_server, "write/experiment/upload-asset"),
            headers=auth(local_server),
            params={"experimentKey": experiment_key, "fileName": name},
            files={"file": (name, b"payload")},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        asset = requests.get(
            rest(local_server, "experiment/asset/get-asset"),
            headers=auth(local_server),
            params={"experimentKey": experiment_key, "assetId": reply.json()["assetId"]},
            timeout=30,
        )
        assert asset.content == b"payload"
    files = local_server.data_dir / "files" / experiment_key
    assert len(list(files.iterdir())) == 3
    assert not (local_server.data_dir.parent / "escape.txt").exists() and not Path("/etc/comet-agent-x").exists()


def test_oversized_and_gzip_bomb_bodies_get_413(tmp_path):
    """Pass: with a 1 MiB limit, a 2 MiB upload and 64 MiB of zeros gzipped to about 64 KiB both get 413."""
    with LocalServer(tmp_path / "limits", api_keys=["limits-key"], max_upload_bytes=2**20) as server:
        experiment_key = create_experiment(server, key="limits-key")
        big = requests.post(
            rest(server, "write/experiment/upload-asset"),
            headers=auth(server, "limits-key"),
            params={"experimentKey": experiment_key},
            files={"file": ("f", b"x" * 2 * 2**20)},
            timeout=60,
        )
        assert_comet_error(big, 413)
        bomb = gzip.compress(
            b'{"experimentKey": "' + experiment_key.encode() + b'", "key": "k", "value": "' + b"0" * 64 * 2**20 + b'"}'
        )
        inflated = requests.post(
            rest(server, "write/experiment/log-other"),
            data=bomb,
            timeout=60,
            headers={**auth(server, "limits-key"), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert_comet_error(inflated, 413)


def test_a_flood_of_mixed_requests_gets_no_server_error(local_server, caplog):
    """Pass: 16 threads x 25 requests (writes, reads, wrong keys, garbage, unknown paths) answer
    no 5xx and the server logs no error."""
    caplog.set_level(logging.ERROR)
    experiment_key = create_experiment(local_server)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        session = requests.Session()
        for i in range(25):
            kind = (n + i) % 5
            if kind == 0:
                r = session.post(
                    rest(local_server, "write/experiment/metric"),
                    headers=auth(local_server),
                    timeout=30,
                    json={"experimentKey": experiment_key, "metricName": f"m{n}", "metricValue": i, "step": i},
                )
            elif kind == 1:
                r = session.get(
                    rest(local_server, "experiment/metrics/summary"),
                    headers=auth(local_server),
                    params={"experimentKey": experiment_key},
                    timeout=30,
                )
            elif kind == 2:
                r = session.post(
                    rest(local_server, "write/experiment/metric"),
                    headers={"Authorization": "nope"},
                    json={},
                    timeout=30,
                )
            elif kind == 3:
                r = session.post(
                    rest(local_server, "write/experiment/log-other"),
                    headers=auth(local_server),
                    data=b"\xff{not json",
                    timeout=30,
                )
            else:
                r = session.get(local_server.url + f"/api/rest/v2/no/such/{i}", headers=auth(local_server), timeout=30)
            with lock:
                statuses.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(statuses) == 16 * 25 and max(statuses) < 500, sorted(set(statuses))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_server_under_umask_000_keeps_files_0600_in_0700_directories(tmp_path):
    """Pass: ``comet-agent server`` started under umask 000, after an upload, leaves only 0600 files
    (store, WAL, generated key, server.json, the upload) in 0700 directories."""
    data_dir = tmp_path / "umask"
    process = subprocess.Popen(
        cli_argv("server", "--port", "0", "--data-dir", str(data_dir)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.umask(0),
    )
    try:
        root = None
        for _ in range(50):
            line = process.stdout.readline()
            if line.startswith("COMET_URL_OVERRIDE="):
                root = line.strip().split("=", 1)[1][: -len("/clientlib/")]
                break
        assert root, "the server did not start"
        key = (data_dir / "api_key").read_text().strip()
        experiment_key = requests.post(
            root + "/api/rest/v2/write/experiment/create",
            headers={"Authorization": key},
            json={"workspaceName": "w"},
            timeout=30,
        ).json()["experimentKey"]
        requests.post(
            root + "/api/rest/v2/write/experiment/upload-asset",
            headers={"Authorization": key},
            params={"experimentKey": experiment_key},
            files={"file": ("f", b"data")},
            timeout=30,
        )
        loose = []
        for path in [data_dir, *data_dir.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != (0o700 if path.is_dir() else 0o600):
                loose.append((str(path), oct(mode)))
        assert (data_dir / "server.json").exists() and list((data_dir / "files").rglob("*"))
        assert not loose, loose
    finally:
        process.terminate()
        process.wait(timeout=30)
