"""The agent's cost inside training code, and the spool's write and replay rates.

Three measurements, each side by side in one run:

1. Training-loop slowdown: a CPU-bound numeric loop (pure Python arithmetic, a fixed number of
   iterations) timed in a fresh interpreter per run, alone and inside
   ``with comet_agent.monitor(...)`` against a local server (in its own process) at its default
   cadence and at 1 s. Configurations are interleaved round by round; the figure is the median of
   each round's ratio to the same round's bare loop. The loop is timed inside the block, so the
   agent's start-up work on its own threads (static snapshot, first samples) counts, its import
   does not (it happens before the block, once per process).
2. Spool write rate: ``Spool.append`` of a real periodic push payload (built from one sample of
   the real collectors), into an empty spool and into one already holding ``--depth`` entries.
3. Spool replay rate: a ``Sender`` draining ``--replay`` such entries into the local server.
4. Where one push's CPU goes at the 1 s cadence (thread CPU time, median over ``--pushes``): one
   sample of the periodic collectors, building the requests, spooling them, sending them through
   ``APIExperiment`` (one HTTP request each) and acknowledging them; for both ways a push travels
   (one metric batch, the default, and the per-kind endpoints), alternated push by push, with the
   local server's CPU per push and the bytes on the wire.
5. ``--resolution``: one push of a window of ``--window-samples`` real samples (1 s sampling,
   60 s pushes) at full resolution (every sample, the default) and as the window's aggregate,
   alternated push by push: thread CPU of building, spooling, sending and acknowledging it, the
   bytes on the wire (gzipped) and the local server's CPU per push.

Run:  .venv/bin/python bench/bench_agent.py [--rounds 7] [--loop-s 4] [--resolution]
      .venv/bin/python bench/bench_agent.py --parts resolution [--pushes 100] [--window-samples 60]
The local server's ingest rate is ``bench/bench_server_ingest.py``; ``--with-ingest`` runs it
after these. Not collected by pytest; the figures go in bench/README.md.
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

from bench_support import API_KEY, compile_sources, create_experiment, start_server  # noqa: E402

# ---------------------------------------------------------------------------------------------
# 1. Training-loop slowdown


def numeric_loop(iterations: int) -> float:
    """A CPU-bound stand-in for a training step loop; returns a checksum so nothing is skipped."""
    total = 0.0
    x = 1.0001
    for i in range(iterations):
        x = (x * 1.000001 + i % 7) % 1000.0
        total += x * x
    return total


def child_loop(args) -> int:
    """Run in a fresh interpreter: time the loop, alone or inside the context manager."""
    iterations = args.iterations
    if args.child == "none":
        began = time.perf_counter()
        numeric_loop(iterations)
        elapsed = time.perf_counter() - began
    else:
        import comet_agent

        with comet_agent.monitor(
            experiment_key=args.experiment,
            api_key=API_KEY,
            url_override=args.root + "/clientlib/",
            data_dir=args.data_dir,
        ):
            if args.settle_s:
                time.sleep(args.settle_s)  # let start-up (static snapshot, first pushes) finish
            began = time.perf_counter()
            numeric_loop(iterations)
            elapsed = time.perf_counter() - began
    print(json.dumps({"elapsed_s": elapsed}))
    return 0


def calibrate(loop_s: float) -> int:
    iterations = 200_000
    while True:
        began = time.perf_counter()
        numeric_loop(iterations)
        took = time.perf_counter() - began
        if took > 0.3:
            return int(iterations * loop_s / took)
        iterations *= 2


def slowdown(rounds: int, loop_s: float, scratch: Path) -> dict:
    iterations = calibrate(loop_s)
    servers = {}
    for name, extra in (("default", []), ("1s", ["--cpu-interval-ms", "1000"])):
        process, root = start_server(str(scratch / f"server-{name}"), *extra)
        servers[name] = (process, root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update({"COMET_ERROR_TRACKING_ENABLE": "false", "PYTHONPATH": str(REPO_ROOT), "HOME": str(scratch)})
    # "1s steady": the loop starts 3 s into the block, after the agent's start-up work.
    configs = ["none", "default", "1s", "1s steady"]
    times: dict[str, list[float]] = {c: [] for c in configs}
    try:
        for round_index in range(rounds):
            order = configs[round_index % len(configs) :] + configs[: round_index % len(configs)]
            for config in order:
                argv = [
                    sys.executable,
                    __file__,
                    "--child",
                    "none" if config == "none" else "agent",
                    "--iterations",
                    str(iterations),
                ]
                if config != "none":
                    root = servers[config.split()[0]][1]
                    argv += [
                        "--experiment",
                        create_experiment(root),
                        "--root",
                        root,
                        "--data-dir",
                        str(scratch / f"agent-{config.replace(' ', '-')}-{round_index}"),
                    ]
                    if config.endswith("steady"):
                        argv += ["--settle-s", "3"]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-2000:])
                times[config].append(json.loads(out.stdout.strip().splitlines()[-1])["elapsed_s"])
            print(
                f"round {round_index + 1}/{rounds}: " + "  ".join(f"{c} {times[c][-1]:.3f} s" for c in configs),
                flush=True,
            )
    finally:
        for process, _root in servers.values():
            process.terminate()
            process.wait(timeout=30)
    result = {"iterations": iterations, "seconds": times}
    for config in configs[1:]:
        ratios = [a / b for a, b in zip(times[config], times["none"])]
        result[f"slowdown_percent_{config}"] = [100 * (r - 1) for r in ratios]
    return result


# ---------------------------------------------------------------------------------------------
# 2, 3. Spool write and replay


def sample_payload() -> tuple[str, dict]:
    """One real periodic push (the metrics batch of one sample of every periodic collector)."""
    from comet_agent.collectors.periodic import build_periodic_collectors
    from comet_agent.delivery import payloads

    collectors, _unavailable = build_periodic_collectors(pid=os.getpid(), directory=str(REPO_ROOT), include_gpu=False)
    now_ms = int(time.time() * 1000)
    for collector in collectors:
        collector.sample(now_ms)  # prime rates
    time.sleep(0.2)
    records = []
    for collector in collectors:
        records.extend(collector.sample(now_ms + 200))
    requests_ = payloads.push_requests(payloads.metric_points(records))
    return max(requests_, key=lambda r: len(json.dumps(r[1])))


def spool_rates(depth: int, replay: int, scratch: Path) -> dict:
    from comet_agent.api.api import API
    from comet_agent.api.experiment import APIExperiment
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool

    endpoint, payload = sample_payload()
    size_bytes = len(json.dumps(payload, separators=(",", ":")))
    result = {"endpoint": endpoint, "payload_bytes": size_bytes}
    batch = 2000

    spool = Spool(scratch / "write.db")
    began = time.perf_counter()
    for _ in range(batch):
        spool.append("k" * 32, endpoint, payload)
    result["write_per_s_empty"] = batch / (time.perf_counter() - began)
    while spool.depth() < depth:
        spool.append("k" * 32, endpoint, payload)
    began = time.perf_counter()
    for _ in range(batch):
        spool.append("k" * 32, endpoint, payload)
    result["write_per_s_at_depth"] = batch / (time.perf_counter() - began)
    result["depth"] = spool.depth()
    spool.close()

    server, root = start_server(str(scratch / "server-replay"))
    try:
        key = create_experiment(root)
        spool = Spool(scratch / "replay.db")
        for _ in range(replay):
            spool.append(key, endpoint, payload)
        api = API(api_key=API_KEY, url_override=root + "/clientlib/")
        experiment = APIExperiment(api=api, previous_experiment=key)
        sender = Sender(spool, lambda _key: experiment)
        began = time.perf_counter()
        emptied = sender.flush(600)
        took = time.perf_counter() - began
        if not emptied:
            raise RuntimeError(f"the sender left {spool.depth()} entries")
        result["replay_per_s"] = replay / took
        result["replayed"] = replay
        spool.close()
        api.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result


def push_breakdown(pushes: int, scratch: Path) -> dict:
    """Median thread-CPU milliseconds of each step of one push, as the agent does it every interval,
    for both ways a push travels: one metric batch (the default) and the per-kind endpoints
    (cpu/ram/load-metrics plus a batch), alternated push by push on the same samples. Also the
    local server's CPU per push (psutil, summed per way) and the bytes each push puts on the wire."""
    import psutil

    from comet_agent.api.api import API
    from comet_agent.api.experiment import APIExperiment
    from comet_agent.collectors.periodic import build_periodic_collectors
    from comet_agent.delivery import payloads
    from comet_agent.delivery.sender import DISPATCH
    from comet_agent.delivery.spool import Spool

    server, root = start_server(str(scratch / "server-breakdown"))
    modes = {"one batch": False, "per-kind endpoints": True}
    steps = ("sample", "build", "spool", "send", "ack")
    times: dict[str, dict[str, list[float]]] = {mode: {k: [] for k in steps} for mode in modes}
    requests_per_push: dict[str, int] = {}
    wire_bytes: dict[str, list[int]] = {mode: [] for mode in modes}
    server_cpu_s = {mode: 0.0 for mode in modes}
    server_process = psutil.Process(server.pid)
    try:
        api = API(api_key=API_KEY, url_override=root + "/clientlib/")
        experiments = {mode: APIExperiment(api=api, previous_experiment=create_experiment(root)) for mode in modes}
        spool = Spool(scratch / "breakdown.db")
        collectors, _ = build_periodic_collectors(pid=os.getpid(), directory=str(REPO_ROOT), include_gpu=False)
        for collector in collectors:
            collector.sample(int(time.time() * 1000))
        for push in range(pushes):
            order = list(modes) if push % 2 == 0 else list(reversed(modes))
            for mode in order:
                time.sleep(0.02)
                t0 = time.thread_time()
                records = []
                for collector in collectors:
                    records.extend(collector.sample(int(time.time() * 1000)))
                t1 = time.thread_time()
                reqs = payloads.push_requests(payloads.metric_points(records), per_kind_endpoints=modes[mode])
                t2 = time.thread_time()
                entries = [spool.append(experiments[mode].id, endpoint, payload) for endpoint, payload in reqs]
                t3 = time.thread_time()
                cpu_before = sum(server_process.cpu_times()[:2])
                for entry in entries:
                    DISPATCH[entry.endpoint](experiments[mode], entry.payload)
                t4 = time.thread_time()
                server_cpu_s[mode] += sum(server_process.cpu_times()[:2]) - cpu_before
                for entry in entries:  # the sender acknowledges entry by entry
                    spool.ack([entry])
                t5 = time.thread_time()
                for name, took in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    times[mode][name].append(took * 1000)
                requests_per_push[mode] = len(reqs)
                wire_bytes[mode].append(bytes_on_the_wire(experiments[mode].id, reqs))
        spool.close()
        api.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {}
    for mode in modes:
        medians = {name: statistics.median(values) for name, values in times[mode].items()}
        totals = [sum(values) for values in zip(*times[mode].values())]
        result[mode] = {
            "steps_ms": medians,
            "total_ms": statistics.median(totals),
            "total_ms_p10_p90": [sorted(totals)[len(totals) // 10], sorted(totals)[len(totals) * 9 // 10]],
            "requests_per_push": requests_per_push[mode],
            "wire_bytes": statistics.median(wire_bytes[mode]),
            "server_cpu_ms_per_push": server_cpu_s[mode] * 1000 / pushes,
        }
    return result


def bytes_on_the_wire(experiment_key: str, reqs: list) -> int:
    """The request bodies of one push as the client sends them (metric batches gzipped from
    ``GZIP_MIN_BYTES`` up), summed."""
    import gzip

    from comet_agent.api.client import GZIP_LEVEL, GZIP_MIN_BYTES

    sent = 0
    for endpoint, payload in reqs:
        body = json.dumps({"experimentKey": experiment_key, **payload}).encode()
        if endpoint == "metrics_batch" and len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        sent += len(body)
    return sent


# ---------------------------------------------------------------------------------------------
# 5. Full resolution against the window aggregate


def real_window(samples: int, every_s: float) -> list[dict]:
    """``samples`` real samples of every periodic collector of this host (GPU excluded), taken
    ``every_s`` apart and restamped 1 s apart (the values of a short run, the shape of a 1 s one),
    as the job's window holds them: Comet metric points, sample after sample."""
    from comet_agent.collectors.periodic import build_periodic_collectors
    from comet_agent.delivery import payloads

    collectors, _ = build_periodic_collectors(pid=os.getpid(), directory=str(REPO_ROOT), include_gpu=False)
    for collector in collectors:
        collector.sample(int(time.time() * 1000))  # prime rates
    start_ms = int(time.time() * 1000)
    points: list[dict] = []
    for index in range(samples):
        time.sleep(every_s)
        records = []
        for collector in collectors:
            records.extend(collector.sample(start_ms + 1000 * index))
        points.extend(payloads.metric_points(records))
    for collector in collectors:
        collector.close()
    return points


def resolution_cost(pushes: int, window_samples: int, scratch: Path) -> dict:
    """Thread CPU per push of each step after sampling (build the requests, spool them, send them,
    acknowledge them), the bytes on the wire and the local server's CPU per push, for a window of
    ``window_samples`` samples pushed at full resolution (every sample) and as the window's
    aggregate, alternated push by push on the same window. Sampling is the same both ways and not
    counted here (see ``--parts push`` for one sample's cost)."""
    import psutil

    from comet_agent.api.api import API
    from comet_agent.api.experiment import APIExperiment
    from comet_agent.delivery import payloads
    from comet_agent.delivery.sender import DISPATCH
    from comet_agent.delivery.spool import Spool

    window = real_window(window_samples, every_s=0.05)
    span_ms = window[-1]["timestamp"] - window[0]["timestamp"] + 1000
    server, root = start_server(str(scratch / "server-resolution"))
    modes = ("full", "window")
    steps = ("build", "spool", "send", "ack")
    times: dict[str, dict[str, list[float]]] = {mode: {k: [] for k in steps} for mode in modes}
    shape: dict[str, dict] = {}
    wire_bytes: dict[str, list[int]] = {mode: [] for mode in modes}
    server_cpu_s = {mode: 0.0 for mode in modes}
    server_process = psutil.Process(server.pid)
    try:
        api = API(api_key=API_KEY, url_override=root + "/clientlib/")
        experiments = {mode: APIExperiment(api=api, previous_experiment=create_experiment(root)) for mode in modes}
        spool = Spool(scratch / "resolution.db")
        for push in range(pushes):
            shifted = [{**point, "timestamp": point["timestamp"] + push * span_ms} for point in window]
            for mode in modes if push % 2 == 0 else reversed(modes):
                time.sleep(0.02)
                t0 = time.thread_time()
                reqs = payloads.push_requests(shifted, resolution=mode)
                t1 = time.thread_time()
                entries = [spool.append(experiments[mode].id, endpoint, payload) for endpoint, payload in reqs]
                t2 = time.thread_time()
                cpu_before = sum(server_process.cpu_times()[:2])
                for entry in entries:
                    DISPATCH[entry.endpoint](experiments[mode], entry.payload)
                t3 = time.thread_time()
                server_cpu_s[mode] += sum(server_process.cpu_times()[:2]) - cpu_before
                for entry in entries:
                    spool.ack([entry])
                t4 = time.thread_time()
                for name, took in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    times[mode][name].append(took * 1000)
                shape[mode] = {
                    "requests_per_push": len(reqs),
                    "points_per_push": sum(len(p["values"]) for _, p in reqs),
                }
                wire_bytes[mode].append(bytes_on_the_wire(experiments[mode].id, reqs))
        stored = {mode: len(experiments[mode].get_metrics("sys.ram.used")) for mode in modes}
        spool.close()
        api.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    result: dict = {"window_samples": window_samples, "pushes_each": pushes}
    for mode in modes:
        totals = [sum(values) for values in zip(*times[mode].values())]
        result[mode] = {
            "steps_ms": {name: statistics.median(values) for name, values in times[mode].items()},
            "total_ms": statistics.median(totals),
            "total_ms_p10_p90": [sorted(totals)[len(totals) // 10], sorted(totals)[len(totals) * 9 // 10]],
            **shape[mode],
            "wire_bytes": statistics.median(wire_bytes[mode]),
            "server_cpu_ms_per_push": server_cpu_s[mode] * 1000 / pushes,
            "sys_ram_used_points_stored": stored[mode],
        }
    return result


#: The measurements ``--parts`` chooses from (all by default but ``resolution``, which ``--resolution`` adds).
PARTS = ("loop", "spool", "push", "resolution")
DEFAULT_PARTS = ("loop", "spool", "push")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds of the loop slowdown")
    parser.add_argument("--loop-s", type=float, default=2.0, help="seconds the bare loop takes")
    parser.add_argument("--depth", type=int, default=20_000, help="spool depth for the second write rate")
    parser.add_argument("--replay", type=int, default=2_000, help="entries the sender replays")
    parser.add_argument("--pushes", type=int, default=200, help="pushes timed for the CPU breakdown")
    parser.add_argument("--with-ingest", action="store_true", help="also run bench_server_ingest.py")
    parser.add_argument(
        "--parts", default=",".join(DEFAULT_PARTS), help=f"which measurements, comma-separated: {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--resolution",
        action="store_true",
        help="also (or with --parts resolution: only) compare full resolution with the window aggregate per push",
    )
    parser.add_argument(
        "--window-samples", type=int, default=60, help="samples per push for --resolution (1 s sampling, 60 s pushes)"
    )
    parser.add_argument("--json", default=str(REPO_ROOT / "bench" / "results" / "bench_agent.json"))
    # The child mode (one timed loop in a fresh interpreter):
    parser.add_argument("--child", choices=["none", "agent"], help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--settle-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_loop(args)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if args.resolution and "resolution" not in parts:
        parts.append("resolution")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    results: dict = {}
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as scratch_dir:
        scratch = Path(scratch_dir)
        if "loop" in parts:
            results["loop"] = slowdown(args.rounds, args.loop_s, scratch)
        if "spool" in parts:
            results["spool"] = spool_rates(args.depth, args.replay, scratch)
        if "push" in parts:
            results["push_breakdown_ms"] = push_breakdown(args.pushes, scratch)
        if "resolution" in parts:
            results["resolution"] = resolution_cost(args.pushes, args.window_samples, scratch)
    print()
    if "loop" in results:
        loop = results["loop"]
        print(f"loop: {loop['iterations']} iterations, bare median {statistics.median(loop['seconds']['none']):.3f} s")
        for config in ("default", "1s", "1s steady"):
            values = loop[f"slowdown_percent_{config}"]
            print(
                f"  slowdown with monitor() at {config:>7} cadence: median {statistics.median(values):+.2f}% "
                f"[{min(values):+.2f}% to {max(values):+.2f}%] over {len(values)} rounds"
            )
    if "spool" in results:
        spool = results["spool"]
        print(
            f"spool ({spool['endpoint']}, {spool['payload_bytes']} B payload): write {spool['write_per_s_empty']:.0f}/s "
            f"empty, {spool['write_per_s_at_depth']:.0f}/s at depth {spool['depth']}; "
            f"replay to the local server {spool['replay_per_s']:.0f}/s ({spool['replayed']} entries)"
        )
    if "push_breakdown_ms" in results:
        breakdown = results["push_breakdown_ms"]
        for mode, figures in breakdown.items():
            low, high = figures["total_ms_p10_p90"]
            print(
                f"one push, {mode} ({figures['requests_per_push']} requests, {figures['wire_bytes']:.0f} B on the wire), "
                "thread CPU ms: "
                + ", ".join(f"{k} {v:.2f}" for k, v in figures["steps_ms"].items())
                + f"; total {figures['total_ms']:.2f} [p10-p90 {low:.2f}-{high:.2f}]; "
                f"server CPU {figures['server_cpu_ms_per_push']:.2f} ms/push"
            )
        per_kind, batch = breakdown["per-kind endpoints"], breakdown["one batch"]
        print(
            f"per-kind / one batch: client CPU {per_kind['total_ms'] / batch['total_ms']:.2f}x, "
            f"server CPU {per_kind['server_cpu_ms_per_push'] / max(batch['server_cpu_ms_per_push'], 1e-9):.2f}x, "
            f"requests {per_kind['requests_per_push']} vs {batch['requests_per_push']}"
        )
    if "resolution" in results:
        figures = results["resolution"]
        for mode in ("full", "window"):
            one = figures[mode]
            low, high = one["total_ms_p10_p90"]
            print(
                f"one push of {figures['window_samples']} samples, {mode}: {one['points_per_push']} points in "
                f"{one['requests_per_push']} requests, {one['wire_bytes']:.0f} B on the wire; thread CPU ms: "
                + ", ".join(f"{k} {v:.2f}" for k, v in one["steps_ms"].items())
                + f"; total {one['total_ms']:.2f} [p10-p90 {low:.2f}-{high:.2f}]; "
                f"server CPU {one['server_cpu_ms_per_push']:.2f} ms/push"
            )
        full, window = figures["full"], figures["window"]
        print(
            f"full / window: client CPU {full['total_ms'] / window['total_ms']:.2f}x, "
            f"bytes {full['wire_bytes'] / window['wire_bytes']:.1f}x, "
            f"server CPU {full['server_cpu_ms_per_push'] / max(window['server_cpu_ms_per_push'], 1e-9):.2f}x"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"JSON: {out}")
    if args.with_ingest:
        return subprocess.call([sys.executable, str(REPO_ROOT / "bench" / "bench_server_ingest.py")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
