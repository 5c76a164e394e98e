"""REST handlers that change projects: create, update, delete, and a project's notes.

``POST write/project/create`` (``API.create_project``), ``POST write/project/update``
(``API.update_project``), ``POST write/project/delete`` (``API.delete_project``), ``GET
project/notes`` and ``POST write/project/notes`` (``API.get_project_notes`` /
``set_project_notes``). The reads of projects (``projects``, ``project``) are in ``account.py``.

A project with experiments is deleted only when the caller says so (``deleteAllExperiments``,
comet_ml's ``delete_experiments=True``); otherwise the answer is a 400 saying how, so nothing is
lost by accident.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    authenticate,
    get_bool,
    get_str,
    json_response,
    read_json_object,
    require_owned_workspace,
    root_url,
)
from comet_agent.server.rest.experiments import forget_deleted_experiments
from comet_agent.server.state import state_of


def _project_json(request: web.Request, project: dict) -> dict:
    return {**project, "link": f"{root_url(request)}/{project['workspaceName']}/{project['projectName']}"}


def _owned_project(request: web.Request, key_id: str, source: Any) -> dict:
    """The project named by ``projectId``, or ``workspaceName`` + ``projectName``; 404 if not the key's."""
    store = state_of(request).store
    project_id = source.get("projectId")
    if project_id:
        found = store.project(project_id=str(project_id))
    else:
        workspace = require_owned_workspace(request, key_id, source.get("workspaceName"))
        project_name = source.get("projectName")
        if not isinstance(project_name, str) or not project_name:
            raise ApiError(400, "send projectId, or workspaceName and projectName")
        found = store.project(workspace, project_name)
    if found is None or store.workspace_owner(found["workspaceName"]) != key_id:
        raise ApiError(404, "project not found")
    return found


async def create_project(request: web.Request) -> web.Response:
    """``POST write/project/create``: a new, empty project; 400 when it exists already."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = state_of(request)
    workspace = get_str(body, "workspaceName") or state.default_workspace(key_id)
    name = get_str(body, "projectName", required=True, allow_empty=False)
    description = get_str(body, "projectDescription")
    is_public = get_bool(body, "isPublic")
    owner = state.workspace_owner(workspace)
    if owner is not None and owner != key_id:
        raise ApiError(404, f"workspace {workspace} not found", 90219)
    if state.store.project(workspace, name) is not None:
        raise ApiError(400, f"project {workspace}/{name} already exists")

    def apply() -> dict:
        state.store.ensure_workspace(workspace, key_id)
        project_id = state.store.ensure_project(workspace, name)
        state.store.set_project_extras(project_id, description=description, is_public=int(is_public))
        created = state.store.project(project_id=project_id)
        assert created is not None  # just inserted in this write
        return _project_json(request, created)

    return await apply_write(request, key_id, apply)


async def update_project(request: web.Request) -> web.Response:
    """``POST write/project/update``: new name, description and/or visibility."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    project = _owned_project(request, key_id, body)
    new_name = get_str(body, "newProjectName", allow_empty=False)
    description = get_str(body, "newProjectDescription")
    store = state_of(request).store
    if new_name is not None and new_name != project["projectName"]:
        if store.project(project["workspaceName"], new_name) is not None:
            raise ApiError(400, f"project {project['workspaceName']}/{new_name} already exists")
    extras: dict[str, Any] = {}
    if description is not None:
        extras["description"] = description
    if body.get("isPublic") is not None:
        extras["is_public"] = int(get_bool(body, "isPublic"))

    def apply() -> dict:
        if new_name is not None:
            store.rename_project(project["projectId"], new_name)
        store.set_project_extras(project["projectId"], **extras)
        updated = store.project(project_id=project["projectId"])
        assert updated is not None
        return _project_json(request, updated)

    return await apply_write(request, key_id, apply)


async def delete_project(request: web.Request) -> web.Response:
    """``POST write/project/delete``: the project (and, when asked, its experiments)."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    project = _owned_project(request, key_id, body)
    delete_experiments = get_bool(body, "deleteAllExperiments")
    state = state_of(request)
    if project["numberOfExperiments"] and not delete_experiments:
        raise ApiError(
            400,
            f"project {project['workspaceName']}/{project['projectName']} has "
            f"{project['numberOfExperiments']} experiment(s); delete them too with "
            "API.delete_project(..., delete_experiments=True)",
        )
    deleted_keys: list[str] = []

    def apply() -> dict:
        deleted_keys.extend(state.store.delete_project(project["projectId"]))
        return {"msg": "Deleted"}

    response = await apply_write(request, key_id, apply)
    forget_deleted_experiments(request, deleted_keys)  # files only once the deletion is committed
    return response


async def read_project_notes(request: web.Request) -> web.Response:
    """``GET project/notes?projectId=``: the project's notes (``""`` when none were set)."""
    key_id = authenticate(request)
    project = _owned_project(request, key_id, dict(request.query))
    return json_response({"notes": state_of(request).store.project_extras(project["projectId"])["notes"] or ""})


async def write_project_notes(request: web.Request) -> web.Response:
    """``POST write/project/notes``: replace the project's notes."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    project = _owned_project(request, key_id, body)
    notes = get_str(body, "notes", required=True)
    store = state_of(request).store

    def apply() -> dict:
        store.set_project_extras(project["projectId"], notes=notes)
        return {"msg": "Saved", "notes": notes}

    return await apply_write(request, key_id, apply)
