"""Opening a comet-agent local server's pages logged in, without putting the API key in a URL.

The client side of the server's page login (``comet_agent.server.pages.access``): ask the
server for a single-use login token (``POST {root}/local/page-login``, the key in the
``Authorization`` header as on every call) and hand the browser a URL carrying only that token,
which the server swaps for a session cookie. Used by ``APIExperiment.display()`` and
``comet-agent show KEY --open``. A hosted Comet has no such endpoint: it is not even asked.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from comet_agent.api.client import RestClient
from comet_agent.delivery.retry import RetryPolicy
from comet_agent.errors import CometApiError

#: Hosts of hosted Comet, which have no page login.
HOSTED_COMET = ("www.comet.com", "comet.com")


def with_login_token(client: RestClient, url: str, timeout_s: float = 5.0) -> str:
    """``url`` plus ``login=<single-use token>`` when ``client``'s server is a comet-agent local
    server; ``url`` unchanged otherwise (hosted Comet, a refusal, any failure).

    Best effort, once: a person is waiting for the page, and it opens without the token too.
    """
    if urllib.parse.urlsplit(client.root).hostname in HOSTED_COMET:
        return url
    try:
        reply = client.post("local/page-login", {}, base="root", timeout_s=timeout_s, retry=RetryPolicy(max_retries=0))
    except CometApiError:
        return url
    token = reply.get("token") if isinstance(reply, dict) else None
    if not isinstance(token, str) or not token:
        return url
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "login"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query + [("login", token)])))


def local_page_login_url(api: Any, url: str) -> str:
    """``with_login_token`` for an ``API`` (``APIExperiment.display()``)."""
    return with_login_token(api._client, url)


def page_url(server_url: str, api_key: str, path: str = "/", timeout_s: float = 10.0) -> str:
    """A URL that opens ``path`` on a local server logged in, without putting the key in the URL.

    Args:
        server_url: the server root (``http://127.0.0.1:8080``) or any URL on it.
        api_key: a key the server accepts.
        path: the page's path (``/`` is the workspace index), or a full URL on the same server.
        timeout_s: seconds to wait for the server.

    Returns:
        ``{root}{path}?login=<token>`` (valid 120 s, once).

    Raises:
        ValueError: the server gave no token (a refused key, or not a comet-agent local server).
    """
    parts = urllib.parse.urlsplit(server_url)
    root = f"{parts.scheme}://{parts.netloc}"
    target = urllib.parse.urlsplit(path)
    url = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
    client = RestClient(api_key, root + "/clientlib/", retry=RetryPolicy(max_retries=0))
    try:
        logged_in = with_login_token(client, root + url, timeout_s=timeout_s)
    finally:
        client.close()
    if "login=" not in urllib.parse.urlsplit(logged_in).query:
        raise ValueError(f"{root} gave no page login token: a refused key, or not a comet-agent local server")
    return logged_in
