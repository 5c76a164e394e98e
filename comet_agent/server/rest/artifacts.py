"""REST handlers for artifacts: what ``Experiment.log_artifact``, ``get_artifact``,
``LoggedArtifact.download`` and ``API.get_artifact*`` call.

An artifact (``artifacts`` table) belongs to a workspace and has a name and a type; each
``log_artifact`` makes a version (``artifact_versions``): ``write/artifacts/upsert`` creates it
(state ``OPEN``) and answers its id, comet_ml uploads each file through ``asset/upload`` with
``artifactVersionId`` (remote files with ``isRemote`` and a ``link``, as ``log_remote_asset``),
then closes it with ``write/artifacts/state`` (``CLOSED``, or ``ERROR`` after a failed upload).
Files are stored under ``<data dir>/artifacts/<version id>/<asset id>`` (``artifact_assets``).

Versions: the one the client names (``"1.2.0"``), else the next major version after the
highest (``1.0.0``, ``2.0.0``, ...), as Comet numbers them. Lookups by name take a version,
an alias, or none (``latest``: the newest closed version); a version that is not closed yet is
refused with Comet's "not final" code (90403, ``ArtifactNotFinalException``), an unknown one with
624523 (``ArtifactNotFound``), both as JSON errors comet_ml turns into its own exceptions.

Remote files come one by one through ``asset/upload`` or, batched, through
``write/artifact/assets/remote/batch``. Not served: lineage (``get/artifacts``), deleting
artifacts or versions.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from comet_agent.paths import write_private_file
from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    authenticate,
    body_experiment,
    experiment_found,
    file_response,
    get_list,
    get_str,
    json_response,
    read_json_object,
    require_experiment,
    require_owned_workspace,
    root_url,
    saving,
    unlink_quietly,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import Store, now_ms

#: comet_ml's codes for a missing artifact and for a version still uploading.
ARTIFACT_NOT_FOUND_CODE = 624523
ARTIFACT_NOT_FINAL_CODE = 90403
ARTIFACT_STATES = ("OPEN", "CLOSED", "ERROR")
_VERSION = re.compile(r"(\d{1,9})\.(\d{1,9})\.(\d{1,9})([-+][0-9A-Za-z.+-]{1,64})?")
MAX_ARTIFACT_NAME_CHARS = 256
_ASSET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 256


def _version_key(version: str) -> tuple[int, int, int]:
    match = _VERSION.fullmatch(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def _metadata_text(body: dict) -> str | None:
    """``versionMetadata``: comet_ml sends it as JSON text (or null); a JSON object is accepted too."""
    value = body.get("versionMetadata")
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return json.dumps(value)
    if not isinstance(value, str):
        raise ApiError(400, "'versionMetadata' must be JSON text or an object")
    try:
        json.loads(value)
    except ValueError:
        raise ApiError(400, "'versionMetadata' is not valid JSON") from None
    return value


async def upsert_artifact(request: web.Request) -> web.Response:
    """``POST write/artifacts/upsert``: a new version of an artifact (created with its first version)."""
    body, key_id, experiment_key = await body_experiment(request)
    name = get_str(body, "artifactName", required=True, allow_empty=False)
    if len(name) > MAX_ARTIFACT_NAME_CHARS:
        raise ApiError(400, f"'artifactName' is longer than {MAX_ARTIFACT_NAME_CHARS} characters")
    artifact_type = get_str(body, "artifactType")
    requested = get_str(body, "version")
    if requested is not None and not _VERSION.fullmatch(requested):
        raise ApiError(400, f"'version' must be a semantic version such as 1.2.0, got {requested!r}", 42001)
    aliases = get_list(body, "alias", _is_str_list, "a list of strings") or []
    tags = get_list(body, "versionTags", _is_str_list, "a list of strings") or []
    metadata = _metadata_text(body)
    store = state_of(request).store
    workspace = experiment_found(store.experiment_workspace(experiment_key), experiment_key)

    def apply() -> dict:
        artifact = store.artifact(workspace, name)
        if artifact is None:
            if not artifact_type:
                raise ApiError(400, f"artifact {name} does not exist yet: 'artifactType' is required to create it")
            artifact_id = store.create_artifact(workspace, name, artifact_type)
            existing: list[dict] = []
        else:
            artifact_id = artifact["artifact_id"]
            existing = store.artifact_versions(artifact_id)
        previous = max((v["version"] for v in existing), key=_version_key, default=None)
        if requested is not None:
            if any(v["version"] == requested for v in existing):
                raise ApiError(400, f"artifact {name} already has a version {requested}; send another version")
            version = requested
        else:
            version = f"{_version_key(previous)[0] + 1}.0.0" if previous else "1.0.0"
        version_id = uuid.uuid4().hex
        store.add_artifact_version(
            {
                "version_id": version_id,
                "artifact_id": artifact_id,
                "version": version,
                "experiment_key": experiment_key,
                "metadata_json": metadata,
                "aliases_json": json.dumps(aliases),
                "tags_json": json.dumps(tags),
                "state": "OPEN",
                "created_ms": now_ms(),
            }
        )
        return {
            "artifactId": artifact_id,
            "artifactVersionId": version_id,
            "currentVersion": version,
            "previousVersion": previous,
        }

    return await apply_write(request, key_id, apply)


def _owned_version(request: web.Request, key_id: str, version_id: Any) -> tuple[dict, dict]:
    """(artifact, version) of ``version_id`` when the key's workspace holds it; 404 otherwise."""
    store = state_of(request).store
    version = store.artifact_version(version_id) if isinstance(version_id, str) and version_id else None
    artifact = store.artifact_by_id(version["artifact_id"]) if version else None
    if version is None or artifact is None or store.workspace_owner(artifact["workspace"]) != key_id:
        raise ApiError(404, f"artifact version {version_id} not found", ARTIFACT_NOT_FOUND_CODE)
    return artifact, version


async def update_artifact_state(request: web.Request) -> web.Response:
    """``POST write/artifacts/state``: ``CLOSED`` once every file is uploaded, ``ERROR`` when one failed."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    _, version = _owned_version(request, key_id, body.get("artifactVersionId"))
    state = get_str(body, "state", required=True)
    if state not in ARTIFACT_STATES:
        raise ApiError(400, f"'state' must be one of {', '.join(ARTIFACT_STATES)}")
    store = state_of(request).store
    return await apply_write(
        request, key_id, saving(lambda: store.update_artifact_version(version["version_id"], state=state))
    )


async def update_version_labels(request: web.Request) -> web.Response:
    """``POST write/artifacts/version/labels``: a version's aliases, tags and metadata."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    _, version = _owned_version(request, key_id, body.get("artifactVersionId"))
    columns: dict[str, Any] = {}
    for field, column in (("alias", "aliases"), ("versionTags", "tags")):
        value = get_list(body, field, _is_str_list, "a list of strings")
        if value is not None:
            columns[column] = value
    if body.get("versionMetadata") is not None:
        columns["metadata_json"] = _metadata_text(body)
    store = state_of(request).store
    return await apply_write(
        request, key_id, saving(lambda: store.update_artifact_version(version["version_id"], **columns))
    )


async def update_artifact_details(request: web.Request) -> web.Response:
    """``POST write/artifacts/details``: an artifact's type and tags."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    store = state_of(request).store
    artifact_id = body.get("artifactId")
    artifact = store.artifact_by_id(artifact_id) if isinstance(artifact_id, str) else None
    if artifact is None or store.workspace_owner(artifact["workspace"]) != key_id:
        raise ApiError(404, f"artifact {artifact_id} not found", ARTIFACT_NOT_FOUND_CODE)
    artifact_type = get_str(body, "artifactType")
    tags = get_list(body, "tags", _is_str_list, "a list of strings")
    return await apply_write(
        request, key_id, saving(lambda: store.update_artifact(artifact["artifact_id"], artifact_type, tags))
    )


# ------------------------------------------------------------------- reads


def _query_workspace(request: web.Request, key_id: str) -> str:
    """The workspace a read names, else the one of the experiment it names, else the key's default."""
    query = request.query
    workspace = query.get("workspace") or query.get("workspaceName")
    if not workspace:
        experiment_key = query.get("experimentKey") or query.get("consumerExperimentKey")
        if experiment_key:
            experiment_key = require_experiment(request, key_id, experiment_key)
            workspace = state_of(request).store.experiment_workspace(experiment_key)
        else:
            workspace = state_of(request).default_workspace(key_id)
    return require_owned_workspace(request, key_id, workspace)


def _find_artifact(request: web.Request, key_id: str) -> dict:
    """The artifact a read names by ``artifactId``/``artifact_id`` or (workspace and) ``artifactName``."""
    store = state_of(request).store
    query = request.query
    artifact_id = query.get("artifactId") or query.get("artifact_id")
    if artifact_id:
        artifact = store.artifact_by_id(artifact_id)
        if artifact is None or store.workspace_owner(artifact["workspace"]) != key_id:
            raise ApiError(404, f"artifact {artifact_id} not found", ARTIFACT_NOT_FOUND_CODE)
        return artifact
    name = query.get("artifactName")
    if not name:
        raise ApiError(400, "'artifactName' (with 'workspace') or 'artifactId' is required")
    name = urllib.parse.unquote(name)  # comet_ml quotes the name before the query is encoded
    workspace = _query_workspace(request, key_id)
    artifact = store.artifact(workspace, name)
    if artifact is None:
        raise ApiError(404, f"artifact {workspace}/{name} not found", ARTIFACT_NOT_FOUND_CODE)
    return artifact


def _latest_closed(versions: list[dict]) -> dict | None:
    closed = [v for v in versions if v["state"] == "CLOSED"]
    return max(closed, key=lambda v: _version_key(v["version"])) if closed else None


def _find_version(request: web.Request, key_id: str) -> tuple[dict, dict]:
    """(artifact, version) a read names: by version id, or an artifact and a version, alias or none."""
    query = request.query
    version_id = query.get("versionId") or query.get("artifactVersionId")
    if version_id:
        return _owned_version(request, key_id, version_id)
    artifact = _find_artifact(request, key_id)
    versions = state_of(request).store.artifact_versions(artifact["artifact_id"])
    wanted = query.get("versionOrAlias") or query.get("version") or query.get("alias")
    label = f"{artifact['workspace']}/{artifact['name']}:{wanted or 'latest'}"
    if not wanted or wanted.lower() == "latest":
        found = _latest_closed(versions)
        if found is None and versions:
            raise ApiError(400, f"artifact {label}: no version is complete yet", ARTIFACT_NOT_FINAL_CODE)
    else:
        by_version = [v for v in versions if v["version"] == wanted]
        by_alias = [v for v in versions if wanted in v["aliases"]]
        matches = by_version or by_alias
        found = matches[-1] if matches else None
    if found is None:
        raise ApiError(404, f"artifact {label} not found", ARTIFACT_NOT_FOUND_CODE)
    if found["state"] != "CLOSED":
        raise ApiError(
            400,
            f"artifact {label} is not complete (state {found['state']}): its upload has not finished",
            ARTIFACT_NOT_FINAL_CODE,
        )
    return artifact, found


def _aliases(version: dict, versions: list[dict]) -> list[str]:
    latest = _latest_closed(versions)
    computed = ["Latest"] if latest is not None and latest["version_id"] == version["version_id"] else []
    return list(version["aliases"]) + [a for a in computed if a not in version["aliases"]]


def _artifact_json(artifact: dict) -> dict:
    return {
        "artifactId": artifact["artifact_id"],
        "artifactName": artifact["name"],
        "artifactType": artifact["artifact_type"],
        "workspaceName": artifact["workspace"],
        "tags": artifact["tags"],
        "isPublic": False,
    }


def _version_json(version: dict, versions: list[dict]) -> dict:
    return {
        "artifactVersionId": version["version_id"],
        "version": version["version"],
        "owner": None,
        "metadata": version["metadata_json"],
        "createdFrom": version["experiment_key"],
        "sizeInBytes": version["size_bytes"],
        "state": version["state"],
        "added": version["created_ms"],
        "alias": _aliases(version, versions),
        "tags": version["tags"],
    }


async def artifact_version(request: web.Request) -> web.Response:
    """``GET artifacts/version``: one version's details (what ``get_artifact`` builds its LoggedArtifact from)."""
    key_id = authenticate(request)
    artifact, version = _find_version(request, key_id)
    versions = state_of(request).store.artifact_versions(artifact["artifact_id"])
    return json_response(
        {
            "artifact": _artifact_json(artifact),
            "artifactVersionId": version["version_id"],
            "artifactVersion": version["version"],
            "metadata": version["metadata_json"],
            "alias": _aliases(version, versions),
            "tags": version["tags"],
            "sizeInBytes": version["size_bytes"],
            "experimentKey": version["experiment_key"],
            "state": version["state"],
            "added": version["created_ms"],
        }
    )


async def artifact_version_files(request: web.Request) -> web.Response:
    """``GET artifacts/version/files``: the files of a version (``LoggedArtifact.assets``, ``download``)."""
    key_id = authenticate(request)
    _, version = _find_version(request, key_id)
    store = state_of(request).store
    files = []
    for asset in store.artifact_assets(version["version_id"]):
        remote = asset["remote_uri"] is not None
        link = (
            asset["remote_uri"]
            if remote
            else f"{root_url(request)}/api/rest/v2/experiment/asset/get-asset?assetId={asset['asset_id']}"
            f"&artifactVersionId={version['version_id']}"
        )
        files.append(
            {
                "assetId": asset["asset_id"],
                "artifactVersionId": version["version_id"],
                "fileName": asset["file_name"],
                "fileSize": asset["size_bytes"],
                "type": asset["asset_type"],
                "metadata": asset["metadata_json"],
                "remote": remote,
                "link": link,
                "createdAt": asset["created_ms"],
            }
        )
    return json_response({"files": files})


def _details(store: Store, artifact: dict) -> dict:
    versions = store.artifact_versions(artifact["artifact_id"])
    latest = _latest_closed(versions)
    return {
        "artifactId": artifact["artifact_id"],
        "name": artifact["name"],
        "type": artifact["artifact_type"],
        "workspaceName": artifact["workspace"],
        "project": None,
        "description": None,
        "latestVersion": latest["version"] if latest else None,
        "tags": artifact["tags"],
        "isPublic": False,
        "emoji": None,
        "sizeInBytes": latest["size_bytes"] if latest else 0,
        "versions": [_version_json(v, versions) for v in versions],
    }


async def artifact_details(request: web.Request) -> web.Response:
    """``GET artifacts/get``: an artifact and its versions (``API.get_artifact_details``)."""
    key_id = authenticate(request)
    artifact = _find_artifact(request, key_id)
    return json_response(_details(state_of(request).store, artifact))


async def artifact_list(request: web.Request) -> web.Response:
    """``GET artifacts/get-all?workspace=[&type=]``: the workspace's artifacts (``API.get_artifact_list``)."""
    key_id = authenticate(request)
    workspace = _query_workspace(request, key_id)
    store = state_of(request).store
    artifacts = store.artifacts(workspace, request.query.get("type") or None)
    return json_response({"artifacts": [_details(store, a) for a in artifacts]})


# ------------------------------------------------------------- files


def _artifact_asset_id(chosen: Any) -> str:
    if chosen is None or chosen == "":
        return uuid.uuid4().hex
    if not isinstance(chosen, str) or not _ASSET_ID.fullmatch(chosen):
        raise ApiError(400, "'assetId' must be 1 to 64 letters, digits, '-' or '_'")
    return chosen


def _open_version(request: web.Request, key_id: str, version_id: Any) -> dict:
    """The version files are added to: the key's, and still ``OPEN``; 404 / 400 otherwise."""
    _, version = _owned_version(request, key_id, version_id)
    if version["state"] != "OPEN":
        raise ApiError(400, f"artifact version {version['version_id']} is {version['state']}: it takes no more files")
    return version


def _artifact_asset(version: dict, asset_id: str, file_name: Any, asset_type: Any, size_bytes: int) -> dict:
    """The ``artifact_assets`` row of one file (``metadata_json``, ``remote_uri``, ``path`` to fill)."""
    return {
        "asset_id": asset_id,
        "version_id": version["version_id"],
        "file_name": file_name if isinstance(file_name, str) and file_name else asset_id,
        "size_bytes": size_bytes,
        "asset_type": asset_type if isinstance(asset_type, str) and asset_type else "asset",
        "metadata_json": None,
        "remote_uri": None,
        "path": "",
        "created_ms": now_ms(),
    }


async def save_artifact_upload(
    request: web.Request,
    key_id: str,
    query: dict,
    data: bytes | None,
    remote_uri: str | None,
    metadata: dict | None,
) -> web.Response:
    """Store one file (``data``) or remote URI of an artifact version, sent through ``asset/upload``."""
    version = _open_version(request, key_id, query.get("artifactVersionId"))
    asset_id = _artifact_asset_id(query.get("assetId"))
    row = _artifact_asset(version, asset_id, query.get("fileName"), query.get("type"), len(data or b""))
    row["metadata_json"] = json.dumps(metadata) if metadata is not None else None
    row["remote_uri"] = remote_uri
    store = state_of(request).store
    written: list[str] = []

    def apply() -> dict:
        if data is not None:
            row["path"] = str(store.artifact_files_dir(version["version_id"]) / asset_id)
            write_private_file(row["path"], data)
            written.append(row["path"])
        store.add_artifact_asset(row)
        return {"assetId": asset_id, "fileName": row["file_name"], "fileSize": row["size_bytes"]}

    try:
        return await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:
            unlink_quietly(path)
        raise


async def remote_assets_batch(request: web.Request) -> web.Response:
    """``POST write/artifact/assets/remote/batch``: remote files of artifact versions, many at once.

    Body ``{"remoteArtifactAssetRequests": [{"artifactVersionId", "assetId", "fileName", "link",
    "type", "metadata" (JSON text), ...}]}``, as comet_ml batches them.
    """
    key_id = authenticate(request)
    body = await read_json_object(request)
    items = get_list(body, "remoteArtifactAssetRequests", lambda item: isinstance(item, dict), "a list of objects")
    if not items:
        raise ApiError(400, "'remoteArtifactAssetRequests' must list at least one remote asset")
    rows = []
    for item in items:
        version = _open_version(request, key_id, item.get("artifactVersionId"))
        link = get_str(item, "link", required=True, allow_empty=False)
        row = _artifact_asset(
            version, _artifact_asset_id(item.get("assetId")), item.get("fileName"), item.get("type"), 0
        )
        row["remote_uri"] = link
        metadata = item.get("metadata")
        row["metadata_json"] = metadata if isinstance(metadata, str) and metadata else None
        rows.append(row)
    store = state_of(request).store

    def apply() -> dict:
        for row in rows:
            store.add_artifact_asset(row)
        return {"msg": "Saved", "count": len(rows)}

    return await apply_write(request, key_id, apply)


async def artifact_asset_bytes(request: web.Request, asset_id: str | None, version_id: str) -> web.StreamResponse:
    """The bytes of one file of an artifact version (``get-asset`` with ``artifactVersionId``)."""
    key_id = authenticate(request)
    _, version = _owned_version(request, key_id, version_id)
    if not asset_id:
        raise ApiError(400, "'assetId' is required")
    asset = state_of(request).store.artifact_asset(version["version_id"], asset_id)
    if asset is None:
        raise ApiError(404, f"asset {asset_id} of artifact version {version_id} not found")
    if asset["remote_uri"] is not None:
        raise ApiError(404, f"asset {asset_id} is a remote file: fetch it from {asset['remote_uri']}")
    path = Path(asset["path"])
    if not path.is_file():
        raise ApiError(404, f"the file of asset {asset_id} is missing from the server's data directory")
    return file_response(path)
