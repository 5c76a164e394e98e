"""``APIExperiment``: one Comet experiment, read and written through the REST API.

Same methods, arguments, defaults and return shapes as ``comet_ml.APIExperiment`` 3.58.8, and
byte-compatible requests (checked against it in tests/integration/test_wire_sdk.py), so that code written for comet_ml runs unchanged:

    from comet_agent import APIExperiment
    exp = APIExperiment(previous_experiment="0123abcd...")     # attach to an experiment
    exp.set_hostname("gpu-box-3")
    exp.log_metric("loss", 0.25, step=10)
    exp.get_hostname()                                          # -> "gpu-box-3"

Deliberate differences from comet_ml (each is listed with its reason in the wire test):

- No ``GET /clientlib/isAlive/ver`` probe at construction: the agent must be able to build a
  client while the server is down. ``get_metrics()`` always uses ``metrics/get-all`` (backends
  older than 3.20.60 are not supported).
- ``log_asset``/``log_image`` do not send the ``metadata`` query parameter (requests encodes a
  dict as its key names, which no server can use); the metadata travels in the multipart part.
- ``log_html`` without ``timestamp`` sends the current time in ms (comet_ml sends µs by
  multiplying a ms time by 1000 again); ``log_output`` without ``timestamp`` uses epoch ms
  rather than a monotonic clock.
- System-details getters return None for a field the server omitted (comet_ml raises KeyError).
- A new experiment without a configured workspace goes to the user's default workspace
  (``GET account-details``, once per ``API``); comet_ml's ``APIExperiment`` raises ``ValueError``
  there, while its live ``Experiment`` lets the server choose that same workspace.
- Writes answering with an empty body return None (comet_ml raises a JSON decode error).
- A read whose reply has the wrong shape (a list, a string or null where an object belongs, an
  object without the field the getter returns, a field of the wrong type) raises
  ``InvalidReply`` naming the server and the endpoint. comet_ml raises ``KeyError`` or
  ``TypeError`` there, or returns None / ``[]`` for an empty object; only the system-details
  field getters keep that (an empty object reads as "nothing known", as in comet_ml).

comet-agent extensions (not in comet_ml): ``update_system_details(fields)`` /
``set_system_details(**fields)`` (one combined system-details write, as the live SDK sends),
``log_metrics_batch(points)`` (the clientlib metric batch), ``request_id=`` on those two, and
``idempotent(request_id)``, a block in which every write carries a derived id, for idempotent
retries (``X-Comet-Agent-Request-Id``). ``log_gpu_metrics`` items may carry an extra
``timestamp`` key (epoch ms), which the local server honours (the agent uses it to keep original
timestamps when replaying its spool).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
import warnings
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, cast

from comet_agent.api.client import RestClient, describe_json
from comet_agent.api.page_login import local_page_login_url
from comet_agent.errors import CometApiError

if TYPE_CHECKING:
    from comet_agent.api.api import API

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_NAME = "general"
SYSTEM_DETAILS_READ = "experiment/system-details"
SYSTEM_DETAILS_WRITE = "write/experiment/system-details"
MAX_OUTPUT_LINE_LENGTH = 5_000_000
GIT_PATCH_MEMBER = "git_diff.patch"

# snake_case keyword -> JSON key, for update_system_details / set_system_details.
SYSTEM_DETAILS_FIELDS = {
    "command": "command",
    "env": "env",
    "executable": "executable",
    "hostname": "hostname",
    "ip": "ip",
    "machine": "machine",
    "os": "os",
    "os_release": "osRelease",
    "os_type": "osType",
    "pid": "pid",
    "processor": "processor",
    "python_version": "pythonVersion",
    "python_version_verbose": "pythonVersionVerbose",
    "user": "user",
    "installed_packages": "installedPackages",
    "os_packages": "osPackages",
    "gpu_static_info": "gpuStaticInfoList",
    "additional_system_info": "logAdditionalSystemInfoList",
    "network_interface_ips": "networkInterfaceIps",
}

# UI tab names accepted by display(tab=...) -> the experiment-tab query value (comet_ml utils).
_UI_TABS = {
    "artifacts": "artifacts",
    "assets": "assets",
    "audio": "audio",
    "charts": "chart",
    "code": "code",
    "confusion-matrices": "confusionMatrix",
    "graphics": "images",
    "histograms": "histograms",
    "installed-packages": "installedPackages",
    "metrics": "metrics",
    "notes": "notes",
    "parameters": "params",
    "system-metrics": "systemMetrics",
    "text": "text",
    "output": "stdout",
    "panels": "panels",
    "graph": "graph",
    "other": "other",
    "html": "html",
    "assetStorage": "assets",
    "chart": "chart",
    "confusion-matrix": "confusionMatrix",
    "confusionMatrix": "confusionMatrix",
    "images": "images",
    "installedPackages": "installedPackages",
    "params": "params",
    "systemMetrics": "systemMetrics",
    "graph-def": "graph",
    "graph-definition": "graph",
    "stdout": "stdout",
}

_TEXT = (str, type(None))
_NUMBER = (int, float, type(None))

# (attribute, metadata field, JSON types the field may hold)
_ATTR_FIELD_MAP = [
    ("id", "experimentKey", _TEXT),
    ("duration_millis", "durationMillis", _NUMBER),
    ("start_server_timestamp", "startTimeMillis", _NUMBER),
    ("end_server_timestamp", "endTimeMillis", _NUMBER),
    ("archived", "archived", (bool, type(None))),
    ("project_name", "projectName", _TEXT),
    ("project_id", "projectId", _TEXT),
    ("workspace", "workspaceName", _TEXT),
    ("_name", "experimentName", _TEXT),
    ("file_path", "filePath", _TEXT),
    ("file_name", "fileName", _TEXT),
    ("optimization_id", "optimizationId", _TEXT),
]


def check_metadata(client: Any, metadata: Any, endpoint: str) -> Dict[str, Any]:
    """``metadata`` (one experiment's, as ``experiment/metadata`` or an ``experiments`` listing
    item carries it) when it is an object whose known fields have their JSON types; missing
    fields are fine (comet_ml reads each with ``.get``). ``client`` is the ``RestClient`` that
    fetched it, ``endpoint`` the read (both name the request in the error).

    Raises ``InvalidReply`` otherwise: a number as the workspace name would break the URL, and
    a list would break every attribute.
    """
    if not isinstance(metadata, dict):
        raise client.invalid_reply("GET", endpoint, f"{describe_json(metadata)} as an experiment's metadata")
    for _, item, kinds in _ATTR_FIELD_MAP:
        if item in metadata:
            client.field_of(metadata, item, kinds, endpoint)
    return metadata


def _seconds_to_ms(timestamp_s: float) -> int:
    # comet_ml's timestamp_milliseconds(): seconds since epoch -> int ms.
    return int(timestamp_s * 1000)


def _split_output(output: str, max_line_length: int = MAX_OUTPUT_LINE_LENGTH) -> list[str]:
    lines: list[str] = []
    for line in output.splitlines(keepends=True):
        while len(line) > max_line_length:
            lines.append(line[:max_line_length])
            line = line[max_line_length:]
        if line:
            lines.append(line)
    return lines


def _encode_metadata(metadata: Any) -> str | None:
    # As comet_ml encode_metadata(): compact, sorted keys; None for non-dicts and {}.
    if metadata is None or type(metadata) is not dict or metadata == {}:
        return None
    try:
        return json.dumps(metadata, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        logger.info("asset metadata is not JSON-encodable; sent without it")
        return None


def _model_to_string(graph: Any) -> str:
    if isinstance(graph, str):
        return graph
    if hasattr(graph, "to_json"):
        try:
            return str(graph.to_json(sort_keys=True))
        except Exception:  # a model's own serialiser failed: fall back like comet_ml
            return str(graph.to_json())
    if hasattr(graph, "to_yaml"):
        return str(graph.to_yaml())
    return str(graph)


#: Builds the ``API`` an ``APIExperiment`` made without ``api=`` uses. api.py imports this module
#: (its API returns APIExperiments), so this module does not import it back: api.py sets this.
api_factory: Optional[Callable[..., API]] = None


def _new_api(kwargs: Dict[str, Any]) -> API:
    if api_factory is None:  # pragma: no cover - importing comet_agent.api.experiment runs comet_agent.api first
        raise RuntimeError("comet_agent.api.api was not imported; import APIExperiment from comet_agent.api")
    return api_factory(**kwargs)


def read_git_patch_zip(data: bytes) -> str:
    """The text of ``git_diff.patch`` inside a git-patch zip (what ``get_git_patch`` returns)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(GIT_PATCH_MEMBER).decode("utf-8", errors="replace")


class APIExperiment:
    """A Comet experiment, through the REST API (drop-in for ``comet_ml.APIExperiment``).

    Construction, as in comet_ml:

    - ``APIExperiment(previous_experiment=KEY)``: attach to an existing experiment (one metadata GET).
    - ``APIExperiment(workspace=WS, project_name=PROJ, experiment_name=None)``: create a new one.
      Workspace and project fall back to configuration; then the workspace is the user's default
      (``API.get_default_workspace()``, one ``account-details`` request per ``API``) and the
      project ``general``.
    - ``APIExperiment(api=API, metadata=METADATA)``: what ``API.get_experiment`` builds.

    Any other keyword (``api_key``, ``cache``, and our ``url_override``, ``client``...) goes to
    ``API(...)`` when no ``api`` is given.

    Raises:
        comet_agent.errors.InvalidReply: the server answered something no Comet server sends
            (including account details without a default workspace, for a new experiment).
        comet_agent.errors.CometApiError: the server refused or could not be reached.
    """

    _api: API

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.id: Optional[str] = None
        self._name: Optional[str] = None
        self.workspace: Optional[str] = None
        self.project_name: Optional[str] = None
        self.project_id: Optional[str] = None
        self.archived = False
        self.duration_millis = 0
        self.start_server_timestamp = 0
        self.end_server_timestamp = 0
        self.optimization_id: Optional[str] = None
        self.file_path: Optional[str] = None
        self.file_name: Optional[str] = None
        if args:
            raise TypeError(
                "APIExperiment takes keyword arguments only (previous_experiment=..., workspace=..., project_name=...)"
            )
        if "metadata" in kwargs:
            if "api" not in kwargs:
                raise ValueError("APIExperiment(metadata=...) needs api=API(...) as well")
            self._api = kwargs["api"]
            self._set_from_metadata(kwargs["metadata"])
        elif "previous_experiment" in kwargs:
            previous_experiment = kwargs.pop("previous_experiment")
            for ignored in ("workspace", "project_name"):
                if ignored in kwargs:
                    logger.info("APIExperiment(previous_experiment=...) ignores %s", ignored)
                    kwargs.pop(ignored)
            self._api = kwargs.pop("api", None) or _new_api(kwargs)
            self._set_from_metadata(self._api._get_experiment_metadata(previous_experiment))
        else:
            api = kwargs.pop("api", None)
            workspace = kwargs.pop("workspace", None)
            project_name = kwargs.pop("project_name", None)
            experiment_name = kwargs.pop("experiment_name", None)
            self._api = api or _new_api(kwargs)
            # comet_ml's APIExperiment refuses to guess; its live Experiment lets the server pick the
            # user's default workspace. A user with only COMET_API_KEY expects the latter.
            workspace = workspace or self._api.config.workspace or self._api.get_default_workspace()
            project_name = project_name or self._api.config.project_name or DEFAULT_PROJECT_NAME
            payload: Dict[str, Any] = {"workspaceName": workspace, "projectName": project_name}
            if experiment_name is not None:
                payload["experimentName"] = experiment_name
            created = self._client.post("write/experiment/create", payload)
            if not isinstance(created, dict):
                raise self._client.invalid_reply(
                    "POST", "write/experiment/create", f"{describe_json(created)} where a JSON object belongs"
                )
            key = self._client.field_of(created, "experimentKey", str, "write/experiment/create", method="POST")
            metadata = self._api._get_experiment_metadata(key)
            if not metadata.get("experimentKey"):
                # We would write everything under experimentKey null from here on.
                raise self._client.invalid_reply(
                    "GET", "experiment/metadata", "no experimentKey for the experiment it just created"
                )
            self._set_from_metadata(metadata)

    # -- identity ------------------------------------------------------------------------------
    @property
    def _client(self) -> RestClient:
        return self._api._client

    def _set_from_metadata(self, metadata: Dict[str, Any]) -> None:
        metadata = metadata or {}
        for attr, item, _ in _ATTR_FIELD_MAP:
            setattr(self, attr, metadata.get(item))

    def _update_from_metadata(self, metadata: Dict[str, Any]) -> None:
        for attr, item, _ in _ATTR_FIELD_MAP:
            if item in metadata:
                setattr(self, attr, metadata[item])

    @property
    def name(self) -> Optional[str]:
        """The experiment's name (fetched from the server once if not known)."""
        if self._name is None:
            self._name = self._api._get_experiment_metadata(self.id).get("experimentName")
        return self._name

    @name.setter
    def name(self, value: Optional[str]) -> None:
        self._name = value

    @property
    def key(self) -> Optional[str]:
        """The experiment key (same as ``id``)."""
        return self.id

    @property
    def url(self) -> str:
        """The experiment's page on the configured server: ``{root}/{workspace}/{project}/{key}``
        (``.../archive/{key}`` when archived)."""
        return self._get_experiment_url()

    def _get_experiment_url(self, tab: Optional[str] = None) -> str:
        parts = [self._api._get_url_server(), self.workspace or "UNKNOWN", self.project_name or DEFAULT_PROJECT_NAME]
        if self.archived:
            parts.append("archive")
        parts.append(self.id or "UNKNOWN")
        url = "/".join(parts)
        if tab:
            if tab in _UI_TABS:
                return url + "?" + urllib.parse.urlencode({"experiment-tab": _UI_TABS[tab]})
            logger.info("tab must be one of: %r", sorted(_UI_TABS))
        return url

    def __repr__(self) -> str:
        return "<APIExperiment '%s/%s/%s'>" % (self.workspace, self.project_name, self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIExperiment) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def end(self) -> None:
        """Does nothing: an APIExperiment has no live connection to close (kept for compatibility)."""

    def display(
        self, clear: bool = False, wait: bool = True, new: int = 0, autoraise: bool = True, tab: Optional[str] = None
    ) -> None:
        """Show the experiment page: an IFrame inside a Jupyter kernel, a browser tab elsewhere.

        Args:
            clear, wait: Jupyter only (clear the output area, waiting for the next output).
            new, autoraise: browser only (as ``webbrowser.open``).
            tab: a UI tab such as ``"system-metrics"`` or ``"installed-packages"``.

        Never raises for a missing display: with neither Jupyter nor a browser it logs the URL.
        On a comet-agent local server the opened URL carries a single-use login token (never the
        key), so the page opens logged in; see ``comet_agent.server.pages``.
        """
        url = local_page_login_url(self._api, self._get_experiment_url(tab))
        if _in_jupyter_kernel():
            from IPython.display import IFrame, clear_output, display

            if clear:
                clear_output(wait=wait)
            display(IFrame(src=url, width="100%", height="800px"))
            return
        import webbrowser

        try:
            opened = webbrowser.open(url, new=new, autoraise=autoraise)
        except webbrowser.Error:
            opened = False
        if not opened:
            logger.warning("No browser or notebook available to display the experiment; open %s yourself", url)

    def to_json(self, full: bool = False) -> Dict[str, Any]:
        """The experiment as a dict; with ``full=True`` also every summary (13 GETs, in comet_ml's order)."""
        result: Dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "workspace": self.workspace,
            "project_name": self.project_name,
            "archived": self.archived,
            "url": self.url,
            "duration_millis": self.duration_millis,
            "start_server_timestamp": self.start_server_timestamp,
            "end_server_timestamp": self.end_server_timestamp,
            "optimization_id": self.optimization_id,
            "file_path": self.file_path,
            "file_name": self.file_name,
        }
        if full:
            git_patch_zip = self.get_git_patch()
            git_patch: Optional[str] = None
            if git_patch_zip is not None:
                try:
                    git_patch = read_git_patch_zip(git_patch_zip)
                except (zipfile.BadZipFile, KeyError):
                    raise self._client.invalid_reply(
                        "GET", "experiment/git/patch", f"a zip without a readable {GIT_PATCH_MEMBER}"
                    ) from None
            result.update(
                {
                    "asset_list": self.get_asset_list(),
                    "code": self.get_code(),
                    "html": self.get_html(),
                    "metrics": self.get_metrics(),
                    "metrics_summary": self.get_metrics_summary(),
                    "model_graph": self.get_model_graph(),
                    "others_summary": self.get_others_summary(),
                    "output": self.get_output(),
                    "parameters_summary": self.get_parameters_summary(),
                    "system_details": self.get_system_details(),
                    "tags": self.get_tags(),
                    "git_patch": git_patch,
                    "git_metadata": self.get_git_metadata(),
                }
            )
        return result

    # -- plumbing ------------------------------------------------------------------------------
    def _params(self, **extra: Any) -> Dict[str, Any]:
        params: Dict[str, Any] = {"experimentKey": self.id}
        params.update(extra)
        return params

    def _get_object(self, endpoint: str, **extra: Any) -> Dict[str, Any]:
        return self._client.get_object(endpoint, self._params(**extra))

    def _get_field(self, endpoint: str, field: str, kinds: Any, *, items: Any = None, **extra: Any) -> Any:
        # The field a getter returns, checked (InvalidReply otherwise); extra: query parameters.
        return self._client.field_of(self._get_object(endpoint, **extra), field, kinds, endpoint, items=items)

    def _write(
        self, endpoint: str, body: Dict[str, Any], *, base: str = "rest", request_id: Optional[str] = None
    ) -> Any:
        payload = {"experimentKey": self.id}
        payload.update(body)
        return self._client.post(endpoint, payload, base=base, request_id=request_id)

    def _system_details_field(self, field: str) -> Any:
        # {} and a missing field read as None (comet_ml returns None for {}). The value is passed
        # on as the server sent it, unchecked, as comet_ml does: the getters' types say what a
        # Comet server sends there.
        return self._get_object(SYSTEM_DETAILS_READ).get(field)

    def _write_system_details(self, fields: Dict[str, Any], request_id: Optional[str] = None) -> Any:
        # comet_ml 3.58.8 posts system details to the "alternate" base {crest}.
        return self._write(SYSTEM_DETAILS_WRITE, fields, base="crest", request_id=request_id)

    # -- reads ---------------------------------------------------------------------------------
    def get_additional_system_info(self) -> Optional[List[Dict[str, Any]]]:
        """Additional system info: a list of ``{"key", "value"}``."""
        return cast(Optional[List[Dict[str, Any]]], self._system_details_field("logAdditionalSystemInfoList"))

    def get_asset(self, asset_id: str, return_type: str = "binary", stream: bool = False) -> Any:
        """One asset's content: ``binary`` (bytes), ``json``, ``text`` or ``response``."""
        params = {"assetId": asset_id, "allow301": False, "experimentKey": self.id}
        return self._client.get(
            "experiment/asset/get-asset",
            params,
            return_type=return_type,
            stream=stream,
            timeout_s=self._client.timeouts.download_read_s,
        )

    def get_asset_list(self, asset_type: str = "all", timeout: int = 600) -> List[Dict[str, Any]]:
        """The experiment's assets (``fileName``, ``fileSize``, ``assetId``, ``type``, ...).

        ``timeout`` is the read timeout in seconds."""
        reply = self._client.get_object("experiment/asset/list", self._params(type=asset_type), timeout_s=timeout)
        assets: List[Dict[str, Any]] = self._client.field_of(reply, "assets", list, "experiment/asset/list", items=dict)
        return assets

    def get_code(self) -> Optional[str]:
        """The source code logged with ``set_code``."""
        code: Optional[str] = self._get_field("experiment/code", "code", _TEXT)
        return code

    def get_command(self) -> Optional[List[str]]:
        """The command line (list of str)."""
        return cast(Optional[List[str]], self._system_details_field("command"))

    def get_environment_details(self) -> Optional[List[str]]:
        """Deprecated alias of ``get_os_packages`` (warns ``DeprecationWarning``)."""
        warnings.warn(
            "APIExperiment.get_environment_details() is deprecated; use get_os_packages()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.get_os_packages()

    def get_executable(self) -> Optional[str]:
        """The Python executable's path (system-details ``executable``), or None."""
        return cast(Optional[str], self._system_details_field("executable"))

    def get_git_metadata(self) -> Dict[str, Any]:
        """``{user, root, branch, parent, origin}``."""
        return self._get_object("experiment/git/metadata")

    def get_git_patch(self) -> Optional[bytes]:
        """The git patch zip (bytes), or None when there is none (the server answers a JSON
        message, ``{"msg": ...}``). Raises ``InvalidReply`` for a body that is neither."""
        data: bytes = self._client.get("experiment/git/patch", self._params(), return_type="binary")
        if data.startswith(b"PK"):
            return data
        if data.lstrip().startswith(b"{"):
            return None
        raise self._client.invalid_reply(
            "GET", "experiment/git/patch", "a body that is neither a zip nor a JSON message"
        )

    def get_gpu_static_info(self) -> Optional[List[Dict[str, Any]]]:
        """GPU static info: list of ``{gpuIndex, name, uuid, totalMemory (bytes), powerLimit (mW)}`` (snake_case items from the live SDK), or None."""
        return cast(Optional[List[Dict[str, Any]]], self._system_details_field("gpuStaticInfoList"))

    def get_hostname(self) -> Optional[str]:
        """The host name (system-details ``hostname``), or None."""
        return cast(Optional[str], self._system_details_field("hostname"))

    def get_html(self) -> Optional[str]:
        """The experiment's logged HTML."""
        html: Optional[str] = self._get_field("experiment/html", "html", _TEXT)
        return html

    def get_installed_packages(self) -> Optional[List[str]]:
        """Installed Python packages, ``name==version`` strings, or None."""
        return cast(Optional[List[str]], self._system_details_field("installedPackages"))

    def get_ip(self) -> Optional[str]:
        """The host IP (system-details ``ip``), or None."""
        return cast(Optional[str], self._system_details_field("ip"))

    def get_max_memory(self) -> Optional[int]:
        """``maxTotalMemory`` in bytes (Comet notes it is usually None)."""
        return cast(Optional[int], self._system_details_field("maxTotalMemory"))

    def get_metadata(self) -> Dict[str, Any]:
        """The experiment's metadata, read again from the server: ``experimentKey``,
        ``experimentName``, ``workspaceName``, ``projectName``, ``startTimeMillis``,
        ``endTimeMillis``, ``durationMillis``, ``running``, ``archived``, ... (comet_ml's keys).

        Example:
            >>> APIExperiment(previous_experiment=key).get_metadata()["running"]  # doctest: +SKIP
            False
        """
        return self._api._get_experiment_metadata(self.id)

    def get_metrics(self, metric: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every metric value (``metricName, metricValue, timestamp, step, epoch, runContext, offset``),
        or those of one ``metric``."""
        metrics: List[Dict[str, Any]]
        if metric is None:
            metrics = self._get_field("experiment/metrics/get-all", "metrics", list, items=dict)
        else:
            metrics = self._get_field("experiment/metrics/get-metric", "metrics", list, items=dict, metricName=metric)
        return metrics

    def get_metrics_summary(self, metric: Optional[str] = None) -> Any:
        """Per-metric summaries; with ``metric``, that one's summary dict (``[]`` if absent)."""
        return self._summary("experiment/metrics/summary", metric)

    def get_parameters_summary(self, parameter: Optional[str] = None) -> Any:
        """Per-parameter summaries; with ``parameter``, that one's summary dict (``[]`` if absent)."""
        return self._summary("experiment/parameters", parameter)

    def _summary(self, endpoint: str, name: Optional[str]) -> Any:
        values = self._get_field(endpoint, "values", list, items=dict)
        if name is None:
            return values
        matching = [item for item in values if item.get("name") == name]
        return matching[0] if matching else []

    def get_others_summary(self, other: Optional[str] = None) -> Any:
        """The "other" values; with ``other``, the list of its current values."""
        endpoint = "experiment/log-other"
        values = self._get_field(endpoint, "values", list, items=dict)
        if other is None:
            return values
        return [
            self._client.field_of(item, "valueCurrent", object, endpoint)
            for item in values
            if item.get("name") == other
        ]

    def get_model_data(self, name: str) -> List[Dict[str, Any]]:
        """Deprecated in comet_ml (``get_model_asset_list``): the assets of model ``name``."""
        logger.warning("APIExperiment.get_model_data() is deprecated in comet_ml (get_model_asset_list)")
        assets: List[Dict[str, Any]] = self._get_field(
            "experiment/model/asset/list", "assets", list, items=dict, modelName=name
        )
        return assets

    def get_model_graph(self) -> Optional[str]:
        """The logged model graph text."""
        graph: Optional[str] = self._get_field("experiment/graph", "graph", _TEXT)
        return graph

    def get_model_names(self) -> List[str]:
        """Distinct model names."""
        models = self._get_field("experiment/model", "models", list, items=dict)
        return list({self._client.field_of(model, "modelName", str, "experiment/model") for model in models})

    def get_network_interface_ips(self) -> Optional[List[str]]:
        """The network interface addresses (list of str), or None."""
        return cast(Optional[List[str]], self._system_details_field("networkInterfaceIps"))

    def get_os(self) -> Optional[str]:
        """The OS description (``platform.platform()``), or None."""
        return cast(Optional[str], self._system_details_field("os"))

    def get_os_packages(self) -> Optional[List[str]]:
        """OS packages (``name=version`` strings), or None."""
        return cast(Optional[List[str]], self._system_details_field("osPackages"))

    def get_os_type(self) -> Optional[str]:
        """The OS type (``Linux``, ``Darwin``...), or None."""
        return cast(Optional[str], self._system_details_field("osType"))

    def get_output(self) -> Optional[str]:
        """The logged console output (str)."""
        output: Optional[str] = self._get_field("experiment/output", "output", _TEXT)
        return output

    def get_pid(self) -> Optional[int]:
        """The training process id, or None."""
        return cast(Optional[int], self._system_details_field("pid"))

    def get_python_version(self) -> Optional[str]:
        """The Python version (``3.11.7``), or None."""
        return cast(Optional[str], self._system_details_field("pythonVersion"))

    def get_python_version_verbose(self) -> Optional[str]:
        """``sys.version`` of the training interpreter, or None."""
        return cast(Optional[str], self._system_details_field("pythonVersionVerbose"))

    def get_system_details(self) -> Dict[str, Any]:
        """The whole system-details object, keyed as Comet returns it."""
        return self._get_object(SYSTEM_DETAILS_READ)

    def get_system_metric_names(self) -> Optional[List[str]]:
        """Names of the system metrics the server derived, or None."""
        return cast(Optional[List[str]], self._system_details_field("systemMetricNames"))

    def get_tags(self) -> List[str]:
        """The experiment's tags (list of str)."""
        tags: List[str] = self._get_field("experiment/tags", "tags", list, items=str)
        return tags

    def get_total_memory(self) -> Optional[int]:
        """``totalRam`` in bytes."""
        return cast(Optional[int], self._system_details_field("totalRam"))

    def get_user(self) -> Optional[str]:
        """The OS user who ran the experiment, or None."""
        return cast(Optional[str], self._system_details_field("user"))

    # -- writes: tags, links, models -----------------------------------------------------------
    def add_tags(self, tags: List[str]) -> Any:
        """Append ``tags``; returns the server's JSON (None for an empty body), like every write."""
        return self._write("write/experiment/tags", {"addedTags": tags})

    def create_symlink(self, project_name: str) -> str:
        """Link this experiment into ``project_name``; returns the link URL."""
        link: str = self._get_field("write/project/symlink", "link", str, projectName=project_name)
        return link

    def download_model(self, name: str, output_path: str = "./", expand: bool = True) -> None:
        """Download model ``name`` (a zip) into ``output_path``: unzipped if ``expand``, else as
        ``<name>.zip``. The body is streamed to a temporary file, not held in memory."""
        logger.info("Downloading experiment model %r ...", name)
        response = self._client.get(
            "experiment/model/download",
            self._params(modelName=name),
            return_type="response",
            stream=True,
            timeout_s=self._client.timeouts.download_read_s,
        )
        output_dir = os.path.expanduser(output_path)
        with tempfile.TemporaryFile() as spooled:
            for block in response.iter_content(64 * 1024):
                spooled.write(block)
            spooled.seek(0)
            if expand:
                try:
                    with zipfile.ZipFile(spooled) as archive:
                        archive.extractall(output_dir)
                except zipfile.BadZipFile:
                    raise self._client.invalid_reply(
                        "GET", "experiment/model/download", f"model {name!r} as a body that is not a zip"
                    ) from None
            else:
                with open(os.path.join(output_dir, f"{name}.zip"), "wb") as out:
                    shutil.copyfileobj(spooled, out)
        logger.info("done!")

    # -- writes: system details (one field per call, like comet_ml) -----------------------------
    def log_additional_system_info(self, key: str, value: Any) -> Any:
        """Add one ``{key, value}`` to the additional system info."""
        return self._write_system_details({"logAdditionalSystemInfoList": [{"key": key, "value": value}]})

    def set_command(self, command_args_list: Any) -> Any:
        """The command line: a list of str (or one str)."""
        return self._write_system_details({"command": command_args_list})

    def set_executable(self, executable: str) -> Any:
        """The Python executable's path (one system-details write; returns the server's JSON)."""
        return self._write_system_details({"executable": executable})

    def set_gpu_static_info(self, gpu_static_info: List[Dict[str, Any]]) -> Any:
        """GPU static info: a list of ``{gpuIndex: int, name: str, uuid: str, totalMemory: int
        (bytes), powerLimit: int (mW)}``. Raises ``TypeError``/``ValueError`` on other shapes."""
        if not isinstance(gpu_static_info, (tuple, list)):
            raise TypeError("gpu_static_info must be a list of dicts")
        types = {"gpuIndex": int, "name": str, "uuid": str, "totalMemory": int, "powerLimit": int}
        for item in gpu_static_info:
            if not isinstance(item, dict) or any(k not in item for k in types):
                raise ValueError(f"each gpu_static_info item must be a dict with keys {sorted(types)}")
            for k, expected in types.items():
                if not isinstance(item[k], expected):
                    raise TypeError(f"{k} must be a{'n' if expected is int else ''} {expected.__name__}")
        return self._write_system_details({"gpuStaticInfoList": list(gpu_static_info)})

    def set_hostname(self, hostname: str) -> Any:
        """The host name (one system-details write; returns the server's JSON)."""
        return self._write_system_details({"hostname": hostname})

    def set_installed_packages(self, installed_packages: List[str]) -> Any:
        """Installed Python packages, ``name==version`` strings (one system-details write)."""
        return self._write_system_details({"installedPackages": installed_packages})

    def set_ip(self, ip: str) -> Any:
        """The host IP (one system-details write)."""
        return self._write_system_details({"ip": ip})

    def set_machine(self, machine: str) -> Any:
        """The machine type, e.g. ``x86_64`` (one system-details write; in comet_ml, undocumented)."""
        return self._write_system_details({"machine": machine})

    def set_network_interface_ips(self, network_interface_ips: List[str]) -> Any:
        """The network interface addresses, list of str (one system-details write)."""
        return self._write_system_details({"networkInterfaceIps": network_interface_ips})

    def set_os(self, os: str) -> Any:  # noqa: A002 - comet_ml's parameter name
        """The OS description (one system-details write)."""
        return self._write_system_details({"os": os})

    def set_os_packages(self, os_packages: List[str]) -> Any:
        """OS packages, ``name=version`` strings (one system-details write)."""
        return self._write_system_details({"osPackages": os_packages})

    def set_os_release(self, os_release: str) -> Any:
        """The kernel release, e.g. ``6.1.0`` (one system-details write; in comet_ml, undocumented)."""
        return self._write_system_details({"osRelease": os_release})

    def set_os_type(self, os_type: str) -> Any:
        """The OS type, e.g. ``Linux`` (one system-details write)."""
        return self._write_system_details({"osType": os_type})

    def set_pid(self, pid: int) -> Any:
        """The training process id, int (one system-details write)."""
        return self._write_system_details({"pid": pid})

    def set_processor(self, processor: str) -> Any:
        """The processor string (one system-details write; in comet_ml, undocumented)."""
        return self._write_system_details({"processor": processor})

    def set_python_version(self, python_version: str) -> Any:
        """The Python version, e.g. ``3.11.7`` (one system-details write)."""
        return self._write_system_details({"pythonVersion": python_version})

    def set_python_version_verbose(self, python_version_verbose: str) -> Any:
        """``sys.version`` of the training interpreter (one system-details write)."""
        return self._write_system_details({"pythonVersionVerbose": python_version_verbose})

    def set_user(self, user: str) -> Any:
        """The OS user (one system-details write)."""
        return self._write_system_details({"user": user})

    def update_system_details(self, fields: Dict[str, Any], *, request_id: Optional[str] = None) -> Any:
        """comet-agent extension: ONE system-details write carrying several fields, as the live
        comet_ml Experiment sends. Keys may be JSON names (``osRelease``) or the snake_case names
        of ``SYSTEM_DETAILS_FIELDS`` (``os_release``). ``request_id`` is sent as
        ``X-Comet-Agent-Request-Id`` for idempotent retries.

        Raises ``ValueError`` for an unknown field name (nothing is sent).
        """
        json_names = set(SYSTEM_DETAILS_FIELDS.values())
        body: Dict[str, Any] = {}
        for name, value in fields.items():
            if name in SYSTEM_DETAILS_FIELDS:
                body[SYSTEM_DETAILS_FIELDS[name]] = value
            elif name in json_names:
                body[name] = value
            else:
                raise ValueError(
                    f"unknown system-details field {name!r}; expected one of {sorted(SYSTEM_DETAILS_FIELDS)}"
                )
        if not body:
            raise ValueError("update_system_details needs at least one field")
        return self._write_system_details(body, request_id=request_id)

    def set_system_details(self, *, request_id: Optional[str] = None, **fields: Any) -> Any:
        """comet-agent extension: keyword form of ``update_system_details``
        (``set_system_details(hostname="h", os_type="Linux", pid=42)``)."""
        return self.update_system_details(fields, request_id=request_id)

    # -- writes: metrics -----------------------------------------------------------------------
    def _metric_body(
        self,
        body: Dict[str, Any],
        context: Optional[str],
        step: Optional[int],
        epoch: Optional[int],
        timestamp: Optional[int],
    ) -> Dict[str, Any]:
        # The cpu/ram/load endpoints pass timestamp through unchanged (ms), as comet_ml does.
        for key, value in (("context", context), ("step", step), ("epoch", epoch), ("timestamp", timestamp)):
            if value is not None:
                body[key] = value
        return body

    def log_cpu_metrics(
        self,
        cpu_metrics: List[float],
        context: Optional[str] = None,
        step: Optional[int] = None,
        epoch: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> Any:
        """CPU utilisation per core, in percent; ``timestamp`` in epoch ms (sent unchanged)."""
        return self._write(
            "write/experiment/cpu-metrics",
            self._metric_body({"cpuPercentUtilization": cpu_metrics}, context, step, epoch, timestamp),
        )

    def log_ram_metrics(
        self,
        total_ram: float,
        used_ram: float,
        context: Optional[str] = None,
        step: Optional[int] = None,
        epoch: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> Any:
        """Total and used RAM in bytes; ``timestamp`` in epoch ms (sent unchanged)."""
        return self._write(
            "write/experiment/ram-metrics",
            self._metric_body({"totalRam": total_ram, "usedRam": used_ram}, context, step, epoch, timestamp),
        )

    def log_load_metrics(
        self,
        load_avg: float,
        context: Optional[str] = None,
        step: Optional[int] = None,
        epoch: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> Any:
        """The 1-minute load average; ``timestamp`` in epoch ms (sent unchanged)."""
        return self._write(
            "write/experiment/load-metrics",
            self._metric_body({"loadAverage": load_avg}, context, step, epoch, timestamp),
        )

    def log_gpu_metrics(self, gpu_metrics: List[Dict[str, Any]]) -> Any:
        """GPU samples: a list of ``{gpuId, freeMemory, usedMemory (bytes), gpuUtilization (%), totalMemory}``.
        Raises ``ValueError`` when a key is missing."""
        if not isinstance(gpu_metrics, (list, tuple)):
            raise ValueError("gpu_metrics must be a list of dicts")
        required = ("gpuId", "freeMemory", "usedMemory", "gpuUtilization", "totalMemory")
        for item in gpu_metrics:
            if not isinstance(item, dict):
                raise ValueError("gpu_metrics must be a list of dicts")
            if any(k not in item for k in required):
                raise ValueError(f"each gpu_metrics item needs the keys {list(required)}")
        return self._write("write/experiment/gpu-metrics", {"gpus": list(gpu_metrics)})

    def log_metric(
        self,
        metric: str,
        value: Any,
        step: Optional[int] = None,
        epoch: Optional[int] = None,
        timestamp: Optional[float] = None,
    ) -> Any:
        """One metric value. ``timestamp`` is epoch **seconds** (sent as ms), as in comet_ml."""
        body: Dict[str, Any] = {"metricName": metric, "metricValue": value}
        if epoch is not None:
            body["epoch"] = epoch
        if step is not None:
            body["step"] = step
        if timestamp is not None:
            body["timestamp"] = _seconds_to_ms(timestamp)
        return self._write("write/experiment/metric", body)

    def log_metrics_batch(
        self, points: List[Dict[str, Any]], *, request_id: Optional[str] = None, compress: bool = True
    ) -> Any:
        """comet-agent extension: many metric values in one request to the clientlib metric batch
        (``{cl}batch/logger/experiment/metric``, gzip like the live SDK).

        Args:
            points: dicts with ``metricName``, ``metricValue`` and optionally ``step``, ``epoch``,
                ``context``, ``timestamp`` (epoch **ms**); missing optional keys are sent as null.
            request_id: idempotency id (``X-Comet-Agent-Request-Id``).
        Raises ``ValueError`` for a point without name or value, or more than 1000 points (nothing sent).
        """
        if len(points) > 1000:
            raise ValueError(f"a metric batch holds at most 1000 points, got {len(points)}; split it")
        values = []
        for point in points:
            if "metricName" not in point or "metricValue" not in point:
                raise ValueError("each metric point needs metricName and metricValue")
            values.append(
                {
                    "metricName": point["metricName"],
                    "metricValue": point["metricValue"],
                    "step": point.get("step"),
                    "epoch": point.get("epoch"),
                    "context": point.get("context"),
                    "timestamp": point.get("timestamp"),
                }
            )
        payload = {"experimentKey": self.id, "values": values}
        return self._client.post(
            "batch/logger/experiment/metric", payload, base="clientlib", compress=compress, request_id=request_id
        )

    # -- writes: parameters, others, text ------------------------------------------------------
    def log_parameter(
        self, parameter: str, value: Any, step: Optional[int] = None, timestamp: Optional[float] = None
    ) -> Any:
        """One parameter. ``timestamp`` is epoch seconds (sent as ms)."""
        body: Dict[str, Any] = {"parameterName": parameter, "parameterValue": value}
        if step is not None:
            body["step"] = step
        if timestamp is not None:
            body["timestamp"] = _seconds_to_ms(timestamp)
        return self._write("write/experiment/parameter", body)

    def log_other(self, key: str, value: Any, timestamp: Optional[float] = None) -> Any:
        """One "other" key/value. ``timestamp`` is epoch seconds (sent as ms)."""
        body: Dict[str, Any] = {"key": key, "value": value}
        if timestamp is not None:
            body["timestamp"] = _seconds_to_ms(timestamp)
        result = self._write("write/experiment/log-other", body)
        if key == "Name":  # comet_ml keeps the local name in step with the "Name" other
            self._name = value
        return result

    def set_name(self, name: str) -> None:
        """Rename the experiment (logged as the other ``Name``, as comet_ml does)."""
        self.log_other("Name", name)

    def log_output(
        self, output: str, context: Optional[str] = None, stderr: bool = False, timestamp: Optional[float] = None
    ) -> Any:
        """Append console output, split into lines. ``timestamp`` is epoch seconds (default: now;
        comet_ml uses a monotonic clock there)."""
        if timestamp is None:
            timestamp = time.time()
        lines = [
            {"stderr": stderr, "output": line, "localTimestamp": _seconds_to_ms(timestamp), "offset": offset}
            for offset, line in enumerate(_split_output(output))
        ]
        payload = {"experimentKey": self.id, "runContext": context, "outputLines": lines}
        return self._client.post("write/experiment/output", payload, base="crest")

    def log_html(self, html: str, clear: bool = False, timestamp: Optional[float] = None) -> Any:
        """Append (or with ``clear=True`` replace) the experiment's HTML. ``timestamp`` is epoch
        seconds (sent as ms); default now (comet_ml sends a µs-size number there)."""
        if timestamp is None:
            timestamp = time.time()
        return self._write(
            "write/experiment/html", {"html": html, "override": clear, "timestamp": _seconds_to_ms(timestamp)}
        )

    def set_code(self, code: Optional[str] = None, filename: Optional[str] = None) -> Any:
        """The experiment's source code, given as text or read from ``filename``."""
        if filename:
            if code is not None:
                logger.warning("set_code: pass code or filename, not both; nothing sent")
                return None
            if not os.path.isfile(filename):
                logger.warning("set_code: %s is not a file; nothing sent", filename)
                return None
            try:
                with open(filename, encoding="utf-8") as handle:
                    code = handle.read()
            except (OSError, UnicodeDecodeError) as exc:
                logger.warning("set_code: cannot read %s (%s); nothing sent", filename, exc)
                return None
        return self._write("write/experiment/code", {"code": code})

    def set_model_graph(self, graph: Any) -> Any:
        """The model graph; non-str graphs are converted to text (``to_json``, ``to_yaml``, ``str``)."""
        return self._write("write/experiment/graph", {"graph": _model_to_string(graph)})

    def set_filename(self, filename: str) -> Any:
        """The script's path (also updates ``file_path`` locally, as comet_ml does)."""
        result = self._write("write/experiment/file-path", {"filePath": filename})
        self.file_path = filename
        return result

    def set_git_metadata(
        self,
        user: Optional[str],
        root: Optional[str],
        branch: Optional[str],
        parent: Optional[str],
        origin: Optional[str],
    ) -> Any:
        """Git metadata. Note: ``origin`` is sent as given; strip credentials first
        (``comet_agent.redaction.strip_url_credentials``)."""
        return self._write(
            "write/experiment/git/metadata",
            {"user": user, "root": root, "branch": branch, "parent": parent, "origin": origin},
        )

    def set_git_patch(self, file_data: Any) -> Any:
        """Upload a git patch: a path to a patch file, or its content (bytes or str).

        It is zipped (member ``git_diff.patch``, deflate) into a temporary file, streamed from
        disk, then the temporary file is removed. None does nothing.
        """
        if file_data is None:
            return None
        with tempfile.TemporaryDirectory(prefix="comet-agent-patch-") as tmp_dir:
            zip_path = Path(tmp_dir) / "patch.zip"
            with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
                if isinstance(file_data, (str, os.PathLike)) and _is_file(file_data):
                    with open(file_data, "rb") as source, archive.open(GIT_PATCH_MEMBER, "w") as member:
                        shutil.copyfileobj(source, member, 64 * 1024)
                elif isinstance(file_data, (bytes, bytearray)):
                    archive.writestr(GIT_PATCH_MEMBER, bytes(file_data))
                else:
                    archive.writestr(GIT_PATCH_MEMBER, str(file_data))
            return self._client.post_multipart(
                "write/experiment/git/patch", [("file", "filename", zip_path)], params=self._params()
            )

    # -- writes: files -------------------------------------------------------------------------
    def log_asset(
        self,
        filename: str,
        step: Optional[int] = None,
        name: Optional[str] = None,
        overwrite: Optional[bool] = None,
        context: Optional[str] = None,
        ftype: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Any:
        """Upload a file as an asset, streamed from disk.

        Args:
            filename: local path (``~`` expanded).
            name: the asset's name (default: ``filename``, as comet_ml sends it).
            ftype: asset type (``type`` query parameter).
            metadata: a JSON-able dict, sent as the multipart part ``metadata``.
        Raises ``FileNotFoundError`` when the file does not exist (nothing sent).
        """
        path = os.path.expanduser(filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"log_asset: no such file: {path}")
        file_name = name if name is not None else path
        params: Dict[str, Any] = {"experimentKey": self.id, "fileName": file_name}
        for key, value in (("step", step), ("overwrite", overwrite), ("context", context), ("type", ftype)):
            if value is not None:
                params[key] = value
        extension = os.path.splitext(file_name)[1].lstrip(".")
        if extension:
            params["extension"] = extension
        parts: list[tuple[str, str | None, bytes | Path]] = [("file", "file", Path(path))]
        encoded = _encode_metadata(metadata)
        if encoded is not None:
            parts.append(("metadata", None, encoded.encode("utf-8")))
        return self._client.post_multipart("write/experiment/upload-asset", parts, params=params)

    def log_image(
        self,
        filename: str,
        image_name: Optional[str] = None,
        step: Optional[int] = None,
        overwrite: Optional[bool] = None,
        context: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Any:
        """Upload an image file, streamed from disk (part filename = the local path, as comet_ml).

        ``metadata`` is accepted for compatibility; comet_ml's only use of it is the broken query
        parameter, which we do not send. Raises ``FileNotFoundError`` for a missing file."""
        path = os.path.expanduser(filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"log_image: no such file: {path}")
        params: Dict[str, Any] = {"experimentKey": self.id, "type": "image", "extension": os.path.splitext(path)[1]}
        for key, value in (("fileName", image_name), ("step", step), ("overwrite", overwrite), ("context", context)):
            if value is not None:
                params[key] = value
        return self._client.post_multipart("write/experiment/upload-asset", [("file", path, Path(path))], params=params)

    # -- writes: times and status --------------------------------------------------------------
    def _set_start_end(self, start_ms: Optional[int], end_ms: Optional[int]) -> Any:
        result = self._write(
            "write/experiment/set-start-end-time", {"startTimeMillis": start_ms, "endTimeMillis": end_ms}
        )
        self._update_from_metadata(self._api._get_experiment_metadata(self.id))
        return result

    def set_start_time(self, start_server_timestamp: int) -> Any:
        """The start time, epoch ms; refreshes ``start_server_timestamp`` and ``duration_millis``."""
        return self._set_start_end(start_server_timestamp, None)

    def set_end_time(self, end_server_timestamp: int) -> Any:
        """The end time, epoch ms; refreshes ``end_server_timestamp`` and ``duration_millis``."""
        return self._set_start_end(None, end_server_timestamp)

    def idempotent(self, request_id: str) -> AbstractContextManager[None]:
        """comet-agent extension: a context manager in which each write gets an idempotency id
        derived from ``request_id`` (``<request_id>/1``, ``/2``...), so that replaying the same
        writes after a crash is applied once by a server that honours ``X-Comet-Agent-Request-Id``.

            with experiment.idempotent(entry.request_id):
                experiment.log_cpu_metrics([12.5, 40.0], timestamp=1700000000000)
        """
        return self._client.idempotency_scope(request_id)

    def update_status(self) -> Dict[str, Any]:
        """Heartbeat (``GET write/experiment/set-status``); returns the server's JSON, e.g.
        ``{"isAliveBeatDurationMillis": 10000, "gpuMonitorIntervalMillis": 60000, "cpuMonitorIntervalMillis": 68000}``.
        Raises ``InvalidReply`` when the reply is not a JSON object (the values are the caller's to check)."""
        return self._get_object("write/experiment/set-status")


def _is_file(value: Any) -> bool:
    try:
        return os.path.isfile(value)
    except (ValueError, TypeError, OSError):
        return False


def _in_jupyter_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


__all__ = ["APIExperiment", "CometApiError", "SYSTEM_DETAILS_FIELDS", "read_git_patch_zip"]
