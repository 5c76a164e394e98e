"""Item 11: the page login form cannot be used by another site, and never sends anyone elsewhere.

A browser says where a form came from (``Sec-Fetch-Site``, else ``Origin``, else ``Referer``):
a login posted from another origin, even another port of this host, gets a 403 and no session.
``next`` is always a path on this server, whatever a browser would make of tabs, newlines and
backslashes, and a control character never breaks the response.
"""

from __future__ import annotations

import logging
import urllib.parse

import pytest
import requests

from comet_agent.server.pages.access import MAX_LOGIN_FORM_BYTES

#: Headers a browser sends with a form posted from another site (or a page it cannot vouch for).
CROSS_ORIGIN = {
    "cross-site": {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    "same-site other port": {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
    "old browser, other origin": {"Origin": "http://evil.example"},
    "opaque origin": {"Origin": "null"},
    "referer only": {"Referer": "http://evil.example/form.html"},
}

HOSTILE_NEXT = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\nSet-Cookie: owned=1",
    "//evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "http://evil.example/",
    "javascript:alert(1)",
    "/ /evil.example",
    "/\x00/evil.example",
    "/%2F/evil.example",
    "/\u3000/evil.example",
]


def _post_login(server, headers=None, **form):
    return requests.post(
        server.url + "/local/login", data=form, headers=headers or {}, allow_redirects=False, timeout=30
    )


@pytest.mark.parametrize("what", sorted(CROSS_ORIGIN))
def test_a_login_posted_from_another_origin_gets_no_session(local_server, what):
    """Pass: with the right key but cross-origin markers, the answer is 403 with no cookie."""
    response = _post_login(local_server, CROSS_ORIGIN[what], key=local_server.api_key, next="/")
    assert response.status_code == 403, response.status_code
    assert "Set-Cookie" not in response.headers
    assert local_server.api_key not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": None},
        {"Origin": None},
        {"Referer": None},
        {},
    ],
    ids=["same-origin", "origin", "referer", "no-browser-headers"],
)
def test_a_login_from_this_servers_own_page_or_a_script_works(local_server, headers):
    """Pass: same-origin markers (or none at all: curl) with the right key get a session."""
    headers = {
        k: (v if v is not None else local_server.url + ("/ws" if k == "Referer" else "")) for k, v in headers.items()
    }
    browser = requests.Session()
    response = browser.post(
        local_server.url + "/local/login",
        data={"key": local_server.api_key, "next": "/"},
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303 and "HttpOnly" in response.headers["Set-Cookie"]
    assert browser.get(local_server.url + "/", timeout=30).status_code == 200


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_next_always_stays_on_this_server(local_server, caplog, target):
    """Pass: for each hostile ``next`` the login answers a 303 whose Location, read the way a
    browser reads it (tabs and newlines dropped, backslashes as slashes), is on this server; no
    header is split and nothing is logged as an error."""
    caplog.set_level(logging.ERROR)
    response = _post_login(local_server, key=local_server.api_key, next=target)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert "owned" not in response.headers.get("Set-Cookie", "")
    browser_view = location.replace("\\", "/")
    for dropped in "\t\n\r":
        browser_view = browser_view.replace(dropped, "")
    landed = urllib.parse.urlsplit(urllib.parse.urljoin(local_server.url + "/", browser_view))
    assert landed.netloc == local_server.url.split("//", 1)[1], location
    assert location.startswith("/") and not location.startswith("//")
    assert all(" " < ch < "\x7f" for ch in location), repr(location)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_token_login_returns_only_to_a_path_here(local_server):
    """Pass: a page URL carrying ``?login=`` redirects to the same path without the token, as a
    relative path on this server (percent-encoded, never ``//``)."""
    response = requests.get(
        local_server.url + "/caf%C3%A9/p%20q?login=unknown-token&x=1", allow_redirects=False, timeout=30
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/caf%C3%A9/p%20q?x=1"


def test_an_oversized_login_form_is_not_read(local_server):
    """Pass: a login form over MAX_LOGIN_FORM_BYTES (a stranger's body) is refused without a session."""
    response = _post_login(local_server, key=local_server.api_key, next="/" + "a" * MAX_LOGIN_FORM_BYTES)
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
