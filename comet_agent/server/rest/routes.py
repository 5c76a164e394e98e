"""The local server's route table: every REST and clientlib path, and the handler serving it.

Every REST route is served under both ``/api/rest/v2/`` and ``/clientlib/rest/v2/`` (aliases,
as on the hosted backend); the clientlib endpoints of the live ``comet_ml.Experiment`` and the
server's own ``/local/admin/intervals`` and ``/local/discovery/proof`` sit at fixed absolute paths. The handlers live in one
module per resource beside this one; this table is the one place that says which path is which.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from comet_agent.server import discovery
from comet_agent.server.rest import (
    account,
    admin,
    artifacts,
    assets,
    clientlib,
    experiments,
    git,
    metrics,
    models,
    others,
    output,
    parameters,
    projects,
    query,
    registry,
    system_details,
    tags,
    texts,
    visualizations,
)
from comet_agent.server.rest.common import json_response

REST_PREFIXES = ("/api/rest/v2/", "/clientlib/rest/v2/")

#: (method, path relative to a REST prefix, handler); each is mounted under both prefixes.
REST_ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "account-details", account.account_details),
    ("GET", "workspaces", account.workspaces),
    ("GET", "projects", account.projects),
    ("GET", "project", account.project),
    ("GET", "experiments", experiments.experiments),
    ("GET", "experiment/metadata", experiments.experiment_metadata),
    ("GET", "experiment/system-details", system_details.read_system_details),
    ("GET", "experiment/metrics/get-all", metrics.metrics_get_all),
    ("GET", "experiment/metrics/get-metric", metrics.metrics_get_metric),
    ("GET", "experiment/metrics/summary", metrics.metrics_summary),
    ("GET", "experiment/parameters", parameters.parameters_summary),
    ("GET", "experiment/log-other", others.others_summary),
    ("GET", "experiment/tags", tags.read_tags),
    ("GET", "experiment/output", output.read_output),
    ("GET", "experiment/html", texts.text_reader("html", "html")),
    ("GET", "experiment/code", texts.text_reader("code", "code")),
    ("GET", "experiment/graph", texts.text_reader("graph", "graph")),
    ("GET", "experiment/git/metadata", git.read_git_metadata),
    ("GET", "experiment/git/patch", git.read_git_patch),
    ("GET", "experiment/asset/list", assets.asset_list),
    ("GET", "experiment/asset/get-asset", assets.get_asset),
    ("GET", "experiment/model", models.model_list),
    ("GET", "experiment/model/asset/list", models.model_asset_list),
    ("GET", "experiment/model/download", models.model_download),
    ("POST", "write/experiment/create", experiments.create_experiment),
    ("POST", "write/experiment/system-details", system_details.write_system_details),
    ("POST", "write/experiment/tags", tags.write_tags),
    ("POST", "write/experiment/tags/delete", tags.delete_tags),
    ("GET", "write/project/symlink", experiments.create_symlink),
    ("POST", "write/experiment/upload-asset", assets.upload_asset),
    ("POST", "write/experiment/cpu-metrics", metrics.write_cpu_metrics),
    ("POST", "write/experiment/ram-metrics", metrics.write_ram_metrics),
    ("POST", "write/experiment/load-metrics", metrics.write_load_metrics),
    ("POST", "write/experiment/gpu-metrics", metrics.write_gpu_metrics),
    ("POST", "write/experiment/metric", metrics.write_metric),
    ("POST", "write/experiment/parameter", parameters.write_parameter),
    ("POST", "write/experiment/log-other", others.write_log_other),
    ("POST", "write/experiment/html", texts.text_writer("html", "html", append_unless_override=True)),
    ("POST", "write/experiment/code", texts.text_writer("code", "code")),
    ("POST", "write/experiment/graph", texts.text_writer("graph", "graph")),
    ("POST", "write/experiment/output", output.write_output),
    ("POST", "write/experiment/file-path", experiments.file_path),
    ("POST", "write/experiment/set-start-end-time", experiments.set_start_end_time),
    ("POST", "write/experiment/git/metadata", git.write_git_metadata),
    ("POST", "write/experiment/git/patch", git.upload_git_patch),
    ("GET", "write/experiment/set-status", experiments.set_status),
    ("POST", "write/experiment/update-status", experiments.update_status),
    ("GET", "write/experiment/stop", experiments.stop_experiment),
    ("GET", "write/experiment/archive", experiments.archive_handler(1)),
    ("GET", "write/experiment/restore", experiments.archive_handler(0)),
    # Images, remote assets, artifacts (issue 16).
    ("GET", "image/get-image", assets.get_image),
    ("POST", "write/artifacts/upsert", artifacts.upsert_artifact),
    ("POST", "write/artifacts/state", artifacts.update_artifact_state),
    ("POST", "write/artifacts/details", artifacts.update_artifact_details),
    ("POST", "write/artifacts/version/labels", artifacts.update_version_labels),
    ("POST", "write/artifact/assets/remote/batch", artifacts.remote_assets_batch),
    ("GET", "artifacts/version", artifacts.artifact_version),
    ("GET", "artifacts/version/files", artifacts.artifact_version_files),
    ("GET", "artifacts/get", artifacts.artifact_details),
    ("GET", "artifacts/get-all", artifacts.artifact_list),
    ("GET", "write/experiment/delete", experiments.delete_experiment),
    # Finding experiments: API.query, API.search, API.get_metrics_for_chart (rest/query.py).
    ("GET", "project/column-names", query.column_names),
    ("POST", "project/query", query.query_project),
    ("POST", "experiments/search", query.search_experiments),
    ("POST", "experiments/multi-metric-chart", query.multi_metric_chart),
    # Projects and their notes (rest/projects.py); the model registry (rest/registry.py).
    ("POST", "write/project/create", projects.create_project),
    ("POST", "write/project/update", projects.update_project),
    ("POST", "write/project/delete", projects.delete_project),
    ("GET", "project/notes", projects.read_project_notes),
    ("POST", "write/project/notes", projects.write_project_notes),
    ("POST", "write/registry-model/item/create", registry.register_model_version),
    ("GET", "registry-model", registry.registry_models),
    ("GET", "registry-model/count", registry.registry_model_count),
    ("GET", "registry-model/details", registry.registry_model_details),
    ("GET", "registry-model/compact-details", registry.registry_model_compact_details),
    ("GET", "registry-model/item/details", registry.registry_item_details),
    ("GET", "registry-model/item/download", registry.registry_item_download),
    ("GET", "registry-model/notes", registry.read_registry_notes),
    ("POST", "write/registry-model/notes", registry.write_registry_notes),
]

#: Routes at fixed absolute paths.
OTHER_ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "/clientlib/isAlive/ver", clientlib.is_alive_version),
    ("GET", "/clientlib/health/ping", clientlib.health_ping),
    ("POST", "/clientlib/batch/logger/experiment/metric", metrics.batch_metric),
    ("POST", "/clientlib/batch/logger/experiment/parameter", parameters.batch_parameter),
    ("POST", "/clientlib/tags/add-tags-to-experiment", tags.write_tags),
    ("POST", "/clientlib/asset/upload", assets.upload_asset),
    ("POST", "/clientlib/git-patch/upload", git.upload_git_patch),
    ("POST", "/clientlib/logger/add/run", clientlib.logger_add_run),
    ("POST", "/clientlib/logger/get/run", clientlib.logger_get_run),
    ("POST", "/clientlib/status-report/update", clientlib.status_report_update),
    ("GET", "/clientlib/rpc/get-pending-rpcs", clientlib.pending_rpcs),
    ("GET", "/clientlib/symlink/new", clientlib.clientlib_symlink),
    ("POST", "/clientlib/asset/3d-limits", visualizations.points_3d_limits),
    ("POST", "/clientlib/notification/experiment", clientlib.clientlib_acknowledge),
    ("POST", "/clientlib/status-report/offline-metadata", experiments.offline_metadata),
    ("POST", "/clientlib/rpc/register-rpc", clientlib.clientlib_acknowledge),
    ("GET", discovery.PROOF_PATH, discovery.prove),
    ("POST", "/clientlib/visualizations/upload", visualizations.upload_visualization),
    ("GET", "/local/admin/intervals", admin.admin_get_intervals),
    ("POST", "/local/admin/intervals", admin.admin_set_intervals),
]


#: comet_ml's "backend custom error" code: it shows the body's ``msg`` to the user.
BACKEND_CUSTOM_ERROR_CODE = 7777777


async def unsupported_endpoint(request: web.Request) -> web.Response:
    """Any other path under ``/api/rest/v2/``, ``/clientlib/rest/v2/`` or ``/clientlib/``: a clear
    JSON error naming the call, which comet_ml logs (live Experiment) or raises (``API``).

    A file upload is answered 429: comet_ml's upload loop retries every other status four times
    over about 19 s (so ``end()`` would wait that long for a call that can never succeed), while
    on 429 it stops at once and then reports the custom error's message.
    """
    path = request.path
    allowed = _methods_by_path().get(path)
    if allowed:  # a known path asked with another method: the usual 405
        msg = f"{request.method} is not allowed on {path}; use {' or '.join(sorted(allowed))}"
        return json_response({"msg": msg, "code": 405, "sdk_error_code": 0}, 405)
    msg = (
        f"comet-agent's local server does not support {request.method} {path} "
        "(see docs/comet_ml-compatibility.md for what it serves)"
    )
    status = 429 if request.content_type.startswith("multipart/") else 404
    return json_response({"msg": msg, "code": status, "sdk_error_code": BACKEND_CUSTOM_ERROR_CODE}, status)


def _methods_by_path() -> dict[str, set[str]]:
    """Every served absolute path and its methods (from the tables, as they are now)."""
    found: dict[str, set[str]] = {}
    for method, path, _handler in REST_ROUTES:
        for prefix in REST_PREFIXES:
            found.setdefault(prefix + path, set()).add(method)
    for method, path, _handler in OTHER_ROUTES:
        found.setdefault(path, set()).add(method)
    return found


def add_routes(app: web.Application) -> None:
    """Mount every route (REST routes under both REST prefixes), then the catch-all for the rest."""
    for method, path, handler in REST_ROUTES:
        for prefix in REST_PREFIXES:
            app.router.add_route(method, prefix + path, handler)
    for method, path, handler in OTHER_ROUTES:
        app.router.add_route(method, path, handler)
    # Last: every route above (and each table row another module adds) is tried first.
    for prefix in (*REST_PREFIXES, "/clientlib/"):
        app.router.add_route("*", prefix + "{unsupported:.*}", unsupported_endpoint)
