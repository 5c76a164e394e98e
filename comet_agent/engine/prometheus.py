"""A Prometheus ``/metrics`` page fed from the jobs' latest samples, labelled by experiment.

``comet-agent run --prometheus-listen HOST:PORT``, ``comet-agent daemon --prometheus-listen
HOST:PORT`` and ``monitor(prometheus_listen=...)`` serve, on ``http://HOST:PORT/metrics``, every
series the engine records for its jobs:

- under our own names (the catalogue's ``prometheus`` column: ``comet_agent_host_cpu_percent``,
  ``comet_agent_gpu_power_usage_watts`` ...), each labelled ``experiment_key`` and ``node`` (the
  job's node id in a multi-node run, else the host name: ``node_label``), plus
  ``gpu`` (the experiment's GPU index, as in ``sys.gpu.<i>``) and ``UUID`` for a GPU, ``cpu`` (the
  kernel's CPU number) for a CPU;
- the GPU readings dcgm-exporter also exports, a second time under dcgm-exporter's names, types,
  units and labels (the catalogue's ``dcgm`` column: ``DCGM_FI_DEV_FB_USED`` in MiB,
  ``DCGM_FI_DEV_POWER_USAGE`` in W; labels ``gpu`` = the board's NVML index, ``UUID``,
  ``pci_bus_id``, ``device`` = ``nvidia<gpu>``, ``modelName``, ``Hostname``,
  ``DCGM_FI_DRIVER_VERSION``), with ``experiment_key`` and ``node`` added, so dashboards built
  for dcgm-exporter work and can be filtered by experiment, which no exporter can do;
- ``comet_agent_last_sample_timestamp_seconds{cadence}``: when each series set was last sampled.

A scrape samples nothing: it renders the records each job's engine last took (``Job.latest_records``),
so a page is as fresh as the job's sampling (``--sample-interval``, else the server's push
cadence), and a scrape every second costs only the rendering (``bench/bench_prometheus.py``).

The page is Prometheus' text format 0.0.4, written here from ``prometheus_client`` metric families
(the registry and families are prometheus_client's; its ``generate_latest`` is not used because it
appends ``_total`` to every counter's name, and dcgm-exporter's counters have none: a dashboard
queries ``DCGM_FI_DEV_ECC_DBE_VOL_TOTAL``, not ``..._TOTAL_total``). The server binds loopback
unless told otherwise (``config.parse_listen_address``), answers ``GET /metrics`` only, and never
raises into the job: a scrape that fails is a 500 and a log line.
"""

from __future__ import annotations

import http.server
import logging
import os
import socket
import socketserver
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.utils import floatToGoString

from comet_agent.catalogue import CatalogueEntry, Export, entry_for, index_of
from comet_agent.delivery import payloads
from comet_agent.records import GpuSample

log = logging.getLogger(__name__)

#: The content type of the text format 0.0.4, as prometheus_client and dcgm-exporter send it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: What a scrape may take at most before the server gives up on the request (a stuck client).
REQUEST_TIMEOUT_S = 10.0

JobsSource = Callable[[], Sequence[Any]]


def node_label(node: Any = None) -> str:
    """The ``node`` label of a job's series: its node id in a job over several nodes, else the host name.

    Args:
        node: the job's ``config.NodeIdentity`` (``Job.node``), or None: the id prefixes the
            job's series in Comet (``<node_id>.sys.*``), and the same id labels them here, so a
            dashboard joins the two.
    """
    node_id = getattr(node, "node_id", None)
    return str(node_id) if node_id else socket.gethostname()


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_text(families: Iterable[Metric]) -> bytes:
    """Prometheus text format 0.0.4 of metric families, each family's name written as it is.

    Unlike ``prometheus_client.generate_latest`` a counter family is not renamed ``<name>_total``:
    its ``# TYPE`` line names its samples' own name, as dcgm-exporter writes its counters.
    """
    lines: list[str] = []
    # The same label set (one GPU's, one job's) recurs in many families: written once per page.
    # Keyed by identity (the collector shares one dict per record); the dict is kept beside its
    # text so that its id cannot be reused by another dict during this call.
    written: dict[int, tuple[dict[str, str], str]] = {}
    for family in families:
        if not family.samples:
            continue
        name = family.samples[0].name
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n")
        for sample in family.samples:
            known = written.get(id(sample.labels))
            if known is None:
                text = ",".join(f'{key}="{_label_value(value)}"' for key, value in sample.labels.items())
                known = written[id(sample.labels)] = (sample.labels, text)
            labels = known[1]
            value = floatToGoString(sample.value)  # type: ignore[no-untyped-call]  # Go's spelling of inf/nan
            lines.append(f"{sample.name}{{{labels}}} {value}\n")
    return "".join(lines).encode("utf-8")


class JobsCollector:
    """A ``prometheus_client`` collector over the latest records of the jobs ``jobs()`` returns.

    Args:
        jobs: returns the running jobs (``engine.job.Job``: ``experiment_key`` and
            ``latest_records``, a mapping of cadence to the records of its last sample).
        node: the ``node`` label of every job; None (the default): each job's own
            (``node_label(job.node)``).
        hostname: dcgm-exporter's ``Hostname`` label.
    """

    def __init__(self, jobs: JobsSource, *, node: Optional[str] = None, hostname: Optional[str] = None):
        self._jobs = jobs
        self._node = node
        self._hostname = hostname or socket.gethostname()

    def collect(self) -> Iterable[Metric]:
        """The families of every job's latest records (called by the registry on each scrape)."""
        families: dict[str, Metric] = {}
        stamps = Metric(
            "comet_agent_last_sample_timestamp_seconds", "When the series of a cadence were last sampled.", "gauge"
        )
        for job in list(self._jobs()):
            base = {
                "experiment_key": str(job.experiment_key),
                "node": self._node or node_label(getattr(job, "node", None)),
            }
            for cadence, records in dict(getattr(job, "latest_records", {}) or {}).items():
                taken_ms = max((getattr(record, "taken_at_ms", 0) for record in records), default=0)
                if taken_ms:
                    stamps.add_sample(stamps.name, {**base, "cadence": cadence}, taken_ms / 1000)
                for record in records:
                    self._add_record(families, base, record)
        if stamps.samples:
            families[stamps.name] = stamps
        return list(families.values())

    def _add_record(self, families: dict[str, Metric], base: dict[str, str], record: Any) -> None:
        gpu_labels: Optional[dict[str, str]] = None
        dcgm_labels: Optional[dict[str, str]] = None
        if isinstance(record, GpuSample):
            gpu_labels = {**base, "gpu": str(record.gpu_index), "UUID": record.uuid or ""}
            board = record.nvml_index if record.nvml_index is not None else record.gpu_index
            dcgm_labels = {
                "gpu": str(board),
                "UUID": record.uuid or "",
                "pci_bus_id": record.pci_bus_id or "",
                "device": f"nvidia{board}",
                "modelName": record.name or "",
                "Hostname": self._hostname,
                "DCGM_FI_DRIVER_VERSION": record.driver_version or "",
                **base,
            }
        for point in payloads.metric_points([record]):
            name = point["metricName"]
            entry = entry_for(name)
            if entry is None or entry.prometheus is None:
                continue
            value = point["metricValue"]
            labels = gpu_labels if gpu_labels is not None else self._labels(base, entry, index_of(name))
            _add(families, entry, entry.prometheus, labels, value)
            if entry.dcgm is not None and dcgm_labels is not None:
                _add(families, entry, entry.dcgm, dcgm_labels, value)

    @staticmethod
    def _labels(base: dict[str, str], entry: CatalogueEntry, index: Optional[int]) -> dict[str, str]:
        if index is None:
            return base
        if entry.placeholder == "<NN>":
            return {**base, "cpu": str(index - 1)}  # Comet's 1-based name, the kernel's number
        return {**base, "gpu": str(index)}


def _add(
    families: dict[str, Metric], entry: CatalogueEntry, export: Export, labels: dict[str, str], value: Any
) -> None:
    family = families.get(export.name)
    if family is None:
        unit = f" ({export.unit})" if export.unit else ""
        family = families[export.name] = Metric(export.name, entry.description + unit, export.type)
    family.add_sample(export.name, labels, float(value) * export.scale)


class PrometheusExporter:
    """Serves ``/metrics`` for the jobs ``jobs()`` returns, on its own daemon thread.

    Args:
        host, port: where to listen (``config.parse_listen_address``; port 0: any free port).
        jobs: returns the running jobs.
        node: the ``node`` label of every job; None (the default): each job's own (``node_label``).

    Example:
        >>> exporter = PrometheusExporter("127.0.0.1", 0, jobs=lambda: [])
        >>> exporter.start().url.startswith("http://127.0.0.1:")
        True
        >>> exporter.stop()
    """

    def __init__(self, host: str, port: int, *, jobs: JobsSource, node: Optional[str] = None):
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = JobsCollector(jobs, node=node)
        self.registry.register(self.collector)
        self._server: Optional[socketserver.TCPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.scrapes = 0

    @property
    def url(self) -> str:
        """The page's URL (after ``start()``, with the port actually bound)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def render(self) -> bytes:
        """The page's text now."""
        return render_text(self.registry.collect())

    def start(self) -> "PrometheusExporter":
        """Bind and serve. Raises ``OSError`` when the address cannot be bound (in use, not local)."""
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S
            server_version = "comet-agent"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?", 1)[0] != "/metrics":
                    self._reply(404, b"comet-agent serves /metrics only\n", "text/plain; charset=utf-8")
                    return
                try:
                    body = exporter.render()
                except Exception as exc:  # a scrape must never take the agent down
                    log.warning("rendering /metrics failed: %s", exc)
                    self._reply(500, b"rendering failed; see the agent's log\n", "text/plain; charset=utf-8")
                    return
                exporter.scrapes += 1
                self._reply(200, body, CONTENT_TYPE)

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                log.debug("prometheus %s: " + format, self.client_address[0], *args)

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

            def server_bind(self) -> None:
                # HTTPServer's own asks getfqdn(host), a reverse DNS lookup that can take seconds
                # (0.0.0.0 on a host without DNS) and that nothing here needs.
                socketserver.TCPServer.server_bind(self)
                self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

        server = Server((self.host, self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="comet-agent-prometheus", daemon=True)
        self._thread.start()
        if hasattr(os, "register_at_fork"):
            # A forked child (a DataLoader worker under monitor()) must not keep the port: it has
            # no serving thread, and its copy of the socket would hold the port after we close ours.
            this = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forget_in_child(this))
        log.info("serving Prometheus metrics on %s", self.url)
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop serving; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)


def _forget_in_child(exporter_ref: "weakref.ref[PrometheusExporter]") -> None:
    exporter = exporter_ref()
    if exporter is not None and exporter._server is not None:
        server, exporter._server = exporter._server, None
        server.socket.close()  # not shutdown(): the serving thread does not exist in the child


def start_exporter(listen: Optional[tuple[str, int]], jobs: JobsSource) -> Optional[PrometheusExporter]:
    """Start an exporter on ``listen`` (``(host, port)``, or None for none); never raises.

    A bind failure (port in use, an address not on this host) is logged as a warning and gives
    None: the job runs without its page rather than not at all.
    """
    if listen is None:
        return None
    host, port = listen
    started = time.monotonic()
    try:
        exporter = PrometheusExporter(host, port, jobs=jobs).start()
    except OSError as exc:
        log.warning("cannot serve Prometheus metrics on %s:%s: %s; going on without", host, port, exc)
        return None
    log.debug("the Prometheus exporter started in %.1f ms", (time.monotonic() - started) * 1000)
    return exporter
