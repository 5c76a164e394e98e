"""Item 5: several keys on one server cannot reach into each other.

Only the admin key (the server's first key) changes server-wide intervals; a key cannot take
another key's default workspace (its user name) and lock its owner out; another key's
experiment key cannot be reused; logins with one key never end another key's sessions.
"""

from __future__ import annotations

import uuid

import requests

from comet_agent.server.app import LocalServer
from comet_agent.server.pages.access import MAX_SESSIONS_PER_KEY, PageSessions
from comet_agent.server.store import Store, key_id_of
from tests.support.local_server_http import assert_comet_error, rest

FIRST, SECOND = "first-key-" + "a" * 16, "second-key-" + "b" * 16


def _server(tmp_path, name="keys"):
    return LocalServer(tmp_path / name, api_keys=[FIRST, SECOND])


def _create(server, key, workspace=None):
    body = {"projectName": "proj"}
    if workspace is not None:
        body["workspaceName"] = workspace
    return requests.post(rest(server, "write/experiment/create"), json=body, headers={"Authorization": key}, timeout=30)


def _add_run(server, key, **fields):
    body = {"apiKey": key, "projectName": "proj", "offline": False, "local_timestamp": 0, **fields}
    return requests.post(
        server.url + "/clientlib/logger/add/run", json=body, headers={"Authorization": key}, timeout=30
    )


def test_only_the_admin_key_changes_server_wide_intervals(tmp_path):
    """Pass: the second key's POST to /local/admin/intervals is a 403 and changes nothing; it may
    still read them; the first key (the admin key) changes them."""
    with _server(tmp_path) as server:
        before = server.intervals
        refused = requests.post(
            server.url + "/local/admin/intervals",
            json={"heartbeatMs": 1},
            headers={"Authorization": SECOND},
            timeout=30,
        )
        assert_comet_error(refused, 403)
        assert server.intervals == before
        read = requests.get(server.url + "/local/admin/intervals", headers={"Authorization": SECOND}, timeout=30)
        assert read.status_code == 200 and read.json() == before
        allowed = requests.post(
            server.url + "/local/admin/intervals",
            json={"heartbeatMs": 2000},
            headers={"Authorization": FIRST},
            timeout=30,
        )
        assert allowed.status_code == 200 and server.intervals["isAliveBeatDurationMillis"] == 2000


def test_a_generated_key_is_the_admin_key(tmp_path):
    """Pass: a server with no configured key generates one, and that key may change intervals."""
    with LocalServer(tmp_path / "generated") as server:
        allowed = requests.post(
            server.url + "/local/admin/intervals",
            json={"cpuIntervalMs": 5000},
            headers={"Authorization": server.api_key},
            timeout=30,
        )
        assert allowed.status_code == 200 and server.intervals["cpuMonitorIntervalMillis"] == 5000


def test_another_key_cannot_take_a_keys_default_workspace(tmp_path):
    """Pass: before the first key ever wrote, the second key creating in ``local`` (the first key's
    user name, hence its default workspace), by REST or by the live SDK's handshake, is refused;
    the first key then creates in its default workspace as usual. The same holds the other way
    round for the second key's user name."""
    with _server(tmp_path) as server:
        assert_comet_error(_create(server, SECOND, "local"), 404)
        assert _add_run(server, SECOND, teamName="local").status_code == 400
        second_user = requests.get(
            rest(server, "account-details"), headers={"Authorization": SECOND}, timeout=30
        ).json()["userName"]
        assert_comet_error(_create(server, FIRST, second_user), 404)
        mine = _create(server, FIRST)
        assert mine.status_code == 200 and mine.json()["workspaceName"] == "local"
        theirs = _create(server, SECOND)
        assert theirs.status_code == 200 and theirs.json()["workspaceName"] == second_user
        # A workspace nobody's user name reserves still goes to whoever uses it first.
        assert _create(server, SECOND, "team").status_code == 200
        assert_comet_error(_create(server, FIRST, "team"), 404)


def test_a_store_where_another_key_already_took_the_name_does_not_lock_the_owner_out(tmp_path):
    """Pass: in a store written before names were reserved, where the second key owns ``local``,
    the first key's experiments without a workspace go to ``local-<8 hex>`` instead of a 404."""
    data_dir = tmp_path / "legacy"
    store = Store(data_dir)
    with store.transaction():
        store.ensure_workspace("local", key_id_of(SECOND))
    store.close()
    with LocalServer(data_dir, api_keys=[FIRST, SECOND]) as server:
        created = _create(server, FIRST)
        assert created.status_code == 200, created.text
        assert created.json()["workspaceName"] == f"local-{key_id_of(FIRST)[:8]}"


def test_another_keys_experiment_key_cannot_be_reused(tmp_path):
    """Pass: the second key's handshake naming the first key's experiment key is refused, with or
    without getOrCreateEnabled, and its writes to that experiment are 404: the experiment stays
    the first key's."""
    with _server(tmp_path) as server:
        experiment_key = uuid.uuid4().hex
        assert _add_run(server, FIRST, experimentKey=experiment_key).status_code == 200
        assert _add_run(server, SECOND, experimentKey=experiment_key).status_code == 400
        assert _add_run(server, SECOND, experimentKey=experiment_key, getOrCreateEnabled=True).status_code in (400, 404)
        write = requests.post(
            rest(server, "write/experiment/log-other"),
            headers={"Authorization": SECOND},
            json={"experimentKey": experiment_key, "key": "k", "value": 1},
            timeout=30,
        )
        assert_comet_error(write, 404)
        metadata = requests.get(
            rest(server, "experiment/metadata"),
            params={"experimentKey": experiment_key},
            headers={"Authorization": FIRST},
            timeout=30,
        )
        assert metadata.status_code == 200 and metadata.json()["workspaceName"] == "local"


def _login(server, key) -> requests.Session:
    browser = requests.Session()
    reply = browser.post(server.url + "/local/login", data={"key": key, "next": "/"}, allow_redirects=False, timeout=30)
    assert reply.status_code == 303
    return browser


def test_logins_with_one_key_never_log_out_another_key(tmp_path):
    """Pass: the first key logs in once; the second key then logs in MAX_SESSIONS_PER_KEY + 50
    times. The first key's session still opens its pages; the second key's oldest session was
    dropped and its newest works."""
    with _server(tmp_path) as server:
        mine = _login(server, FIRST)
        theirs = [_login(server, SECOND) for _ in range(MAX_SESSIONS_PER_KEY + 50)]
        assert mine.get(server.url + "/", timeout=30).status_code == 200
        assert theirs[-1].get(server.url + "/", timeout=30).status_code == 200
        assert theirs[0].get(server.url + "/", timeout=30).status_code == 401


def test_sessions_and_tokens_are_bounded_per_key_at_any_count():
    """Pass: 20,000 sessions and 5,000 login tokens of one key leave another key's session and
    unredeemed token valid (the old global caps, 10,000 and 1,000, evicted everybody's)."""
    sessions = PageSessions()
    session = sessions.new_session("one")
    token = sessions.new_login_token("one")
    for _ in range(20_000):
        sessions.new_session("two")
    for _ in range(5_000):
        sessions.new_login_token("two")
    assert sessions.sessions[session] == "one"
    assert len(sessions.sessions) <= 1 + MAX_SESSIONS_PER_KEY
    assert sessions.redeem(token) == "one" and sessions.redeem(token) is None
