"""REST handlers for the model registry: register an experiment's model, list, read, download.

An experiment's model is its ``model-element`` assets grouped by model name (``log_model``; see
``models.py``). ``register_model`` (``APIExperiment`` and the live ``Experiment``, both through
``POST write/registry-model/item/create``) makes it a version of a registered model in the
experiment's workspace; the registered model is created with its first version. A version
points at the experiment's model: downloading it zips that model's files as they are then.

Reads: ``registry-model`` (``API.get_registry_model_names``), ``registry-model/count``,
``registry-model/details`` (``get_registry_model_details`` / ``_versions``),
``registry-model/compact-details`` (``API.get_model``), ``registry-model/item/details``,
``registry-model/item/download`` (``download_registry_model``) and ``registry-model/notes``;
``write/registry-model/notes`` sets the notes.

Versions are semantic versions (``1.0.0``, ``2.1.0-rc1``); another string is refused with
``sdk_error_code`` 42001, which comet_ml turns into its "invalid version" ``ValueError``. Without
a version the next major one is used (``1.0.0``, then ``2.0.0``, ...).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    authenticate,
    get_bool,
    get_list,
    get_str,
    json_response,
    read_json_object,
    require_experiment,
    require_owned_workspace,
)
from comet_agent.server.rest.models import zip_asset_rows
from comet_agent.server.state import state_of
from comet_agent.server.store import Store

#: comet_ml's INVALID_VERSION_STRING error code (register_model raises ValueError on it).
INVALID_VERSION_CODE = 42001
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]+)?$")


def _version_order(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def _item_json(store: Store, user_name: str, item: dict) -> dict:
    experiment_key, model_name = item["experiment_key"], item["experiment_model_name"]
    return {
        "registryModelItemId": item["item_id"],
        "version": item["version"],
        "comment": item["comment"],
        "status": item["status"],
        "stages": [item["status"]] if item["status"] else [],
        "tags": item["tags"],
        "userName": user_name,
        "createdAt": item["created_ms"],
        "lastUpdated": item["created_ms"],
        "experimentModel": {
            "experimentModelId": f"{experiment_key}-{model_name}",
            "experimentModelName": model_name,
            "experimentKey": experiment_key,
        },
        "assets": [
            {"fileName": row["file_name"], "fileSize": row["size_bytes"]}
            for row in store.assets(experiment_key, "model-element", model_name)
        ],
    }


def _model_json(store: Store, user_name: str, model: dict, with_versions: bool) -> dict:
    items = store.registry_model_items(model["registry_model_id"])
    latest = max(items, key=lambda i: _version_order(i["version"]), default=None)
    found: dict[str, Any] = {
        "registryModelId": model["registry_model_id"],
        "modelName": model["name"],
        "workspaceName": model["workspace"],
        "description": model["description"],
        "isPublic": bool(model["is_public"]),
        "numberOfVersions": len(items),
        "latestVersion": latest["version"] if latest else None,
        "userName": user_name,
        "createdAt": model["created_ms"],
        "lastUpdated": max([model["created_ms"], *(i["created_ms"] for i in items)]),
    }
    if with_versions:
        found["versions"] = [_item_json(store, user_name, item) for item in items]
    return found


async def register_model_version(request: web.Request) -> web.Response:
    """``POST write/registry-model/item/create``: an experiment's model as a registry version."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = state_of(request)
    store = state.store
    experiment_key = require_experiment(request, key_id, body.get("experimentKey"))
    model_name = get_str(body, "experimentModelName", required=True, allow_empty=False)
    registry_name = get_str(body, "registryModelName") or model_name
    version = get_str(body, "version")
    comment = get_str(body, "versionComment")
    status = get_str(body, "status")
    tags = get_list(body, "tags", lambda t: isinstance(t, str), "a list of strings") or []
    description = get_str(body, "registryModelDescription")
    is_public = get_bool(body, "publicModel")
    models = store.model_names(experiment_key)
    if model_name not in models:
        raise ApiError(
            400,
            f"experiment {experiment_key} has no model named {model_name!r} (it has {models}); "
            "log it first with Experiment.log_model(name, path)",
        )
    if version is not None and not _SEMVER.match(version):
        raise ApiError(400, f"invalid version {version!r}: use a semantic version such as 1.0.0", INVALID_VERSION_CODE)
    workspace = store.experiment_workspace(experiment_key)
    assert workspace is not None  # require_experiment found it
    existing = store.registry_model(workspace, registry_name)
    items = store.registry_model_items(existing["registry_model_id"]) if existing else []
    if version is None:
        major = max((_version_order(i["version"])[0] for i in items), default=0)
        version = f"{major + 1}.0.0"
    if any(i["version"] == version for i in items):
        raise ApiError(400, f"model {registry_name} already has version {version}; register another version")

    def apply() -> dict:
        model = store.registry_model(workspace, registry_name)
        registry_model_id = (
            model["registry_model_id"]
            if model
            else store.create_registry_model(workspace, registry_name, description, is_public)
        )
        item_id = store.add_registry_model_item(
            registry_model_id,
            {
                "version": version,
                "experiment_key": experiment_key,
                "experiment_model_name": model_name,
                "comment": comment,
                "tags": tags,
                "status": status,
            },
        )
        return {"registryModelId": registry_model_id, "registryModelItemId": item_id}

    return await apply_write(request, key_id, apply)


def _owned_registry_model(request: web.Request, key_id: str) -> dict:
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    name = request.query.get("modelName")
    if not name:
        raise ApiError(400, "'modelName' is required")
    model = state_of(request).store.registry_model(workspace, name)
    if model is None:
        raise ApiError(404, f"registered model {workspace}/{name} not found")
    return model


def _chosen_item(request: web.Request, model: dict) -> dict:
    """The version ``?version=`` or ``?stage=`` names, else the latest; 404 when there is none."""
    items = state_of(request).store.registry_model_items(model["registry_model_id"])
    version, stage = request.query.get("version"), request.query.get("stage")
    if version:
        items = [i for i in items if i["version"] == version]
    elif stage:
        items = [i for i in items if i["status"] == stage or stage in i["tags"]]
    if not items:
        wanted = f"version {version}" if version else f"stage {stage}" if stage else "any version"
        raise ApiError(404, f"registered model {model['name']} has no {wanted}")
    return max(items, key=lambda i: _version_order(i["version"]))


async def registry_models(request: web.Request) -> web.Response:
    """``GET registry-model?workspaceName=``: the workspace's registered models."""
    key_id = authenticate(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    state = state_of(request)
    user = state.user_name(key_id)
    models = [_model_json(state.store, user, m, False) for m in state.store.registry_models(workspace)]
    return json_response({"registryModels": models})


async def registry_model_count(request: web.Request) -> web.Response:
    """``GET registry-model/count?workspaceName=``."""
    key_id = authenticate(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    return json_response({"registryModelCount": len(state_of(request).store.registry_models(workspace))})


async def registry_model_details(request: web.Request) -> web.Response:
    """``GET registry-model/details?workspaceName=&modelName=``: the model and all its versions."""
    key_id = authenticate(request)
    state = state_of(request)
    model = _owned_registry_model(request, key_id)
    return json_response(_model_json(state.store, state.user_name(key_id), model, True))


async def registry_model_compact_details(request: web.Request) -> web.Response:
    """``GET registry-model/compact-details`` (``API.get_model``): the model without its versions."""
    key_id = authenticate(request)
    state = state_of(request)
    model = _owned_registry_model(request, key_id)
    return json_response(_model_json(state.store, state.user_name(key_id), model, False))


async def registry_item_details(request: web.Request) -> web.Response:
    """``GET registry-model/item/details?workspaceName=&modelName=&version=``: one version."""
    key_id = authenticate(request)
    state = state_of(request)
    item = _chosen_item(request, _owned_registry_model(request, key_id))
    return json_response(_item_json(state.store, state.user_name(key_id), item))


async def registry_item_download(request: web.Request) -> web.Response:
    """``GET registry-model/item/download``: a version's files as a zip (``download_registry_model``)."""
    key_id = authenticate(request)
    item = _chosen_item(request, _owned_registry_model(request, key_id))
    rows = state_of(request).store.assets(item["experiment_key"], "model-element", item["experiment_model_name"])
    if not rows:
        raise ApiError(404, f"the files of version {item['version']} are gone (its experiment model has none)")
    return web.Response(body=zip_asset_rows(rows), content_type="application/zip")


async def read_registry_notes(request: web.Request) -> web.Response:
    """``GET registry-model/notes?workspaceName=&modelName=``."""
    key_id = authenticate(request)
    return json_response({"notes": _owned_registry_model(request, key_id)["notes"] or ""})


async def write_registry_notes(request: web.Request) -> web.Response:
    """``POST write/registry-model/notes``: replace a registered model's notes."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    workspace = require_owned_workspace(request, key_id, body.get("workspaceName"))
    name = get_str(body, "registryModelName", required=True)
    notes = get_str(body, "notes", required=True)
    store = state_of(request).store
    model = store.registry_model(workspace, name)
    if model is None:
        raise ApiError(404, f"registered model {workspace}/{name} not found")

    def apply() -> dict:
        store.set_registry_model_notes(model["registry_model_id"], notes)
        return {"msg": "Saved"}

    return await apply_write(request, key_id, apply)
