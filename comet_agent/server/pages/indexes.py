"""The index pages: ``/`` (the key's workspaces), ``/{workspace}`` and ``/{workspace}/{project}``.

Experiments are listed newest first with their status; another key's workspace or project
reads as a 404 page, exactly like a missing one.
"""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from comet_agent.server.pages.access import RESERVED_SEGMENTS, authorize_page, owns_workspace
from comet_agent.server.pages.render import (
    esc,
    experiment_status,
    format_duration,
    format_ms,
    html_response,
    layout,
    not_found_page,
    section,
    status_badge,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import experiments_for_index


def experiment_table(state, experiments: list[dict], show_project: bool) -> str:
    """A table of experiments (name, status, host, start, duration), each linking to its page."""
    if not experiments:
        return '<p class="muted">no experiments</p>'
    heartbeat = state.intervals.get("isAliveBeatDurationMillis")
    rows = []
    for item in experiments:
        meta = state.store.experiment_metadata(item["experimentKey"], heartbeat)
        status = experiment_status(meta)
        href = "/{}/{}/{}{}".format(
            urllib.parse.quote(meta["workspaceName"], safe=""),
            urllib.parse.quote(meta["projectName"], safe=""),
            "archive/" if meta["archived"] else "",
            item["experimentKey"],
        )
        project_cell = f"<td>{esc(item['projectName'])}</td>" if show_project else ""
        rows.append(
            f'<tr data-experiment-key="{esc(item["experimentKey"])}">'
            f'<td><a href="{esc(href)}">{esc(item["name"] or item["experimentKey"])}</a></td>'
            f"{project_cell}<td>{status_badge(status)}</td><td>{esc(item['hostname'])}</td>"
            f"<td>{esc(format_ms(item['startMs']))}</td>"
            f"<td>{esc(format_duration(meta.get('durationMillis')))}</td></tr>"
        )
    project_head = "<th>Project</th>" if show_project else ""
    return (
        f'<table class="grid experiments"><thead><tr><th>Experiment</th>{project_head}<th>Status</th>'
        f"<th>Host</th><th>Start</th><th>Duration</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


async def index_page(request: web.Request) -> web.StreamResponse:
    """``GET /``: the workspaces of the key."""
    authorized = await authorize_page(request)
    if isinstance(authorized, web.StreamResponse):
        return authorized
    key_id = authorized
    state = state_of(request)
    items = []
    for workspace in state.store.workspaces_of(key_id):
        count = len(experiments_for_index(state.store, workspace))
        items.append(
            f'<li data-workspace="{esc(workspace)}"><a href="/{esc(urllib.parse.quote(workspace, safe=""))}">'
            f'{esc(workspace)}</a> <span class="muted">{count} experiments</span></li>'
        )
    listing = f'<ul class="index">{"".join(items)}</ul>' if items else '<p class="muted">no workspaces yet</p>'
    body = section("workspaces", "Workspaces", listing)
    return html_response(layout("Workspaces", body, [("workspaces", None)]))


async def workspace_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}``: its projects and every experiment, newest first."""
    workspace = request.match_info["workspace"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    authorized = await authorize_page(request)
    if isinstance(authorized, web.StreamResponse):
        return authorized
    key_id = authorized
    state = state_of(request)
    if not owns_workspace(state, key_id, workspace):
        return not_found_page(f"workspace {workspace}")
    projects = state.store.projects(workspace)
    project_items = "".join(
        f'<li data-project="{esc(p["projectName"])}"><a href="/{esc(urllib.parse.quote(workspace, safe=""))}/'
        f'{esc(urllib.parse.quote(p["projectName"], safe=""))}">{esc(p["projectName"])}</a> '
        f'<span class="muted">{p["numberOfExperiments"]} experiments</span></li>'
        for p in projects
    )
    body = section("projects", "Projects", f'<ul class="index">{project_items}</ul>') + section(
        "experiments", "Experiments", experiment_table(state, experiments_for_index(state.store, workspace), True)
    )
    return html_response(layout(workspace, body, [(workspace, None)]))


async def project_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}/{project}``: the project's experiments, newest first."""
    workspace, project = request.match_info["workspace"], request.match_info["project"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    authorized = await authorize_page(request)
    if isinstance(authorized, web.StreamResponse):
        return authorized
    key_id = authorized
    state = state_of(request)
    if not owns_workspace(state, key_id, workspace) or state.store.project(workspace, project) is None:
        return not_found_page(f"project {workspace}/{project}")
    body = section(
        "experiments",
        "Experiments",
        experiment_table(state, experiments_for_index(state.store, workspace, project), False),
    )
    return html_response(
        layout(
            f"{workspace}/{project}", body, [(workspace, "/" + urllib.parse.quote(workspace, safe="")), (project, None)]
        )
    )
