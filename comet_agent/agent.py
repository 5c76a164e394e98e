"""The in-process way in: ``Agent`` and ``monitor()`` drive one engine ``Job`` for one run.

Used by ``comet-agent run`` (beside a job, or wrapping it) and by training code::

    import comet_agent
    with comet_agent.monitor() as agent:          # or monitor(experiment=comet_ml_experiment)
        train()

What it does, in order:

1. Resolves configuration as Comet users expect (``COMET_API_KEY``, ``COMET_URL_OVERRIDE``,
   ``.comet.config``...). With nothing configured at all, it uses the local server
   (``comet_agent.embedded``). Only a configuration problem (a malformed file, an unreadable key
   file, an unusable data directory) stops it here, with ``AgentError`` (exit status 78).
2. Knows the experiment key before any network call: the one given, or one it chooses itself as
   comet_ml does offline. The spool is opened for that key.
3. Starts the engine (``engine.job.Job``): static snapshot, sampling, pushes at the server's
   cadence, spool, sender. The experiment is reached, or created with the chosen key, when the
   server first answers (``engine.link.ExperimentLink``): a server that is down, slow, failing
   or rejecting the key at start never stops the job; everything waits in the spool and one
   warning says so.

Threads, not a child process, for the context manager, decided by measuring (``bench/``): in a
thread the agent costs the training loop +0.56% in steady state (median of 15 interleaved rounds,
within this machine's noise), i.e. its 1.5 ms/s of steady CPU at 1 s sampling; a child process
(``comet-agent run --pid``) would add a second interpreter with its own imports, ~43 MB of RSS and
~0.4 s of start-up CPU, to save a GIL share that is already below measurement. The agent's threads
are daemons and are not inherited by a forked child: after ``fork()`` the child's copy of the
agent is inert (``stop()`` does nothing there). Run ``comet-agent daemon`` where one sampler per
host is wanted instead: ``monitor()`` then registers with it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from comet_agent.collectors.agent_self import agent_thread_ids
from comet_agent.config import RESOLUTIONS, node_identity, parse_listen_address, resolution_setting
from comet_agent.delivery.spool import DEFAULT_MAX_BYTES, Spool
from comet_agent.engine.election import HostElection, election_path
from comet_agent.engine.host_sampler import HostSampler
from comet_agent.engine.job import INTERVAL_BOUNDS_MS, Job, JobStatus, clamp_interval_ms, job_directory
from comet_agent.engine.link import ExperimentLink, forget_link, new_experiment_key, save_link
from comet_agent.errors import AgentError, ConfigError, SpoolError
from comet_agent.paths import default_data_dir, ensure_private_dir
from comet_agent.redaction import redact_text, secrets_from_environment
from comet_agent.sources.procfs import pid_alive

log = logging.getLogger(__name__)

__all__ = [
    "Agent",
    "AgentError",
    "AgentStatus",
    "INTERVAL_BOUNDS_MS",
    "clamp_interval_ms",
    "monitor",
    "read_statuses",
    "child_environment",
]

#: What ``Agent.status()`` returns (the engine's job status).
AgentStatus = JobStatus

#: comet_ml's own environment loggers, switched off in a wrapped command (unless the user set
#: them): the agent records all of that, and twice would duplicate every system series.
COMET_ML_LOGGERS_OFF = (
    "COMET_AUTO_LOG_ENV_CPU",
    "COMET_AUTO_LOG_ENV_GPU",
    "COMET_AUTO_LOG_ENV_HOST",
    "COMET_AUTO_LOG_ENV_DETAILS",
    "COMET_AUTO_LOG_ENV_NETWORK",
    "COMET_AUTO_LOG_ENV_DISK",
    "COMET_AUTO_LOG_GIT_METADATA",
    "COMET_AUTO_LOG_GIT_PATCH",
)


class Agent:
    """Collects and delivers a run's system metadata and metrics into one Comet experiment.

    Args:
        experiment_key: record into this existing experiment; without it the agent chooses a key
            and creates the experiment with it (in ``workspace``/``project_name``, from
            configuration when not given, else the server's default workspace and ``general``).
        workspace, project_name, experiment_name: for a new experiment.
        api_key, url_override: override configuration (``COMET_API_KEY``, ``COMET_URL_OVERRIDE``).
        data_dir: where the spool and status files live (default: the per-user data directory).
        pid: the watched job (its process tree, interpreter packages, command line); None: no
            process tree (``monitor()`` passes the training process itself).
        directory: the job's working directory (git, disk usage); default: the watched process's
            own, else the current one.
        sample_interval_s: sample this often; None: as often as the server recommends (the local
            server: every second), else one sample per push.
        resolution: what each push carries of its window: ``"full"`` every sample with its own
            timestamp, ``"window"`` one aggregate per series; None: ``COMET_AGENT_RESOLUTION``
            (or ``resolution`` under ``[comet_agent]`` in ``.comet.config``), else ``"full"``.
        stop_timeout_s: how long ``stop()`` may take to flush the spool.
        spool_max_bytes: the spool's cap.
        include_os_packages, include_git, include_gpu: switch those collectors off.
        procfs_root: the ``/proc`` tree (tests pass a fixture).
        tags: tags added to the experiment.
        command: the wrapped command line (recorded masked).
        per_kind_endpoints: push system metrics through Comet's cpu/ram/load/gpu-metrics endpoints
            plus a metric batch instead of one metric batch per push (``engine.job.Job``); None:
            the ``COMET_AGENT_PER_KIND_ENDPOINTS`` setting, else False.
        prometheus_listen: serve the job's series on a Prometheus ``/metrics`` page at
            ``"HOST:PORT"`` (``":9400"``: loopback; ``engine.prometheus``); None: no page. A port
            that cannot be bound is logged, and the run goes on without the page.
        node_id: this node's id in a job over several nodes: every system series is named
            ``<node_id>.sys.*`` as comet_ml names them with ``distributed_node_identifier``.
            None: ``COMET_DISTRIBUTED_NODE_IDENTIFIER``, else derived from the launcher's
            variables (``config.node_identity``: Slurm, torchrun, Open MPI, Kubernetes), else
            none (a single node keeps the unprefixed names). Several processes of the job on one
            node elect one host sampler among them (``engine.election``); each keeps its own
            process-tree series (``[<node>.]rank<R>.sys.proc.*`` when ranks share the node).

    Raises (from ``start()``/``prepare()``):
        AgentError: with ``exit_status`` 78 when the configuration or the data directory is
            unusable. Never for the network: see the module docstring.
    """

    def __init__(
        self,
        experiment_key: Optional[str] = None,
        *,
        workspace: Optional[str] = None,
        project_name: Optional[str] = None,
        experiment_name: Optional[str] = None,
        api_key: Optional[str] = None,
        url_override: Optional[str] = None,
        data_dir: Optional[os.PathLike[str] | str] = None,
        pid: Optional[int] = None,
        directory: Optional[str] = None,
        sample_interval_s: Optional[float] = None,
        stop_timeout_s: float = 10.0,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        include_os_packages: bool = True,
        include_git: bool = True,
        include_gpu: bool = True,
        procfs_root: str = "/proc",
        tags: Sequence[str] = (),
        command: Optional[Sequence[str]] = None,
        per_kind_endpoints: Optional[bool] = None,
        prometheus_listen: Optional[str] = None,
        node_id: Optional[str] = None,
        resolution: Optional[str] = None,
    ):
        if sample_interval_s is not None and sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        if resolution is not None and resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        if stop_timeout_s < 0:
            raise ValueError(f"stop_timeout_s must not be negative, got {stop_timeout_s}")
        self.experiment_key = experiment_key
        self.workspace, self.project_name, self.experiment_name = workspace, project_name, experiment_name
        self._api_key, self._url_override = api_key, url_override
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.pid = pid
        self.directory = directory
        self.sample_interval_s = sample_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.spool_max_bytes = spool_max_bytes
        self.include_os_packages, self.include_git, self.include_gpu = include_os_packages, include_git, include_gpu
        self.procfs_root = procfs_root
        self.tags = list(tags)
        self.command = list(command) if command else None
        self.per_kind_endpoints = per_kind_endpoints
        # Parsed here: a malformed address is the caller's mistake, raised at once (ValueError).
        self.prometheus_listen = parse_listen_address(prometheus_listen) if prometheus_listen else None
        self.exporter: Any = None
        self.node_id = node_id
        self.resolution = resolution

        self.job: Optional[Job] = None
        self._local: Any = None
        self._api: Any = None
        self._host: Optional[HostSampler] = None
        self._created_here = experiment_key is None
        self._key: Optional[str] = None  # kept only to mask it in the recorded command line and output
        # The environment's secret values (HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...), which a wrapped
        # job inherits and may print: masked in its recorded output and command line too.
        self._environment_secrets = secrets_from_environment(os.environ)
        self._owner_pid = os.getpid()
        self._stop_event = threading.Event()
        self._prepared = False
        self._stopped = False
        self._delivered = False

    # ------------------------------------------------------------------ start

    def start(self) -> "Agent":
        """Resolve configuration and start recording. Raises ``AgentError`` only for configuration."""
        if self.running:
            return self
        self.prepare()
        self.begin()
        return self

    def prepare(self) -> "Agent":
        """First half of ``start()``: configuration, the experiment key and the spool; no network call.

        ``comet-agent run -- CMD`` calls this, then starts the command (with the experiment key
        in its environment), then ``begin(pid=...)``.
        """
        if self._prepared:
            return self
        try:
            self._connect()
            if self.experiment_key is None:
                self.experiment_key = new_experiment_key()
            node = node_identity(self.node_id, config=getattr(self._api, "config", None))
            # One spool per process: the ranks of a node share the data directory (for the
            # election), and two senders replaying one spool would each send what the other sends.
            spool_name = ".".join([self.experiment_key, *filter(None, (node.node_id, node.rank_label))])
            spool_dir = ensure_private_dir(self.data_dir / "spool")
            spool = Spool(spool_dir / f"{spool_name}.db", max_bytes=self.spool_max_bytes)
            resolution = self.resolution or resolution_setting(self._api.config)
        except (SpoolError, OSError) as exc:
            self._release()
            raise AgentError(f"the data directory {self.data_dir} is unusable: {exc}", 78) from None
        except (ConfigError, ValueError) as exc:  # no key, a malformed file, an unreadable key file, a bad node id
            self._release()
            raise AgentError(str(exc), 78) from None
        link = ExperimentLink(
            self._api,
            self.experiment_key,
            create=self._created_here,
            workspace=self.workspace or self._api.config.workspace,
            project_name=self.project_name or self._api.config.project_name,
            experiment_name=self.experiment_name,
            spool_path=str(spool.path),
        )
        if self._created_here:
            try:
                save_link(link, spool.path)  # `comet-agent flush` can create it if this run never reaches the server
            except OSError as exc:
                log.warning("cannot record how to create experiment %s later: %s", self.experiment_key, exc)
        # Captures are decoded in batches unless a Prometheus page reads the latest records at
        # every tick (engine/host_sampler.py, "Deferred decoding").
        # In the training process itself (monitor()), the agent's own cost is its threads'.
        self._host, unavailable = HostSampler.build(
            procfs_root=self.procfs_root,
            cgroup_pid=self.pid,
            include_gpu=self.include_gpu,
            defer_decoding=self.prometheus_listen is None,
            agent_threads=agent_thread_ids if self.pid == os.getpid() else None,
        )
        for name, reason in unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        self.job = Job(
            link,
            spool,
            self._host,
            pid=self.pid,
            directory=self.directory or job_directory(self.pid, self.procfs_root),
            command=self.command,
            sample_interval_s=self.sample_interval_s,
            include_os_packages=self.include_os_packages,
            include_git=self.include_git,
            include_gpu=self.include_gpu,
            procfs_root=self.procfs_root,
            tags=self.tags,
            set_start_time=self._created_here,
            set_end_time=self._created_here,
            secrets=self.secrets,
            status_path=self.data_dir / "agents" / f"{os.getpid()}.json",
            on_watched_exit=self._stop_event.set,
            per_kind_endpoints=self.per_kind_endpoints,
            node=node,
            election=HostElection(election_path(self.data_dir, self.experiment_key, node.node_id)),
            resolution=resolution,
        )
        self.node_id = node.node_id
        if node.node_id is not None or node.rank_label is not None:
            log.info("node %s (%s), %s", node.node_id, node.source, node.rank_label or "one process on this node")
        self.job.unavailable.update(unavailable)
        self._prepared = True
        if self.prometheus_listen is not None:
            from comet_agent.engine.prometheus import start_exporter

            self.exporter = start_exporter(self.prometheus_listen, self._running_jobs)
        return self

    def _running_jobs(self) -> list[Job]:
        job = self.job
        return [job] if job is not None and job.running else []

    def begin(self, pid: Optional[int] = None) -> "Agent":
        """Second half of ``start()``: the static snapshot, sampling and delivery. Never raises."""
        self.prepare()
        assert self.job is not None
        if pid is not None:
            self.pid = self.job.pid = pid
        # A job other than this process is watched: the run ends when it exits.
        self.job.watch_pid = self.pid is not None and self.pid != os.getpid()
        self.job.start()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_after_fork)
        return self

    def _connect(self) -> None:
        from comet_agent.api.api import API
        from comet_agent.config import resolve_config
        from comet_agent.delivery.retry import RetryPolicy

        config = resolve_config(api_key=self._api_key, url_override=self._url_override)
        # Few, short client-side retries: the spool and the sender's backoff carry outages.
        retry = RetryPolicy(max_retries=2, backoff_base_s=0.5, backoff_max_s=5.0)

        def sleep(seconds: float) -> None:
            self._stop_event.wait(seconds)  # a retry's wait ends early when the agent stops

        if config.api_key is None and not config.server_configured:
            from comet_agent.embedded import connect_local

            self._local = connect_local(self.data_dir)
            self._key = self._local.api_key
            self._api = API(api_key=self._key, url_override=self._local.clientlib_url, retry=retry, sleep=sleep)
        else:
            self._key = config.require_api_key()
            self._api = API(
                api_key=self._api_key, url_override=self._url_override, config=config, retry=retry, sleep=sleep
            )

    def child_environment(self, base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        """The environment for a wrapped command, so that comet_ml in it records into this experiment.

        See ``child_environment()`` (the function) for what is set.
        """
        self.prepare()
        local = (self._local.clientlib_url, self._local.api_key) if self._local is not None else None
        return child_environment(
            os.environ if base is None else base,
            self.experiment_key or "",
            local_server=local,
            workspace=self.workspace,
            project_name=self.project_name,
        )

    @property
    def secrets(self) -> list[str]:
        """Exact strings masked wherever the agent records text: the API key and the values of the
        environment's secret-named variables (``redaction.secrets_from_environment``), longest first."""
        found = ([self._key] if self._key else []) + self._environment_secrets
        return sorted(dict.fromkeys(found), key=len, reverse=True)

    @property
    def server_url(self) -> Optional[str]:
        return self._api.server_url if self._api else None

    @property
    def local_server(self) -> Any:
        """The local server this agent started for its run, if any."""
        return self._local.server if self._local else None

    @property
    def local_target(self) -> Any:
        """The local server this agent uses (started here or found running), if any."""
        return self._local

    def _release(self) -> None:
        """Close the HTTP session, the host collectors and a local server started for this run."""
        if self._host is not None:
            self._host.close()
        if self._local is not None:
            self._local.stop()
        if self._api is not None:
            self._api.close()

    # ------------------------------------------------------------------ recording

    def log_output(self, text: str, *, stderr: bool) -> None:
        """Record console output of the watched job (lines, as captured), in order.

        Every secret the agent knows (``secrets``: the API key, which a wrapped job inherits as
        ``COMET_API_KEY``, and the environment's secret values) is masked before the text enters
        the spool, so a job that prints its environment does not publish it in the experiment.
        """
        if self.job is not None:
            self.job.log_output(redact_text(text, self.secrets), stderr=stderr)

    def log_other(self, key: str, value: Any) -> None:
        """Record an "other" key/value on the experiment (through the spool)."""
        if self.job is not None:
            self.job.log_other(key, value)

    def apply_intervals(self, reply: dict) -> None:
        """Apply the intervals of an ``update_status()`` reply (see ``Job.apply_intervals``)."""
        if self.job is not None:
            self.job.apply_intervals(reply)

    # ------------------------------------------------------------------ stop

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Push a last sample, record the end, and flush the spool for at most ``timeout_s``.

        Returns True when everything was delivered; otherwise the rest stays in the spool and goes
        out on the next start or with ``comet-agent flush``. Never raises; safe to call twice,
        and does nothing in a forked child.
        """
        if os.getpid() != self._owner_pid or self.job is None:
            return False
        if self._stopped:
            return self._delivered
        self._stopped = True
        self._stop_event.set()
        if self.exporter is not None:
            self.exporter.stop()
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        # A watched job (another process, a wrapped command, a monitor() block) ended: end time.
        self._delivered = self.job.stop(timeout_s, job_ended=self.pid is not None)
        if self._delivered:
            forget_link(self.job.spool.path)
        self._release()
        return self._delivered

    def _forget_after_fork(self) -> None:
        # The child has none of our threads; it must neither sample nor flush our spool.
        self._stopped = True
        if self.job is not None:
            self.job.forget_after_fork()

    def request_stop(self) -> None:
        """Make ``wait()`` return now; ``stop()`` still does the stopping. From a signal handler,
        call it on another thread: it takes the lock the interrupted main thread may hold."""
        self._stop_event.set()

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """Block until the agent is asked to stop (the watched pid exited, or ``stop()``)."""
        return self._stop_event.wait(timeout_s)

    # ------------------------------------------------------------------ status

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running and os.getpid() == self._owner_pid

    @property
    def intervals_ms(self) -> dict:
        return dict(self.job.intervals_ms) if self.job is not None else {}

    @property
    def unavailable(self) -> dict:
        return dict(self.job.unavailable) if self.job is not None else {}

    def healthy(self) -> bool:
        """True while the agent runs and its sampling thread is alive (what a watchdog should check)."""
        return self.job is not None and self.job.healthy()

    @property
    def experiment(self) -> Any:
        """The ``APIExperiment`` once the server was reached, else None."""
        return self.job.link.experiment if self.job is not None else None

    @property
    def url(self) -> Optional[str]:
        """The experiment's page on the configured server (None until its workspace is known)."""
        return self.job.url if self.job is not None else None

    def status(self) -> JobStatus:
        """A snapshot of what the agent is doing."""
        assert self.job is not None, "status() needs a prepared agent"
        return self.job.status()

    def _write_status(self) -> None:
        if self.job is not None:
            self.job.write_status(force=True)

    def __enter__(self) -> "Agent":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Agent(experiment_key={self.experiment_key!r}, server={self.server_url!r}, running={self.running})"


def child_environment(
    base: Mapping[str, str],
    experiment_key: str,
    *,
    local_server: Optional[tuple[str, str]] = None,
    workspace: Optional[str] = None,
    project_name: Optional[str] = None,
) -> dict[str, str]:
    """The environment of a wrapped command whose training code may use comet_ml itself.

    Sets ``COMET_EXPERIMENT_KEY`` (so ``comet_ml.start()`` gets-or-creates this very experiment),
    ``COMET_WORKSPACE`` / ``COMET_PROJECT_NAME`` when the run names them, and, on the embedded
    default (``local_server``: its clientlib URL and key), ``COMET_URL_OVERRIDE`` and
    ``COMET_API_KEY`` so an unconfigured comet_ml script logs locally too. comet_ml's own
    environment loggers (``COMET_ML_LOGGERS_OFF``) are switched off, since the agent records all
    of that. Nothing the user set is overridden.
    """
    env = dict(base)
    wanted = {"COMET_EXPERIMENT_KEY": experiment_key}
    if workspace:
        wanted["COMET_WORKSPACE"] = workspace
    if project_name:
        wanted["COMET_PROJECT_NAME"] = project_name
    if local_server is not None:
        wanted["COMET_URL_OVERRIDE"], wanted["COMET_API_KEY"] = local_server
    wanted.update({name: "false" for name in COMET_ML_LOGGERS_OFF})
    for name, value in wanted.items():
        env.setdefault(name, value)
    return env


def monitor(experiment_key: Optional[str] = None, **options: Any) -> Any:
    """The agent as a context manager for training code.

    ``with comet_agent.monitor() as agent: train()`` starts the agent in this process (daemon
    threads) and stops it, flushing within ``stop_timeout_s``, when the block ends. Options are
    those of ``Agent``; ``experiment=`` takes a comet_ml ``Experiment`` (anything with
    ``get_key()``) and records into it. Only a configuration problem raises (``AgentError``, at
    the ``with`` line); a server that cannot be reached never does, and after the start nothing
    the agent does raises into the block.

    When a ``comet-agent daemon`` answers on its socket (``daemon.socket_path()``) and an
    experiment is given, the process registers with it instead (same context-manager surface):
    the daemon samples for it (and its own ``--prometheus-listen`` page, if any, serves the job;
    ``prometheus_listen`` is then not used). ``use_daemon=False`` forces in-process.
    """
    experiment = options.pop("experiment", None)
    if experiment is not None:
        get_key = getattr(experiment, "get_key", None)
        experiment_key = get_key() if callable(get_key) else getattr(experiment, "id", None)
        if not experiment_key:
            raise TypeError("monitor(experiment=...) takes an experiment with get_key() (a comet_ml Experiment)")
    options.setdefault("pid", os.getpid())
    use_daemon = options.pop("use_daemon", None)
    if experiment_key and use_daemon is not False:
        from comet_agent.daemon import DaemonRegistration, find_daemon

        socket_path = find_daemon()
        if socket_path is not None:
            if options.get("prometheus_listen"):
                log.info(
                    "a daemon records this job: its own --prometheus-listen page serves it, not %s",
                    options["prometheus_listen"],
                )
            return DaemonRegistration(
                socket_path,
                experiment_key,
                pid=options["pid"],
                api_key=options.get("api_key"),
                node_id=options.get("node_id"),
            )
    return Agent(experiment_key, **options)


def read_statuses(data_dir: Optional[os.PathLike | str] = None) -> list[dict]:
    """The status of every agent running with this data directory (stale files of dead agents are skipped)."""
    directory = Path(data_dir or default_data_dir()) / "agents"
    statuses = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and pid_alive(int(status.get("pid", -1))):
            statuses.append(status)
    return statuses
