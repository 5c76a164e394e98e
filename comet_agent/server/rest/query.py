"""REST handlers for finding experiments: project columns, ``API.query``, ``API.search``, charts.

``GET project/column-names`` lists what a project's experiments can be queried on, as comet_ml's
``query.py`` needs it: ``{"columns": [{"name", "source", "type"}]}`` with the sources
``metrics``, ``params``, ``log_other``, ``tag``, ``env_details`` and ``metadata`` and the types
``double``, ``string``, ``boolean``, ``datetime`` and ``timenumber``.

``POST project/query`` (``API.query``) takes the predicates comet_ml builds, a list of
``{"source", "query": {"condition", "rules"}}`` that must all hold, and answers
``{"experimentKeys": [...]}``; ``POST experiments/search`` (``API.search``) takes one rules tree
(``rulesTree``, where each leaf names its own ``source``) and answers ``{"experiments": [metadata]}``
a page at a time. A rule compares an experiment's value for a field:

- metrics, parameters and others: the current (last written) value, as the summaries show it;
- tags: whether the experiment has the tag (``equal``) or not (``not_equal``);
- env_details: the system details (``hostname``, ``os``, ``pythonVersion``, ...);
- metadata: ``experiment_key``, ``experiment_name``, ``user_name``, ``file_name``,
  ``file_path``, ``start_server_timestamp`` and ``end_server_timestamp`` (UTC datetimes),
  ``duration`` (seconds), ``has_crashed`` and ``archived`` (booleans).

A value the experiment does not have is null: it matches ``is_null`` only, as in SQL.

``POST experiments/multi-metric-chart`` (``API.get_metrics_for_chart``) answers, per experiment,
every point of the metrics asked for (values as numbers where they are numbers, steps, epochs,
timestamps, and durations from the experiment's start) and the current value of the parameters
asked for.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Callable

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    authenticate,
    get_bool,
    get_int,
    get_list,
    get_str,
    json_response,
    read_json_object,
    require_owned_workspace,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import Store, numeric_value

#: The metadata fields a query may name, and their query types.
METADATA_COLUMNS = {
    "experiment_key": "string",
    "experiment_name": "string",
    "user_name": "string",
    "file_name": "string",
    "file_path": "string",
    "start_server_timestamp": "datetime",
    "end_server_timestamp": "datetime",
    "duration": "timenumber",
    "has_crashed": "boolean",
    "archived": "boolean",
}
#: System-details keys a query may name as ``Environment(...)`` (scalars only).
ENV_COLUMNS = (
    "hostname",
    "user",
    "os",
    "osType",
    "osRelease",
    "machine",
    "processor",
    "pythonVersion",
    "executable",
    "ip",
    "pid",
)
#: The largest page ``experiments/search`` answers.
MAX_SEARCH_PAGE_SIZE = 1000


class ExperimentFields:
    """One experiment's queryable values, read from the store on first use per source."""

    def __init__(self, store: Store, experiment_key: str, user_name: str, heartbeat_ms: Any):
        self.store = store
        self.experiment_key = experiment_key
        self.user_name = user_name
        self.heartbeat_ms = heartbeat_ms
        self._by_source: dict[str, dict[str, Any]] = {}
        self._tags: set[str] | None = None

    def tags(self) -> set[str]:
        if self._tags is None:
            self._tags = set(self.store.tags(self.experiment_key))
        return self._tags

    def values(self, source: str) -> dict[str, Any]:
        """``{field name: value}`` of one source (``metrics``, ``params``, ...)."""
        found = self._by_source.get(source)
        if found is None:
            found = self._by_source[source] = self._read(source)
        return found

    def _read(self, source: str) -> dict[str, Any]:
        store, key = self.store, self.experiment_key
        if source == "metrics":
            return {s["name"]: s["valueCurrent"] for s in store.metrics_summary(key)}
        if source == "params":
            return {s["name"]: s["valueCurrent"] for s in store.parameters_summary(key)}
        if source == "log_other":
            return {s["name"]: s["valueCurrent"] for s in store.others_summary(key)}
        if source == "env_details":
            details = store.system_details_raw(key)
            return {name: details[name] for name in ENV_COLUMNS if details.get(name) is not None}
        if source == "metadata":
            return self._metadata()
        raise ApiError(
            400, f"unknown query source {source!r}; use metrics, params, log_other, tag, env_details or metadata"
        )

    def _metadata(self) -> dict[str, Any]:
        meta = self.store.experiment_metadata(self.experiment_key, self.heartbeat_ms) or {}
        duration_ms = meta.get("durationMillis")
        return {
            "experiment_key": self.experiment_key,
            "experiment_name": meta.get("experimentName"),
            "user_name": self.user_name,
            "file_name": meta.get("fileName"),
            "file_path": meta.get("filePath"),
            "start_server_timestamp": meta.get("startTimeMillis"),
            "end_server_timestamp": meta.get("endTimeMillis"),
            "duration": None if duration_ms is None else duration_ms / 1000.0,
            "has_crashed": meta.get("hasCrashed"),
            "archived": meta.get("archived"),
        }


# ------------------------------------------------------------------ evaluation


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return numeric_value(value)


def _as_epoch_ms(value: Any) -> float | None:
    """A query datetime (``"2019-09-24 05:00:00"``, UTC when naive) or epoch ms, as epoch ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return _as_number(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp() * 1000.0
    return None


def _as_bool(value: Any) -> float | None:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return 1.0 if value.lower() == "true" else 0.0
    return _as_number(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "double": _as_number,
    "timenumber": _as_number,
    "datetime": _as_epoch_ms,
    "boolean": _as_bool,
}

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "equal": lambda a, b: a == b,
    "not_equal": lambda a, b: a != b,
    "less": lambda a, b: a < b,
    "less_or_equal": lambda a, b: a <= b,
    "greater": lambda a, b: a > b,
    "greater_or_equal": lambda a, b: a >= b,
}

_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda a, b: b in a,
    "begins_with": lambda a, b: a.startswith(b),
    "ends_with": lambda a, b: a.endswith(b),
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rule_matches(operator: str, query_type: str, actual: Any, wanted: Any) -> bool:
    """Whether a value satisfies one rule (``operator`` and ``wanted`` as comet_ml sends them)."""
    if operator == "is_null":
        return actual is None
    if operator == "is_not_null":
        return actual is not None
    if actual is None:  # SQL semantics: nothing else holds for a missing value
        return False
    if operator == "is_empty":
        return actual == ""
    if operator == "is_not_empty":
        return actual != ""
    negated = operator.startswith("not_") and operator != "not_equal"
    base = operator[4:] if negated else operator
    if base in _TEXT_TESTS:
        return _TEXT_TESTS[base](_text(actual), _text(wanted)) != negated
    if base == "between":
        if not isinstance(wanted, (list, tuple)) or len(wanted) != 2:
            raise ApiError(400, "'between' needs a [low, high] value")
        to_number = _CONVERTERS.get(query_type, _as_number)
        number, low, high = to_number(actual), to_number(wanted[0]), to_number(wanted[1])
        if number is None or low is None or high is None:
            return False
        return (low <= number <= high) != negated
    compare = _ORDERINGS.get(operator)
    if compare is None:
        raise ApiError(400, f"unknown query operator {operator!r}")
    convert = _CONVERTERS.get(query_type)
    if convert is not None:
        left, right = convert(actual), convert(wanted)
        if left is None or right is None or (isinstance(left, float) and math.isnan(left)):
            return False
        return compare(left, right)
    return compare(_text(actual), _text(wanted))


def node_matches(node: Any, fields: ExperimentFields, default_source: str | None) -> bool:
    """Whether an experiment satisfies a rules tree node: a group (``condition``, ``rules``) or a rule."""
    if not isinstance(node, dict):
        raise ApiError(400, "each query rule must be an object")
    if "rules" in node:
        rules = node["rules"]
        if not isinstance(rules, list):
            raise ApiError(400, "'rules' must be a list")
        condition = str(node.get("condition") or "AND").upper()
        if condition not in ("AND", "OR"):
            raise ApiError(400, f"unknown query condition {condition!r}; use AND or OR")
        results = (node_matches(rule, fields, default_source) for rule in rules)
        return all(results) if condition == "AND" else any(results)
    source = node.get("source") or default_source
    field = node.get("field", node.get("id"))
    operator = node.get("operator")
    if not isinstance(source, str) or source == "nested":
        raise ApiError(400, "a query rule needs its 'source'")
    if not isinstance(field, str) or not isinstance(operator, str):
        raise ApiError(400, "a query rule needs 'field' and 'operator' strings")
    if source == "tag":
        has_tag = field in fields.tags()
        return has_tag if operator in ("equal", "contains") else not has_tag
    actual = fields.values(source).get(field)
    return rule_matches(operator, str(node.get("type") or "string"), actual, node.get("value"))


# ------------------------------------------------------------------ columns


def _value_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(_as_number(v) is not None for v in present):
        return "double"
    if present and all(isinstance(v, str) and v.lower() in ("true", "false") for v in present):
        return "boolean"
    return "string"


def project_columns(store: Store, experiment_keys: list[str], user_name: str, heartbeat_ms: Any) -> list[dict]:
    """The query columns of a set of experiments (every name any of them has), metadata first."""
    columns = [{"name": name, "source": "metadata", "type": kind} for name, kind in METADATA_COLUMNS.items()]
    seen: dict[tuple[str, str], list[Any]] = {}
    tags: dict[str, None] = {}
    for key in experiment_keys:
        fields = ExperimentFields(store, key, user_name, heartbeat_ms)
        for source in ("metrics", "params", "log_other", "env_details"):
            for name, value in fields.values(source).items():
                seen.setdefault((source, name), []).append(value)
        tags.update(dict.fromkeys(sorted(fields.tags())))
    for (source, name), values in seen.items():
        columns.append({"name": name, "source": source, "type": _value_type(values)})
    columns.extend({"name": tag, "source": "tag", "type": "string"} for tag in tags)
    return columns


# ------------------------------------------------------------------ handlers


def _project_keys(
    request: web.Request, key_id: str, workspace: Any, project_name: Any, archived: bool | None
) -> list[str]:
    """Keys of the project's experiments: archived ones (True), the others (False) or all (None)."""
    store = state_of(request).store
    workspace = require_owned_workspace(request, key_id, workspace)
    if not isinstance(project_name, str) or not project_name:
        raise ApiError(400, "'projectName' is required")
    if store.project(workspace, project_name) is None:
        raise ApiError(404, f"project {workspace}/{project_name} not found")
    wanted = (False, True) if archived is None else (archived,)
    return [key for flag in wanted for key in store.experiment_keys_in_project(workspace, project_name, flag)]


def _fields(request: web.Request, key_id: str, experiment_key: str) -> ExperimentFields:
    state = state_of(request)
    return ExperimentFields(
        state.store, experiment_key, state.user_name(key_id), state.intervals.get("isAliveBeatDurationMillis")
    )


async def column_names(request: web.Request) -> web.Response:
    """``GET project/column-names?workspaceName=&projectName=``: what the project can be queried on."""
    key_id = authenticate(request)
    keys = _project_keys(request, key_id, request.query.get("workspaceName"), request.query.get("projectName"), None)
    state = state_of(request)
    columns = project_columns(
        state.store, keys, state.user_name(key_id), state.intervals.get("isAliveBeatDurationMillis")
    )
    return json_response({"columns": columns})


async def query_project(request: web.Request) -> web.Response:
    """``POST project/query`` (``API.query``): the keys of the experiments every predicate holds for."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    archived = get_bool(body, "archived")
    keys = _project_keys(request, key_id, body.get("workspaceName"), body.get("projectName"), archived)
    predicates = get_list(body, "predicates", lambda p: isinstance(p, dict), "a list of predicate objects") or []
    matching = []
    for key in keys:
        fields = _fields(request, key_id, key)
        if all(node_matches(p.get("query", {}), fields, p.get("source")) for p in predicates):
            matching.append(key)
    return json_response({"experimentKeys": matching})


async def search_experiments(request: web.Request) -> web.Response:
    """``POST experiments/search`` (``API.search``): one page of the experiments a rules tree holds for."""
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = state_of(request)
    project_id = get_str(body, "projectId", required=True)
    project = state.store.project(project_id=project_id)
    if project is None or state.store.workspace_owner(project["workspaceName"]) != key_id:
        raise ApiError(404, f"project {project_id} not found")
    keys = state.store.experiment_keys_in_project(
        project["workspaceName"], project["projectName"], get_bool(body, "deleted")
    )
    tree = body.get("rulesTree")
    page = max(get_int(body, "page") or 1, 1)
    limit = min(max(get_int(body, "limit") or 100, 1), MAX_SEARCH_PAGE_SIZE)
    matching = [key for key in keys if tree is None or node_matches(tree, _fields(request, key_id, key), None)]
    heartbeat = state.intervals.get("isAliveBeatDurationMillis")
    chosen = matching[(page - 1) * limit : page * limit]
    found = [state.store.experiment_metadata(key, heartbeat) for key in chosen]
    return json_response({"experiments": [m for m in found if m is not None], "total": len(matching)})


def _chart_value(rendered: str | None) -> Any:
    """A point's value for a chart: the number when it is one, else the value as stored."""
    number = numeric_value(rendered)
    if number is None:
        return rendered
    return int(number) if number.is_integer() and rendered is not None and "." not in rendered else number


async def multi_metric_chart(request: web.Request) -> web.Response:
    """``POST experiments/multi-metric-chart`` (``API.get_metrics_for_chart``): series per experiment.

    Experiments that are unknown or another key's are left out of the answer.
    """
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = state_of(request)
    store = state.store
    targeted = get_list(body, "targetedExperiments", lambda k: isinstance(k, str), "a list of experiment keys") or []
    metric_names = get_list(body, "metrics", lambda m: isinstance(m, str), "a list of metric names") or []
    param_names = get_list(body, "params", lambda p: isinstance(p, str), "a list of parameter names")
    result: dict[str, dict] = {}
    for key in targeted:
        workspace = store.experiment_workspace(key)
        if workspace is None or store.workspace_owner(workspace) != key_id:
            continue
        row = store.experiment_row(key) or {}
        start_ms = row.get("start_ms")
        series = []
        for name in metric_names:
            points = store.metrics(key, name)
            series.append(
                {
                    "metricName": name,
                    "values": [_chart_value(p["metricValue"]) for p in points],
                    "steps": [p["step"] for p in points],
                    "epochs": [p["epoch"] for p in points],
                    "timestamps": [p["timestamp"] for p in points],
                    "durations": [None if start_ms is None else p["timestamp"] - start_ms for p in points],
                }
            )
        params = None
        if param_names is not None:
            current = {s["name"]: s["valueCurrent"] for s in store.parameters_summary(key)}
            params = {name: current.get(name) for name in param_names}
        result[key] = {"experiment_key": key, "metrics": series, "params": params}
    return json_response({"experiments": result})
