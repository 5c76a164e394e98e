"""Where each page is mounted (after the REST routes, whose fixed paths must win)."""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.pages.access import SESSIONS_KEY, PageSessions, create_login_token, login_form_submit
from comet_agent.server.pages.experiment import experiment_page
from comet_agent.server.pages.indexes import index_page, project_page, workspace_page
from comet_agent.server.pages.static import static_file


def add_page_routes(app: web.Application) -> None:
    """Mount the pages; call after the REST routes (their fixed paths must win)."""
    app[SESSIONS_KEY] = PageSessions()
    app.router.add_route("POST", "/local/page-login", create_login_token)
    app.router.add_route("POST", "/local/login", login_form_submit)
    app.router.add_route("GET", "/local/static/{name}", static_file)
    app.router.add_route("*", "/", index_page)
    # "*": a non-GET on these paths is answered like any unknown REST path (JSON 404), as before.
    app.router.add_route("*", "/{workspace}", workspace_page)
    app.router.add_route("*", "/{workspace}/{project}", project_page)
    app.router.add_route("*", "/{workspace}/{project}/{experiment_key}", experiment_page)
    app.router.add_route("*", "/{workspace}/{project}/archive/{experiment_key}", experiment_page)
