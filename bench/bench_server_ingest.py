"""Ingest throughput of the local server: single-point metric writes per second.

The server runs in its own process (``python -m comet_agent server``); clients are separate
processes (threads would share the GIL and measure the client, not the server). Four cases:
1 and 8 concurrent clients, through raw HTTP (``requests.Session`` keep-alive posting
``write/experiment/metric``) and through the official SDK (``comet_ml.APIExperiment.log_metric``).

Run:  .venv/bin/python bench/bench_server_ingest.py [--points-per-client 2000]
Not collected by pytest (bench/ is outside testpaths); the figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time

import requests
from bench_support import API_KEY, create_experiment, start_server  # noqa: E402  (bench/ is on sys.path)


def raw_client(root: str, experiment_key: str, client: int, points: int, start_at: float) -> None:
    session = requests.Session()
    session.headers["Authorization"] = API_KEY
    url = root + "/api/rest/v2/write/experiment/metric"
    while time.time() < start_at:
        time.sleep(0.001)
    for step in range(points):
        response = session.post(url, json={"experimentKey": experiment_key, "metricName": f"c{client}",
                                           "metricValue": step * 0.5, "step": step}, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(response.text)


def sdk_client(root: str, experiment_key: str, client: int, points: int, start_at: float) -> None:
    os.environ.update({"COMET_URL_OVERRIDE": root + "/clientlib/", "COMET_API_KEY": API_KEY,
                       "COMET_ERROR_TRACKING_ENABLE": "false", "HOME": tempfile.mkdtemp()})
    import comet_ml

    experiment = comet_ml.APIExperiment(api=comet_ml.API(cache=False), previous_experiment=experiment_key)
    while time.time() < start_at:
        time.sleep(0.001)
    for step in range(points):
        experiment.log_metric(f"c{client}", step * 0.5, step=step)


def measure(kind: str, root: str, clients: int, points: int, server_pid: int) -> tuple[float, float]:
    """(points per second, server CPU µs per point) for ``clients`` processes writing ``points`` each."""
    import psutil

    server_process = psutil.Process(server_pid)
    experiment_key = create_experiment(root, "ingest")
    target = raw_client if kind == "raw" else sdk_client
    start_at = time.time() + (2.0 if kind == "raw" else 6.0)  # let every client be ready first
    processes = [multiprocessing.Process(target=target, args=(root, experiment_key, n, points, start_at))
                 for n in range(clients)]
    for process in processes:
        process.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu_before_s = sum(server_process.cpu_times()[:2])
    for process in processes:
        process.join()
    elapsed_s = time.time() - start_at
    server_cpu_s = sum(server_process.cpu_times()[:2]) - cpu_before_s
    if any(p.exitcode != 0 for p in processes):
        raise RuntimeError(f"a {kind} client failed")
    stored = requests.get(root + "/api/rest/v2/experiment/metrics/get-all", headers={"Authorization": API_KEY},
                          params={"experimentKey": experiment_key}, timeout=60).json()["metrics"]
    if len(stored) != clients * points:
        raise RuntimeError(f"expected {clients * points} points, found {len(stored)}")
    return clients * points / elapsed_s, server_cpu_s * 1e6 / (clients * points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-client", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server, root = start_server(data_dir)
        try:
            print(f"server {root}, {os.cpu_count()} CPUs, {args.points_per_client} points per client")
            for kind in ("raw", "sdk"):
                for clients in (1, 8):
                    rate, server_cpu_us = measure(kind, root, clients, args.points_per_client, server.pid)
                    print(f"{kind:>4} {clients} client(s): {rate:8.0f} points/s, server CPU "
                          f"{server_cpu_us:5.0f} µs/point", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
