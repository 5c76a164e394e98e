"""REST handlers for experiments themselves: create, list, metadata, status, times, archive, symlink.

Heartbeats arrive here too (``set-status`` and ``update-status`` record one and answer the
intervals ``update_status()`` applies); the live SDK's own heartbeat is in ``clientlib.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from aiohttp import web

from comet_agent.server.rest.common import (
    DEFAULT_PROJECT_NAME,
    SAVED,
    ApiError,
    apply_write,
    authenticate,
    body_experiment,
    experiment_found,
    get_bool,
    get_int,
    get_str,
    is_scalar,
    json_response,
    query_experiment,
    read_json_object,
    require_owned_workspace,
    root_url,
    saving,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import now_ms


async def experiments(request: web.Request) -> web.Response:
    """``GET experiments?workspaceName=&projectName=``: metadata of a project's experiments.

    ``archived=true`` lists the archived ones instead; ``sortBy`` (``startTime``/``endTime``) with
    ``sortOrder``, and ``page``/``size`` (from 1) narrow the answer.
    """
    key_id = authenticate(request)
    state = state_of(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    project_name = request.query.get("projectName")
    if not project_name:
        raise ApiError(400, "'projectName' is required")
    archived = get_bool(dict(request.query), "archived")
    if state.store.project(workspace, project_name) is None:
        raise ApiError(404, f"project {workspace}/{project_name} not found")
    heartbeat = state.intervals.get("isAliveBeatDurationMillis")
    keys = state.store.experiment_keys_in_project(workspace, project_name, archived)
    # Every key was just listed from the store, so each has its metadata.
    found = [m for m in (state.store.experiment_metadata(k, heartbeat) for k in keys) if m is not None]
    sort_by = request.query.get("sortBy")
    if sort_by in ("startTime", "endTime"):
        field = "startTimeMillis" if sort_by == "startTime" else "endTimeMillis"
        found.sort(key=lambda m: m[field] or 0, reverse=request.query.get("sortOrder") == "desc")
    page, size = get_int(dict(request.query), "page"), get_int(dict(request.query), "size")
    if page is not None and size is not None and page >= 1 and size >= 1:
        found = found[(page - 1) * size : page * size]
    return json_response({"experiments": found})


async def create_experiment(request: web.Request) -> web.Response:
    """``POST write/experiment/create``: a new experiment (workspace and project made as needed)."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = state_of(request)
    workspace = get_str(body, "workspaceName") or state.default_workspace(key_id)
    project_name = get_str(body, "projectName") or DEFAULT_PROJECT_NAME
    name = get_str(body, "experimentName")
    owner = state.workspace_owner(workspace)
    if owner is not None and owner != key_id:
        raise ApiError(404, f"workspace {workspace} not found", 90219)

    def apply() -> dict:
        state.store.ensure_workspace(workspace, key_id)
        experiment_key = state.store.create_experiment(workspace, project_name, name)
        return {
            "experimentKey": experiment_key,
            "workspaceName": workspace,
            "projectName": project_name,
            "link": f"{root_url(request)}/{workspace}/{project_name}/{experiment_key}",
        }

    return await apply_write(request, key_id, apply)


async def experiment_metadata(request: web.Request) -> web.Response:
    """``GET experiment/metadata``: name, workspace, project, times, running / crashed flags."""
    _, experiment_key = query_experiment(request)
    state = state_of(request)
    return json_response(
        state.store.experiment_metadata(experiment_key, state.intervals.get("isAliveBeatDurationMillis"))
    )


async def set_status(request: web.Request) -> web.Response:
    """GET write/experiment/set-status: record a heartbeat, answer the recommended intervals."""
    key_id, experiment_key = query_experiment(request)
    state = state_of(request)

    def apply() -> dict:
        state.store.update_experiment(experiment_key, last_heartbeat_ms=now_ms())
        return dict(state.intervals)

    return await apply_write(request, key_id, apply)


async def update_status(request: web.Request) -> web.Response:
    """``POST write/experiment/update-status``: heartbeat, crash flag and error; answers the intervals."""
    body, key_id, experiment_key = await body_experiment(request)
    is_alive = get_bool(body, "isAlive", default=True)
    has_crashed = get_bool(body, "hasCrashed")
    error = body.get("error")
    store = state_of(request).store

    def apply() -> dict:
        columns: dict[str, Any] = {}
        if is_alive:
            columns["last_heartbeat_ms"] = now_ms()
        if has_crashed:
            columns["has_crashed"] = 1
        store.update_experiment(experiment_key, **columns)
        if error:
            store.add_other(experiment_key, "error", error if is_scalar(error) else json.dumps(error), now_ms())
        return dict(state_of(request).intervals)

    return await apply_write(request, key_id, apply)


async def stop_experiment(request: web.Request) -> web.Response:
    """``GET write/experiment/stop``: ask the running experiment to stop (recorded, not enforced)."""
    key_id, experiment_key = query_experiment(request)
    store = state_of(request).store

    def apply() -> dict:
        store.update_experiment(experiment_key, stop_requested=1)
        return {"msg": "Stop Requested"}

    return await apply_write(request, key_id, apply)


def archive_handler(archived: int):
    """The handler of ``write/experiment/archive`` (``archived=1``) or ``.../restore`` (0)."""

    async def handler(request: web.Request) -> web.Response:
        key_id, experiment_key = query_experiment(request)
        store = state_of(request).store

        def apply() -> dict:
            store.update_experiment(experiment_key, archived=archived)
            return dict(SAVED)

        return await apply_write(request, key_id, apply)

    return handler


async def set_start_end_time(request: web.Request) -> web.Response:
    """``POST write/experiment/set-start-end-time``: either time or both, in epoch ms."""
    body, key_id, experiment_key = await body_experiment(request)
    start, end = get_int(body, "startTimeMillis"), get_int(body, "endTimeMillis")
    if start is None and end is None:
        raise ApiError(400, "send startTimeMillis and/or endTimeMillis")
    columns = {name: value for name, value in (("start_ms", start), ("end_ms", end)) if value is not None}
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.update_experiment(experiment_key, **columns)))


async def file_path(request: web.Request) -> web.Response:
    """``POST write/experiment/file-path``: the script the experiment ran (path and file name)."""
    body, key_id, experiment_key = await body_experiment(request)
    path = get_str(body, "filePath", required=True)
    store = state_of(request).store
    return await apply_write(
        request,
        key_id,
        saving(lambda: store.update_experiment(experiment_key, file_path=path, file_name=os.path.basename(path))),
    )


async def create_symlink(request: web.Request) -> web.Response:
    """``GET write/project/symlink``: show the experiment in another project of its workspace too."""
    key_id, experiment_key = query_experiment(request)
    project_name = request.query.get("projectName")
    if not project_name:
        raise ApiError(400, "'projectName' is required")
    store = state_of(request).store
    workspace = experiment_found(store.experiment_workspace(experiment_key), experiment_key)

    def apply() -> dict:
        store.add_symlink(experiment_key, store.ensure_project(workspace, project_name))
        return {"link": f"{root_url(request)}/{workspace}/{project_name}/{experiment_key}"}

    return await apply_write(request, key_id, apply)


def latest_end_ms(recorded_end_ms: int | None, end_ms: int) -> int:
    """The end time to keep when a run of the experiment ends at ``end_ms``: the later of the two.

    An experiment continued with ``ExistingExperiment`` (or by a second agent) ends again; the
    latest end is the experiment's end, never the first one.
    """
    return end_ms if recorded_end_ms is None else max(recorded_end_ms, end_ms)


async def offline_metadata(request: web.Request) -> web.Response:
    """``POST /clientlib/status-report/offline-metadata``: the times of an uploaded offline run.

    ``comet upload`` sends it last, with the archive's ``startTimestamp`` and ``endTimestamp``
    (epoch ms). The upload's handshake created the experiment "now", so a start time replaces
    both times; a resumed archive (``startTimestamp`` null) only moves the end, to the later one.
    """
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True)
    start, end = get_int(body, "startTimestamp"), get_int(body, "endTimestamp")
    store = state_of(request).store

    def apply() -> dict:
        row = experiment_found(store.experiment_row(experiment_key), experiment_key)
        columns: dict[str, Any] = {}
        if start is not None:
            columns["start_ms"] = start
            if end is not None:
                columns["end_ms"] = end
        elif end is not None:
            columns["end_ms"] = latest_end_ms(row["end_ms"], end)
        if columns:
            store.update_experiment(experiment_key, **columns)
        return {"msg": "ok"}

    return await apply_write(request, key_id, apply)


async def delete_experiment(request: web.Request) -> web.Response:
    """``GET write/experiment/delete`` (``API.delete_experiment``): the experiment and all it holds."""
    key_id, experiment_key = query_experiment(request)
    state = state_of(request)

    def apply() -> dict:
        state.store.delete_experiments([experiment_key])
        return {"msg": "Deleted"}

    response = await apply_write(request, key_id, apply)
    forget_deleted_experiments(request, [experiment_key])
    return response


def forget_deleted_experiments(request: web.Request, experiment_keys: list[str]) -> None:
    """After a committed deletion: drop the owner cache entries and the experiments' files."""
    state = state_of(request)
    for experiment_key in experiment_keys:
        state.experiment_owners.pop(experiment_key, None)
        shutil.rmtree(state.store.files_dir / experiment_key, ignore_errors=True)
