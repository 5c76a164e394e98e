"""Handlers for the live ``comet_ml.Experiment`` (the clientlib endpoints outside REST v2).

Liveness (``isAlive/ver``, ``health/ping``), the handshake (``logger/add/run`` creates the
experiment, ``logger/get/run`` resumes one), the ``status-report/update`` heartbeat answering
snake_case intervals, and the pending-RPC poll. Its RPC registry and notification calls are
acknowledged and ignored (``asset/3d-limits`` is answered in ``visualizations.py``, an offline
upload's ``offline-metadata`` in ``experiments.py``). The clientlib batch, tag, upload and
git-patch endpoints share the REST handlers of their resource (see ``routes.py``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comet_agent.server.rest.assets import asset_url_templates
from comet_agent.server.rest.common import (
    DEFAULT_PROJECT_NAME,
    MAX_EXPERIMENT_KEY_LENGTH,
    ApiError,
    apply_write,
    authenticate,
    authenticated_json,
    body_experiment,
    experiment_found,
    get_bool,
    get_str,
    json_response,
    query_experiment,
    require_experiment,
    root_url,
)
from comet_agent.server.rest.experiments import create_symlink, latest_end_ms
from comet_agent.server.state import state_of
from comet_agent.server.store import now_ms

#: The backend version ``isAlive/ver`` answers.
BACKEND_VERSION = "3.99.0"


async def is_alive_version(request: web.Request) -> web.Response:
    """``GET /clientlib/isAlive/ver``: the backend version the SDK checks first (no key needed)."""
    return json_response({"version": BACKEND_VERSION})


async def health_ping(request: web.Request) -> web.Response:
    """``GET /clientlib/health/ping``: liveness (no key needed)."""
    return json_response({"msg": "pong"})


def _handshake(request: web.Request, experiment_key: str) -> dict:
    state = state_of(request)
    row = experiment_found(state.store.experiment_row(experiment_key), experiment_key)
    max_mb = max(state.max_upload_bytes // 2**20, 1)
    return {
        "runId": experiment_key,
        "project_id": row["project_id"],
        "experimentKey": experiment_key,
        "focusUrl": f"{root_url(request)}/{row['workspace']}/{row['project_name']}/",
        "lastOffset": state.store.output_line_count(experiment_key),
        "name": row["name"],
        "githubEnabled": False,
        "s3DirectAccessEnabled": False,
        "featureToggles": [],
        "upload_file_size_limit_in_mb": max_mb,
        "asset_upload_file_size_limit_in_mb": max_mb,
        "uploadVideoMaxSizeMB": max_mb,
        **asset_url_templates(request),
    }


async def logger_add_run(request: web.Request) -> web.Response:
    """POST /clientlib/logger/add/run: the live Experiment's handshake, creating its experiment.

    With ``getOrCreateEnabled`` (comet_ml's ``start()`` given an experiment key, and comet-agent
    choosing its key before it can reach the server) an experiment that already exists under that
    key, and belongs to the caller, is answered like a resume instead of refused: whichever of the
    agent and the training script arrives first creates it, the other joins it.
    """
    key_id, body = await authenticated_json(request)
    state = state_of(request)
    experiment_key = get_str(body, "experimentKey") or None
    if experiment_key is not None and (
        len(experiment_key) < 32 or len(experiment_key) > MAX_EXPERIMENT_KEY_LENGTH or not experiment_key.isalnum()
    ):
        raise ApiError(400, "'experimentKey' must be 32 to 50 alphanumeric characters")
    if experiment_key is not None and state.store.experiment_workspace(experiment_key) is not None:
        if get_bool(body, "getOrCreateEnabled"):
            return json_response(_handshake(request, require_experiment(request, key_id, experiment_key)))
        raise ApiError(400, f"experiment {experiment_key} already exists", 90999)
    workspace = get_str(body, "teamName") or get_str(body, "workspaceName") or state.default_workspace(key_id)
    project_name = get_str(body, "projectName") or DEFAULT_PROJECT_NAME
    owner = state.workspace_owner(workspace)
    if owner is not None and owner != key_id:
        raise ApiError(400, f"workspace {workspace} not found", 90219)

    get_or_create = get_bool(body, "getOrCreateEnabled")

    def apply() -> dict:
        # Writes run one at a time on the event loop: a racing twin created it since the check above.
        if experiment_key is not None and get_or_create and state.store.experiment_workspace(experiment_key):
            return _handshake(request, require_experiment(request, key_id, experiment_key))
        state.store.ensure_workspace(workspace, key_id)
        created = state.store.create_experiment(workspace, project_name, None, experiment_key)
        return _handshake(request, created)

    return await apply_write(request, key_id, apply)


async def logger_get_run(request: web.Request) -> web.Response:
    """POST /clientlib/logger/get/run: the handshake of a resumed (ExistingExperiment) run."""
    key_id, body = await authenticated_json(request)
    experiment_key = require_experiment(request, key_id, body.get("previousExperiment"))
    return json_response(_handshake(request, experiment_key))


async def status_report_update(request: web.Request) -> web.Response:
    """POST /clientlib/status-report/update: the live heartbeat; answers snake_case intervals."""
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True)
    is_alive = get_bool(body, "is_alive", default=True)
    # An offline upload's end is the archive's, sent afterwards through offline-metadata.
    offline = get_bool(body, "offline")
    state = state_of(request)

    def apply() -> dict:
        columns: dict[str, Any] = {"last_heartbeat_ms": now_ms()}
        if not is_alive and not offline:
            row = experiment_found(state.store.experiment_row(experiment_key), experiment_key)
            columns["end_ms"] = latest_end_ms(row["end_ms"], now_ms())
        state.store.update_experiment(experiment_key, **columns)
        intervals = state.intervals
        return {
            "is_alive_beat_duration_millis": intervals.get("isAliveBeatDurationMillis"),
            "gpu_monitor_interval_millis": intervals.get("gpuMonitorIntervalMillis"),
            "cpu_monitor_interval_millis": intervals.get("cpuMonitorIntervalMillis"),
            "parameter_update_interval_millis": 60000,
            "pending_rpcs": False,
        }

    return await apply_write(request, key_id, apply)


async def pending_rpcs(request: web.Request) -> web.Response:
    """``GET /clientlib/rpc/get-pending-rpcs``: never any (remote calls are not supported)."""
    query_experiment(request)
    return json_response({"remoteProcedureCalls": []})


async def clientlib_acknowledge(request: web.Request) -> web.Response:
    """Clientlib calls the local server accepts and ignores (3d limits, notifications, RPC registry)."""
    if request.body_exists:
        await authenticated_json(request)
    else:
        authenticate(request)
    return json_response({"msg": "ok"})


async def clientlib_symlink(request: web.Request) -> web.Response:
    """``GET /clientlib/symlink/new``: the REST ``write/project/symlink``."""
    return await create_symlink(request)
