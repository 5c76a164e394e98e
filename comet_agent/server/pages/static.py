"""The pages' own script and stylesheet: ``static/pages.js`` and ``static/pages.css``, nothing else.

Offline by construction: no third-party front-end code, and no other file of the package (or
of the disk) can be asked for by name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from comet_agent.server.pages.render import SECURITY_HEADERS

logger = logging.getLogger(__name__)

#: ``comet_agent/server/static``: package data (see pyproject package-data).
STATIC_DIR = Path(__file__).parent.parent / "static"


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
    return web.Response(
        body=data,
        content_type=types[name],
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"},
    )
