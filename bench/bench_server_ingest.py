"""Ingest throughput of the local server: metric points written per second.

The server runs in its own process (``python -m comet_agent server``); clients are separate
processes (threads would share the GIL and measure the client, not the server). Write paths
(``--kinds``): ``raw``, single points through raw HTTP (``requests.Session`` keep-alive posting
``write/experiment/metric``); ``sdk``, the same endpoint through the official SDK
(``comet_ml.APIExperiment.log_metric``); ``batch``, raw HTTP posting ``--batch-points`` points at a
time to the clientlib metric batch (what the agent's pushes and replays send); ``streaming``,
comet_ml's streaming ``Experiment.log_metric`` (what training code calls: the SDK batches the
points itself), timed until ``end()`` returns. Each case runs with 1 and 8 concurrent clients
(``--clients``); the server's own CPU time per point (psutil) and the clients' (their own
``process_time`` from the common start, imports left out) show which side bounds the rate, and the script checks that
exactly clients x N points were stored.

``--before REV`` also starts a server running the code of ``REV`` (``git archive``) and
alternates the two servers case by case over ``--rounds`` rounds, then prints each case's
per-round ratio after/before. Target: 2,000 points/s from 8 clients.

Run:  .venv/bin/python bench/bench_server_ingest.py [--points-per-client 2000] [--before f9cbc30 --rounds 3]
Not collected by pytest (bench/ is outside testpaths); the figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import requests
from bench_support import API_KEY, REPO_ROOT, create_experiment, export_revision, start_server  # noqa: E402  (bench/ is on sys.path)

_cpu_at_start_s = 0.0


def _wait_until(start_at: float) -> None:
    """Wait for the common start, and note the CPU spent so far (imports, set-up) to leave it out."""
    global _cpu_at_start_s
    while time.time() < start_at:
        time.sleep(0.001)
    _cpu_at_start_s = time.process_time()


def raw_client(
    root: str, experiment_key: str, client: int, points: int, start_at: float, batch_points: int = 1
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = API_KEY
    url = root + "/api/rest/v2/write/experiment/metric"
    _wait_until(start_at)
    for step in range(points):
        response = session.post(
            url,
            json={"experimentKey": experiment_key, "metricName": f"c{client}", "metricValue": step * 0.5, "step": step},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(response.text)


def batch_client(
    root: str, experiment_key: str, client: int, points: int, start_at: float, batch_points: int = 100
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = API_KEY
    url = root + "/clientlib/batch/logger/experiment/metric"
    _wait_until(start_at)
    for first in range(0, points, batch_points):
        values = [
            {
                "metricName": f"c{client}",
                "metricValue": step * 0.5,
                "step": step,
                "epoch": None,
                "context": None,
                "timestamp": 1_764_000_000_000 + step,
            }
            for step in range(first, min(first + batch_points, points))
        ]
        response = session.post(url, json={"experimentKey": experiment_key, "values": values}, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(response.text)


def sdk_client(
    root: str, experiment_key: str, client: int, points: int, start_at: float, batch_points: int = 1
) -> None:
    os.environ.update(
        {
            "COMET_URL_OVERRIDE": root + "/clientlib/",
            "COMET_API_KEY": API_KEY,
            "COMET_ERROR_TRACKING_ENABLE": "false",
            "HOME": tempfile.mkdtemp(),
        }
    )
    import comet_ml

    experiment = comet_ml.APIExperiment(api=comet_ml.API(cache=False), previous_experiment=experiment_key)
    _wait_until(start_at)
    for step in range(points):
        experiment.log_metric(f"c{client}", step * 0.5, step=step)


def streaming_client(
    root: str, experiment_key: str, client: int, points: int, start_at: float, batch_points: int = 1
) -> None:
    """What most Comet users run: comet_ml's streaming ``Experiment`` calling ``log_metric`` in a
    loop; the SDK queues the points and its streamer sends them in batches. Timed until ``end()``
    returns, i.e. until every point was sent and acknowledged."""
    os.environ.update(
        {
            "COMET_URL_OVERRIDE": root + "/clientlib/",
            "COMET_API_KEY": API_KEY,
            "COMET_ERROR_TRACKING_ENABLE": "false",
            "HOME": tempfile.mkdtemp(),
        }
    )
    import comet_ml

    experiment = comet_ml.start(
        experiment_key=experiment_key,
        mode="get",
        experiment_config=comet_ml.ExperimentConfig(
            log_code=False,
            log_graph=False,
            log_env_details=False,
            log_env_gpu=False,
            log_env_cpu=False,
            log_env_network=False,
            log_env_disk=False,
            log_env_host=False,
            log_git_metadata=False,
            log_git_patch=False,
            auto_output_logging=None,
            auto_log_co2=False,
            display_summary_level=0,
        ),
    )
    _wait_until(start_at)
    for step in range(points):
        experiment.log_metric(f"c{client}", step * 0.5, step=step)
    experiment.end()


def _timed_client(target, queue, *args) -> None:
    """Run one client and report its own CPU seconds from the common start on: with the server's,
    where the CPU went."""
    target(*args)
    queue.put(time.process_time() - _cpu_at_start_s)


CLIENTS = {"raw": raw_client, "sdk": sdk_client, "batch": batch_client, "streaming": streaming_client}


def measure(
    kind: str, root: str, clients: int, points: int, server_pid: int, batch_points: int = 100
) -> tuple[float, float, float]:
    """(points per second, server CPU µs per point, clients' CPU µs per point) for ``clients``
    processes writing ``points`` each. The clients' CPU leaves out their imports and set-up."""
    import psutil

    server_process = psutil.Process(server_pid)
    experiment_key = create_experiment(root, "ingest")
    target = CLIENTS[kind]
    start_at = time.time() + (6.0 if kind in ("sdk", "streaming") else 2.0)  # let every client be ready first
    queue: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=_timed_client, args=(target, queue, root, experiment_key, n, points, start_at, batch_points)
        )
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    _wait_until(start_at)
    cpu_before_s = sum(server_process.cpu_times()[:2])
    for process in processes:
        process.join()
    elapsed_s = time.time() - start_at
    server_cpu_s = sum(server_process.cpu_times()[:2]) - cpu_before_s
    if any(p.exitcode != 0 for p in processes):
        raise RuntimeError(f"a {kind} client failed")
    clients_cpu_s = sum(queue.get(timeout=10) for _ in processes)
    stored = requests.get(
        root + "/api/rest/v2/experiment/metrics/get-all",
        headers={"Authorization": API_KEY},
        params={"experimentKey": experiment_key},
        timeout=60,
    ).json()["metrics"]
    # Only the clients' own series: the streaming SDK adds a point of its own (a system metric).
    stored = [m for m in stored if m["metricName"][:1] == "c" and m["metricName"][1:].isdigit()]
    if len(stored) != clients * points:
        raise RuntimeError(f"expected {clients * points} points, found {len(stored)}")
    total = clients * points
    return total / elapsed_s, server_cpu_s * 1e6 / total, clients_cpu_s * 1e6 / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-client", type=int, default=2000)
    parser.add_argument("--kinds", default="raw,sdk", help="write paths, comma-separated: raw, sdk, batch")
    parser.add_argument("--clients", default="1,8", help="concurrent clients per case, comma-separated")
    parser.add_argument("--batch-points", type=int, default=100, help="points per request of the batch path")
    parser.add_argument("--before", help="also run a server with this git revision's code, alternated (e.g. f9cbc30)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    client_counts = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as data_dir:
        sources = {"after": REPO_ROOT}
        if args.before:
            sources = {"before": export_revision(args.before, Path(data_dir)), **sources}
        servers = {
            label: start_server(os.path.join(data_dir, f"server-{label}"), source=source)
            for label, source in sources.items()
        }
        results: dict[tuple, list[tuple[float, float, float]]] = {}
        try:
            print(
                f"{os.cpu_count()} CPUs, {args.points_per_client} points per client, servers: "
                + ", ".join(f"{label} {root}" for label, (_, root) in servers.items())
            )
            for round_index in range(args.rounds):
                labels = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                for kind in kinds:
                    for clients in client_counts:
                        for label in labels:
                            process, root = servers[label]
                            rate, server_cpu_us, clients_cpu_us = measure(
                                kind, root, clients, args.points_per_client, process.pid, args.batch_points
                            )
                            results.setdefault((label, kind, clients), []).append((rate, server_cpu_us, clients_cpu_us))
                            print(
                                f"round {round_index + 1} {label:>6} {kind:>9} {clients} client(s): {rate:8.0f} "
                                f"points/s, server CPU {server_cpu_us:6.1f} µs/point, clients' CPU "
                                f"{clients_cpu_us:6.1f} µs/point, both {rate * (server_cpu_us + clients_cpu_us) / 1e6:.2f} "
                                "cores",
                                flush=True,
                            )
        finally:
            for process, _root in servers.values():
                process.terminate()
                process.wait(timeout=30)
    print("\nmedians over rounds [min-max]:")
    for (label, kind, clients), runs in results.items():
        rates, cpus, client_cpus = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
        print(
            f"{label:>6} {kind:>9} {clients} client(s): {statistics.median(rates):8.0f} [{min(rates):.0f}-{max(rates):.0f}] "
            f"points/s, server CPU {statistics.median(cpus):6.1f} [{min(cpus):.1f}-{max(cpus):.1f}] µs/point, "
            f"clients' CPU {statistics.median(client_cpus):6.1f} µs/point"
        )
    if args.before:
        for kind in kinds:
            for clients in client_counts:
                before, after = results[("before", kind, clients)], results[("after", kind, clients)]
                rate_ratios = [a[0] / b[0] for a, b in zip(after, before)]
                cpu_ratios = [a[1] / b[1] for a, b in zip(after, before)]
                print(
                    f"after / before, {kind} {clients} client(s): points/s {statistics.median(rate_ratios):.2f}x "
                    f"[{min(rate_ratios):.2f}-{max(rate_ratios):.2f}], server CPU per point "
                    f"{statistics.median(cpu_ratios):.2f}x [{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}]"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
