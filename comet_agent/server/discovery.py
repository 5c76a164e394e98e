"""How an agent knows that the local server named in ``server.json`` is really ours.

``LocalServer`` writes ``<data dir>/server.json`` (0600, in a 0700 directory) with its URL, its
pid and a fresh random ``proof_secret``; ``comet_agent.embedded.find_running`` reads it to reuse
that server instead of starting one. Between a crash and a restart, though, any local user may
listen on the recorded port (the pid may even be alive again, recycled), answer ``isAlive``, and
receive the API key of the next agent that believes it. So before sending the key, the agent
sends a random nonce to ``GET /local/discovery/proof?nonce=<hex>`` and the server answers
``HMAC-SHA256(proof_secret, "comet-agent discovery v1|" + its URL + "|" + nonce)``. Only a
process that could read the secret, the server that wrote it, can answer; neither the API key
nor the secret ever travels. The URL inside the MAC means a real server on another port cannot
be used as an oracle by a listener on the recorded one. A server that cannot prove (an impostor,
or a version without this endpoint) is not used: the agent starts its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from aiohttp import web

from comet_agent.server.rest.common import ApiError, json_response

#: Where the server proves it knows the secret (no key needed: it is asked before any is sent).
PROOF_PATH = "/local/discovery/proof"
_NONCE = re.compile(r"[0-9a-f]{32,128}")
_LABEL = b"comet-agent discovery v1|"


def new_proof_secret() -> str:
    """A fresh secret for one server's lifetime (hex, 256 bits)."""
    return secrets.token_hex(32)


def new_nonce() -> str:
    """A fresh challenge (hex, 256 bits)."""
    return secrets.token_hex(32)


def discovery_proof(secret: str, server_url: str, nonce: str) -> str:
    """The answer to ``nonce`` of the server at ``server_url`` holding ``secret`` (hex HMAC-SHA256).

    >>> len(discovery_proof("s", "http://127.0.0.1:5055", "00" * 16))
    64
    """
    message = _LABEL + server_url.encode("utf-8") + b"|" + nonce.encode("ascii")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def proof_matches(secret: str, server_url: str, nonce: str, answer: object) -> bool:
    """Whether ``answer`` is the right proof (compared in constant time)."""
    return isinstance(answer, str) and hmac.compare_digest(answer, discovery_proof(secret, server_url, nonce))


#: The server's own secret and URL, set by ``LocalServer`` once it listens.
PROOF_KEY = web.AppKey("discovery_proof", dict)


async def prove(request: web.Request) -> web.Response:
    """``GET /local/discovery/proof?nonce=<32 to 128 hex>``: ``{"proof": <hex>}`` (see the module)."""
    nonce = request.query.get("nonce", "")
    if not _NONCE.fullmatch(nonce):
        raise ApiError(400, "'nonce' must be 32 to 128 lower-case hex characters")
    identity = request.app.get(PROOF_KEY) or {}
    if not identity.get("secret"):
        raise ApiError(404, "this server has no discovery secret")
    return json_response({"proof": discovery_proof(identity["secret"], identity["url"], nonce)})
