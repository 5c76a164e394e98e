"""The link between a job and its experiment on the server, made when the server can be reached.

A job never waits for the server: its spool is keyed by the experiment key, which is known before
any network call (given by the user, or chosen here as comet_ml does offline: a random 32-digit
hex key). The experiment itself is reached, or created with that key, the first time something
must be sent: by the sender, by the heartbeat, or by ``comet-agent flush`` much later.

While it cannot be reached (server down, a rejected key, an experiment the server does not know)
the link raises the typed error, marked retryable so the sender keeps the spool and tries again
with backoff, and says once, in one line, what is happening and where the data waits.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

from comet_agent import errors
from comet_agent.paths import write_private_file
from comet_agent.warn_once import WarnOnce

log = logging.getLogger(__name__)


def new_experiment_key() -> str:
    """A fresh experiment key, as comet_ml makes one: 32 lowercase hex digits."""
    return uuid.uuid4().hex


class ExperimentLink:
    """Resolves (attaches to, or creates) one experiment lazily and caches it.

    Args:
        api: the ``API`` to reach the server with.
        experiment_key: the experiment's key.
        create: True when this agent chose the key: the experiment is created with it when it
            does not exist (get-or-create, safe against a training script doing the same). False:
            the user named an existing experiment; it must exist.
        workspace, project_name, experiment_name: for a created experiment (None: the server's
            default workspace for the key, project ``general``, no name).
        spool_path: named in the one-line warning while the server cannot be reached.
    """

    def __init__(
        self,
        api: Any,
        experiment_key: str,
        *,
        create: bool,
        workspace: Optional[str] = None,
        project_name: Optional[str] = None,
        experiment_name: Optional[str] = None,
        spool_path: Optional[str] = None,
    ):
        self.api = api
        self.experiment_key = experiment_key
        self.create = create
        self.workspace, self.project_name, self.experiment_name = workspace, project_name, experiment_name
        self.spool_path = spool_path
        self._experiment: Any = None
        self._lock = threading.Lock()
        self._warn = WarnOnce(log)

    @property
    def experiment(self) -> Any:
        """The ``APIExperiment`` once resolved, else None (never makes a request)."""
        return self._experiment

    def get(self, experiment_key: Optional[str] = None) -> Any:
        """The ``APIExperiment``, resolving it on first use (``Sender``'s ``experiment_for``).

        Raises: the ``CometApiError`` that kept it from being reached, with ``retryable`` set
        for a missing experiment or workspace too: the data stays in the spool.
        """
        if experiment_key is not None and experiment_key != self.experiment_key:
            raise errors.ClientError(f"this link serves experiment {self.experiment_key}, not {experiment_key}")
        with self._lock:
            if self._experiment is not None:
                return self._experiment
            try:
                self._experiment = self._resolve()
            except errors.CometApiError as exc:
                self._say_unreachable(exc)
                if isinstance(exc, (errors.NotFound, errors.BadRequest)):
                    exc.retryable = True  # the spool keeps everything; `comet-agent flush` can deliver it later
                raise
            if self._warn.clear(("unreachable",)):
                log.warning(
                    "reached experiment %s at %s; sending what waited in the spool",
                    self.experiment_key,
                    self.api.server_url,
                )
            return self._experiment

    def _resolve(self) -> Any:
        from comet_agent.api.experiment import APIExperiment

        if self.create:
            experiment = self.api.get_or_create_experiment(self.experiment_key, self.workspace, self.project_name)
            if self.experiment_name:
                experiment.set_name(self.experiment_name)
            return experiment
        experiment = APIExperiment(api=self.api, previous_experiment=self.experiment_key)
        if not experiment.id:
            raise errors.NotFound(f"{self.api.server_url} knows no experiment {self.experiment_key}", status=404)
        return experiment

    def _say_unreachable(self, exc: errors.CometApiError) -> None:
        where = f"; everything is kept in {self.spool_path}" if self.spool_path else ""
        self._warn(
            ("unreachable",),
            logging.WARNING,
            "cannot reach experiment %s at %s (%s)%s and sent when it can be reached "
            "(or later with `comet-agent flush`); the job runs on",
            self.experiment_key,
            self.api.server_url,
            exc,
            where,
        )

    @property
    def url(self) -> Optional[str]:
        """The experiment's page: from the server once resolved, else built from what is known."""
        if self._experiment is not None:
            url: Optional[str] = self._experiment.url
            return url
        if self.workspace:
            return f"{self.api.server_url}/{self.workspace}/{self.project_name or 'general'}/{self.experiment_key}"
        return None


def link_file(spool_path: Path) -> Path:
    """The file beside a spool that says how its experiment is reached (``<key>.link.json``)."""
    return spool_path.with_name(spool_path.stem + ".link.json")


def save_link(link: ExperimentLink, spool_path: Path) -> None:
    """Record beside the spool whether (and where) its experiment is to be created, so that
    ``comet-agent flush`` can create it later if this run never reached the server."""
    document = {
        "create": link.create,
        "workspace": link.workspace,
        "project_name": link.project_name,
        "experiment_name": link.experiment_name,
    }
    write_private_file(link_file(spool_path), json.dumps(document).encode("utf-8"))


def load_link(api: Any, spool_path: Path) -> ExperimentLink:
    """The link for a spool left by an earlier run (attach-only when nothing was recorded beside it)."""
    try:
        document = json.loads(link_file(spool_path).read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            document = {}
    except (OSError, ValueError):
        document = {}

    def text(name: str) -> Optional[str]:
        value = document.get(name)
        return value if isinstance(value, str) and value else None

    return ExperimentLink(
        api,
        spool_path.stem,
        create=document.get("create") is True,
        workspace=text("workspace"),
        project_name=text("project_name"),
        experiment_name=text("experiment_name"),
        spool_path=str(spool_path),
    )


def forget_link(spool_path: Path) -> None:
    """Remove the link file once its spool is empty (nothing left to deliver). Never raises."""
    try:
        link_file(spool_path).unlink()
    except OSError:
        pass
