"""The pages' script and stylesheet files: our own ``pages.js``, ``charts.js``, ``pages.css``, and
the vendored uPlot (``static/vendor/uplot/``, MIT), nothing else.

Offline by construction: no front-end code is fetched from elsewhere, and no other file of the
package (or of the disk) can be asked for by name: ``ASSETS`` lists every servable name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from comet_agent.server.pages.render import SECURITY_HEADERS

logger = logging.getLogger(__name__)

#: ``comet_agent/server/static``: package data (see pyproject package-data).
STATIC_DIR = Path(__file__).parent.parent / "static"

#: URL name -> (file under ``STATIC_DIR``, content type). The vendored files keep their own
#: names so a reader of the page source sees what they are.
ASSETS = {
    "pages.js": ("pages.js", "application/javascript"),
    "pages.css": ("pages.css", "text/css"),
    "charts.js": ("charts.js", "application/javascript"),
    "uPlot.iife.min.js": ("vendor/uplot/uPlot.iife.min.js", "application/javascript"),
    "uPlot.min.css": ("vendor/uplot/uPlot.min.css", "text/css"),
}


async def static_file(request: web.Request) -> web.StreamResponse:
    """``GET /local/static/{name}``: one of ``ASSETS`` (no directory listing, no other files)."""
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    relative, content_type = asset
    try:
        data = (STATIC_DIR / relative).read_bytes()
    except FileNotFoundError:  # an install without the package data (see pyproject package-data)
        logger.warning("the page asset %s is missing from the installed package", relative)
        raise web.HTTPNotFound() from None
    return web.Response(
        body=data,
        content_type=content_type,
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"},
    )
