"""Spool replay rate: a backlog of pushes delivered to the local server, entries per second.

The backlog is ``--entries`` copies of one real push (the metric batch of one sample of every
periodic collector of this host, built once by this checkout's code, so every configuration
replays the same bytes). Each replay runs in a fresh process: it appends the backlog to an empty
spool, then times ``Sender.flush()`` into a local server (own process) until the spool is empty,
and the server's stored point count is checked. With ``--before REV`` the code of ``REV``
(``git archive``) replays too, into a server running ``REV``'s code, alternated round by round
with this checkout's sender and server; per-round ratios are printed. The sender's CPU during the
flush (its own ``process_time``) and the server's (psutil) per entry show which side bounds it.

    python bench/bench_replay.py --entries 2000 --rounds 3 [--before f9cbc30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_support import API_KEY, compile_sources, create_experiment, export_revision, source_env, start_server  # noqa: E402


def push_payload() -> dict:
    """One push of this host as the agent spools it (built by this checkout's code)."""
    from comet_agent.collectors.periodic import build_periodic_collectors
    from comet_agent.delivery import payloads

    collectors, _ = build_periodic_collectors(pid=os.getpid(), directory=str(REPO_ROOT), include_gpu=False)
    now_ms = int(time.time() * 1000)
    for collector in collectors:
        collector.sample(now_ms)
    time.sleep(0.2)
    records = [record for collector in collectors for record in collector.sample(now_ms + 200)]
    [(endpoint, payload)] = payloads.push_requests(payloads.metric_points(records))
    assert endpoint == "metrics_batch"
    return payload


def child(args) -> int:
    """In a fresh interpreter importing the code under test: spool the backlog, time the replay."""
    from comet_agent.api.api import API
    from comet_agent.api.experiment import APIExperiment
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool

    payload = json.loads(Path(args.payload_file).read_text())
    spool = Spool(args.spool)
    for _ in range(args.entries):
        spool.append(args.experiment, "metrics_batch", payload)
    api = API(api_key=API_KEY, url_override=args.root + "/clientlib/")
    experiment = APIExperiment(api=api, previous_experiment=args.experiment)
    sender = Sender(spool, lambda _key: experiment)
    import psutil

    server = psutil.Process(args.server_pid)
    server_cpu_before_s = sum(server.cpu_times()[:2])
    cpu_before_s = time.process_time()
    began = time.perf_counter()
    emptied = sender.flush(600)
    took = time.perf_counter() - began
    cpu_s = time.process_time() - cpu_before_s
    server_cpu_s = sum(server.cpu_times()[:2]) - server_cpu_before_s
    left = spool.depth()
    spool.close()
    api.close()
    if not emptied:
        raise SystemExit(f"the sender left {left} entries")
    print(json.dumps({"seconds": took, "sender_cpu_s": cpu_s, "server_cpu_s": server_cpu_s}))
    return 0


def stored_points(root: str, experiment_key: str) -> int:
    import requests

    reply = requests.get(
        root + "/api/rest/v2/experiment/metrics/get-all",
        headers={"Authorization": API_KEY},
        params={"experimentKey": experiment_key},
        timeout=120,
    )
    return len(reply.json()["metrics"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="also replay with this git revision's sender and server (e.g. f9cbc30)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--payload-file", help=argparse.SUPPRESS)
    parser.add_argument("--spool", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch_dir:
        scratch = Path(scratch_dir)
        payload = push_payload()
        payload_file = scratch / "payload.json"
        payload_file.write_text(json.dumps(payload))
        sources = {"after": REPO_ROOT}
        if args.before:
            sources = {"before": export_revision(args.before, scratch), **sources}
        servers = {
            label: start_server(str(scratch / f"server-{label}"), source=source) for label, source in sources.items()
        }
        results: dict[str, list[float]] = {label: [] for label in sources}
        cpu_per_entry: dict[str, list[tuple[float, float]]] = {label: [] for label in sources}
        try:
            for round_index in range(args.rounds):
                labels = list(sources) if round_index % 2 == 0 else list(reversed(sources))
                for label in labels:
                    root = servers[label][1]
                    key = create_experiment(root, "replay")
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            "--payload-file",
                            str(payload_file),
                            "--entries",
                            str(args.entries),
                            "--spool",
                            str(scratch / f"spool-{label}-{round_index}.db"),
                            "--root",
                            root,
                            "--experiment",
                            key,
                            "--server-pid",
                            str(servers[label][0].pid),
                        ],
                        env=source_env(sources[label]),
                        cwd=str(scratch),
                        capture_output=True,
                        text=True,
                        timeout=900,
                    )
                    if out.returncode != 0:
                        raise RuntimeError(out.stderr[-3000:])
                    measured = json.loads(out.stdout.strip().splitlines()[-1])
                    seconds = measured["seconds"]
                    expected = args.entries * len(payload["values"])
                    found = stored_points(root, key)
                    if found != expected:
                        raise RuntimeError(f"{label}: expected {expected} points stored, found {found}")
                    results[label].append(args.entries / seconds)
                    sender_ms = measured["sender_cpu_s"] * 1000 / args.entries
                    server_ms = measured["server_cpu_s"] * 1000 / args.entries
                    cpu_per_entry[label].append((sender_ms, server_ms))
                    print(
                        f"round {round_index + 1} {label:>6}: {args.entries / seconds:8.0f} entries/s "
                        f"({seconds:.2f} s, {found} points stored); CPU per entry: sender {sender_ms:.3f} ms, "
                        f"server {server_ms:.3f} ms",
                        flush=True,
                    )
        finally:
            for process, _root in servers.values():
                process.terminate()
                process.wait(timeout=30)
    print(f"\n{args.entries} entries of {len(payload['values'])} points, {args.rounds} rounds; medians [min-max]:")
    for label, rates in results.items():
        sender_ms = statistics.median(c[0] for c in cpu_per_entry[label])
        server_ms = statistics.median(c[1] for c in cpu_per_entry[label])
        print(
            f"{label:>6}: {statistics.median(rates):8.0f} [{min(rates):.0f}-{max(rates):.0f}] entries/s; CPU per "
            f"entry: sender {sender_ms:.3f} ms, server {server_ms:.3f} ms (the CPU alone allows "
            f"{1000 / (sender_ms + server_ms):.0f} entries/s one request at a time, "
            f"{1000 / max(sender_ms, server_ms):.0f} if the two overlapped perfectly)"
        )
    if args.before:
        ratios = [a / b for a, b in zip(results["after"], results["before"])]
        print(f"after / before: {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] (per round)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
