"""Where each page is mounted (after the REST routes, whose fixed paths must win).

Pages take every path of the shapes ``/{workspace}``, ``/{workspace}/{project}``,
``/{workspace}/{project}/{experiment key}`` and ``/{workspace}/{project}/archive/{experiment
key}``, for any workspace name but the ``RESERVED_SEGMENTS``. The server's own paths share the
first segment ``local`` with the workspace of that name (the first key's), and never take a
page's path, because:

- ``/local/page-login`` and ``/local/login`` answer POST only; a GET there falls through to the
  project page (the router tries the next route when the method does not match);
- ``/local/static/{name}`` matches only names with a dot, which no experiment key has (keys are
  letters and digits);
- ``/local/admin/intervals`` ends in a segment no experiment key can be (keys are 32 to 50
  characters long).

``tests/integration/test_pages.py::test_no_server_route_can_take_a_page_path`` checks every
route of the application against these shapes; a new server path must keep passing it.
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.pages.access import SESSIONS_KEY, PageSessions, create_login_token, login_form_submit
from comet_agent.server.pages.assets import asset_view
from comet_agent.server.pages.experiment import experiment_page
from comet_agent.server.pages.indexes import index_page, project_page, workspace_page
from comet_agent.server.pages.static import static_file
from comet_agent.server.rest.assets import WEB_ASSET_VIEW_PATH


def add_page_routes(app: web.Application) -> None:
    """Mount the pages; call after the REST routes (their fixed paths must win)."""
    app[SESSIONS_KEY] = PageSessions()
    app.router.add_route("POST", "/local/page-login", create_login_token)
    app.router.add_route("POST", "/local/login", login_form_submit)
    # Only names with a dot: /local/static/<experiment key> is a page of workspace "local".
    app.router.add_route("GET", r"/local/static/{name:[^/]*\.[^/]*}", static_file)
    # Three segments, the last not an experiment key: no page's path (see the docstring).
    app.router.add_route("GET", WEB_ASSET_VIEW_PATH, asset_view)
    app.router.add_route("*", "/", index_page)
    # "*": a non-GET on these paths is answered like any unknown REST path (JSON 404), as before.
    app.router.add_route("*", "/{workspace}", workspace_page)
    app.router.add_route("*", "/{workspace}/{project}", project_page)
    app.router.add_route("*", "/{workspace}/{project}/{experiment_key}", experiment_page)
    app.router.add_route("*", "/{workspace}/{project}/archive/{experiment_key}", experiment_page)
