"""REST handlers for an experiment's git state: metadata (branch, commit, origin, ...) and the patch.

The patch is an upload (REST ``write/experiment/git/patch``, clientlib ``git-patch/upload``)
kept as a file beside the store; a new patch replaces the old file once committed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiohttp import web

from comet_agent.server.rest.common import (
    SAVED,
    apply_write,
    authenticate,
    body_experiment,
    experiment_found,
    get_str,
    json_response,
    query_experiment,
    read_upload,
    require_experiment,
    saving,
    unlink_quietly,
    write_upload_file,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import GIT_METADATA_KEYS


async def write_git_metadata(request: web.Request) -> web.Response:
    """``POST write/experiment/git/metadata``: branch, parent commit, origin, root, user."""
    body, key_id, experiment_key = await body_experiment(request)
    metadata = {name: get_str(body, name) for name in GIT_METADATA_KEYS}
    store = state_of(request).store
    return await apply_write(
        request, key_id, saving(lambda: store.update_experiment(experiment_key, git_metadata=json.dumps(metadata)))
    )


async def read_git_metadata(request: web.Request) -> web.Response:
    """``GET experiment/git/metadata``: the stored metadata (every field None when none was sent)."""
    _, experiment_key = query_experiment(request)
    stored = experiment_found(state_of(request).store.experiment_row(experiment_key), experiment_key)["git_metadata"]
    return json_response(json.loads(stored) if stored else {name: None for name in GIT_METADATA_KEYS})


async def read_git_patch(request: web.Request) -> web.Response:
    """``GET experiment/git/patch``: the patch bytes, or ``{"msg": "No git patch"}``."""
    _, experiment_key = query_experiment(request)
    path = experiment_found(state_of(request).store.experiment_row(experiment_key), experiment_key)["git_patch_path"]
    if not path or not Path(path).exists():
        return json_response({"msg": "No git patch"})
    return web.Response(body=Path(path).read_bytes(), content_type="application/octet-stream")


async def upload_git_patch(request: web.Request) -> web.Response:
    """``POST write/experiment/git/patch`` and ``/clientlib/git-patch/upload``: store the patch file."""
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    data, _, _ = await read_upload(request)
    store = state_of(request).store
    written: list[str] = []
    previous = experiment_found(store.experiment_row(experiment_key), experiment_key)["git_patch_path"]

    def apply() -> dict:
        path = write_upload_file(store, experiment_key, "git-patch-" + uuid.uuid4().hex, data)
        written.append(path)
        store.update_experiment(experiment_key, git_patch_path=path)
        return dict(SAVED)

    try:
        response = await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:
            unlink_quietly(path)
        raise
    if previous and written:
        unlink_quietly(previous)
    return response
