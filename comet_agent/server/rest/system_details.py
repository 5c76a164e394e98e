"""REST handlers for an experiment's system details: host, OS, Python, command, GPUs, packages.

``POST write/experiment/system-details`` merges the fields it is sent (each checked for its type;
fields unknown to this server are ignored, like Comet does); ``GET experiment/system-details``
answers the stored record plus the names of the system metrics logged.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    body_experiment,
    json_response,
    query_experiment,
    saving,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import WRITABLE_SYSTEM_DETAILS_KEYS


def _valid_system_field(name: str, value: Any) -> bool:
    if value is None:
        return True
    if name == "command":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if name == "pid":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "env":
        return isinstance(value, dict)
    if name in ("installedPackages", "osPackages", "networkInterfaceIps"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if name == "gpuStaticInfoList":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if name == "logAdditionalSystemInfoList":
        return isinstance(value, list) and all(
            isinstance(v, dict) and isinstance(v.get("key"), str) and "value" in v for v in value
        )
    return isinstance(value, str)


_GPU_STATIC_KEYS = {"gpu_index": "gpuIndex", "total_memory": "totalMemory", "power_limit": "powerLimit"}


def normalise_gpu_static_info(items: list[dict]) -> list[dict]:
    """GPU static items in camelCase (``gpuIndex, name, uuid, totalMemory, powerLimit``).

    The live SDK sends snake_case keys, APIExperiment camelCase; both are accepted.
    """
    normalised = []
    for item in items:
        converted = {_GPU_STATIC_KEYS.get(k, k): v for k, v in item.items()}
        normalised.append(
            {k: converted.get(k) for k in ("gpuIndex", "name", "uuid", "totalMemory", "powerLimit")}
            | {k: v for k, v in converted.items() if k not in ("gpuIndex", "name", "uuid", "totalMemory", "powerLimit")}
        )
    return normalised


async def write_system_details(request: web.Request) -> web.Response:
    """``POST write/experiment/system-details``: merge the given fields into the stored record."""
    body, key_id, experiment_key = await body_experiment(request)
    fields = {}
    for name, value in body.items():
        if name in ("experimentKey", "apiKey"):
            continue
        if name not in WRITABLE_SYSTEM_DETAILS_KEYS:
            continue  # unknown keys from newer SDKs are ignored, like Comet does
        if not _valid_system_field(name, value):
            raise ApiError(400, f"system-details field '{name}' has the wrong type ({type(value).__name__})")
        fields[name] = value
    if "gpuStaticInfoList" in fields and fields["gpuStaticInfoList"] is not None:
        fields["gpuStaticInfoList"] = normalise_gpu_static_info(fields["gpuStaticInfoList"])
    if fields.get("logAdditionalSystemInfoList") is None:
        fields.pop("logAdditionalSystemInfoList", None)
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.merge_system_details(experiment_key, fields)))


async def read_system_details(request: web.Request) -> web.Response:
    """``GET experiment/system-details``: the stored record and the system metric names."""
    _, experiment_key = query_experiment(request)
    return json_response(state_of(request).store.system_details(experiment_key))
