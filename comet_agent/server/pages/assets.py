"""``GET /local/asset/view?assetId=|imageId=&experimentKey=``: an asset's bytes for a browser.

The web URLs comet_ml returns from ``log_asset`` / ``log_image`` (the handshake's
``cometWebAssetUrl`` / ``cometWebImageUrl``) and the experiment page's thumbnails point here.
Same access rules as the pages (an ``Authorization`` header or a page session; another key's
experiment is a 404). Only raster images (PNG, JPEG, GIF, WebP, BMP) are shown inline; anything
else, SVG and HTML included, is sent as a download with a sandboxing CSP and ``nosniff``, so an
uploaded file can never run script in this server's origin.
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.pages.access import authorize_page, owns_workspace
from comet_agent.server.pages.render import SECURITY_HEADERS, not_found_page
from comet_agent.server.rest.assets import asset_file
from comet_agent.server.rest.common import MAX_EXPERIMENT_KEY_LENGTH, ApiError, file_response
from comet_agent.server.state import state_of

#: Image types a browser may show inline, by their magic bytes.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def inline_image_type(head: bytes) -> str | None:
    """The content type of a raster image a browser may show inline, from its first bytes; else None."""
    for signature, content_type in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


async def asset_view(request: web.Request) -> web.StreamResponse:
    """An experiment asset or image for a browser: inline when a raster image, else a download."""
    authorized = await authorize_page(request)
    if isinstance(authorized, web.StreamResponse):
        return authorized
    state = state_of(request)
    experiment_key = request.query.get("experimentKey", "")
    asset_id = request.query.get("assetId") or request.query.get("imageId") or ""
    workspace = (
        state.store.experiment_workspace(experiment_key)
        if experiment_key.isalnum() and len(experiment_key) <= MAX_EXPERIMENT_KEY_LENGTH
        else None
    )
    if workspace is None or not owns_workspace(state, authorized, workspace):
        return not_found_page(f"experiment {experiment_key}")
    try:
        row, path = asset_file(state.store, experiment_key, asset_id)
    except ApiError:
        return not_found_page(f"asset {asset_id}")
    with open(path, "rb") as file:
        head = file.read(16)
    headers = dict(SECURITY_HEADERS)
    content_type = inline_image_type(head)
    if content_type is None:
        content_type = "application/octet-stream"
        headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in row["file_name"])[:200] or "asset"
        headers["Content-Disposition"] = f'attachment; filename="{safe_name}"'
    headers["Cache-Control"] = "private, max-age=300"
    return file_response(path, content_type, headers)
