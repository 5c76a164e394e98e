"""Opening a comet-agent local server's pages logged in, without putting the API key in a URL.

The client side of the server's page login (``comet_agent.server.pages.access``): ask the
server for a single-use login token with the key in the ``Authorization`` header, and hand the
browser a URL carrying only that token. Used by ``comet-agent show KEY --open`` and
``APIExperiment.display()``. A hosted Comet has no such endpoint and answers 404.
"""

from __future__ import annotations

import urllib.parse

import requests

#: Where the local server hands out single-use page login tokens (``POST``, ``Authorization: <key>``).
PAGE_LOGIN_PATH = "/local/page-login"


def page_url(server_url: str, api_key: str, path: str = "/", timeout_s: float = 10.0) -> str:
    """A URL that opens ``path`` on a local server logged in, without putting the key in the URL.

    Asks the server for a single-use login token (``POST /local/page-login``) and returns
    ``{server_url}{path}?login=<token>``; the server swaps the token for a session cookie and
    redirects to the clean URL. Use it for ``comet-agent show KEY --open``::

        webbrowser.open(page_url(server.url, api_key, f"/{workspace}/{project}/{key}"))

    Args:
        server_url: the server root (``http://127.0.0.1:8080``) or any URL on it; only its scheme
            and host:port are used.
        api_key: a key the server accepts.
        path: the page's path (``/`` is the workspace index); a full URL on the same server is
            accepted too (e.g. ``APIExperiment.url``).
        timeout_s: seconds to wait for the server.

    Returns:
        The one-time URL (valid 120 s, once).

    Raises:
        ValueError: the server refused the key, or is not a comet-agent local server (a hosted
            Comet answers 404); the message says which.
        OSError: the server cannot be reached.
    """
    root_parts = urllib.parse.urlsplit(server_url)
    root = f"{root_parts.scheme}://{root_parts.netloc}"
    target = urllib.parse.urlsplit(path)
    page_path = target.path or "/"
    query = urllib.parse.parse_qsl(target.query, keep_blank_values=True)
    try:
        response = requests.post(root + PAGE_LOGIN_PATH, headers={"Authorization": api_key},
                                 timeout=timeout_s)
    except requests.RequestException as exc:
        raise OSError(f"cannot reach {root}: {type(exc).__name__}") from None
    if response.status_code == 401:
        raise ValueError(f"{root} does not accept this API key")
    if response.status_code != 200:
        raise ValueError(f"{root} offers no page login (HTTP {response.status_code}): "
                         "not a comet-agent local server?")
    token = response.json()["token"]
    query = [(k, v) for k, v in query if k != "login"] + [("login", token)]
    return f"{root}{page_path}?{urllib.parse.urlencode(query)}"
