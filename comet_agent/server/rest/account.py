"""REST handlers for what a key owns: its account details, workspaces and projects.

``GET account-details``, ``GET workspaces``, ``GET projects`` and ``GET project`` (under both
REST prefixes). A key sees only the workspaces it owns; another key's reads as 404.
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import ApiError, authenticate, json_response, require_owned_workspace
from comet_agent.server.state import state_of


async def account_details(request: web.Request) -> web.Response:
    """``GET account-details``: the key's user name and default workspace."""
    key_id = authenticate(request)
    state = state_of(request)
    return json_response({"userName": state.user_name(key_id), "defaultWorkspaceName": state.default_workspace(key_id)})


async def workspaces(request: web.Request) -> web.Response:
    """``GET workspaces``: the workspaces the key owns, oldest first."""
    key_id = authenticate(request)
    return json_response({"workspaceNames": state_of(request).store.workspaces_of(key_id)})


async def projects(request: web.Request) -> web.Response:
    """``GET projects?workspaceName=``: the projects of one of the key's workspaces."""
    key_id = authenticate(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    return json_response({"projects": state_of(request).store.projects(workspace)})


async def project(request: web.Request) -> web.Response:
    """``GET project`` by ``projectId``, or by ``workspaceName`` and ``projectName``."""
    key_id = authenticate(request)
    store = state_of(request).store
    query = request.query
    if query.get("projectId"):
        found = store.project(project_id=query["projectId"])
    else:
        workspace = query.get("workspaceName")
        if not workspace or not query.get("projectName"):
            raise ApiError(400, "send projectId, or workspaceName and projectName")
        found = store.project(workspace, query["projectName"])
    if found is None or store.workspace_owner(found["workspaceName"]) != key_id:
        raise ApiError(404, "project not found")
    return json_response(found)
