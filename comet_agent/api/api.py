"""``API``: the entry point to a Comet server (drop-in for ``comet_ml.API``, the parts we need).

from comet_agent import API
api = API()                                  # key and server from the usual Comet config
api.get()                                    # workspace names
api.get("ws")                                # project names
api.get("ws/proj")                           # [APIExperiment, ...]
api.get("ws/proj/0123abcd...")               # APIExperiment or None
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from comet_agent.api import experiment
from comet_agent.api.client import RestClient, Timeouts, describe_json
from comet_agent.api.experiment import APIExperiment, check_metadata
from comet_agent.config import ResolvedConfig, resolve_config
from comet_agent.delivery.retry import RetryPolicy
from comet_agent.errors import BadRequest, NotFound

logger = logging.getLogger(__name__)


def _float_setting(config: ResolvedConfig, name: str) -> Optional[float]:
    raw = config.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"Comet setting {name} from {config.source_of(name)} must be a number, got {raw!r}") from None


def _timeouts_from_config(config: ResolvedConfig) -> Timeouts:
    """comet_ml's timeout settings (COMET_TIMEOUT_API, _FILE_UPLOAD, _FILE_DOWNLOAD), in seconds."""
    defaults = Timeouts()
    return Timeouts(
        connect_s=defaults.connect_s,
        read_s=_float_setting(config, "timeout_api") or defaults.read_s,
        upload_read_s=_float_setting(config, "timeout_file_upload") or defaults.upload_read_s,
        download_read_s=_float_setting(config, "timeout_file_download") or defaults.download_read_s,
    )


def _retry_from_config(config: ResolvedConfig) -> RetryPolicy:
    """comet_ml's COMET_HTTP_SESSION_RETRY_TOTAL / _BACKOFF_FACTOR, plus our COMET_AGENT_RETRY_AFTER_CAP_S."""
    defaults = RetryPolicy()
    total = _float_setting(config, "http_session_retry_total")
    factor = _float_setting(config, "http_session_retry_backoff_factor")
    cap = _float_setting(config, "agent_retry_after_cap_s")
    return RetryPolicy(
        max_retries=int(total) if total is not None else defaults.max_retries,
        backoff_base_s=factor if factor is not None else defaults.backoff_base_s,
        retry_after_cap_s=cap if cap is not None else defaults.retry_after_cap_s,
    )


def _allow_header(config: ResolvedConfig) -> Dict[str, str]:
    """comet_ml's optional extra header (COMET_ALLOW_HEADER_NAME / _VALUE), sent when both are set."""
    name, value = config.get("allow_header_name"), config.get("allow_header_value")
    return {name: value} if name and value else {}


class API:
    """Access to workspaces, projects and experiments on the configured Comet server.

    Args:
        api_key: the key; default from configuration (see ``comet_agent.config``).
        cache: accepted for compatibility with comet_ml and ignored: we never cache reads.
        version: REST version; only ``"v2"`` exists.
        url_override: comet-agent extension: the server (``http://HOST:PORT/clientlib/``).
        config: comet-agent extension: an already resolved ``ResolvedConfig``.
        timeouts, retry, sleep, rng: comet-agent extensions passed to ``RestClient``. Without
            them, timeouts come from ``COMET_TIMEOUT_API`` / ``_FILE_UPLOAD`` / ``_FILE_DOWNLOAD`` and
            retries from ``COMET_HTTP_SESSION_RETRY_TOTAL`` / ``_BACKOFF_FACTOR`` and
            ``COMET_AGENT_RETRY_AFTER_CAP_S`` (or the same names in ``.comet.config``).
        client: comet-agent extension: a ready ``RestClient`` (then the rest is unused).

    Raises:
        comet_agent.config.ConfigError: no API key anywhere (the message lists where it looked).
        ValueError: ``version`` is not "v2", or the server URL is not http(s).

    Unlike comet_ml, construction sends no request (no version probe), so an ``API`` can be
    built while the server is unreachable. The default workspace (``get_default_workspace``) is
    asked for once, when first needed, and remembered for the life of this object.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        cache: bool = True,
        version: str = "v2",
        *,
        url_override: Optional[str] = None,
        config: Optional[ResolvedConfig] = None,
        timeouts: Optional[Timeouts] = None,
        retry: Optional[RetryPolicy] = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Optional[random.Random] = None,
        client: Optional[RestClient] = None,
    ) -> None:
        if version != "v2":
            raise ValueError(f"unsupported REST API version {version!r}; only 'v2' exists")
        self.config = config or resolve_config(api_key=api_key, url_override=url_override)
        if client is None:
            key = api_key or self.config.require_api_key()
            key_source = "the api_key argument" if api_key else (self.config.api_key_source or "configuration")
            client = RestClient(
                key,
                url_override or self.config.url_override,
                key_source=key_source,
                sdk_source="API",
                timeouts=timeouts or _timeouts_from_config(self.config),
                retry=retry or _retry_from_config(self.config),
                sleep=sleep,
                rng=rng,
                verify_tls=self.config.check_tls_certificate,
                extra_headers=_allow_header(self.config),
            )
        self._client = client
        self._default_workspace: Optional[str] = None
        self._default_workspace_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"API(server={self._client.root!r}, key_source={self._client.key_source!r})"

    @property
    def server_url(self) -> str:
        """``{root}``: where experiment pages live (``{root}/{workspace}/{project}/{key}``)."""
        return self._client.root

    def _get_url_server(self, version: Optional[str] = None) -> str:
        return self._client.root

    def _get_experiment_metadata(self, experiment_key: Optional[str]) -> Dict[str, Any]:
        # Checked here, where every metadata read passes: an APIExperiment's attributes come from it.
        # experiment_key is None for an APIExperiment built from metadata without a key: the
        # request then goes without one (None query parameters are left out).
        reply = self._client.get("experiment/metadata", {"experimentKey": experiment_key})
        return check_metadata(self._client, reply, "experiment/metadata")

    def close(self) -> None:
        """Close the HTTP session's pooled connections."""
        self._client.close()

    # -- navigation ----------------------------------------------------------------------------
    def get(
        self, workspace: Optional[str] = None, project_name: Optional[str] = None, experiment: Optional[str] = None
    ) -> Any:
        """By path: ``get()`` -> workspace names; ``get("ws")`` -> project names;
        ``get("ws/proj")`` -> list of ``APIExperiment``; ``get("ws/proj/key-or-name")`` -> an
        ``APIExperiment`` or None. Raises ``SyntaxError`` for a slash path combined with the
        separate arguments it already contains (as comet_ml)."""
        if workspace is not None and "/" in workspace:
            if project_name is not None:
                raise SyntaxError("give either 'workspace/project' or workspace and project_name, not both")
            workspace, project_name = workspace.split("/", 1)
        if project_name is not None and "/" in project_name:
            if experiment is not None:
                raise SyntaxError("give either 'project/experiment' or project_name and experiment, not both")
            project_name, experiment = project_name.split("/", 1)
        if workspace is None:
            return self.get_workspaces()
        if project_name is None:
            return self.get_projects(workspace)
        if experiment is None:
            return self.get_experiments(workspace, project_name)
        found = self.get_experiment(workspace, project_name, experiment)
        if found is None:
            logger.warning("No experiment %s/%s/%s found", workspace, project_name, experiment)
        return found

    def get_account_details(self) -> Dict[str, str]:
        """The authorized user: ``{"userName": ..., "defaultWorkspaceName": ...}``.

        Raises ``InvalidReply`` when the reply is not a JSON object."""
        return self._client.get_object("account-details", {})

    def get_default_workspace(self) -> str:
        """The default workspace of the key's user: ``defaultWorkspaceName`` from ``GET account-details``.

        This is where a new experiment goes when no workspace is configured: comet_ml's live
        ``Experiment`` leaves the choice to the server, which picks this same workspace. Asked
        once per ``API`` object, then remembered (the key, hence the user, never changes).

        Raises:
            InvalidReply: the account details carry no usable workspace name (the message names
                the server and says how to configure a workspace instead).
            CometApiError: any other failure of the request (a rejected key, an unreachable server).

        Example::

            API().get_default_workspace()   # -> "my-user"
        """
        with self._default_workspace_lock:
            if self._default_workspace is None:
                details = self._client.get("account-details", {})
                name = details.get("defaultWorkspaceName") if isinstance(details, dict) else None
                if not isinstance(name, str) or not name.strip():
                    shape = (
                        describe_json(details)
                        if not isinstance(details, dict)
                        else "account details without a defaultWorkspaceName"
                    )
                    raise self._client.invalid_reply(
                        "GET",
                        "account-details",
                        shape,
                        hint="there is no default workspace to create the experiment in: pass workspace=..., "
                        "set COMET_WORKSPACE, or put 'workspace = ...' under [comet] in ~/.comet.config",
                    )
                self._default_workspace = name
            return self._default_workspace

    def get_workspaces(self) -> List[str]:
        """Workspace names."""
        names: List[str] = self._client.field_of(
            self._client.get_object("workspaces", {}), "workspaceNames", list, "workspaces", items=str
        )
        return names

    def get_projects(self, workspace: str) -> Optional[List[str]]:
        """Project names in ``workspace``, or None when the reply lists none (as comet_ml)."""
        results = self._client.get_object("projects", {"workspaceName": workspace})
        if "projects" not in results:
            return None
        projects = self._client.field_of(results, "projects", list, "projects", items=dict)
        return [self._client.field_of(project, "projectName", str, "projects") for project in projects]

    def get_experiment(
        self, workspace: Optional[str], project_name: Optional[str], experiment: str
    ) -> Optional[APIExperiment]:
        """An experiment by key, or by name when no key matches (400/404 on the key lookup).

        The name is looked up in ``workspace``/``project_name``; either may be None (an
        experiment's metadata can lack them) and is then left out of that listing request."""
        metadata: Optional[Dict[str, Any]]
        try:
            metadata = self._get_experiment_metadata(experiment)
        except (NotFound, BadRequest):
            metadata = self._experiment_metadata_by_name(workspace, project_name, experiment)
        if metadata is None:
            return None
        return APIExperiment(api=self, metadata=metadata)

    def get_experiment_by_key(self, experiment_key: str) -> Optional[APIExperiment]:
        """An experiment by key, or None when the server says it does not exist."""
        try:
            metadata = self._get_experiment_metadata(experiment_key)
        except (NotFound, BadRequest):
            return None
        # comet_ml then looks the experiment up again through get_experiment (a second metadata
        # GET); we do the same so the two clients send the same requests.
        # check_metadata let through only a string or null for these two (or nothing).
        workspace: Optional[str] = metadata.get("workspaceName")
        project_name: Optional[str] = metadata.get("projectName")
        return self.get_experiment(workspace, project_name, experiment_key)

    def get_experiments(
        self,
        workspace: str,
        project_name: Optional[str] = None,
        pattern: Optional[str] = None,
        page: Optional[int] = None,
        page_size: Optional[int] = None,
        sort_by: Optional[str] = None,
        sort_order: Optional[str] = None,
    ) -> List[APIExperiment]:
        """Experiments of a project (or of every project in ``workspace``), optionally those whose
        key or name matches the regular expression ``pattern``. Paging as in comet_ml:
        ``page`` is 1-based and needs ``page_size``; ``sort_by`` is ``startTime``/``endTime``;
        ``sort_order`` is ``asc``/``desc``. Raises ``ValueError`` for invalid combinations."""
        if project_name is None:
            if pattern is not None:
                raise ValueError("get_experiments(pattern=...) needs a project_name")
            found: List[APIExperiment] = []
            for name in self.get_projects(workspace) or []:
                found.extend(self.get_experiments(workspace, name))
            return found
        listing = self._project_experiments(workspace, project_name, page, page_size, sort_by, sort_order)
        experiments = [APIExperiment(api=self, metadata=m) for m in listing]
        if pattern is None:
            return experiments
        return [
            e
            for e, m in zip(experiments, listing)
            if (m.get("experimentKey") is not None and re.match(pattern, m["experimentKey"]))
            or (m.get("experimentName") is not None and re.match(pattern, m["experimentName"]))
        ]

    def _project_experiments(
        self,
        workspace: Optional[str],
        project_name: Optional[str],
        page: Optional[int] = None,
        page_size: Optional[int] = None,
        sort_by: Optional[str] = None,
        sort_order: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        if page is not None and page_size is None:
            raise ValueError("page_size is required when page is specified")
        if sort_by is not None and sort_by not in ("startTime", "endTime"):
            raise ValueError("sort_by must be 'startTime' or 'endTime'")
        if sort_order is not None and sort_order not in ("asc", "desc"):
            raise ValueError("sort_order must be 'asc' or 'desc'")
        if page is not None and page_size is not None and sort_by is not None and sort_order is None:
            raise ValueError("sort_order is required when page, page_size, and sort_by are all specified")
        params: Dict[str, Any] = {"workspaceName": workspace, "projectName": project_name, "archived": False}
        for key, value in (("page", page), ("size", page_size), ("sortBy", sort_by), ("sortOrder", sort_order)):
            if value is not None:
                params[key] = value
        results = self._client.get_object("experiments", params)
        listing = self._client.field_of(results, "experiments", (list, type(None)), "experiments") or []
        return [check_metadata(self._client, metadata, "experiments") for metadata in listing]

    def _experiment_metadata_by_name(
        self, workspace: Optional[str], project_name: Optional[str], name: str
    ) -> Optional[Dict[str, Any]]:
        try:
            listing = self._project_experiments(workspace, project_name)
        except NotFound:
            return None
        by_name = {m["experimentName"]: m for m in listing if m.get("experimentName") is not None}
        return by_name.get(name)

    # -- comet-agent extension -----------------------------------------------------------------
    def get_or_create_experiment(
        self, experiment_key: str, workspace: Optional[str] = None, project_name: Optional[str] = None
    ) -> APIExperiment:
        """The experiment ``experiment_key``, created with that key when it does not exist yet.

        This is the handshake comet_ml's own ``Experiment`` makes (``POST {cl}logger/add/run``
        with a client-chosen 32-character hex key and ``getOrCreateEnabled``), which hosted
        Comet and the local server both accept. So an agent can choose the key before it can
        reach the server, and a training script given the same key (``COMET_EXPERIMENT_KEY`` with
        ``comet_ml.start()``) lands in the same experiment whichever of the two arrives first.
        ``workspace`` None: the server's default workspace for the key; ``project_name`` None:
        ``general``.

        Raises: a ``CometApiError`` subclass (``Unauthorized`` for a rejected key, ``BadRequest``
        for an unknown workspace).
        """
        payload = {
            "apiKey": self._client._api_key,
            "experimentKey": experiment_key,
            "offline": False,
            "projectName": project_name,
            "teamName": workspace,
            "local_timestamp": int(time.time() * 1000),
            "libVersion": "comet-agent",
            "getOrCreateEnabled": True,
        }
        self._client.post("logger/add/run", payload, base="clientlib")
        return APIExperiment(api=self, previous_experiment=experiment_key)


# APIExperiment(previous_experiment=KEY) without api= builds one of these (see experiment.api_factory).
experiment.api_factory = API
