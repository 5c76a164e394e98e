"""The local server's own admin endpoint: the intervals ``update_status()`` recommends.

``GET /local/admin/intervals`` answers the current values; ``POST /local/admin/intervals`` with
``{"heartbeatMs", "cpuIntervalMs", "gpuIntervalMs", "sampleIntervalMs"}`` (any subset) changes them. Values are
stored verbatim, garbage included (strings, negatives, null), so that agent tests can make
``update_status()`` return garbage. Any accepted key may read them; only the server's admin key
(its first key: the first ``--api-key``/``--api-key-file`` key, or the generated one) may change
them, since they apply to every key's agents (403 otherwise). Not part of Comet's API.
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import ApiError, authenticate, json_response, read_json_object
from comet_agent.server.state import set_intervals, state_of

#: Request field -> ``set_intervals`` argument.
_INTERVAL_FIELDS = {
    "heartbeatMs": "heartbeat_ms",
    "cpuIntervalMs": "cpu_interval_ms",
    "gpuIntervalMs": "gpu_interval_ms",
    "sampleIntervalMs": "sample_interval_ms",
}


async def admin_get_intervals(request: web.Request) -> web.Response:
    """``GET /local/admin/intervals``: what update_status() answers now (camelCase keys)."""
    authenticate(request)
    return json_response(state_of(request).intervals)


async def admin_set_intervals(request: web.Request) -> web.Response:
    """Change what update_status() answers; values are stored verbatim (garbage allowed).

    Only the admin key may (403 for any other accepted key, before its body is read).
    """
    key_id = authenticate(request)
    state = state_of(request)
    if key_id != state.admin_key_id:
        raise ApiError(403, "only the server's admin key (its first API key) may change server-wide intervals")
    body = await read_json_object(request)
    changes = {argument: body[name] for name, argument in _INTERVAL_FIELDS.items() if name in body}
    if not changes:
        raise ApiError(400, "send at least one of heartbeatMs, cpuIntervalMs, gpuIntervalMs, sampleIntervalMs")
    set_intervals(state, **changes)
    return json_response(state.intervals)
